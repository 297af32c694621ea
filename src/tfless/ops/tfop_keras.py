"""Keras 3 raw `keras.ops` calls recorded in functional models, as NumPy kernels.

Keras 3 records a raw `keras.ops` call as an operation node whose class lives in a
`keras.src.ops.*` module; the reader files it under `keras.ops.<Class>`. Each entry of
`KERAS_OPS` reads the node's config once and returns a kernel built from the whitelist of
`tfop.py` (the same argument templates and constants as tf_keras's TFOpLambda); each is
registered as `keras.ops.<Name>`. Nothing from the file is ever executed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import UnsupportedLayer
from ..registry import register
from . import activations as act
from .tfop import (
    F32,
    Kernel,
    _array,
    _axis,
    _binary,
    _clip,
    _compile_call,
    _concat,
    _dtype,
    _getitem,
    _math,
    _matmul,
    _pair,
    _reshape,
    _rsqrt,
    _stack,
    _template,
    _transpose,
)


def _k3_binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[[dict], Kernel]:
    kernel = _binary(fn)
    return lambda config: (lambda x1, x2: kernel(x1, x2))


def _k3_unary(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict], Kernel]:
    return lambda config: (lambda x: fn(_array(x)))


def _k3_divide(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # Keras 3 promotes integer division to float32, not float64 as TF does
    if x.dtype.kind in "iub":
        x, y = x.astype(F32), y.astype(F32)
    return np.true_divide(x, y)


def _k3_reduce(fn: Callable[..., np.ndarray]) -> Callable[[dict], Kernel]:
    def make(config: dict) -> Kernel:
        for option in ("initial", "dtype"):  # change results; not implemented
            if config.get(option) is not None:
                raise UnsupportedLayer(
                    f"layer '{config.get('name', '')}': reduction option "
                    f"{option}={config[option]!r} is not supported"
                )
        axis, keepdims = _axis(config.get("axis")), bool(config.get("keepdims", False))
        return lambda x: np.asarray(fn(_array(x), axis=axis, keepdims=keepdims))

    return make


def _k3_mean(x: np.ndarray, axis: Any, keepdims: bool) -> np.ndarray:
    if x.dtype.kind in "iub":
        x = x.astype(F32)
    return np.mean(x, axis=axis, keepdims=keepdims, dtype=x.dtype)


def _k3_concatenate(config: dict) -> Kernel:
    axis = int(config.get("axis", 0))
    return lambda xs: _concat(xs, axis)


def _k3_stack(config: dict) -> Kernel:
    axis = int(config.get("axis", 0))
    return lambda x: _stack(x, axis)


def _k3_reshape(config: dict) -> Kernel:
    shape = config.get("newshape", config.get("shape"))
    return lambda x: _reshape(x, shape)


def _k3_transpose(config: dict) -> Kernel:
    axes = config.get("axes")
    return lambda x: _transpose(x, axes)


def _k3_expand_dims(config: dict) -> Kernel:
    axis = _axis(config.get("axis"))
    return lambda x: np.expand_dims(_array(x), axis)


def _k3_squeeze(config: dict) -> Kernel:
    axis = _axis(config.get("axis"))
    return lambda x: np.squeeze(_array(x), axis)


def _k3_softmax(config: dict) -> Kernel:
    axis = config.get("axis", -1)
    return lambda x: act.softmax(_array(x), -1 if axis is None else _axis(axis))


def _k3_activation(fn: Callable[..., np.ndarray], **defaults: Any) -> Callable[[dict], Kernel]:
    """A keras.ops activation whose options (`axis`, `alpha`, ...) sit in the node's config,
    with the defaults of the keras.ops function."""
    def make(config: dict) -> Kernel:
        options = {k: config.get(k, v) for k, v in defaults.items()}
        return lambda x: fn(_array(x), **options)

    return make


def _k3_threshold(x: np.ndarray, threshold: float, default_value: float) -> np.ndarray:
    return np.where(x > x.dtype.type(threshold), x, x.dtype.type(default_value))


def _k3_shrink(x: np.ndarray, threshold: float, soft: bool) -> np.ndarray:
    t = x.dtype.type(threshold)
    return np.where(np.abs(x) > t, x - np.sign(x) * t if soft else x, x.dtype.type(0))


def _k3_cast(config: dict) -> Kernel:
    dtype = _dtype(config.get("dtype"))
    return lambda x: _array(x).astype(dtype)


def _k3_convert_to_tensor(config: dict) -> Kernel:
    # Keras 3 records it where a layer passes a mask on (Attention's compute_mask)
    for option in ("sparse", "ragged"):
        if config.get(option):
            raise UnsupportedLayer(f"layer '{config.get('name', '')}': convert_to_tensor with "
                                   f"{option}=True is not supported (dense tensors only)")
    dtype = None if config.get("dtype") is None else _dtype(config["dtype"])
    return lambda x: _array(x) if dtype is None else _array(x).astype(dtype)


def _k3_fill_like(value: int) -> Callable[[dict], Kernel]:
    # Keras 3 records ones_like/zeros_like(x, dtype="bool") in a Concatenate's mask computation
    def make(config: dict) -> Kernel:
        dtype = None if config.get("dtype") is None else _dtype(config["dtype"])
        return lambda x: np.full_like(_array(x), value, dtype=dtype)

    return make


def _k3_float_unary(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict], Kernel]:
    """keras.ops math on floats; integer inputs are computed in float32 as Keras does."""
    def run(x: Any) -> np.ndarray:
        a = _array(x)
        return _math(fn)(a.astype(F32) if a.dtype.kind in "iub" else a)

    return lambda config: run


def _k3_round(config: dict) -> Kernel:
    if int(config.get("decimals", 0) or 0) != 0:
        raise UnsupportedLayer(f"layer '{config.get('name', '')}': round with decimals="
                               f"{config['decimals']} is not supported (decimals=0 only)")
    return lambda x: np.round(_array(x))


def _k3_clip(config: dict) -> Kernel:
    low, high = config.get("x_min"), config.get("x_max")
    return lambda x: _clip(x, low, high)


def _k3_get_item(config: dict) -> Kernel:
    return lambda x, key: _getitem(x, key)


def _k3_matmul(config: dict) -> Kernel:
    return lambda x1, x2: _matmul(x1, x2)


def _k3_where(config: dict) -> Kernel:
    def where(condition: Any, x1: Any = None, x2: Any = None) -> np.ndarray:
        a, b = _pair(x1, x2)
        return np.where(np.asarray(condition, dtype=bool), a, b)

    return where


def _k3_einsum(config: dict) -> Kernel:
    subscripts = str(config["subscripts"])
    return lambda *operands: np.einsum(subscripts, *[_array(o) for o in operands])


KERAS_OPS: dict[str, Callable[[dict], Kernel]] = {
    "Add": _k3_binary(np.add),
    "Subtract": _k3_binary(np.subtract),
    "Multiply": _k3_binary(np.multiply),
    "Divide": _k3_binary(_k3_divide), "TrueDivide": _k3_binary(_k3_divide),
    "Power": _k3_binary(np.power),
    "Maximum": _k3_binary(np.maximum), "Minimum": _k3_binary(np.minimum),
    "Equal": _k3_binary(np.equal), "NotEqual": _k3_binary(np.not_equal),
    "Greater": _k3_binary(np.greater), "GreaterEqual": _k3_binary(np.greater_equal),
    "Less": _k3_binary(np.less), "LessEqual": _k3_binary(np.less_equal),
    "LogicalAnd": _k3_binary(np.logical_and), "LogicalOr": _k3_binary(np.logical_or),
    "LogicalNot": _k3_unary(np.logical_not),
    "Negative": _k3_unary(np.negative),
    "Absolute": _k3_unary(np.abs), "Abs": _k3_unary(np.abs),
    "Sqrt": _k3_unary(_math(np.sqrt)),
    "Rsqrt": _k3_unary(_rsqrt),
    "Exp": _k3_unary(_math(np.exp)),
    "Log": _k3_unary(_math(np.log)),
    "Square": _k3_unary(np.square),
    "Tanh": _k3_unary(np.tanh),
    "Sigmoid": _k3_unary(act.sigmoid),
    "Relu": _k3_unary(lambda x: np.maximum(x, x.dtype.type(0))),
    "Relu6": _k3_unary(lambda x: np.clip(x, x.dtype.type(0), x.dtype.type(6))),
    "Softplus": _k3_unary(act.softplus),
    "Silu": _k3_unary(lambda x: x * act.sigmoid(x)),
    "Softmax": _k3_softmax,
    "LogSoftmax": _k3_activation(lambda x, axis: act.log_softmax(x, -1 if axis is None else _axis(axis)),
                                 axis=-1),
    "Gelu": _k3_activation(lambda x, approximate: act.gelu(x, bool(approximate)), approximate=True),
    "Elu": _k3_activation(lambda x, alpha: act.elu(x, float(alpha)), alpha=1.0),
    "Celu": _k3_activation(lambda x, alpha: act.celu(x, float(alpha)), alpha=1.0),
    "Selu": _k3_unary(act.selu),
    "LeakyRelu": _k3_activation(lambda x, negative_slope: act.relu(x, float(negative_slope)),
                                negative_slope=0.2),
    "HardSigmoid": _k3_unary(act.hard_sigmoid_keras3),
    "HardSilu": _k3_unary(act.ACTIVATIONS["hard_silu"]),
    "LogSigmoid": _k3_unary(act.ACTIVATIONS["log_sigmoid"]),
    "Softsign": _k3_unary(act.ACTIVATIONS["softsign"]),
    "SparsePlus": _k3_unary(act.ACTIVATIONS["sparse_plus"]),
    "SparseSigmoid": _k3_unary(act.sparse_sigmoid),
    "Squareplus": _k3_activation(lambda x, b: (x + np.sqrt(x * x + x.dtype.type(b))) / x.dtype.type(2),
                                 b=4),
    "TanhShrink": _k3_unary(act.ACTIVATIONS["tanh_shrink"]),
    "HardTanh": _k3_unary(act.ACTIVATIONS["hard_tanh"]),
    "SoftShrink": _k3_activation(lambda x, threshold: _k3_shrink(x, threshold, True), threshold=0.5),
    "HardShrink": _k3_activation(lambda x, threshold: _k3_shrink(x, threshold, False), threshold=0.5),
    "Glu": _k3_activation(lambda x, axis: act.glu(x, int(axis)), axis=-1),
    "Sparsemax": _k3_activation(lambda x, axis: act.sparsemax(x, int(axis)), axis=-1),
    "Threshold": _k3_activation(_k3_threshold, threshold=0.0, default_value=0.0),
    "Sum": _k3_reduce(np.sum),
    "Mean": _k3_reduce(_k3_mean),
    "Max": _k3_reduce(np.max),
    "Min": _k3_reduce(np.min),
    "Prod": _k3_reduce(np.prod),
    # Keras 3's Masking layer records its mask as NotEqual followed by Any over features
    "Any": _k3_reduce(np.any),
    "All": _k3_reduce(np.all),
    "Reshape": _k3_reshape,
    "GetItem": _k3_get_item,
    "Concatenate": _k3_concatenate,
    "Stack": _k3_stack,
    "Matmul": _k3_matmul,
    "Transpose": _k3_transpose,
    "ExpandDims": _k3_expand_dims,
    "Squeeze": _k3_squeeze,
    "Cast": _k3_cast,
    "ConvertToTensor": _k3_convert_to_tensor,
    "OnesLike": _k3_fill_like(1), "ZerosLike": _k3_fill_like(0),
    "Floor": _k3_float_unary(np.floor), "Ceil": _k3_float_unary(np.ceil),
    "Log1p": _k3_float_unary(np.log1p), "Expm1": _k3_float_unary(np.expm1),
    "Sin": _k3_float_unary(np.sin), "Cos": _k3_float_unary(np.cos),
    "Sign": _k3_unary(np.sign), "Round": _k3_round,
    "Clip": _k3_clip,
    "Where": _k3_where,
    "Einsum": _k3_einsum,
}


def _make_keras_op(op: str, make: Callable[[dict], Kernel]) -> Callable[[dict, dict], Callable]:
    def build(config: dict, weights: dict) -> Callable[..., Any]:
        name = config.get("name", "")
        where = f"layer '{name}' (keras.ops {op})"
        args, kwargs = _template(config)
        return _compile_call(make(config), args, kwargs, where)

    return build


for _op, _make in KERAS_OPS.items():
    register(f"keras.ops.{_op}")(_make_keras_op(_op, _make))
