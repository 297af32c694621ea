"""ONNX converters for activation functions (by Keras name) and the activation layers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ...errors import UnsupportedLayer
from ...graph import Node
from ...ops.activations import LARGE_NEGATIVE, _softmax_call, activation_name
from ..onnx_builder import OnnxBuilder, converter

Emit = Callable[[OnnxBuilder, str], str]


def _times(fn: Emit) -> Emit:
    """x * fn(x), the shape of silu, hard_silu and mish."""
    return lambda b, x: b.op("Mul", [x, fn(b, x)])


def _sigmoid(b: OnnxBuilder, x: str) -> str:
    return b.op("Sigmoid", [x])


def _hard_sigmoid(b: OnnxBuilder, x: str) -> str:
    # Keras 3: relu6(x + 3) / 6
    return b.op("Div", [b.clip(b.op("Add", [x, b.f32(3)]), 0, 6), b.f32(6)])


def _softplus(b: OnnxBuilder, x: str) -> str:
    # max(x, 0) + log(1 + exp(-|x|)): never overflows, like np.logaddexp
    tail = b.op("Log", [b.op("Add", [b.f32(1), b.op("Exp", [b.op("Neg", [b.op("Abs", [x])])])])])
    return b.op("Add", [b.op("Relu", [x]), tail])


def _gelu(b: OnnxBuilder, x: str) -> str:
    inner = b.op("Erf", [b.op("Div", [x, b.f32(np.sqrt(2.0))])])
    return b.op("Mul", [b.op("Mul", [b.f32(0.5), x]), b.op("Add", [b.f32(1), inner])])


def _gelu_tanh(b: OnnxBuilder, x: str) -> str:
    cube = b.op("Mul", [b.f32(0.044715), b.op("Pow", [x, b.f32(3)])])
    t = b.op("Tanh", [b.op("Mul", [b.f32(np.sqrt(2.0 / np.pi)), b.op("Add", [x, cube])])])
    return b.op("Mul", [b.op("Mul", [b.f32(0.5), x]), b.op("Add", [b.f32(1), t])])


def squareplus(b: OnnxBuilder, x: str, shift: float = 4.0) -> str:
    root = b.op("Sqrt", [b.op("Add", [b.op("Mul", [x, x]), b.f32(shift)])])
    return b.op("Div", [b.op("Add", [x, root]), b.f32(2)])


def glu(b: OnnxBuilder, x: str, axis: int = -1) -> str:
    """a * sigmoid(b) of the two halves of `axis` (the runtime refuses odd sizes at run time;
    ONNX Split refuses them too)."""
    half = b.op("Div", [b.op("Gather", [b.op("Shape", [x]), b.i64(axis)], axis=0), b.i64(2)])
    sizes = b.op("Concat", [b.op("Unsqueeze", [half, b.i64([0])])] * 2, axis=0)
    first, second = b.op("Split", [x, sizes], outputs=2, axis=axis)
    return b.op("Mul", [first, b.op("Sigmoid", [second])])


def _sparse_sigmoid(b: OnnxBuilder, x: str) -> str:
    middle = b.op("Mul", [b.f32(0.5), b.op("Add", [x, b.f32(1)])])
    upper = b.op("Where", [b.op("GreaterOrEqual", [x, b.f32(1)]), b.f32(1), middle])
    return b.op("Where", [b.op("LessOrEqual", [x, b.f32(-1)]), b.f32(0), upper])


def sparsemax(b: OnnxBuilder, x: str, axis: int = -1, rank: int | None = None) -> str:
    """The runtime's sparsemax: sort descending (TopK over the whole axis), cumulative sums,
    the support k and the threshold tau; max(x - tau, 0)."""
    n = b.op("Gather", [b.op("Shape", [x]), b.i64([axis])], axis=0)
    ordered = b.op("TopK", [x, n], outputs=2, axis=axis, largest=1, sorted=1)[0]
    cumsum = b.op("CumSum", [ordered, b.const(np.int64(axis), "axis")])
    r = b.cast(b.op("Range", [b.i64(1), b.op("Add", [b.op("Squeeze", [n]), b.i64(1)]),
                              b.i64(1)]), np.float32)
    if axis != -1 and (rank is None or axis != rank - 1):
        if rank is None:
            raise UnsupportedLayer("sparsemax over a non-last axis needs the input rank")
        r = b.op("Unsqueeze", [r, b.i64(list(range(1, rank - axis % rank)))])
    support = b.op("Greater", [b.op("Sub", [ordered, b.op("Div", [
        b.op("Sub", [cumsum, b.f32(1)]), r])]), b.f32(0)])
    k = b.reduce("ReduceSum", b.cast(support, np.float32), [axis])
    total = b.reduce("ReduceSum", b.op("Where", [support, cumsum, b.f32(0)]), [axis])
    tau = b.op("Div", [b.op("Sub", [total, b.f32(1)]), k])
    return b.op("Max", [b.op("Sub", [x, tau]), b.f32(0)])


def _sparse_plus(b: OnnxBuilder, x: str) -> str:
    middle = b.op("Div", [b.op("Pow", [b.op("Add", [x, b.f32(1)]), b.f32(2)]), b.f32(4)])
    upper = b.op("Where", [b.op("GreaterOrEqual", [x, b.f32(1)]), x, middle])
    return b.op("Where", [b.op("LessOrEqual", [x, b.f32(-1)]), b.f32(0), upper])


def softmax(b: OnnxBuilder, x: str, axis: int | tuple[int, ...] = -1) -> str:
    if isinstance(axis, int):
        return b.op("Softmax", [x], axis=axis)
    shifted = b.op("Sub", [x, b.reduce("ReduceMax", x, axis)])
    e = b.op("Exp", [shifted])
    return b.op("Div", [e, b.reduce("ReduceSum", e, axis)])


def relu(b: OnnxBuilder, x: str, negative_slope: float = 0.0, max_value: float | None = None,
         threshold: float = 0.0) -> str:
    """Keras's generalized relu with the same branch order as the NumPy runtime."""
    if negative_slope == 0.0 and max_value is None and threshold == 0.0:
        return b.op("Relu", [x])
    if negative_slope != 0.0 and max_value is None and threshold == 0.0:
        return b.op("LeakyRelu", [x], alpha=float(negative_slope))
    negative_part = b.op("Relu", [b.op("Sub", [b.f32(threshold), x])])
    if threshold != 0.0:
        y = b.op("Where", [b.op("Greater", [x, b.f32(threshold)]), x, b.f32(0)])
    else:
        y = b.op("Relu", [x])
    if max_value is not None:
        y = b.clip(y, 0, max_value)
    if negative_slope != 0.0:
        y = b.op("Sub", [y, b.op("Mul", [b.f32(negative_slope), negative_part])])
    return y


