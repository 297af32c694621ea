"""Whether a TensorFlow graph plan (ops named `tf.*`, from formats/tf_graph.py) computes
every batch item on its own, so `Plan` may run a large batch as shards.

Keras layers say what they do by name; raw TF ops do not, so this follows the data flow
from the graph's inputs. Every tensor is one of: a constant (depends on no input; its
shape known when it is a tf.Const or elementwise over such), a batch tensor (axis 0 is the
batch, rank known), or unknown. An op is accepted only where the batch axis provably stays
axis 0 and is never mixed: elementwise ops whose constant operands cannot reach axis 0 and
whose batch operands have one rank; convolutions, pools and batch norm at inference with
batch stride 1; Pad without padding on axis 0; reductions over other axes; MatMul of a
rank-2 batch tensor by a constant. Anything else (Reshape, Shape, gathers, control flow,
...) makes the whole graph not separable: a conservative answer only costs speed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..graph import Graph

UNARY = frozenset({
    "Identity", "StopGradient", "Relu", "Relu6", "Elu", "Selu", "Sigmoid", "Tanh", "Softplus",
    "Softsign", "Exp", "Expm1", "Log", "Log1p", "Sqrt", "Rsqrt", "Square", "Neg", "Abs",
    "Reciprocal", "Erf", "Floor", "Ceil", "Round", "Sign", "Cast", "LeakyRelu", "Sin", "Cos",
})
BINARY = frozenset({
    "AddV2", "Add", "Sub", "Mul", "RealDiv", "Div", "DivNoNan", "Maximum", "Minimum",
    "SquaredDifference", "Pow", "FloorDiv", "FloorMod", "BiasAdd",
})
WINDOWED = frozenset({"Conv2D", "DepthwiseConv2dNative", "MaxPool", "AvgPool", "Conv3D",
                      "MaxPool3D", "AvgPool3D"})
REDUCTIONS = frozenset({"Mean", "Sum", "Max", "Min", "Prod"})
LAST_AXIS = frozenset({"Softmax", "LogSoftmax"})
FUSED_NORMS = frozenset({"FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"})

CONST, UNKNOWN = "const", "unknown"


class _NotSeparable(Exception):
    pass


def tf_batch_separable(graph: Graph) -> bool:
    """True when every node is a tf.* op that keeps batch items apart (see module doc)."""
    # tensor id -> ("batch", rank) | (CONST, shape or None, value or None) | (UNKNOWN,)
    kind: dict[str, tuple] = {}
    for spec in graph.inputs:
        if spec.shape is None or len(spec.shape) < 1:
            return False
        kind[spec.name] = ("batch", len(spec.shape))
    try:
        for node in graph.nodes:
            if not node.op.startswith("tf."):
                return False
            outs = _node(node.op[3:], node.config, node.weights,
                         [kind.get(t, (UNKNOWN,)) for t in node.inputs], len(node.outputs))
            for tid, k in zip(node.outputs, outs):
                kind[tid] = k
    except _NotSeparable:
        return False
    return all(kind.get(t, (UNKNOWN,))[0] == "batch" for t in graph.output_ids)


def _node(op: str, config: dict, weights: dict, ins: list[tuple], n_out: int) -> list[tuple]:
    if op == "Const":
        value = weights.get("value")
        return [(CONST, getattr(value, "shape", None), value)] * n_out
    if any(k[0] == UNKNOWN for k in ins):
        raise _NotSeparable
    batch = [k for k in ins if k[0] == "batch"]
    if not batch:  # computed from constants alone: the same in every shard
        shape = _broadcast([k[1] for k in ins]) if op in UNARY | BINARY else None
        return [(CONST, shape, None)] * n_out
    first = ins[0]
    if op in UNARY:
        return [first]
    if op == "BiasAdd" and first[0] == "batch" and ins[1][0] == CONST and first[1] >= 2:
        return [first]  # TF requires a 1-D bias, added on the channel axis (never axis 0)
    if op in BINARY:
        ranks = {k[1] for k in batch}
        if len(ranks) != 1:
            raise _NotSeparable
        rank = ranks.pop()
        for k in ins:
            if k[0] == CONST and not _stays_off_axis0(k[1], rank):
                raise _NotSeparable
        return [("batch", rank)]
    if first[0] != "batch" or any(k[0] == "batch" for k in ins[1:]):
        raise _NotSeparable  # the batch tensor must be the data operand, the rest constants
    rank = first[1]
    if op in WINDOWED:
        for attr in ("strides", "ksize", "dilations"):
            value = config.get(attr)
            if value is not None and (not isinstance(value, (list, tuple)) or
                                      not value or value[0] != 1):
                raise _NotSeparable
        return [first]
    if op in LAST_AXIS:
        return [first]
    if op in FUSED_NORMS:
        if config.get("is_training", True):
            raise _NotSeparable
        return [first] + [(UNKNOWN,)] * (n_out - 1)  # batch statistics outputs: not per item
    if op in ("Pad", "PadV2", "MirrorPad"):
        paddings = ins[1][2]
        if paddings is None or np.asarray(paddings).shape[:1] != (rank,) or \
                np.any(np.asarray(paddings)[0] != 0):
            raise _NotSeparable
        return [first]
    if op in REDUCTIONS:
        axes = ins[1][2]
        if axes is None:
            raise _NotSeparable
        axes = {int(a) % rank for a in np.asarray(axes).reshape(-1)}
        if 0 in axes:
            raise _NotSeparable
        keep = bool(config.get("keep_dims", config.get("keepdims", False)))
        return [("batch", rank if keep else rank - len(axes))]
    if op == "MatMul":
        if rank != 2 or config.get("transpose_a", False):
            raise _NotSeparable
        return [first]
    raise _NotSeparable


def _broadcast(shapes: list[Any]) -> tuple | None:
    if any(s is None for s in shapes):
        return None
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        return None


def _stays_off_axis0(shape: tuple | None, rank: int) -> bool:
    """A constant of this shape broadcast against a rank-`rank` batch tensor leaves axis 0
    alone (it is shorter, or size 1 there)."""
    if shape is None or len(shape) > rank:
        return False
    return len(shape) < rank or shape[0] == 1
