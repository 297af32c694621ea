"""ONNX converters for the keras.ops nodes of `ops/keras_numpy.py` and `ops/keras_nn.py`
that have a direct ONNX form; built on the keras.ops machinery of `tfop` (argument
templates, dtype contract), registered the same way."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import UnsupportedLayer
from ..onnx_builder import converter
from .tfop import Ctx, Emit, Sym
from .tfop_keras import KERAS_OPS, _convert_keras_op, _float_unary, _k3_reduce

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
    "Take": lambda config: _take(config),
    "TakeAlongAxis": lambda config: (lambda c, x, indices: (lambda t: c.op(
        "GatherElements", [t, c.cast(c.tensor(indices), np.int64)], t.dtype, t.rank,
        axis=int(config["axis"])))(c.tensor(x))),
    "Cumsum": lambda config: _cumsum(config),
    "Tile": lambda config: (lambda c, x: (lambda t: c.op(
        "Tile", [t, c.b.i64(_reps(config["repeats"], c.rank_of(t)))], t.dtype,
        c.rank_of(t)))(c.tensor(x))),
    "Swapaxes": lambda config: (lambda c, x: _permute(c, c.tensor(x), "swap", config)),
    "Moveaxis": lambda config: (lambda c, x: _permute(c, c.tensor(x), "move", config)),
    "OneHot": lambda config: _one_hot(config),
}


def _reps(repeats: Any, rank: int) -> list[int]:
    reps = [int(repeats)] if isinstance(repeats, int) else [int(r) for r in repeats]
    return [1] * (rank - len(reps)) + reps


def _take(config: dict) -> Emit:
    axis = config.get("axis")

    def emit(c: Ctx, x: Any, indices: Any) -> Sym:
        t, idx = c.tensor(x), c.cast(c.tensor(indices), np.int64)
        if axis is None:
            raise c.fail("take over the flattened tensor (axis=None)")
        return c.op("Gather", [t, idx], t.dtype, axis=int(axis))

    return emit


def _cumsum(config: dict) -> Emit:
    axis = config.get("axis")
    if config.get("dtype") is not None:
        raise UnsupportedLayer(f"layer '{config.get('name', '')}' (keras.ops Cumsum): a dtype "
                               "argument has no ONNX converter; nothing was written")

    def emit(c: Ctx, x: Any) -> Sym:
        t = c.tensor(x)
        if axis is None:
            raise c.fail("cumsum over the flattened tensor (axis=None)")
        return c.op("CumSum", [t, c.b.i64(int(axis))], t.dtype, t.rank)

    return emit


def _moved(rank: int, source: int, destination: int) -> list[int]:
    """The Transpose permutation of np.moveaxis(x, source, destination) for rank `rank`."""
    perm = list(range(rank))
    perm.insert(destination % rank, perm.pop(source % rank))
    return perm


def _permute(c: Ctx, t: Sym, kind: str, config: dict) -> Sym:
    rank = c.rank_of(t)
    perm = list(range(rank))
    if kind == "swap":
        a, b = int(config["axis1"]) % rank, int(config["axis2"]) % rank
        perm[a], perm[b] = perm[b], perm[a]
    else:
        src, dst = config["source"], config["destination"]
        if not isinstance(src, int) or not isinstance(dst, int):
            raise c.fail("moveaxis with several axes")
        perm = _moved(rank, src, dst)
    return c.op("Transpose", [t], t.dtype, rank, perm=perm)


def _one_hot(config: dict) -> Emit:
    n, axis = int(config["num_classes"]), int(config.get("axis", -1))
    dtype = np.dtype(config.get("dtype") or "float32")

    def emit(c: Ctx, x: Any) -> Sym:
        idx = c.cast(c.tensor(x), np.int64)
        rank = c.rank_of(idx)
        hot = c.op("Equal", [c.op("Unsqueeze", [idx, c.b.i64([-1])], np.int64, rank + 1),
                             c.b.const(np.arange(n, dtype=np.int64), "classes")], bool, rank + 1)
        out = c.cast(hot, dtype)
        if axis not in (-1, rank):
            perm = _moved(rank + 1, -1, axis)
            out = c.op("Transpose", [out], dtype, rank + 1, perm=perm)
        return out

    return emit


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
