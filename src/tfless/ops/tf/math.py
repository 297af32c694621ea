"""Raw TensorFlow math ops: elementwise arithmetic, comparisons, unary functions, MatMul,
BatchMatMul, Einsum, Cast, reductions and scans (TF's math_ops vocabulary).

Every kernel keeps TF's dtype rules: both operands of a binary op share the type T and the
result is T (int32 shape arithmetic stays int32); comparisons give bool. Integer division
by zero is an error in TF, so it is one here too (never NumPy's silent 0).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..activations import ACTIVATIONS, erf, sigmoid, softplus
from .common import Compute, TfNode, arr, ints, norm_axis, tf_kernel, to_dtype

F32 = np.float32
Binary = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _check_int_divisor(node: TfNode, x: np.ndarray, y: np.ndarray) -> None:
    if x.dtype.kind in "iu" and not np.all(y):
        raise node.bad_input("integer division by zero")


def _trunc_div(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if x.dtype.kind == "f":
        return np.trunc(x / y)
    q = np.abs(x) // np.abs(y)
    return np.where((x < 0) != (y < 0), -q, q)


def _floor_div(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.floor(x / y) if x.dtype.kind == "f" else np.floor_divide(x, y)


def _real_div(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.true_divide(x, y) if x.dtype.kind == "f" else _trunc_div(x, y)


def _div_no_nan(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    safe = np.where(y == 0, y.dtype.type(1), y)
    return np.where(y == 0, x.dtype.type(0), np.true_divide(x, safe))


def _pow(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if x.dtype.kind in "iu" and np.any(y < 0):
        # TF raises for negative integer exponents ("Integers to negative powers")
        raise ValueError("integers to negative integer powers are not allowed")
    return np.power(x, y)


BINARY: dict[str, Binary] = {
    "Add": np.add, "AddV2": np.add, "Sub": np.subtract, "Mul": np.multiply,
    "RealDiv": _real_div, "Div": _real_div, "TruncateDiv": _trunc_div,
    "FloorDiv": _floor_div, "FloorMod": np.mod, "TruncateMod": np.fmod,
    "Mod": np.fmod,  # the old name of TruncateMod (C semantics)
    "Maximum": np.maximum, "Minimum": np.minimum, "Pow": _pow,
    "SquaredDifference": lambda x, y: np.square(x - y),
    "DivNoNan": _div_no_nan,
    "MulNoNan": lambda x, y: np.where(y == 0, x.dtype.type(0), x * y),
    "Atan2": np.arctan2, "Xdivy": lambda x, y: np.where(x == 0, x, x / y),
    "BitwiseAnd": np.bitwise_and, "BitwiseOr": np.bitwise_or, "BitwiseXor": np.bitwise_xor,
    "LeftShift": np.left_shift, "RightShift": np.right_shift,
}
INT_DIVISIONS = {"RealDiv", "Div", "TruncateDiv", "FloorDiv", "FloorMod", "TruncateMod", "Mod"}
FLOAT_ONLY = {"Atan2", "Xdivy", "DivNoNan"}
INT_ONLY = {"BitwiseAnd", "BitwiseOr", "BitwiseXor", "LeftShift", "RightShift"}


def _binary(op: str) -> Callable[[TfNode], Compute]:
    fn = BINARY[op]
    divides = op in INT_DIVISIONS
    # the ops that make inf/nan from finite inputs run with NumPy's warnings off (entering
    # np.errstate costs about as much as a small add, and graphs run hundreds of adds)
    quiet = op not in ("Add", "AddV2", "Sub", "Mul", "Maximum", "Minimum", "BitwiseAnd",
                       "BitwiseOr", "BitwiseXor")

    def make(node: TfNode) -> Compute:
        def compute(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            x, y = arr(x), arr(y)
            if x.dtype != y.dtype:
                raise node.bad_input(f"operands have different types {x.dtype} and {y.dtype}")
            if op in FLOAT_ONLY and x.dtype.kind != "f" or op in INT_ONLY and x.dtype.kind \
                    not in "iu" or x.dtype == np.bool_ and op not in ("Maximum", "Minimum"):
                raise node.bad_input(f"operands of type {x.dtype} are not supported")
            if divides:
                _check_int_divisor(node, x, y)
            if not quiet:
                return arr(fn(x, y)).astype(x.dtype, copy=False)
            with np.errstate(all="ignore"):  # inf/nan results as TF gives them
                return arr(fn(x, y)).astype(x.dtype, copy=False)

        return compute

    return make


for _op in BINARY:
    tf_kernel(_op)(_binary(_op))


COMPARISONS: dict[str, Binary] = {
    "Less": np.less, "LessEqual": np.less_equal, "Greater": np.greater,
    "GreaterEqual": np.greater_equal, "Equal": np.equal, "NotEqual": np.not_equal,
    "LogicalAnd": np.logical_and, "LogicalOr": np.logical_or,
}


def _comparison(op: str) -> Callable[[TfNode], Compute]:
    fn = COMPARISONS[op]

    def make(node: TfNode) -> Compute:
        if op in ("Equal", "NotEqual") and not node.attr("incompatible_shape_error", True):
            raise node.refuse("incompatible_shape_error", False, "True")

        def compute(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            x, y = arr(x), arr(y)
            if op.startswith("Logical") and (x.dtype != np.bool_ or y.dtype != np.bool_):
                raise node.bad_input(f"operands must be bool, got {x.dtype} and {y.dtype}")
            return arr(fn(x, y))

        return compute

    return make


for _op in COMPARISONS:
    tf_kernel(_op)(_comparison(_op))


@tf_kernel("LogicalNot")
def logical_not(node: TfNode) -> Compute:
    return lambda x: arr(np.logical_not(x))


@tf_kernel("AddN")
def add_n(node: TfNode) -> Compute:
    def compute(*xs: np.ndarray) -> np.ndarray:
        total = arr(xs[0]).copy()
        for x in xs[1:]:
            total += x
        return total

    return compute


def _rsqrt(x: np.ndarray) -> np.ndarray:
    return x.dtype.type(1) / np.sqrt(x)


def _round_half_even(x: np.ndarray) -> np.ndarray:
    return np.round(x) if x.dtype.kind == "f" else x


UNARY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "Neg": np.negative, "Abs": np.abs, "Square": np.square, "Sign": np.sign,
    "Exp": np.exp, "Expm1": np.expm1, "Log": np.log, "Log1p": np.log1p,
    "Sqrt": np.sqrt, "Rsqrt": _rsqrt, "Reciprocal": lambda x: x.dtype.type(1) / x,
    "Inv": lambda x: x.dtype.type(1) / x,
    "Floor": np.floor, "Ceil": np.ceil, "Round": _round_half_even, "Rint": np.rint,
    "Sin": np.sin, "Cos": np.cos, "Tan": np.tan, "Asin": np.arcsin, "Acos": np.arccos,
    "Atan": np.arctan, "Sinh": np.sinh, "Cosh": np.cosh, "Asinh": np.arcsinh,
    "Acosh": np.arccosh, "Atanh": np.arctanh,
    "Erf": erf, "Erfc": lambda x: x.dtype.type(1) - erf(x),
    "Sigmoid": sigmoid, "Tanh": np.tanh,
    "Softplus": softplus, "Softsign": ACTIVATIONS["softsign"],
    "Invert": np.invert,
}
FLOAT_UNARY = {"Exp", "Expm1", "Log", "Log1p", "Sqrt", "Rsqrt", "Floor", "Ceil", "Rint", "Sin",
               "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh",
               "Erf", "Erfc", "Sigmoid", "Tanh", "Softplus", "Softsign"}


def _unary(op: str) -> Callable[[TfNode], Compute]:
    fn = UNARY[op]

    def make(node: TfNode) -> Compute:
        def compute(x: np.ndarray) -> np.ndarray:
            x = arr(x)
            if op in FLOAT_UNARY and x.dtype.kind != "f" or op == "Invert" and x.dtype.kind \
                    not in "iu" or x.dtype == np.bool_:
                raise node.bad_input(f"input of type {x.dtype} is not supported")
            with np.errstate(all="ignore"):
                return arr(fn(x)).astype(x.dtype, copy=False)

        return compute

    return make


for _op in UNARY:
    tf_kernel(_op)(_unary(_op))


def _predicate(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[TfNode], Compute]:
    def make(node: TfNode) -> Compute:
        return lambda x: arr(fn(x))

    return make


tf_kernel("IsNan")(_predicate(np.isnan))
tf_kernel("IsInf")(_predicate(np.isinf))
tf_kernel("IsFinite")(_predicate(np.isfinite))


@tf_kernel("ClipByValue")
def clip_by_value(node: TfNode) -> Compute:
    return lambda x, lo, hi: arr(np.minimum(np.maximum(x, lo), hi)).astype(x.dtype, copy=False)


@tf_kernel("Cast")
def cast(node: TfNode) -> Compute:
    dst = node.dtype("DstT")

    def compute(x: np.ndarray) -> np.ndarray:
        x = arr(x)
        if dst == np.bool_:
            return x != 0
        with np.errstate(invalid="ignore"):  # float -> int truncates toward zero, as in TF
            return x.astype(dst)

    return compute


# ----- matrix products -------------------------------------------------------------------
@tf_kernel("MatMul")
def matmul(node: TfNode) -> Compute:
    ta, tb = bool(node.attr("transpose_a", False)), bool(node.attr("transpose_b", False))

    def compute(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if a.ndim != 2 or b.ndim != 2:
            raise node.bad_input(f"MatMul needs two matrices, got shapes {a.shape}, {b.shape}")
        a = a.T if ta else a
        b = b.T if tb else b
        if a.shape[1] != b.shape[0]:
            raise node.bad_input(f"matrix shapes {a.shape} and {b.shape} do not fit")
        return arr(np.matmul(a, b))

    return compute


@tf_kernel("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3")
def batch_matmul(node: TfNode) -> Compute:
    adj_x, adj_y = bool(node.attr("adj_x", False)), bool(node.attr("adj_y", False))
    out = node.dtype("Tout") if "Tout" in node.config else None

    def compute(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if x.ndim < 2 or y.ndim < 2:
            raise node.bad_input(f"operands must be at least rank 2, got {x.shape}, {y.shape}")
        if out is not None and (x.dtype != out or y.dtype != out):
            x, y = x.astype(out), y.astype(out)
        x = np.swapaxes(x, -1, -2) if adj_x else x
        y = np.swapaxes(y, -1, -2) if adj_y else y
        if x.shape[-1] != y.shape[-2]:
            raise node.bad_input(f"matrix shapes {x.shape} and {y.shape} do not fit")
        return arr(np.matmul(x, y))

    return compute


@tf_kernel("Einsum")
def einsum(node: TfNode) -> Compute:
    equation = str(node.attr("equation")).replace(" ", "")
    if "->" not in equation:
        raise node.refuse("equation", equation, "explicit equations with '->'")

    def compute(*operands: np.ndarray) -> np.ndarray:
        # two operands contract with BLAS (tensordot) when optimize is on
        return arr(np.einsum(equation, *operands, optimize=len(operands) > 1))

    return compute


# ----- reductions and scans --------------------------------------------------------------
def _axes(node: TfNode, axes: Any, rank: int) -> tuple[int, ...]:
    return tuple(sorted({norm_axis(node, a, rank) for a in ints(axes)}))


def _mean(x: np.ndarray, axis: tuple[int, ...], keepdims: bool) -> np.ndarray:
    if x.dtype.kind in "iu":  # TF divides an integer sum by the count, truncating
        count = int(np.prod([x.shape[a] for a in axis])) if axis else 1
        total = np.sum(x, axis=axis, keepdims=keepdims, dtype=x.dtype)
        return _trunc_div(total, np.asarray(max(count, 1), x.dtype)).astype(x.dtype)
    return np.mean(x, axis=axis, keepdims=keepdims, dtype=x.dtype)


REDUCERS: dict[str, Callable[..., np.ndarray]] = {
    "Sum": np.sum, "Mean": _mean, "Max": np.max, "Min": np.min, "Prod": np.prod,
    "All": np.all, "Any": np.any,
    "EuclideanNorm": lambda x, axis, keepdims: np.sqrt(np.sum(np.square(x), axis=axis,
                                                              keepdims=keepdims)),
}


def _reducer(op: str) -> Callable[[TfNode], Compute]:
    fn = REDUCERS[op]

    def make(node: TfNode) -> Compute:
        keep = bool(node.attr("keep_dims", False))

        def compute(x: np.ndarray, axes: np.ndarray) -> np.ndarray:
            x = arr(x)
            if (op in ("All", "Any")) != (x.dtype == np.bool_):
                raise node.bad_input(f"input of type {x.dtype} is not supported")
            axis = _axes(node, axes, x.ndim)
            if op in ("Max", "Min") and any(x.shape[a] == 0 for a in axis):
                # TF reduces an empty axis to the type's lowest/highest value
                info = np.finfo(x.dtype) if x.dtype.kind == "f" else np.iinfo(x.dtype)
                fill = (-np.inf if x.dtype.kind == "f" else info.min) if op == "Max" else \
                    (np.inf if x.dtype.kind == "f" else info.max)
                shape = [1 if a in axis else n for a, n in enumerate(x.shape)]
                out = np.full(shape, fill, x.dtype)
                return out if keep else out.reshape([n for a, n in enumerate(shape)
                                                     if a not in axis])
            return arr(fn(x, axis=axis, keepdims=keep)).astype(x.dtype, copy=False)

        return compute

    return make


for _op in REDUCERS:
    tf_kernel(_op)(_reducer(_op))


def _arg(op: str) -> Callable[[TfNode], Compute]:
    fn = np.argmax if op == "ArgMax" else np.argmin

    def make(node: TfNode) -> Compute:
        out = node.dtype("output_type", "int64")

        def compute(x: np.ndarray, axis: np.ndarray) -> np.ndarray:
            a = norm_axis(node, int(np.asarray(axis).reshape(-1)[0]), x.ndim)
            if x.shape[a] == 0:
                raise node.bad_input(f"cannot take {op} over the empty axis {a}")
            return arr(fn(x, axis=a)).astype(out)

        return compute

    return make


tf_kernel("ArgMax")(_arg("ArgMax"))
tf_kernel("ArgMin")(_arg("ArgMin"))


SCANS: dict[str, tuple[Callable[..., np.ndarray], float]] = {
    "Cumsum": (lambda x, axis, dtype: np.cumsum(x, axis=axis, dtype=dtype), 0),
    "Cumprod": (lambda x, axis, dtype: np.cumprod(x, axis=axis, dtype=dtype), 1),
    # log(sum(exp)) running along the axis, one logaddexp per step as TF's kernel does
    "CumulativeLogsumexp": (lambda x, axis, dtype: np.logaddexp.accumulate(x, axis=axis,
                                                                          dtype=dtype), -np.inf),
}


def _scan(op: str) -> Callable[[TfNode], Compute]:
    fn, identity = SCANS[op]

    def make(node: TfNode) -> Compute:
        exclusive, reverse = bool(node.attr("exclusive", False)), bool(node.attr("reverse", False))

        def compute(x: np.ndarray, axis: np.ndarray) -> np.ndarray:
            a = norm_axis(node, int(np.asarray(axis).reshape(-1)[0]), x.ndim)
            if op == "CumulativeLogsumexp" and x.dtype.kind != "f":
                raise node.bad_input(f"input of type {x.dtype} is not supported (float only)")
            y = np.flip(x, a) if reverse else x
            y = fn(y, a, x.dtype)
            if exclusive:
                head = np.full_like(np.take(y, [0], axis=a), identity)
                y = np.concatenate([head, np.take(y, np.arange(y.shape[a] - 1), axis=a)], a)
            return np.ascontiguousarray(np.flip(y, a)) if reverse else y

        return compute

    return make


for _op in SCANS:
    tf_kernel(_op)(_scan(_op))

__all__ = ["BINARY", "COMPARISONS", "REDUCERS", "UNARY", "to_dtype"]


@tf_kernel("Bucketize")
def bucketize(node: TfNode) -> Compute:
    boundaries = np.asarray([float(b) for b in node.attr("boundaries")], np.float64)
    if np.any(np.diff(boundaries) < 0):
        raise node.refuse("boundaries", list(boundaries), "a sorted list")

    def compute(x: np.ndarray) -> np.ndarray:
        # bucket i holds boundaries[i-1] <= x < boundaries[i]
        return np.searchsorted(boundaries, np.asarray(x, np.float64), side="right").astype(
            np.int32)

    return compute


def _bounds(side: str) -> Callable[[TfNode], Compute]:
    def make(node: TfNode) -> Compute:
        out = node.dtype("out_type", "int32")

        def compute(sorted_inputs: np.ndarray, values: np.ndarray) -> np.ndarray:
            if sorted_inputs.ndim != 2 or values.ndim != 2 or \
                    sorted_inputs.shape[0] != values.shape[0]:
                raise node.bad_input(f"needs 2-D sorted_inputs and values with the same rows, "
                                     f"got {sorted_inputs.shape} and {values.shape}")
            # per row, how many sorted entries lie below (or at) each value: searchsorted
            # of every row at once
            below = sorted_inputs[:, None, :] < values[:, :, None] if side == "left" else \
                sorted_inputs[:, None, :] <= values[:, :, None]
            return below.sum(axis=-1).astype(out)

        return compute

    return make


tf_kernel("LowerBound")(_bounds("left"))
tf_kernel("UpperBound")(_bounds("right"))


@tf_kernel("HistogramFixedWidth")
def histogram_fixed_width(node: TfNode) -> Compute:
    out = node.dtype("dtype", "int32")

    def compute(values: np.ndarray, value_range: np.ndarray, nbins: np.ndarray) -> np.ndarray:
        n = int(np.asarray(nbins).reshape(-1)[0])
        rng = np.asarray(value_range).reshape(-1)
        if n < 1 or rng.size != 2 or not rng[0] < rng[1]:
            raise node.bad_input(f"needs nbins > 0 and value_range [lo, hi] with lo < hi, got "
                                 f"{n} and {rng.tolist()}")
        v = np.asarray(values)
        lo, hi = rng.astype(v.dtype)
        # as TF's kernel: the offset in the values' type, then double division by the step
        step = float(hi - lo) / n
        with np.errstate(over="ignore"):
            offset = (v - lo).astype(np.float64)
        index = np.clip(np.floor(offset / step), 0, n - 1).astype(np.int64).reshape(-1)
        return np.bincount(index, minlength=n).astype(out)

    return compute


def _bincount(node: TfNode, x: np.ndarray, size: Any, weights: np.ndarray, binary: bool
              ) -> np.ndarray:
    x, w = arr(x), arr(weights)
    n = int(np.asarray(size).reshape(-1)[0])
    if x.dtype.kind not in "iu" or x.ndim not in (1, 2) or n < 0 or (w.size and
                                                                      w.shape != x.shape):
        raise node.bad_input(f"needs a 1-D/2-D integer input (got {x.dtype} {x.shape}), size "
                             f">= 0 (got {n}) and weights of its shape or empty")
    if x.size and x.min() < 0:
        raise node.bad_input("input values must be non-negative")
    rows = x.reshape(-1, x.shape[-1]) if x.ndim == 2 else x.reshape(1, -1)
    keep = rows < n  # values past size are dropped
    row_ids = np.broadcast_to(np.arange(rows.shape[0])[:, None], rows.shape)[keep]
    flat = row_ids * n + rows[keep]
    if binary or not w.size:
        counts = np.bincount(flat, minlength=rows.shape[0] * n)
        counts = np.minimum(counts, 1) if binary else counts
        y = counts.astype(w.dtype)
    else:
        wr = w.reshape(rows.shape)[keep]
        y = np.bincount(flat, weights=wr.astype(np.float64), minlength=rows.shape[0] * n
                        ).astype(w.dtype)
    return y.reshape(rows.shape[0], n) if x.ndim == 2 else y


@tf_kernel("DenseBincount")
def dense_bincount(node: TfNode) -> Compute:
    binary = bool(node.attr("binary_output", False))
    return lambda x, size, weights: _bincount(node, x, size, weights, binary)


@tf_kernel("Bincount")
def bincount(node: TfNode) -> Compute:
    return lambda x, size, weights: _bincount(node, x, size, weights, False)
