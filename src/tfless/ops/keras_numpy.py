"""More keras.ops operation nodes: the keras.ops.numpy calls users write in functional
models (`keras.ops.argmax(x)`, `keras.ops.split(x, 2)`, ...), and the node-building
machinery (`make_op`) that `keras_nn` (nn/math/core/image/linalg calls) shares.

Keras records such a call as an operation node: its constructor arguments (axis,
keepdims, ...) sit in the node's config, the call's tensors and remaining arguments in
its inbound node. Each entry below turns a config into a kernel taking the call's
arguments, with Keras's TensorFlow-backend result dtypes (integer inputs to float math
compute in float32, index results are int32). `tfop.py` holds the first batch; this
module adds the rest, one small maker per operation, and registers them the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import InputError, ModelFormatError, UnsupportedLayer
from ..registry import register
from .tfop import (
    _array,
    _axis,
    _bind_check,
    _dtype,
    _has_tensor,
    _math,
    _pair,
    _substitute,
    _template,
)

F32 = np.float32
EPSILON = 1e-7  # keras.backend.epsilon(), the default of keras.ops normalizations
Kernel = Callable[..., Any]
Maker = Callable[[dict], Kernel]


def _float(x: Any) -> np.ndarray:
    a = _array(x)
    return a.astype(F32) if a.dtype.kind in "iub" else a


def _unary_float(fn: Callable[[np.ndarray], np.ndarray]) -> Maker:
    safe = _math(fn)
    return lambda config: (lambda x: safe(_float(x)))


def _unary(fn: Callable[[np.ndarray], np.ndarray]) -> Maker:
    return lambda config: (lambda x: fn(_array(x)))


def _binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], floats: bool = False) -> Maker:
    def kernel(x1: Any, x2: Any) -> np.ndarray:
        a, b = _pair(x1, x2)
        if floats:
            a, b = _float(a), _float(b)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return fn(a, b)

    return lambda config: kernel


def _with(fn: Callable[..., np.ndarray], *fields: str, floats: bool = False,
          **renames: str) -> Maker:
    """A one-tensor op whose options are config fields passed to `fn` by name (`renames`
    maps a config field to numpy's argument name)."""
    def make(config: dict) -> Kernel:
        options = {renames.get(f, f): _option(config.get(f)) for f in fields}

        def kernel(x: Any) -> np.ndarray:
            a = _float(x) if floats else _array(x)
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.asarray(fn(a, **options))

        return kernel

    return make


def _option(value: Any) -> Any:
    return _axis(value) if isinstance(value, list) else value


def _reduce(fn: Callable[..., np.ndarray], floats: bool = False) -> Maker:
    return _with(fn, "axis", "keepdims", floats=floats)


def _arg_reduce(fn: Callable[..., np.ndarray]) -> Maker:
    def make(config: dict) -> Kernel:
        axis, keepdims = config.get("axis"), bool(config.get("keepdims", False))
        return lambda x: np.asarray(fn(_array(x), axis=axis, keepdims=keepdims), dtype=np.int32)

    return make


def _cumulative(fn: Callable[..., np.ndarray]) -> Maker:
    def make(config: dict) -> Kernel:
        axis = config.get("axis")
        dtype = None if config.get("dtype") is None else _dtype(config["dtype"])

        def kernel(x: Any) -> np.ndarray:
            a = _array(x)
            if axis is None:
                a = a.reshape(-1)
            return fn(a, axis=0 if axis is None else int(axis), dtype=dtype or a.dtype)

        return kernel

    return make


def _logsumexp(x: np.ndarray, axis: Any, keepdims: bool) -> np.ndarray:
    top = np.max(x, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, x.dtype.type(0))
    out = np.log(np.sum(np.exp(x - top), axis=axis, keepdims=True)) + top
    return out if keepdims else np.squeeze(out, axis=axis)


def _count_nonzero(config: dict) -> Kernel:
    axis = _axis(config.get("axis"))
    return lambda x: np.asarray(np.count_nonzero(_array(x), axis=axis), dtype=np.int32)


def _split_sections(config: dict, axis_field: str | None = "axis", default_axis: int = 0
                    ) -> Kernel:
    sections = config.get("indices_or_sections")
    axis = int(config.get(axis_field, default_axis)) if axis_field else default_axis
    return lambda x: tuple(np.split(_array(x), sections, axis=axis))


def _split_outputs(config: dict) -> int:
    sections = config.get("indices_or_sections")
    return int(sections) if isinstance(sections, int) else len(sections) + 1


def _stacker(fn: Callable[[list], np.ndarray]) -> Maker:
    return lambda config: (lambda xs: fn([_array(v) for v in xs]))


def _take(config: dict) -> Kernel:
    axis = config.get("axis")

    def kernel(x: Any, indices: Any) -> np.ndarray:
        a, idx = _array(x), np.asarray(_array(indices)).astype(np.int64)
        size = a.size if axis is None else a.shape[int(axis)]
        return np.take(a, np.where(idx < 0, idx + size, idx), axis=axis)

    return kernel


def _take_along_axis(config: dict) -> Kernel:
    axis = config.get("axis")
    return lambda x, indices: np.take_along_axis(
        _array(x), np.asarray(_array(indices)).astype(np.int64), axis=axis)


def _pad(config: dict) -> Kernel:
    width = config.get("pad_width")
    mode = config.get("mode", "constant")
    if mode not in ("constant", "reflect", "symmetric"):
        raise UnsupportedLayer(f"layer '{config.get('name', '')}': pad mode '{mode}' is not "
                               "supported; supported: constant, reflect, symmetric")

    def kernel(x: Any, constant_values: Any = None) -> np.ndarray:
        a = _array(x)
        if mode != "constant":
            return np.pad(a, width, mode=mode)
        value = 0 if constant_values is None else np.asarray(constant_values).astype(a.dtype)
        return np.pad(a, width, mode="constant", constant_values=value)

    return kernel


def _moveaxis(config: dict) -> Kernel:
    src, dst = config.get("source"), config.get("destination")
    return lambda x: np.moveaxis(_array(x), src, dst)


def _erf(x: np.ndarray) -> np.ndarray:
    """erf in float64 from the Chebyshev fit of erfc published in Numerical Recipes
    (fractional error below 1.2e-7 everywhere, under float32's resolution); NumPy has no
    erf and math.erf element by element would loop in Python."""
    z = np.abs(x.astype(np.float64))
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (
        0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (
            1.48851587 + t * (-0.82215223 + t * 0.17087277))))))))
    erfc = t * np.exp(poly)
    return np.sign(x) * (1.0 - erfc)