ACTIVATIONS: dict[str, Emit] = {
    "linear": lambda b, x: x,
    "relu": lambda b, x: b.op("Relu", [x]),
    "relu6": lambda b, x: b.clip(x, 0, 6),
    "leaky_relu": lambda b, x: b.op("LeakyRelu", [x], alpha=0.2),
    "elu": lambda b, x: b.op("Elu", [x], alpha=1.0),
    "selu": lambda b, x: b.op("Selu", [x], alpha=1.6732632423543772, gamma=1.0507009873554805),
    "celu": lambda b, x: b.op("Celu", [x], alpha=1.0),
    "gelu": _gelu,
    "gelu_approximate": _gelu_tanh,
    "silu": _times(_sigmoid),
    "swish": _times(_sigmoid),
    "hard_sigmoid": _hard_sigmoid,
    "hard_sigmoid_keras2": lambda b, x: b.op("HardSigmoid", [x], alpha=0.2, beta=0.5),
    "hard_silu": _times(_hard_sigmoid),
    "hard_swish": _times(_hard_sigmoid),
    "sigmoid": _sigmoid,
    "log_sigmoid": lambda b, x: b.op("Neg", [_softplus(b, b.op("Neg", [x]))]),
    "tanh": lambda b, x: b.op("Tanh", [x]),
    "hard_tanh": lambda b, x: b.clip(x, -1, 1),
    "tanh_shrink": lambda b, x: b.op("Sub", [x, b.op("Tanh", [x])]),
    "softmax": lambda b, x: b.op("Softmax", [x], axis=-1),
    "log_softmax": lambda b, x: b.op("LogSoftmax", [x], axis=-1),
    "softplus": _softplus,
    "softsign": lambda b, x: b.op("Softsign", [x]),
    "squareplus": squareplus,
    "sparse_plus": _sparse_plus,
    "soft_shrink": lambda b, x: b.op("Shrink", [x], lambd=0.5, bias=0.5),
    "hard_shrink": lambda b, x: b.op("Shrink", [x], lambd=0.5, bias=0.0),
    "exponential": lambda b, x: b.op("Exp", [x]),
    "mish": _times(lambda b, x: b.op("Tanh", [_softplus(b, x)])),
    "glu": glu,
    "sparse_sigmoid": _sparse_sigmoid,
    "sparsemax": sparsemax,
}


