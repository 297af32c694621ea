"""Graph passes: small Graph -> Graph rewrites that keep outputs equal within tolerance.

Every pass returns a new Graph and never mutates the arrays or configs of its input, so a
pass can be run (and tested) alone. The one exception is asked for explicitly:
`optimize_graph(..., in_place=True)` lets `fold_batchnorm` write folded kernels into the
reader's own arrays, so loading never holds a model's convolution weights twice (the Model
does this for graphs it read itself and can read again). Rewritten nodes stay ordinary Keras layers (a Conv2D
with a folded BatchNormalization is still a Conv2D with a kernel and a bias), so the
exporters and the description code see a graph they already understand.

`PASSES` is the default pipeline, in order; `optimize_graph(graph, passes)` runs all of
them or only those named.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ..errors import TflessError
from ..graph import Graph, Node
from ..ops import get_op
from ..ops.activations import activation_name, is_linear

Pass = Callable[[Graph], Graph]


def _rebuilt(graph: Graph, nodes: list[Node]) -> Graph:
    return Graph(graph.inputs, nodes, graph.output_ids, graph.output_names, graph.meta)


def _copy(node: Node, **changes: Any) -> Node:
    fields = {"name": node.name, "op": node.op, "config": node.config, "weights": node.weights,
              "inputs": list(node.inputs), "outputs": list(node.outputs), "layer": node.layer}
    fields.update(changes)
    return Node(**fields)


def _sole_consumer(graph: Graph, consumers: dict[str, list[Node]], tid: str) -> Node | None:
    """The one node reading tensor `tid`, if exactly one does and it is not a model output."""
    readers = consumers.get(tid, [])
    if len(readers) != 1 or tid in graph.output_ids:
        return None
    return readers[0]


def _mergeable(graph: Graph, consumers: dict[str, list[Node]], node: Node, ops: Iterable[str]
               ) -> Node | None:
    """The single follower of a single-output, linear-activation node, if its op is in `ops`."""
    if len(node.outputs) != 1 or not is_linear(node.config.get("activation")):
        return None
    follower = _sole_consumer(graph, consumers, node.outputs[0])
    if follower is None or follower.op not in ops or follower.inputs != node.outputs:
        return None
    return follower


# ----- drop_noops --------------------------------------------------------------------------
def drop_noops(graph: Graph) -> Graph:
    """Remove layers that are the identity at inference (Dropout, noise, augmentation)."""
    alias: dict[str, str] = {}
    kept: list[Node] = []
    for node in graph.nodes:
        inputs = [alias.get(t, t) for t in node.inputs]
        if get_op(node.op, node.name).noop and len(inputs) == 1 and len(node.outputs) == 1 \
                and node.outputs[0] not in graph.output_ids:
            alias[node.outputs[0]] = inputs[0]
            continue
        kept.append(_copy(node, inputs=inputs))
    return _rebuilt(graph, kept)


# ----- fold_batchnorm ----------------------------------------------------------------------
# op -> (weight whose last axis is the output channel, channel axis of the output when
# channels_last). Depthwise kernels are (*k, C, M): output channel c*M + m.
FOLDABLE = {
    "Dense": "kernel",
    "Conv1D": "kernel", "Conv2D": "kernel", "Conv3D": "kernel",
    "DepthwiseConv1D": "depthwise_kernel", "DepthwiseConv2D": "depthwise_kernel",
    "SeparableConv1D": "pointwise_kernel", "SeparableConv2D": "pointwise_kernel",
}
CONV_RANK = {"Conv1D": 1, "Conv2D": 2, "Conv3D": 3, "DepthwiseConv1D": 1, "DepthwiseConv2D": 2,
             "SeparableConv1D": 1, "SeparableConv2D": 2}


def _bn_scale_shift(bn: Node) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-channel (scale, shift) of an inference BatchNormalization, in float64."""
    cfg = bn.config
    if cfg.get("mode", 0) != 0 or cfg.get("renorm") or cfg.get("virtual_batch_size"):
        return None
    w = bn.weights
    if "moving_mean" not in w or "moving_variance" not in w:
        return None
    mean = np.asarray(w["moving_mean"], np.float64).reshape(-1)
    var = np.asarray(w["moving_variance"], np.float64).reshape(-1)
    scale = 1.0 / np.sqrt(var + float(np.float32(cfg.get("epsilon", 1e-3))))
    if "gamma" in w:
        scale = scale * np.asarray(w["gamma"], np.float64).reshape(-1)
    shift = -mean * scale
    if "beta" in w:
        shift = shift + np.asarray(w["beta"], np.float64).reshape(-1)
    return scale, shift


