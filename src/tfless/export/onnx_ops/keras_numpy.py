"""ONNX converters for the keras.ops nodes of `ops/keras_numpy.py` and `ops/keras_nn.py`
that have a direct ONNX form; built on the keras.ops machinery of `tfop` (argument
templates, dtype contract), registered the same way."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..onnx import converter
from .tfop import KERAS_OPS, Ctx, Emit, Sym, _convert_keras_op, _float_unary, _k3_reduce

NEW_OPS = {
    **{name: _float_unary(lambda b, x, t=onnx_type: b.op(t, [x])) for name, onnx_type in {
        "Tan": "Tan", "Sinh": "Sinh", "Cosh": "Cosh", "Arcsin": "Asin", "Arccos": "Acos",
        "Arctan": "Atan", "Arcsinh": "Asinh", "Arccosh": "Acosh", "Arctanh": "Atanh",
        "Erf": "Erf", "Fabs": "Abs", "Reciprocal": "Reciprocal"}.items()},
    "Log2": _float_unary(lambda b, x: b.op("Div", [b.op("Log", [x]), b.f32(np.log(2.0))])),
    "Log10": _float_unary(lambda b, x: b.op("Div", [b.op("Log", [x]), b.f32(np.log(10.0))])),
    "Isnan": lambda config: (lambda c, x: c.op("IsNaN", [c.tensor(x)], bool)),
    "Isinf": lambda config: (lambda c, x: c.op("IsInf", [c.tensor(x)], bool)),
    "StopGradient": lambda config: (lambda c, x: c.tensor(x)),
    "Copy": lambda config: (lambda c, x: c.tensor(x)),
    "Amax": _k3_reduce("max"), "Amin": _k3_reduce("min"),
    "Argmax": lambda config: _k3_arg("ArgMax", config),
    "Argmin": lambda config: _k3_arg("ArgMin", config),
}


def _k3_arg(op_type: str, config: dict) -> Emit:
    """keras.ops.argmax/argmin over one axis (int32 like the runtime; first index on ties)."""
    axis, keep = config.get("axis"), bool(config.get("keepdims", False))

    def emit(c: Ctx, x: Any) -> Sym:
        t = c.tensor(x)
        if axis is None:
            raise c.fail(f"{op_type} over all axes")
        y = c.op(op_type, [t], np.int64, axis=int(axis), keepdims=int(keep),
                 select_last_index=0)
        return c.cast(y, np.int32)

    return emit


KERAS_OPS.update(NEW_OPS)  # _convert_keras_op looks its op up in KERAS_OPS
for _op in NEW_OPS:
    converter(f"keras.ops.{_op}")(_convert_keras_op(_op))