def activation(b: OnnxBuilder, spec: Any, x: str, layer: str = "") -> str:
    """The ONNX nodes of a config's `activation` value applied to `x`."""
    name = activation_name(spec)
    try:
        emit = ACTIVATIONS[name]
    except KeyError:
        raise UnsupportedLayer(
            f"layer '{layer}': activation '{name}' has no ONNX converter. "
            f"Supported: {', '.join(sorted(ACTIVATIONS))}") from None
    return emit(b, x)


@converter("Activation")
def convert_activation(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    return activation(b, node.config.get("activation"), xs[0], node.name)


@converter("ReLU")
def convert_relu(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    c = node.config
    max_value = c.get("max_value")
    return relu(b, xs[0], float(c.get("negative_slope") or 0.0),
                None if max_value is None else float(max_value), float(c.get("threshold") or 0.0))


@converter("LeakyReLU")
def convert_leaky_relu(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    slope = node.config.get("negative_slope", node.config.get("alpha", 0.3))
    return relu(b, xs[0], negative_slope=float(slope))


@converter("ELU")
def convert_elu(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    return b.op("Elu", [xs[0]], alpha=float(node.config.get("alpha", 1.0)))


@converter("ThresholdedReLU")
def convert_thresholded_relu(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    theta = b.f32(node.config.get("theta", 1.0))
    return b.op("Where", [b.op("Greater", [xs[0], theta]), xs[0], b.f32(0)])


@converter("Softmax", uses_mask=True)
def convert_softmax(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    """Keras's Softmax layer, masked as `ops.activations.masked_softmax` does: Keras 3 (and
    tf_keras `robust_masking`) replace masked scores by -1e9, Keras 3 then zeroes masked
    outputs; tf_keras adds (1 - mask) * -1e9. Several axes use exp(x - logsumexp(x))."""
    cfg = node.config
    axis = cfg.get("axis", -1)
    axes = tuple(int(a) for a in axis) if isinstance(axis, (list, tuple)) else (int(axis),)
    keras3 = int(cfg.get("keras_major", 3)) >= 3
    robust = bool(cfg.get("robust_masking", False))
    pos, explicit = _softmax_call(cfg)
    x = xs[pos]
    if explicit is not None:
        mask, is_bool = xs[explicit], b.dtype(node.inputs[explicit]) == np.bool_
    else:
        mask, is_bool = b.in_masks(node)[pos], True
    keep = None
    if mask is not None:
        if keras3 or robust:
            keep = mask if is_bool else b.op("Greater", [mask, b.f32(0.5)])
            x = b.op("Where", [keep, x, b.f32(LARGE_NEGATIVE)])
        else:
            as_float = b.cast(mask, np.float32)
            x = b.op("Add", [x, b.op("Mul", [b.op("Sub", [b.f32(1), as_float]),
                                             b.f32(LARGE_NEGATIVE)])])
    if len(axes) == 1:
        out = b.op("Softmax", [x], axis=axes[0])
    else:
        peak = b.reduce("ReduceMax", x, axes)
        total = b.reduce("ReduceSum", b.op("Exp", [b.op("Sub", [x, peak])]), axes)
        out = b.op("Exp", [b.op("Sub", [x, b.op("Add", [peak, b.op("Log", [total])])])])
    if keep is not None and keras3:
        out = b.op("Where", [keep, out, b.f32(0)])
    return out


@converter("PReLU")
def convert_prelu(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    alpha = b.weight(node, "alpha")
    x = xs[0]
    return b.op("Where", [b.op("GreaterOrEqual", [x, b.f32(0)]), x, b.op("Mul", [x, alpha])])