def _bn_on_channels(producer: Node, bn: Node) -> bool:
    """The BatchNormalization normalizes exactly the producer's output-channel axis."""
    axis = bn.config.get("axis", -1)
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            return False
        axis = axis[0]
    if producer.op == "Dense":
        return axis == -1
    rank = CONV_RANK[producer.op]
    first = (producer.config.get("data_format") or "channels_last") == "channels_first"
    return axis == 1 if first else axis in (-1, rank + 1)


def _fold_one(producer: Node, bn: Node, writable: set[int]) -> Node | None:
    cfg = producer.config
    if cfg.get("keras_major") == 1 or cfg.get("lora_rank") or not _bn_on_channels(producer, bn):
        return None
    stats = _bn_scale_shift(bn)
    key = FOLDABLE[producer.op]
    kernel = producer.weights.get(key)
    if stats is None or kernel is None or kernel.dtype.kind != "f":
        return None
    scale, shift = stats
    channels = kernel.shape[-2] * kernel.shape[-1] if key == "depthwise_kernel" else kernel.shape[-1]
    if scale.size != channels:
        return None
    per_kernel = scale.reshape(kernel.shape[-2:]) if key == "depthwise_kernel" else scale
    bias = producer.weights.get("bias")
    bias = np.zeros(channels) if bias is None else np.asarray(bias, np.float64).reshape(-1)
    weights = dict(producer.weights)
    folded = np.asarray(kernel, np.float64) * per_kernel
    if id(kernel) in writable:
        kernel[...] = folded  # rounds to float32 exactly as astype does
        weights[key] = kernel
    else:
        weights[key] = folded.astype(np.float32)
    weights["bias"] = (bias * scale + shift).astype(np.float32)
    config = {**cfg, "use_bias": True}
    return _copy(producer, config=config, weights=weights, outputs=list(bn.outputs))


def _owned_kernels(graph: Graph) -> set[int]:
    """ids of writable float32 arrays that exactly one weight slot of the graph holds."""
    uses: dict[int, int] = {}
    arrays: dict[int, np.ndarray] = {}
    for node in graph.nodes:
        for w in node.weights.values():
            uses[id(w)] = uses.get(id(w), 0) + 1
            arrays[id(w)] = w
    return {i for i, n in uses.items() if n == 1 and isinstance(arrays[i], np.ndarray)
            and arrays[i].dtype == np.float32 and arrays[i].flags.writeable
            and arrays[i].base is None}


def fold_batchnorm(graph: Graph, in_place: bool = False) -> Graph:
    """Fold an inference BatchNormalization into the Dense/Conv that alone feeds it.

    Only when the producer's activation is linear and its output goes nowhere else:
    kernel' = kernel * gamma / sqrt(var + eps), bias' = (bias - mean) * that + beta,
    computed in float64 and rounded once to float32. With `in_place`, a kernel array that
    no other layer shares is overwritten instead of copied (the input graph is then spent).
    """
    writable = _owned_kernels(graph) if in_place else set()
    consumers = graph.consumers()
    replaced: dict[str, Node] = {}
    dropped: set[str] = set()
    for node in graph.nodes:
        if node.op not in FOLDABLE or node.name in dropped:
            continue
        bn = _mergeable(graph, consumers, node, ("BatchNormalization",))
        folded = None if bn is None else _fold_one(node, bn, writable)
        if folded is not None and bn is not None:
            replaced[node.name] = folded
            dropped.add(bn.name)
    nodes = [replaced.get(n.name, n) for n in graph.nodes if n.name not in dropped]
    return _rebuilt(graph, nodes)