def _erfc(x: np.ndarray) -> np.ndarray:
    return 1.0 - _erf(x)


def _searchsorted(config: dict) -> Kernel:
    side = config.get("side", "left")
    return lambda seq, values: np.searchsorted(_array(seq), _array(values), side=side).astype(
        np.int32)



def _isclose(config: dict) -> Kernel:
    equal_nan = bool(config.get("equal_nan", False))
    return lambda x1, x2, rtol=1e-5, atol=1e-8: np.isclose(
        *_pair(x1, x2), rtol=float(rtol), atol=float(atol), equal_nan=equal_nan)



def _nan_to_num(config: dict) -> Kernel:
    fields = {k: config.get(k) for k in ("nan", "posinf", "neginf")}
    return lambda x: np.nan_to_num(_array(x), **{k: v for k, v in fields.items()
                                                 if v is not None or k == "nan"})


def _full_like(config: dict) -> Kernel:
    dtype = None if config.get("dtype") is None else _dtype(config["dtype"])
    return lambda x, fill_value: np.full_like(_array(x), fill_value, dtype=dtype)


def _average(config: dict) -> Kernel:
    axis = config.get("axis")
    return lambda x, weights=None: np.asarray(np.average(
        _float(x), axis=axis, weights=None if weights is None else _float(weights))).astype(F32)


def _quantile(percent: bool) -> Maker:
    def make(config: dict) -> Kernel:
        axis, keepdims = _axis(config.get("axis")), bool(config.get("keepdims", False))
        method = config.get("method", "linear")
        fn = np.percentile if percent else np.quantile
        return lambda x, q: fn(_float(x), _array(q), axis=axis, keepdims=keepdims,
                               method=method).astype(F32)

    return make



