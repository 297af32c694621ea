"""The NumPy executor: every op is built once at load, predict only walks the steps.

A Plan is a flat list of steps over integer tensor slots. After each step the slots whose
last consumer has run are cleared, so an intermediate array lives only as long as it is
needed. Keras masks travel beside the tensors, computed only when a mask exists.

A batch may run three ways: whole (BLAS with its usual threads), whole with single-threaded
BLAS (OpenBLAS threads spin, which under load made small GEMMs 10-80x slower), or, when
every layer treats batch items independently, as shards on the thread pool of
`runtime.threads` (single-threaded BLAS per shard), concatenated: the outputs are the
same either way. Which way wins depends on the model, the batch size and the machine's
load, so it is measured, per batch-size bucket (powers of two, batch 1 included). A bucket's
very first call runs whole unmeasured: it warms up (first-touch page faults of new buffers,
compiled kernels loading, cold caches) and once took 45 ms where the next calls took 15,
which kept MobileNetV2 on the slower way for 32 calls. The next call runs whole, measured;
single-threaded BLAS is tried when that took at least ONE_THREAD_MIN_SECONDS and sharding
when it took at least SHARD_MIN_SECONDS (cheap models keep their latency); each alternative
runs once, the fastest per item is used from then on and, every RECHECK_EVERY calls, one of
the others runs again so a choice made under other load is revisited. Shards hold at least
SHARD_MIN_WORK seconds of measured work (never a few rows of a cheap model). Batch 1
matters most here: on 2 busy cores, single-threaded BLAS ran MobileNetV2 at batch 1 in
25-36 ms against 35-150 ms with two spinning threads, and the LSTM / transformer text
models 1.5-3x faster.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import ModelFormatError, TflessError
from ..graph import Graph, Node
from ..ops import get_op
from ..registry import OpSpec
from . import absorb, memory, threads
from .tf_separable import tf_batch_separable

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
# Smallest shard, in batch items and in measured seconds of work: shards of 4 rows of
# a 3-layer MLP ran 20-40x slower than one whole-batch call (dispatch per step dominated).
SHARD_ITEMS = 4
SHARD_MIN_WORK = 0.002
# A bucket whose whole-batch run takes less than this is never sharded ...
SHARD_MIN_SECONDS = 0.01
# ... and below this does not try single-threaded BLAS either (each try of a way costs one
# call run that way; below a few ms BLAS calls are too small for OpenBLAS to thread).
ONE_THREAD_MIN_SECONDS = 0.002
# Calls of a bucket between re-measurements of a way not currently chosen.
RECHECK_EVERY = 32
WHOLE, ONE_THREAD, SHARDED = "whole", "one-thread", "sharded"


@dataclass
class Choice:
    """What is known about running batches of one size bucket: seconds per item by way
    (a running mean of the last runs, halving the weight of older ones), calls since."""
    seconds: dict[str, float] = field(default_factory=dict)
    calls: int = 0
    # only the whole way is worth running (a cheap model): calls skip the timing and the
    # choosing, except every RECHECK_EVERY-th, which measures again (~10 us a call saved)
    settled: bool = False

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


def batch_separable(nodes: list[Node], graph: Graph | None = None) -> bool:
    """Every node computes batch items independently, so a batch may be split (masks
    included: each shard computes its own from its own inputs). TF graph plans (tf.* ops)
    are judged by following their data flow, which needs `graph`."""
    if any(n.op.startswith("tf.") for n in nodes):
        return graph is not None and tf_batch_separable(graph)
    return all(_per_sample(n) for n in nodes)


@dataclass
class Step:
    node: Node
    spec: OpSpec
    run: Any
    inputs: list[int]
    outputs: list[int]
    release: list[int]
    # computed for traces only: its one consumer does the work itself (runtime/absorb.py)
    trace_only: bool = False


def _set_releases(steps: list[Step], keep: set[int]) -> None:
    """Each slot is released after the last step of `steps` that reads it (model outputs
    are kept)."""
    last_use: dict[int, int] = {}
    for i, step in enumerate(steps):
        for s in step.inputs:
            last_use[s] = i
    for s, i in last_use.items():
        if s not in keep:
            steps[i].release.append(s)


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
        specs = [get_op(node.op, node.name) for node in graph.nodes]
        # a mask exists only where some layer can create one (Embedding, Masking, ...):
        # ResNet's and MobileNet's Add layers merely pass masks on, so they run mask-free
        self.has_masks = any(spec.mask not in ("drop", "keep")
                             and not getattr(spec.mask, "passes_only", False) for spec in specs)
        folded = absorb.absorptions(graph)
        trace_only = {pad.name for pad, _ in folded.values()}
        steps: list[Step] = []
        for node, spec in zip(graph.nodes, specs):
            config, inputs = node.config, node.inputs
            if node.name in folded:
                pad, pads = folded[node.name]
                config, inputs = absorb.absorbing_config(node, pads), pad.inputs
            try:
                run = spec.build(config, node.weights)
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
            steps.append(Step(node, spec, run, [slot(t) for t in inputs],
                              [slot(t) for t in node.outputs], [], node.name in trace_only))
        for tid in graph.output_ids:
            if tid not in slots:
                raise TflessError(f"model output '{tid}' is produced by no layer")
        self.output_slots = [slots[t] for t in graph.output_ids]
        self.steps = steps
        self.plain_steps = self._plain(steps, slots)
        for listed in (self.steps, self.plain_steps):
            _set_releases(listed, set(self.output_slots))
        self.n_slots = len(slots)
        self.slot_of = slots
        self.separable = batch_separable(graph.nodes, graph)
        self.choices: dict[int, Choice] = {}  # batch.bit_length() -> measurements
        self.last_values: list[Any] | None = None

    def _plain(self, steps: list[Step], slots: dict[str, int]) -> list[Step]:
        """What a mask-free call runs (runtime/absorb.py): the steps but those only traces
        need (a folded ZeroPadding), each merge a relu alone reads run with that relu."""
        relu_of = {} if self.has_masks else absorb.relu_after_merge(self.graph)
        folded = {relu.name for relu in relu_of.values()}
        plain = []
        for st in steps:
            if st.trace_only or st.node.name in folded:
                continue
            relu = relu_of.get(st.node.name)
            if relu is None:
                plain.append(replace(st, release=[]))
            else:
                plain.append(replace(st, run=absorb.with_relu(st.run),
                                     outputs=[slots[t] for t in relu.outputs], release=[]))
        return plain

    def run(self, inputs: list[np.ndarray], keep_all: bool = False) -> list[np.ndarray]:
        """Run the plan. With keep_all, intermediate tensors are kept (see `trace`)."""
        batch = inputs[0].shape[0] if inputs and getattr(inputs[0], "ndim", 0) else 0
        if keep_all or batch < 1:
            return self._run(inputs, keep_all)
        choice = self.choices.get(batch.bit_length())
        if choice is None:  # a bucket's first call warms up, unmeasured (see module doc)
            self.choices.setdefault(batch.bit_length(), Choice())
            return self._run(inputs)
        if choice.settled:
            choice.calls += 1
            if choice.calls % RECHECK_EVERY:
                return self._run(inputs)
        way = self._pick(choice, batch)
        start = time.perf_counter()
        if way == SHARDED:
            outs = self._run_sharded(inputs, batch, threads.worker_count(), choice)
        elif way == ONE_THREAD:
            with threads.single_threaded_blas():
                outs = self._run(inputs)
        else:
            outs = self._run(inputs)
        per_item = (time.perf_counter() - start) / batch
        old = choice.seconds.get(way)
        choice.seconds[way] = per_item if old is None else (old + per_item) / 2
        return outs

    def _ways(self, batch: int, choice: Choice) -> list[str]:
        """The ways worth comparing for this batch size (its whole run measured)."""
        ways = [WHOLE]
        whole = choice.seconds[WHOLE] * batch
        if whole >= ONE_THREAD_MIN_SECONDS:
            blas = threads.blas_threads()
            if blas is not None and blas > 1:
                ways.append(ONE_THREAD)
        if self.separable and whole >= SHARD_MIN_SECONDS:
            workers = threads.worker_count()
            if workers > 1 and self._shard_size(batch, workers, choice) < batch:
                ways.append(SHARDED)
        return ways

    def _pick(self, choice: Choice, batch: int) -> str:
        seconds = choice.seconds
        if WHOLE not in seconds:
            return WHOLE
        ways = self._ways(batch, choice)
        choice.settled = len(ways) == 1
        if choice.settled:
            return WHOLE
        for way in ways:
            if way not in seconds:
                return way
        choice.calls += 1
        best = min(ways, key=lambda w: seconds[w])
        others = [w for w in ways if w != best]
        if others and choice.calls % RECHECK_EVERY == 0:
            return others[(choice.calls // RECHECK_EVERY) % len(others)]
        return best

    @staticmethod
    def _shard_size(batch: int, workers: int, choice: Choice) -> int:
        """Items per shard: SHARD_ITEMS, or more to hold SHARD_MIN_WORK of measured work;
        `batch` itself when that leaves fewer than two shards (or one worker)."""
        per_item = min(choice.seconds.values(), default=0.0)
        size = max(SHARD_ITEMS, math.ceil(SHARD_MIN_WORK / per_item) if per_item > 0 else 1)
        return size if workers > 1 and 2 * size <= batch else batch

    def _run_sharded(self, inputs: list[np.ndarray], batch: int, workers: int,
                     choice: Choice) -> list[np.ndarray]:
        size = self._shard_size(batch, workers, choice)
        starts = range(0, batch, size)
        with threads.single_threaded_blas():
            parts = list(threads.pool(workers).map(
                lambda i: self._run([x[i:i + size] for x in inputs]), starts))
        return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]

    def _run(self, inputs: list[np.ndarray], keep_all: bool = False) -> list[np.ndarray]:
        values: list[Any] = [None] * self.n_slots
        for s, x in zip(self.input_slots, inputs):
            values[s] = x
        if not (self.has_masks or keep_all):
            return self._run_plain(values)
        masks: list[Any] = [None] * self.n_slots if self.has_masks else []
        for step in self.steps:
            if step.trace_only and not keep_all:
                continue
            args = [values[s] for s in step.inputs]
            in_masks = [masks[s] for s in step.inputs] if masks else []
            try:
                if step.spec.uses_mask and any(m is not None for m in in_masks):
                    out = step.run(*args, mask=in_masks)
                else:
                    out = step.run(*args)
            except (MemoryError, ValueError, IndexError, TypeError) as exc:
                raise self._failure(step, args, exc) from exc
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

    def _run_plain(self, values: list[Any]) -> list[np.ndarray]:
        """`_run` without masks and without keeping intermediates: the loop a batch-1
        call of a small model spends its overhead in, kept to the calls themselves."""
        for step in self.plain_steps:
            args = [values[s] for s in step.inputs]
            try:
                out = step.run(*args)
            except (MemoryError, ValueError, IndexError, TypeError) as exc:
                raise self._failure(step, args, exc) from exc
            if isinstance(out, (tuple, list)):
                for s, y in zip(step.outputs, out):
                    values[s] = y
            else:
                values[step.outputs[0]] = out
            for s in step.release:
                values[s] = None
        return [values[s] for s in self.output_slots]

    @staticmethod
    def _failure(step: Step, args: list, exc: Exception) -> TflessError:
        if isinstance(exc, MemoryError):
            return TflessError(
                f"layer '{step.node.name}' ({step.node.op}) needs more memory than is "
                f"available: {exc}; try a smaller batch_size"
            )
        shapes = ", ".join(str(getattr(a, "shape", "?")) for a in args)
        return TflessError(
            f"layer '{step.node.name}' ({step.node.op}) failed on inputs of shape "
            f"{shapes}: {exc}"
        )

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