# ----- fuse_activations --------------------------------------------------------------------
FUSE_INTO = ("Dense", "Conv1D", "Conv2D", "Conv3D", "DepthwiseConv1D", "DepthwiseConv2D",
             "SeparableConv1D", "SeparableConv2D", "Conv1DTranspose", "Conv2DTranspose",
             "Conv3DTranspose")
# Not elementwise: only the same axis in both places (Dense: the last) gives the same result.
AXIS_ACTIVATIONS = ("softmax", "log_softmax")


def activation_of(node: Node) -> Any:
    """The `activation` config value equivalent to an activation layer, or None (also
    runtime/absorb.py's test for a relu)."""
    cfg = node.config
    if node.op == "Activation":
        return cfg.get("activation")
    if node.op == "ReLU":
        if (cfg.get("negative_slope") or 0.0) != 0.0 or (cfg.get("threshold") or 0.0) != 0.0:
            return None
        max_value = cfg.get("max_value")
        if max_value is None:
            return "relu"
        return "relu6" if float(max_value) == 6.0 else None
    return None


def fuse_activations(graph: Graph) -> Graph:
    """Merge an Activation/ReLU layer into the Dense/Conv whose only consumer it is."""
    consumers = graph.consumers()
    replaced: dict[str, Node] = {}
    dropped: set[str] = set()
    for node in graph.nodes:
        if node.op not in FUSE_INTO or node.name in dropped:
            continue
        act_node = _mergeable(graph, consumers, node, ("Activation", "ReLU"))
        act = None if act_node is None else activation_of(act_node)
        if act is None or act_node is None:
            continue
        if activation_name(act) in AXIS_ACTIVATIONS and node.op != "Dense":
            continue  # a conv applies it channels-last, the layer on the stored layout
        replaced[node.name] = _copy(node, config={**node.config, "activation": act},
                                    outputs=list(act_node.outputs))
        dropped.add(act_node.name)
    nodes = [replaced.get(n.name, n) for n in graph.nodes if n.name not in dropped]
    return _rebuilt(graph, nodes)


# ----- pack_weights ------------------------------------------------------------------------
def pack_weights(graph: Graph) -> Graph:
    """Store every float weight as one C-contiguous float32 array, converted once at load,
    so no kernel converts or copies weights per call. Shared arrays stay shared."""
    packed: dict[int, np.ndarray] = {}

    def pack(w: np.ndarray) -> np.ndarray:
        if w.dtype.kind != "f":
            return w
        if id(w) not in packed:
            packed[id(w)] = np.ascontiguousarray(w, dtype=np.float32)
        return packed[id(w)]

    # a raw TF graph's Const values keep their exact dtype and shape (0-d included): TF
    # kernels compute in the graph's dtypes
    nodes = [n if n.op.startswith("tf.") else
             _copy(n, weights={k: pack(w) for k, w in n.weights.items()}) for n in graph.nodes]
    return _rebuilt(graph, nodes)


PASSES: list[Pass] = [drop_noops, fold_batchnorm, fuse_activations, pack_weights]
PASS_NAMES = {p.__name__: p for p in PASSES}


# Passes that can reuse the input graph's arrays when the caller gives it up.
IN_PLACE_PASSES = (fold_batchnorm,)


def optimize_graph(graph: Graph, passes: bool | Iterable[str] = True,
                   in_place: bool = False) -> Graph:
    """Run the default passes (`True`), none (`False`), or only the named ones, in
    pipeline order (`tfless.load(path, optimize=["drop_noops", "fold_batchnorm"])`).
    `in_place`: the caller will not use `graph` again, so its arrays may be overwritten."""
    if passes is True:
        chosen = PASSES
    elif passes is False:
        chosen = []
    else:
        names = [passes] if isinstance(passes, str) else list(passes)
        unknown = [n for n in names if n not in PASS_NAMES]
        if unknown:
            raise TflessError(
                f"unknown optimization pass(es) {unknown}; available: {', '.join(PASS_NAMES)}"
            )
        chosen = [p for p in PASSES if p.__name__ in names]
    for rewrite in chosen:
        if in_place and rewrite in IN_PLACE_PASSES:
            graph = rewrite(graph, in_place=True)  # type: ignore[call-arg]
        else:
            graph = rewrite(graph)
    return graph