def _rot90(config: dict) -> Kernel:
    k, axes = int(config.get("k", 1)), tuple(config.get("axes", (0, 1)))
    return lambda array: np.rot90(_array(array), k, axes)


def _cross(config: dict) -> Kernel:
    fields = {k: config.get(k, -1) for k in ("axisa", "axisb", "axisc")}
    if config.get("axis") is not None:
        fields = {k: config["axis"] for k in fields}
    return lambda x1, x2: np.cross(*_pair(x1, x2), **fields)


def _divide_no_nan(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x, y = _float(x), _float(y)
    return np.where(y == 0, x.dtype.type(0), x / np.where(y == 0, y.dtype.type(1), y))


def _diag_maker(fn: Callable[..., np.ndarray], *fields: str) -> Maker:
    return _with(fn, *fields)


def _linalg(fn: Callable[[np.ndarray], np.ndarray]) -> Maker:
    return lambda config: (lambda x: fn(_float(x).astype(np.float64)).astype(F32))


NUMPY_OPS: dict[str, Maker] = {
    # elementwise float math
    **{name: _unary_float(fn) for name, fn in {
        "Arccos": np.arccos, "Arccosh": np.arccosh, "Arcsin": np.arcsin,
        "Arcsinh": np.arcsinh, "Arctan": np.arctan, "Arctanh": np.arctanh,
        "Cbrt": np.cbrt, "Cosh": np.cosh, "Sinh": np.sinh, "Tan": np.tan, "Exp2": np.exp2,
        "Log10": np.log10, "Log2": np.log2, "Deg2rad": np.deg2rad, "Rad2deg": np.rad2deg,
        "Sinc": np.sinc, "I0": lambda x: np.i0(x).astype(x.dtype),
        "Erf": lambda x: _erf(x).astype(x.dtype), "Erfc": lambda x: _erfc(x).astype(x.dtype),
        "Reciprocal": lambda x: x.dtype.type(1) / x,
    }.items()},
    "Trunc": _unary(np.trunc), "Fabs": _unary_float(np.abs),
    "Isfinite": _unary(np.isfinite), "Isinf": _unary(np.isinf), "Isnan": _unary(np.isnan),
    "Isneginf": _unary(np.isneginf), "Isposinf": _unary(np.isposinf),
    "Signbit": _unary(np.signbit), "Isreal": _unary(np.isreal),
    "Real": _unary(np.real), "Imag": _unary(np.zeros_like),
    "Conj": _unary(np.conj), "Conjugate": _unary(np.conj), "Copy": _unary(np.copy),
    "StopGradient": _unary(np.asarray),
    "BitwiseInvert": _unary(np.invert), "BitwiseNot": _unary(np.invert),
    "Ndim": _unary(lambda x: np.asarray(x.ndim, np.int32)),
    "Size": _unary(lambda x: np.asarray(x.size, np.int32)),
    "Ravel": _unary(np.ravel),
    "Fliplr": _unary(np.fliplr), "Flipud": _unary(np.flipud),
    "AllClose": lambda config: (lambda x1, x2: np.asarray(np.allclose(
        *_pair(x1, x2), rtol=float(config.get("rtol", 1e-5)), atol=float(config.get("atol", 1e-8)),
        equal_nan=bool(config.get("equal_nan", False))))),
    "Array": lambda config: (lambda x: _array(x) if config.get("dtype") is None
                             else _array(x).astype(_dtype(config["dtype"]))),
    "View": lambda config: (lambda x: _array(x) if config.get("dtype") is None
                            else np.ascontiguousarray(_array(x)).view(_dtype(config["dtype"]))),
    # binary
    "Arctan2": _binary(np.arctan2, floats=True), "Heaviside": _binary(np.heaviside),
    "Hypot": _binary(np.hypot, floats=True), "Logaddexp": _binary(np.logaddexp, floats=True),
    "Logaddexp2": _binary(np.logaddexp2, floats=True),
    "Fmax": _binary(np.fmax), "Fmin": _binary(np.fmin),
    "Mod": _binary(np.mod), "Fmod": _binary(np.fmod),
    "FloorDivide": _binary(np.floor_divide), "LogicalXor": _binary(np.logical_xor),
    "BitwiseAnd": _binary(np.bitwise_and), "BitwiseOr": _binary(np.bitwise_or),
    "BitwiseXor": _binary(np.bitwise_xor),
    "BitwiseLeftShift": _binary(np.left_shift), "LeftShift": _binary(np.left_shift),
    "BitwiseRightShift": _binary(np.right_shift), "RightShift": _binary(np.right_shift),
    "Gcd": _binary(np.gcd), "Lcm": _binary(np.lcm),
    "Ldexp": _binary(lambda a, b: np.ldexp(a, b.astype(np.int32))),
    "Nextafter": _binary(np.nextafter, floats=True),
    "Outer": _binary(np.outer), "Inner": _binary(np.inner),
    "Vdot": _binary(np.vdot), "Dot": _binary(np.dot),
    "DivideNoNan": _binary(_divide_no_nan),
    "Append": lambda config: (lambda x1, x2: np.append(*_pair(x1, x2), axis=config.get("axis"))),
    "Cross": _cross,
    "Tensordot": lambda config: (lambda x1, x2: np.tensordot(
        *_pair(x1, x2), axes=_option(config.get("axes", 2)))),
    # reductions and scans
    "Amax": _reduce(np.max), "Amin": _reduce(np.min),
    "Argmax": _arg_reduce(np.argmax), "Argmin": _arg_reduce(np.argmin),
    "Nanargmax": _arg_reduce(np.nanargmax), "Nanargmin": _arg_reduce(np.nanargmin),
    "Median": _reduce(np.median, floats=True),
    "Std": _reduce(np.std, floats=True), "Var": _reduce(np.var, floats=True),
    "Nanstd": _reduce(np.nanstd, floats=True), "Nanvar": _reduce(np.nanvar, floats=True),
    "Nanmean": _reduce(np.nanmean, floats=True), "Nansum": _reduce(np.nansum),
    "Nanmax": _reduce(np.nanmax), "Nanmin": _reduce(np.nanmin), "Nanprod": _reduce(np.nanprod),
    "Ptp": _reduce(np.ptp),
    "Logsumexp": _reduce(_logsumexp, floats=True),
    "CountNonzero": _count_nonzero,
    "Cumsum": _cumulative(np.cumsum), "Cumprod": _cumulative(np.cumprod),
    "Nancumsum": _cumulative(np.nancumsum), "Nancumprod": _cumulative(np.nancumprod),
    "Average": _average,
    "Quantile": _quantile(False), "Percentile": _quantile(True),
    "Sort": _with(np.sort, "axis"),
    "Argsort": _with(lambda a, axis: np.argsort(a, axis=axis, kind="stable").astype(np.int32),
                     "axis"),
    # shapes and indexing
    "Flip": _with(np.flip, "axis"), "Roll": _with(np.roll, "shift", "axis"),
    "Repeat": _with(np.repeat, "repeats", "axis"), "Tile": _with(np.tile, "repeats", repeats="reps"),
    "Tril": _with(np.tril, "k"), "Triu": _with(np.triu, "k"),
    "Diag": _diag_maker(np.diag, "k"), "Diagflat": _diag_maker(np.diagflat, "k"),
    "Diagonal": _with(np.diagonal, "offset", "axis1", "axis2"),
    "Trace": _with(np.trace, "offset", "axis1", "axis2"),
    "Moveaxis": _moveaxis, "Swapaxes": _with(np.swapaxes, "axis1", "axis2"),
    "BroadcastTo": _with(np.broadcast_to, "shape"),
    "Rot90": _rot90,
    "Diff": _with(np.diff, "n", "axis"),
    "Take": _take, "TakeAlongAxis": _take_along_axis, "Pad": _pad,
    "Split": _split_sections, "ArraySplit": lambda config: (
        lambda x: tuple(np.array_split(_array(x), config.get("indices_or_sections"),
                                       axis=int(config.get("axis", 0))))),
    "Hsplit": lambda config: _split_sections(config, None, 1),
    "Vsplit": lambda config: _split_sections(config, None, 0),
    "Dsplit": lambda config: _split_sections(config, None, 2),
    "Hstack": _stacker(np.hstack), "Vstack": _stacker(np.vstack), "Dstack": _stacker(np.dstack),
    "Meshgrid": lambda config: (lambda *xs: tuple(np.meshgrid(
        *[_array(v) for v in (xs[0] if len(xs) == 1 and isinstance(xs[0], (list, tuple))
                              else xs)], indexing=config.get("indexing", "xy")))),
    "SearchSorted": _searchsorted,
    "Isclose": _isclose, "NanToNum": _nan_to_num,
    "FullLike": _full_like,
    "Full": lambda config: (lambda fill_value: np.full(
        config["shape"], _array(fill_value),
        dtype=None if config.get("dtype") is None else _dtype(config["dtype"]))),
    "Vander": lambda config: (lambda x: np.vander(
        _array(x), config.get("N"), increasing=bool(config.get("increasing", False)))),
    "Trapezoid": lambda config: (lambda y: np.asarray(np.trapezoid(
        _float(y), x=config.get("x"), dx=float(config.get("dx", 1.0)),
        axis=int(config.get("axis", -1)))).astype(F32)),
    "Correlate": lambda config: (lambda x1, x2: np.correlate(
        *_pair(_float(x1), _float(x2)), mode=config.get("mode", "valid"))),
    "Select": lambda config: (lambda condlist, choicelist, default=0: np.select(
        [np.asarray(c, bool) for c in condlist], [_array(c) for c in choicelist], default)),
    "Slogdet": lambda config: (lambda x: tuple(np.asarray(v, F32) for v in np.linalg.slogdet(
        _float(x).astype(np.float64)))),
    "UnravelIndex": lambda config: (lambda indices: tuple(
        v.astype(np.int32) for v in np.unravel_index(_array(indices), config["shape"]))),
    "Geomspace": lambda config: (lambda start, stop: np.geomspace(
        _float(start), _float(stop), int(config.get("num", 50)),
        endpoint=bool(config.get("endpoint", True)), axis=int(config.get("axis", 0))).astype(F32)),
    "Linspace": lambda config: (lambda start, stop: np.linspace(
        _float(start), _float(stop), int(config.get("num", 50)),
        endpoint=bool(config.get("endpoint", True)), axis=int(config.get("axis", 0))).astype(F32)),
    "Logspace": lambda config: (lambda start, stop: np.logspace(
        _float(start), _float(stop), int(config.get("num", 50)),
        endpoint=bool(config.get("endpoint", True)), base=float(config.get("base", 10.0)),
        axis=int(config.get("axis", 0))).astype(F32)),
}

MULTI_OUTPUT: dict[str, Callable[[dict], int]] = {
    "Split": _split_outputs, "ArraySplit": _split_outputs, "Hsplit": _split_outputs,
    "Vsplit": _split_outputs, "Dsplit": _split_outputs,
    "Slogdet": lambda config: 2, "Meshgrid": lambda config: _meshgrid_outputs(config),
    "UnravelIndex": lambda config: len(config["shape"]),
}


def _meshgrid_outputs(config: dict) -> int:
    """One grid per input vector: the call's tensor arguments."""
    args = config.get("call_args") or [None]
    if len(args) == 1 and isinstance(args[0], list):
        return len(args[0])
    return len(args)


def make_op(op: str, make: Maker) -> Callable[[dict, dict], Callable]:
    def build(config: dict, weights: dict) -> Callable[..., Any]:
        where = f"layer '{config.get('name', '')}' (keras.ops {op})"
        args, kwargs = _template(config)
        kwargs = {k: v for k, v in kwargs.items() if k != "name"}
        try:
            kernel = make(config)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"{where}: malformed config: {exc}") from None
        _bind_check(kernel, args, kwargs, where)
        if not _has_tensor(args) and not _has_tensor(kwargs):
            raise ModelFormatError(f"{where}: the call reads no tensor")

        def run(*inputs: Any) -> Any:
            try:
                out = kernel(*_substitute(args, inputs), **_substitute(kwargs, inputs))
            except (ValueError, IndexError, np.linalg.LinAlgError) as exc:
                raise InputError(f"{where}: {exc}") from None
            if isinstance(out, tuple):
                return tuple(np.asarray(o) for o in out)
            return np.asarray(out)

        return run

    return build


for _op, _maker in NUMPY_OPS.items():
    register(f"keras.ops.{_op}", num_outputs=MULTI_OUTPUT.get(_op))(make_op(_op, _maker))
