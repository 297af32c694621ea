"""The NumPy executor: every op is built once at load, predict only walks the steps.

A Plan is a flat list of steps over integer tensor slots. After each step the slots whose
last consumer has run are cleared, so an intermediate array lives only as long as it is
needed. Keras masks travel beside the tensors, computed only when a mask exists.

A plan whose every layer treats batch items independently runs a large batch as shards of
a few items on the thread pool of `runtime.threads` (single-threaded BLAS per shard) and
concatenates the results: the outputs are the same, computed on every core, and the live
activations are those of a few items per thread instead of the whole batch.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ModelFormatError, TflessError
from ..graph import Graph, Node
from ..ops import get_op
from ..ops.registry import OpSpec
from . import memory, threads

# Layers that compute every batch item on its own (the batch axis is never reduced, moved
# or mixed), provided their `axis` config (if any) is a positive axis or -1.
PER_SAMPLE_OPS = frozenset({
    "Conv1D", "Conv2D", "Conv3D", "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D",
    "SeparableConv2D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
    "AveragePooling3D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
    "GlobalAveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
    "BatchNormalization", "LayerNormalization", "Normalization", "Rescaling",
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D",
    "Cropping3D", "UpSampling1D", "UpSampling2D", "UpSampling3D", "Flatten", "Reshape",
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate",
    "Dense", "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "Softmax", "ThresholdedReLU",
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
    "GaussianDropout", "AlphaDropout", "Identity", "LayerScale", "StochasticDepth",
    "GroupNormalization", "UnitNormalization", "RMSNormalization", "Permute", "RepeatVector",
    # sequence models: each item's mask and attention see that item alone. Recurrent layers
    # are per item too but are left out on purpose: their many small per-step NumPy calls
    # hold the GIL, so shards on two threads ran an Embedding + LSTM model 3x slower than
    # the whole batch with multi-threaded BLAS (1490 vs 480 items/s at batch 32), while the
    # transformer text model gains a third (755 -> 1000 items/s).
    "Embedding", "Masking", "Attention", "AdditiveAttention", "MultiHeadAttention",
    "GroupedQueryAttention", "TimeDistributedFold", "TimeDistributedUnfold",
})
# Batch items per shard: enough shards for the pool to balance load when another process
# takes a core, few enough that per-step dispatch stays negligible.
SHARD_ITEMS = 4
# A batch is sharded only if running it whole is expected to take at least this long
# (estimated from the previous whole-batch runs), so small models keep their latency.
SHARD_MIN_SECONDS = 0.01


def _positive_axes(config: dict) -> bool:
    axis = config.get("axis", -1)
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    return all(isinstance(a, int) and (a >= 1 or a == -1) for a in axes)


# keras.ops nodes Keras 3 records for masks (Embedding/Masking -> NotEqual -> Any, masked
# Concatenate -> OnesLike): per item when their other arguments are scalars.
PER_SAMPLE_KERAS_OPS = frozenset(f"keras.ops.{name}" for name in (
    "Equal", "NotEqual", "Greater", "GreaterEqual", "Less", "LessEqual", "LogicalAnd",
    "LogicalOr", "LogicalNot", "Cast", "Any", "All", "OnesLike", "ZerosLike",
    "ConvertToTensor",
))


def _scalar_arguments(config: dict) -> bool:
    values = [*config.get("call_args", []), *config.get("call_kwargs", {}).values()]
    return all(isinstance(v, (int, float, bool, str, type(None)))
               or (isinstance(v, dict) and set(v) == {"__tensor__"}) for v in values)


def _per_sample(node: Node) -> bool:
    if node.op in PER_SAMPLE_KERAS_OPS:
        return _scalar_arguments(node.config) and _positive_axes(node.config)
    if node.op == "TimeDistributed":  # per item if the layer it wraps is
        inner = node.config.get("layer")
        return isinstance(inner, dict) and _per_sample(
            Node(node.name, str(inner.get("class_name")), inner.get("config") or {}, {}, [], []))
    return node.op in PER_SAMPLE_OPS and _positive_axes(node.config)


def batch_separable(nodes: list[Node]) -> bool:
    """Every node computes batch items independently, so a batch may be split (masks
    included: each shard computes its own from its own inputs)."""
    return all(_per_sample(n) for n in nodes)


@dataclass
class Step:
    node: Node
    spec: OpSpec
    run: Any
    inputs: list[int]
    outputs: list[int]
    release: list[int]


class Plan:
    """A compiled graph: `run(list of input arrays) -> list of output arrays`."""

    def __init__(self, graph: Graph) -> None:
        threads.honour_environment()
        memory.keep_freed_memory()
        self.graph = graph
        slots: dict[str, int] = {}

        def slot(tid: str) -> int:
            return slots.setdefault(tid, len(slots))

        self.input_slots = [slot(s.name) for s in graph.inputs]
        steps: list[Step] = []
        for node in graph.nodes:
            spec = get_op(node.op, node.name)
            try:
                run = spec.build(node.config, node.weights)
            except KeyError as exc:
                raise ModelFormatError(
                    f"layer '{node.name}' ({node.op}): its saved config/weights lack {exc}, which "
                    f"this layer needs (the file may come from a newer or modified Keras)"
                ) from exc
            except (ValueError, TypeError, IndexError) as exc:
                raise TflessError(
                    f"layer '{node.name}' ({node.op}): cannot build from its config/weights: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            steps.append(Step(node, spec, run, [slot(t) for t in node.inputs],
                              [slot(t) for t in node.outputs], []))
        for tid in graph.output_ids:
            if tid not in slots:
                raise TflessError(f"model output '{tid}' is produced by no layer")
        self.output_slots = [slots[t] for t in graph.output_ids]
        keep = set(self.output_slots)
        last_use: dict[int, int] = {}
        for i, step in enumerate(steps):
            for s in step.inputs:
                last_use[s] = i
        for s, i in last_use.items():
            if s not in keep:
                steps[i].release.append(s)
        self.steps = steps
        self.n_slots = len(slots)
        self.slot_of = slots
        self.has_masks = any(st.spec.mask not in ("drop", "keep") for st in steps)
        self.separable = batch_separable(graph.nodes)
        self.seconds_per_item: float | None = None
        self.last_values: list[Any] | None = None

    def run(self, inputs: list[np.ndarray], keep_all: bool = False) -> list[np.ndarray]:
        """Run the plan. With keep_all, intermediate tensors are kept (see `trace`)."""
        batch = inputs[0].shape[0] if inputs and getattr(inputs[0], "ndim", 0) else 0
        if keep_all or not self.separable or batch < 2:
            return self._run(inputs, keep_all)
        if self.seconds_per_item is None:
            return self._run_measuring_head(inputs, batch)
        workers = threads.worker_count()
        if workers > 1 and self.seconds_per_item * batch >= SHARD_MIN_SECONDS:
            return self._run_sharded(inputs, batch, workers)
        start = time.perf_counter()
        outs = self._run(inputs, keep_all)
        self.seconds_per_item = (time.perf_counter() - start) / batch
        return outs

    def _run_measuring_head(self, inputs: list[np.ndarray], batch: int) -> list[np.ndarray]:
        """First batch: time the first few items alone to learn the cost per item, then run
        the rest as that cost says (so even the first large batch is mostly sharded)."""
        head = min(batch, SHARD_ITEMS)
        start = time.perf_counter()
        first = self._run([x[:head] for x in inputs])
        self.seconds_per_item = (time.perf_counter() - start) / head
        if head == batch:
            return first
        rest = self.run([x[head:] for x in inputs])
        return [np.concatenate([a, b]) for a, b in zip(first, rest)]

    def _run_sharded(self, inputs: list[np.ndarray], batch: int, workers: int
                     ) -> list[np.ndarray]:
        size = max(1, min(SHARD_ITEMS, math.ceil(batch / workers)))
        starts = range(0, batch, size)
        with threads.single_threaded_blas():
            parts = list(threads.pool(workers).map(
                lambda i: self._run([x[i:i + size] for x in inputs]), starts))
        return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]

    def _run(self, inputs: list[np.ndarray], keep_all: bool = False) -> list[np.ndarray]:
        values: list[Any] = [None] * self.n_slots
        masks: list[Any] = [None] * self.n_slots if self.has_masks else []
        for s, x in zip(self.input_slots, inputs):
            values[s] = x
        for step in self.steps:
            args = [values[s] for s in step.inputs]
            in_masks = [masks[s] for s in step.inputs] if masks else []
            try:
                if step.spec.uses_mask and any(m is not None for m in in_masks):
                    out = step.run(*args, mask=in_masks)
                else:
                    out = step.run(*args)
            except MemoryError as exc:
                raise TflessError(
                    f"layer '{step.node.name}' ({step.node.op}) needs more memory than is "
                    f"available: {exc}; try a smaller batch_size"
                ) from exc
            except (ValueError, IndexError, TypeError) as exc:
                shapes = ", ".join(str(getattr(a, "shape", "?")) for a in args)
                raise TflessError(
                    f"layer '{step.node.name}' ({step.node.op}) failed on inputs of shape "
                    f"{shapes}: {exc}"
                ) from exc
            outs = out if isinstance(out, (tuple, list)) else (out,)
            for s, y in zip(step.outputs, outs):
                values[s] = y
            if masks:
                self._propagate_masks(step, args, in_masks, masks)
            if not keep_all:
                for s in step.release:
                    values[s] = None
                    if masks:
                        masks[s] = None
        if keep_all:
            self.last_values = values
        return [values[s] for s in self.output_slots]

    @staticmethod
    def _propagate_masks(step: Step, args: list, in_masks: list, masks: list) -> None:
        rule = step.spec.mask
        if rule == "drop":
            return
        if rule == "keep":
            if in_masks and in_masks[0] is not None:
                for s in step.outputs:
                    masks[s] = in_masks[0]
            return
        out_masks = rule(step.node.config, args, in_masks)
        for s, m in zip(step.outputs, out_masks):
            masks[s] = m

    def trace(self, inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Every tensor of one run, by tensor id (for inspect, debugging and exporters)."""
        self.run(inputs, keep_all=True)
        values, self.last_values = self.last_values or [], None
        return {tid: values[s] for tid, s in self.slot_of.items() if values[s] is not None}
