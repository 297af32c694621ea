"""ONNX converters for Keras 3 raw `keras.ops` nodes recorded in functional models.

Like the runtime's makers (`tfless/ops/tfop.py`), each entry of `KERAS_OPS` reads the
node's config and returns an emitter built from the tensor-math twins of `tfop.py`; the
call binds through the same argument templates and dtype contract (`tfop._call`). Every
keras.ops function the runtime runs and this table covers is registered as
`keras.ops.<Name>`; `keras_numpy.py` adds the ones of the keras.ops NumPy family.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ...graph import Node
from ...ops import tfop as rt
from ...ops import tfop_keras as runtime_keras_ops
from ..onnx_builder import OnnxBuilder, converter
from .activations import ACTIVATIONS, glu, relu, sparsemax, squareplus
from .tfop import (
    UNARY,
    Ctx,
    Emit,
    Sym,
    _axes,
    _call,
    _cast_to,
    _clip,
    _concat,
    _expand,
    _getitem,
    _matmul,
    _reduce_on,
    _reshape,
    _softmax_on,
    _squeeze_on,
    _stack,
    _transpose,
    binary,
)

# ----- Keras 3 raw keras.ops calls (config-dependent, like the runtime's makers) ----------
Maker = Callable[[dict], Emit]


def _k3_binary(kind: str) -> Maker:
    return lambda config: (lambda c, x1, x2: binary(kind)(c, x1, x2))


def _k3_unary(kind: str) -> Maker:
    return lambda config: (lambda c, x: UNARY[kind](c, c.tensor(x)))


def _k3_reduce(kind: str) -> Maker:
    def make(config: dict) -> Emit:
        axis, keep = config.get("axis"), bool(config.get("keepdims", False))
        return lambda c, x: _reduce_on(c, c.tensor(x), kind, axis, keep, tf_mean=False)

    return make


def _k3_where(config: dict) -> Emit:
    def emit(c: Ctx, condition: Any, x1: Any = None, x2: Any = None) -> Sym:
        if x1 is None or x2 is None:
            raise c.fail("ops.where with one argument")
        a, b = c.pair(x1, x2)
        return c.op("Where", [c.cast(c.tensor(condition), bool), a, b], a.dtype)

    return emit


def _k3_einsum(config: dict) -> Emit:
    def emit(c: Ctx, *operands: Any) -> Sym:
        dtype = c.b.dtype(c.node.outputs[0])
        return c.op("Einsum", [c.cast(c.tensor(o), dtype) for o in operands], dtype,
                    equation=str(config["subscripts"]))

    return emit


def _k3_activation(emit: Callable[..., str], **defaults: Any) -> Maker:
    """A keras.ops activation node whose options (`axis`, `alpha`, ...) sit in the config,
    with the keras.ops defaults (as `ops.tfop._k3_activation`)."""
    def make(config: dict) -> Emit:
        options = {k: config.get(k, v) for k, v in defaults.items()}

        def run(c: Ctx, x: Any) -> Sym:
            t = c.tensor(x)
            return Sym(emit(c, t, **options), t.dtype, t.rank)

        return run

    return make


def _named(name: str) -> Maker:
    return _k3_activation(lambda c, x: ACTIVATIONS[name](c.b, x.name))


def _log_softmax_k3(c: Ctx, x: Sym, axis: Any) -> str:
    axes = _axes(c, -1 if axis is None else axis)
    if len(axes) == 1:
        return c.b.op("LogSoftmax", [x.name], axis=axes[0])
    shifted = c.b.op("Sub", [x.name, c.b.reduce("ReduceMax", x.name, axes)])
    total = c.b.reduce("ReduceSum", c.b.op("Exp", [shifted]), axes)
    return c.b.op("Sub", [shifted, c.b.op("Log", [total])])


def _shrink(c: Ctx, x: Sym, threshold: float, soft: bool) -> str:
    t = float(threshold)
    return c.b.op("Shrink", [x.name], lambd=t, bias=t if soft else 0.0)


def _threshold(c: Ctx, x: Sym, threshold: float, default_value: float) -> str:
    keep = c.op("Greater", [x, c.const(float(threshold), x)], bool)
    return c.b.op("Where", [keep.name, x.name, c.const(float(default_value), x).name])


def _axis_of(c: Ctx, x: Sym, axis: Any) -> int:
    a = int(axis)
    return a if a < 0 else a - c.rank_of(x)  # negative axes need no rank in the emitters


def _fill_like(value: int) -> Maker:
    def make(config: dict) -> Emit:
        def emit(c: Ctx, x: Any) -> Sym:
            t = c.tensor(x)
            dtype = t.dtype if config.get("dtype") is None else rt._dtype(config["dtype"])
            fill = c.b.onnx.numpy_helper.from_array(np.full((1,), value, dtype), "value")
            return Sym(c.b.op("ConstantOfShape", [c.b.op("Shape", [t.name])], value=fill),
                       np.dtype(dtype), t.rank)

        return emit

    return make


def _float_unary(emit: Callable[[OnnxBuilder, str], str]) -> Maker:
    """keras.ops math on floats; integers are computed in float32 (`ops.tfop._k3_float_unary`)."""
    def run(c: Ctx, x: Any) -> Sym:
        t = c.tensor(x)
        if t.dtype.kind in "iub":
            t = c.cast(t, np.float32)
        return Sym(emit(c.b, t.name), t.dtype, t.rank)

    return lambda config: run


KERAS_OPS: dict[str, Maker] = {
    "Add": _k3_binary("add"), "Subtract": _k3_binary("subtract"),
    "Multiply": _k3_binary("multiply"),
    "Divide": _k3_binary("k3_divide"), "TrueDivide": _k3_binary("k3_divide"),
    "Power": _k3_binary("pow"),
    "Maximum": _k3_binary("maximum"), "Minimum": _k3_binary("minimum"),
    "Equal": _k3_binary("equal"), "NotEqual": _k3_binary("not_equal"),
    "Greater": _k3_binary("greater"), "GreaterEqual": _k3_binary("greater_equal"),
    "Less": _k3_binary("less"), "LessEqual": _k3_binary("less_equal"),
    "LogicalAnd": _k3_binary("and"), "LogicalOr": _k3_binary("or"),
    "LogicalNot": _k3_unary("logical_not"),
    "Negative": _k3_unary("negative"),
    "Absolute": _k3_unary("abs"), "Abs": _k3_unary("abs"),
    "Sqrt": _k3_unary("sqrt"), "Rsqrt": _k3_unary("rsqrt"),
    "Exp": _k3_unary("exp"), "Log": _k3_unary("log"), "Square": _k3_unary("square"),
    "Tanh": _k3_unary("tanh"), "Sigmoid": _k3_unary("sigmoid"),
    "Relu": _k3_unary("relu"), "Relu6": _k3_unary("relu6"),
    "Softplus": _k3_unary("softplus"), "Silu": _k3_unary("silu"),
    "Softmax": lambda config: (lambda c, x: _softmax_on(c, c.tensor(x), config.get("axis", -1))),
    "LogSoftmax": _k3_activation(_log_softmax_k3, axis=-1),
    "Gelu": _k3_activation(lambda c, x, approximate: ACTIVATIONS[
        "gelu_approximate" if approximate else "gelu"](c.b, x.name), approximate=True),
    "Elu": _k3_activation(lambda c, x, alpha: c.b.op("Elu", [x.name], alpha=float(alpha)),
                          alpha=1.0),
    "Celu": _k3_activation(lambda c, x, alpha: c.b.op("Celu", [x.name], alpha=float(alpha)),
                           alpha=1.0),
    "Selu": _named("selu"),
    "LeakyRelu": _k3_activation(lambda c, x, negative_slope: relu(
        c.b, x.name, negative_slope=float(negative_slope)), negative_slope=0.2),
    "HardSigmoid": _named("hard_sigmoid"), "HardSilu": _named("hard_silu"),
    "LogSigmoid": _named("log_sigmoid"), "Softsign": _named("softsign"),
    "SparsePlus": _named("sparse_plus"), "SparseSigmoid": _named("sparse_sigmoid"),
    "Squareplus": _k3_activation(lambda c, x, b: squareplus(c.b, x.name, float(b)), b=4),
    "TanhShrink": _named("tanh_shrink"), "HardTanh": _named("hard_tanh"),
    "SoftShrink": _k3_activation(lambda c, x, threshold: _shrink(c, x, threshold, True),
                                 threshold=0.5),
    "HardShrink": _k3_activation(lambda c, x, threshold: _shrink(c, x, threshold, False),
                                 threshold=0.5),
    "Glu": _k3_activation(lambda c, x, axis: glu(c.b, x.name, _axis_of(c, x, axis)), axis=-1),
    "Sparsemax": _k3_activation(lambda c, x, axis: sparsemax(
        c.b, x.name, _axis_of(c, x, axis), c.rank_of(x)), axis=-1),
    "Threshold": _k3_activation(_threshold, threshold=0.0, default_value=0.0),
    "Sum": _k3_reduce("sum"), "Mean": _k3_reduce("mean"), "Max": _k3_reduce("max"),
    "Min": _k3_reduce("min"), "Prod": _k3_reduce("prod"),
    "Any": _k3_reduce("any"), "All": _k3_reduce("all"),
    "Reshape": lambda config: (lambda c, x: _reshape(c, x, config.get("newshape",
                                                                      config.get("shape")))),
    "GetItem": lambda config: (lambda c, x, key: _getitem(c, x, key)),
    "Concatenate": lambda config: (lambda c, xs: _concat(c, xs, int(config.get("axis", 0)))),
    "Stack": lambda config: (lambda c, x: _stack(c, x, int(config.get("axis", 0)))),
    "Matmul": lambda config: (lambda c, x1, x2: _matmul(c, x1, x2)),
    "Transpose": lambda config: (lambda c, x: _transpose(c, x, config.get("axes"))),
    "ExpandDims": lambda config: (lambda c, x: _expand(c, c.tensor(x), config.get("axis"))),
    "Squeeze": lambda config: (lambda c, x: _squeeze_on(c, c.tensor(x), config.get("axis"))),
    "Cast": lambda config: (lambda c, x: _cast_to(c, x, config.get("dtype"))),
    "ConvertToTensor": lambda config: (lambda c, x: c.tensor(x) if config.get("dtype") is None
                                       else _cast_to(c, x, config["dtype"])),
    "OnesLike": _fill_like(1), "ZerosLike": _fill_like(0),
    "Floor": _float_unary(lambda b, x: b.op("Floor", [x])),
    "Ceil": _float_unary(lambda b, x: b.op("Ceil", [x])),
    "Log1p": _float_unary(lambda b, x: b.op("Log", [b.op("Add", [x, b.f32(1)])])),
    "Expm1": _float_unary(lambda b, x: b.op("Sub", [b.op("Exp", [x]), b.f32(1)])),
    "Sin": _float_unary(lambda b, x: b.op("Sin", [x])),
    "Cos": _float_unary(lambda b, x: b.op("Cos", [x])),
    "Sign": lambda config: (lambda c, x: (lambda t: c.op("Sign", [t], t.dtype, t.rank))(
        c.tensor(x))),
    "Round": lambda config: (lambda c, x: (lambda t: c.op("Round", [t], t.dtype, t.rank))(
        c.tensor(x))),
    "Clip": lambda config: (lambda c, x: _clip(c, x, config.get("x_min"), config.get("x_max"))),
    "Where": _k3_where,
    "Einsum": _k3_einsum,
}


def _convert_keras_op(op: str) -> Callable[[OnnxBuilder, Node, list[str]], str]:
    def convert(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
        return _call(b, node, xs, KERAS_OPS[op](node.config))

    return convert


for _op in runtime_keras_ops.KERAS_OPS:
    if _op in KERAS_OPS:
        converter(f"keras.ops.{_op}")(_convert_keras_op(_op))
