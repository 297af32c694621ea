"""ONNX converters for normalization layers, written as the same formulas the runtime uses
(BatchNormalization folded to a multiply-add; moments as ReduceMean of squared deviations)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...errors import UnsupportedLayer
from ...graph import Node
from ..onnx_builder import OnnxBuilder, converter

F32 = np.float32
# tf_keras switches to its fused layer-norm kernel only above this epsilon
FUSED_MIN_EPSILON = 1.001e-5


def _virtual_batch_param(param: np.ndarray, config: dict) -> np.ndarray:
    """tf_keras stores virtual-batch parameters with an extra axis 1; inference ignores it."""
    if config.get("virtual_batch_size") and param.ndim > 1:
        return np.squeeze(param, axis=1)
    return param


def _axes(node: Node, rank: int, axis: int | Sequence[int]) -> list[int]:
    axes = [axis] if isinstance(axis, int) else list(axis)
    return [int(a) % rank for a in axes]


def _param(b: OnnxBuilder, node: Node, key: str, value: np.ndarray, axes: Sequence[int]) -> str:
    """A per-axis parameter reshaped to broadcast against the input (as the runtime does)."""
    shape = b.in_shape(node)
    value = np.asarray(value, F32)
    if value.ndim != len(shape):
        dims = [shape[d] if d in axes else 1 for d in range(len(shape))]
        if None in dims:
            if len(axes) != 1:
                raise UnsupportedLayer(f"layer '{node.name}': normalized axes must have fixed sizes "
                                       "for ONNX export")
            dims = [value.size if d in axes else 1 for d in range(len(shape))]
        value = value.reshape(dims)
    return b.weight(node, key, value)


def _float(b: OnnxBuilder, node: Node, x: str) -> str:
    return x if b.dtype(node.inputs[0]) == F32 else b.cast(x, F32)


def _moments(b: OnnxBuilder, x: str, axes: Sequence[int]) -> tuple[str, str]:
    mean = b.reduce("ReduceMean", x, axes)
    centered = b.op("Sub", [x, mean])
    return mean, b.reduce("ReduceMean", b.op("Mul", [centered, centered]), axes)


def _rsqrt(b: OnnxBuilder, v: str, epsilon: float) -> str:
    return b.op("Div", [b.f32(1), b.op("Sqrt", [b.op("Add", [v, b.f32(epsilon)])])])


@converter("BatchNormalization", "SyncBatchNormalization")
def convert_batch_normalization(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    c, w = node.config, node.weights
    if c.get("mode", 0) != 0:
        raise UnsupportedLayer(f"layer '{node.name}': Keras 1 BatchNormalization mode={c['mode']}")
    axis = c.get("axis", -1)
    if c.get("virtual_batch_size") and isinstance(axis, list):
        axis = [a - 1 if a > 0 else a for a in axis]
    epsilon = F32(c.get("epsilon", 1e-3))
    mean = _virtual_batch_param(w["moving_mean"], c)
    inv = F32(1) / np.sqrt(_virtual_batch_param(w["moving_variance"], c) + epsilon)
    if "gamma" in w:
        inv = inv * _virtual_batch_param(w["gamma"], c)
    shift = -mean * inv
    if "beta" in w:
        shift = shift + _virtual_batch_param(w["beta"], c)
    rank = len(b.in_shape(node))
    axes = _axes(node, rank, axis)
    x = _float(b, node, xs[0])
    # tf_keras runs 4D/5D inputs normalized on axis 1 or the last one through its fused
    # kernel, which subtracts the mean first (as ops.normalization does)
    fused = (c.get("keras_major") == 2 and c.get("fused") is not False and not c.get("renorm")
             and not c.get("virtual_batch_size") and rank in (4, 5) and len(axes) == 1
             and axes[0] in (1, rank - 1))
    if fused:
        offset = _virtual_batch_param(w["beta"], c) if "beta" in w else np.zeros_like(mean)
        centered = b.op("Sub", [x, _param(b, node, "mean", mean.astype(F32), axes)])
        y = b.op("Mul", [centered, _param(b, node, "scale", inv.astype(F32), axes)])
        return b.op("Add", [y, _param(b, node, "offset", offset.astype(F32), axes)],
                    name=node.name)
    y = b.op("Mul", [x, _param(b, node, "scale", inv, axes)], name=node.name)
    return b.op("Add", [y, _param(b, node, "shift", shift, axes)], name=node.name)


@converter("LayerNormalization")
def convert_layer_normalization(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    c = node.config
    rank = len(b.in_shape(node))
    axes = _axes(node, rank, c.get("axis", -1))
    epsilon = float(F32(c.get("epsilon", 1e-3)))
    gamma = _param(b, node, "gamma", node.weights["gamma"], axes) if "gamma" in node.weights else None
    beta = _param(b, node, "beta", node.weights["beta"], axes) if "beta" in node.weights else None
    x = _float(b, node, xs[0])
    mean, variance = _moments(b, x, sorted(axes))
    inv = _rsqrt(b, variance, epsilon)
    if c.get("rms_scaling"):
        y = b.op("Mul", [x, inv])
        return b.op("Mul", [y, gamma]) if gamma else y
    ordered = sorted(axes)
    fused = ("keras_major" in c and ordered[-1] == rank - 1
             and ordered[-1] - ordered[0] == len(axes) - 1 and epsilon >= FUSED_MIN_EPSILON)
    if fused:
        y = b.op("Mul", [b.op("Sub", [x, mean]), inv])
        if gamma:
            y = b.op("Mul", [y, gamma])
        return b.op("Add", [y, beta]) if beta else y
    if gamma:
        inv = b.op("Mul", [inv, gamma])
    shift = b.op("Neg", [b.op("Mul", [mean, inv])])
    if beta:
        shift = b.op("Add", [shift, beta])
    return b.op("Add", [b.op("Mul", [x, inv]), shift], name=node.name)


def _shape_parts(b: OnnxBuilder, x: str, start: int, end: int | None) -> str:
    shape = b.op("Shape", [x])
    return b.op("Slice", [shape, b.i64([start]), b.i64([end if end is not None else 2**62])])


@converter("GroupNormalization")
def convert_group_normalization(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    c = node.config
    shape = b.in_shape(node)
    rank = len(shape)
    a = int(c.get("axis", -1)) % rank
    channels = shape[a]
    groups = int(c.get("groups", 32))
    g = channels if groups == -1 else groups
    if channels is None or g <= 0 or channels % g:
        raise UnsupportedLayer(f"layer '{node.name}': cannot split {channels} channels into "
                               f"groups={groups}")
    x = _float(b, node, xs[0])
    target = b.op("Concat", [_shape_parts(b, x, 0, a), b.i64([g, channels // g]),
                             _shape_parts(b, x, a + 1, None)], axis=0)
    grouped = b.op("Reshape", [x, target])
    reduce = [i for i in range(1, rank + 1) if i != a]
    mean, variance = _moments(b, grouped, reduce)
    inv = _rsqrt(b, variance, float(F32(c.get("epsilon", 1e-3))))
    param_shape = [1] * (rank + 1)
    param_shape[a], param_shape[a + 1] = g, channels // g
    if "gamma" in node.weights:
        inv = b.op("Mul", [inv, b.weight(node, "gamma",
                                          np.asarray(node.weights["gamma"], F32).reshape(param_shape))])
    shift = b.op("Neg", [b.op("Mul", [mean, inv])])
    if "beta" in node.weights:
        shift = b.op("Add", [shift, b.weight(node, "beta",
                                             np.asarray(node.weights["beta"], F32).reshape(param_shape))])
    y = b.op("Add", [b.op("Mul", [grouped, inv]), shift])
    return b.op("Reshape", [y, b.op("Shape", [x])], name=node.name)


@converter("UnitNormalization")
def convert_unit_normalization(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    axes = _axes(node, len(b.in_shape(node)), node.config.get("axis", -1))
    x = _float(b, node, xs[0])
    square_sum = b.reduce("ReduceSum", b.op("Mul", [x, x]), axes)
    if "keras_major" in node.config:
        inv = b.op("Div", [b.f32(1), b.op("Sqrt", [b.op("Max", [square_sum, b.f32(1e-12)])])])
    else:
        inv = b.op("Min", [b.op("Div", [b.f32(1), b.op("Sqrt", [square_sum])]), b.f32(1e12)])
    return b.op("Mul", [x, inv], name=node.name)


@converter("RMSNormalization")
def convert_rms_normalization(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    axes = sorted(_axes(node, len(b.in_shape(node)), node.config.get("axis", -1)))
    x = _float(b, node, xs[0])
    mean_square = b.reduce("ReduceMean", b.op("Mul", [x, x]), axes)
    y = b.op("Mul", [x, _rsqrt(b, mean_square, float(F32(node.config.get("epsilon", 1e-6))))])
    return b.op("Mul", [y, b.weight(node, "scale")], name=node.name)
