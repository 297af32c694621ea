"""TensorFlow Lite builtin operators (float32), registered as `tflite.<BUILTIN_NAME>`.

The TFLite reader (`formats/tflite.py`) gives each node its operands in TFLite order:
constants arrive as weights, the rest as run() inputs, omitted optional inputs as None.
`tflite_op` turns a `make(op) -> compute(*operands)` function into a registry builder:
`make` reads options and constant operands once (pre-arranging weights), `compute`
gets every operand in order. Every `fused_activation_function` is applied.

Convolution, pooling and activation math is shared with the Keras ops; only the weight
layouts differ (TFLite filters are (out, kh, kw, in); depthwise filters (1, kh, kw, in*m)).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import InputError, ModelFormatError, UnsupportedLayer
from .activations import elu, gelu, sigmoid
from .convolutional import (
    INPLACE_ACTIVATIONS,
    Geometry,
    conv_channels_last,
    conv_matrix,
    conv_transpose_channels_last,
    depthwise_channels_last,
)
from .pooling import pool_channels_last
from .registry import register

F32 = np.float32
Compute = Callable[..., Any]

# ActivationFunctionType (schema.fbs); SIGN_BIT (5) has no float kernel in TFLite.
FUSED_ACTIVATIONS: dict[int, Callable[[np.ndarray], np.ndarray] | None] = {
    0: None,
    1: lambda y: np.maximum(y, y.dtype.type(0)),
    2: lambda y: np.clip(y, y.dtype.type(-1), y.dtype.type(1)),
    3: lambda y: np.clip(y, y.dtype.type(0), y.dtype.type(6)),
    4: np.tanh,
}
FUSED_NAMES = ("NONE", "RELU", "RELU_N1_TO_1", "RELU6", "TANH", "SIGN_BIT")
PADDINGS = {0: "same", 1: "valid"}
INT_TYPES = {2: np.int32, 4: np.int64}  # TensorType codes of SHAPE / ARG_MAX outputs


class TfliteOp:
    """One operator's options and constant operands, read at build time."""

    def __init__(self, config: dict[str, Any], weights: dict[str, np.ndarray]) -> None:
        self.where = str(config.get("where", config.get("name", "")))
        self.options: dict[str, Any] = config.get("options") or {}
        self.operands: list[dict[str, Any] | None] = list(config["operands"])
        self.consts: list[np.ndarray | None] = [
            weights[e["const"]] if e is not None and "const" in e else None for e in self.operands
        ]
        self.dynamic = [i for i, e in enumerate(self.operands) if e is not None and "const" not in e]
        self.num_outputs = int(config.get("num_outputs", 1))
        self.output_dtypes: list[str | None] = list(config.get("output_dtypes") or [])

    def const(self, i: int) -> np.ndarray | None:
        return self.consts[i] if i < len(self.consts) else None

    def present(self, i: int) -> bool:
        return i < len(self.operands) and self.operands[i] is not None

    def require_const(self, i: int, what: str) -> np.ndarray:
        value = self.const(i)
        if value is None:
            raise UnsupportedLayer(
                f"{self.where}: the {what} (input {i}) must be a constant tensor; tfless runs "
                "TFLite models whose weights are stored in the file"
            )
        return value

    def activation(self) -> Callable[[np.ndarray], np.ndarray]:
        code = int(self.options.get("fused_activation_function", 0))
        if code not in FUSED_ACTIVATIONS:
            name = FUSED_NAMES[code] if 0 <= code < len(FUSED_NAMES) else str(code)
            raise UnsupportedLayer(
                f"{self.where}: fused_activation_function {name} is not supported; supported: "
                f"{', '.join(FUSED_NAMES[:5])}"
            )
        fn = FUSED_ACTIVATIONS[code]
        return fn if fn is not None else (lambda y: y)

    def kernel_activation(self) -> Callable[[np.ndarray], np.ndarray]:
        """The fused activation in the in-place form the convolution kernels apply to their
        own fresh output (falls back to the plain function)."""
        code = int(self.options.get("fused_activation_function", 0))
        name = {0: "linear", 1: "relu", 3: "relu6", 4: "tanh"}.get(code)
        return INPLACE_ACTIVATIONS[name] if name in INPLACE_ACTIVATIONS else self.activation()

    def geometry(self, kernel: tuple[int, int], dilation: tuple[int, int] = (1, 1)) -> Geometry:
        o = self.options
        padding = PADDINGS.get(int(o.get("padding", 0)))
        strides = (int(o.get("stride_h", 0)), int(o.get("stride_w", 0)))
        if padding is None or min(strides + dilation + kernel) < 1:
            raise ModelFormatError(
                f"{self.where}: invalid window options. Received: padding={o.get('padding')}, "
                f"strides={strides}, dilation={dilation}, kernel={kernel}"
            )
        return Geometry(self.where, kernel, strides, dilation, padding)


def _weight_names(config: dict[str, Any]) -> list[str]:
    return [e["const"] for e in config.get("operands", []) if e is not None and "const" in e]


def tflite_op(*codes: str) -> Callable[[Callable[[TfliteOp], Compute]], Callable[[TfliteOp], Compute]]:
    """Register `make(op) -> compute(*operands)` under `tflite.<code>` for each code."""

    def decorate(make: Callable[[TfliteOp], Compute]) -> Callable[[TfliteOp], Compute]:
        def build(config: dict[str, Any], weights: dict[str, np.ndarray]) -> Compute:
            op = TfliteOp(config, weights)
            compute = make(op)
            consts, slots = op.consts, op.dynamic
            if slots == list(range(len(consts))):
                return compute

            def run(*args: Any) -> Any:
                full: list[Any] = list(consts)
                for slot, value in zip(slots, args):
                    full[slot] = value
                return compute(*full)

            return run

        register(*(f"tflite.{code}" for code in codes), weights=_weight_names,
                 num_outputs=lambda config: int(config.get("num_outputs", 1)))(build)
        return make

    return decorate


def _ints(value: Any) -> list[int]:
    return [int(v) for v in np.asarray(value).reshape(-1)]


def _axes(value: Any, rank: int) -> tuple[int, ...]:
    return tuple(sorted({a % rank if rank else 0 for a in _ints(value)}))


# ----- dense and convolution -------------------------------------------------------------
@tflite_op("FULLY_CONNECTED")
def fully_connected(op: TfliteOp) -> Compute:
    if int(op.options.get("weights_format", 0)) != 0:
        raise UnsupportedLayer(f"{op.where}: shuffled int8 weights_format is not supported")
    weights = op.const(1)
    wmat = None if weights is None else np.ascontiguousarray(weights.T)
    keep_dims = bool(op.options.get("keep_num_dims", False))
    act = op.activation()

    def compute(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
        mat = wmat if wmat is not None else np.asarray(w).T
        depth = mat.shape[0]
        if x.shape[-1:] != (depth,) and (keep_dims or x.size % depth):
            raise InputError(f"{op.where}: input of shape {x.shape} does not fit weights with "
                             f"{depth} input features")
        y = x.reshape(-1, depth) @ mat
        if bias is not None:
            y += bias
        if keep_dims:
            y = y.reshape((*x.shape[:-1], mat.shape[1]))
        return act(y)

    return compute


@tflite_op("CONV_2D")
def conv_2d(op: TfliteOp) -> Compute:
    filt = op.require_const(1, "filter")
    if filt.ndim != 4:
        raise ModelFormatError(f"{op.where}: filter has shape {filt.shape}, expected "
                               "(out, kh, kw, in)")
    kernel = np.ascontiguousarray(filt.transpose(1, 2, 3, 0).astype(F32))  # (kh, kw, in, out)
    o = op.options
    geo = op.geometry(kernel.shape[:2], (int(o.get("dilation_h", 1)), int(o.get("dilation_w", 1))))
    matrices = {1: conv_matrix(kernel, 1)}
    act = op.kernel_activation()

    def compute(x: np.ndarray, w: Any, bias: np.ndarray | None = None) -> np.ndarray:
        channels = x.shape[-1]
        if x.ndim != 4 or channels % kernel.shape[2]:
            raise InputError(f"{op.where}: input of shape {x.shape} does not fit a filter of "
                             f"{kernel.shape[2]} input channels")
        groups = channels // kernel.shape[2]
        if groups not in matrices:
            if kernel.shape[3] % groups:
                raise InputError(f"{op.where}: {kernel.shape[3]} filters cannot form {groups} "
                                 "groups")
            matrices[groups] = conv_matrix(kernel, groups)
        b = None if bias is None else np.asarray(bias, F32)
        return conv_channels_last(x, geo, matrices[groups], groups, b, act)

    return compute


@tflite_op("DEPTHWISE_CONV_2D")
def depthwise_conv_2d(op: TfliteOp) -> Compute:
    filt = op.require_const(1, "filter")
    if filt.ndim != 4 or filt.shape[0] != 1:
        raise ModelFormatError(f"{op.where}: filter has shape {filt.shape}, expected "
                               "(1, kh, kw, channels * depth_multiplier)")
    taps = np.asarray(filt[0], F32)
    o = op.options
    geo = op.geometry(taps.shape[:2], (int(o.get("dilation_h", 1)), int(o.get("dilation_w", 1))))
    kernels: dict[int, np.ndarray] = {}
    act = op.kernel_activation()

    def compute(x: np.ndarray, w: Any, bias: np.ndarray | None = None) -> np.ndarray:
        channels = x.shape[-1]
        # The multiplier follows from the shapes, as the TFLite kernel derives it.
        if x.ndim != 4 or taps.shape[2] % channels:
            raise InputError(f"{op.where}: input of shape {x.shape} does not fit a depthwise "
                             f"filter with {taps.shape[2]} outputs")
        if channels not in kernels:
            kernels[channels] = taps.reshape(*taps.shape[:2], channels, -1)
        b = None if bias is None else np.asarray(bias, F32)
        return depthwise_channels_last(x, geo, kernels[channels], b, act)

    return compute


@tflite_op("TRANSPOSE_CONV")
def transpose_conv(op: TfliteOp) -> Compute:
    filt = op.require_const(1, "filter")
    if filt.ndim != 4:
        raise ModelFormatError(f"{op.where}: filter has shape {filt.shape}, expected "
                               "(out, kh, kw, in)")
    n_out, n_in = filt.shape[0], filt.shape[3]
    # (out, kh, kw, in) -> (in, kh, kw, out) -> (in, K*out)
    wmat = np.ascontiguousarray(filt.transpose(3, 1, 2, 0).reshape(n_in, -1).astype(F32))
    geo = op.geometry(filt.shape[1:3])
    act = op.activation()

    def compute(out_shape: np.ndarray, w: Any, x: np.ndarray,
                bias: np.ndarray | None = None) -> np.ndarray:
        dims = _ints(out_shape)
        if len(dims) != 4 or dims[3] != n_out or x.ndim != 4 or x.shape[-1] != n_in:
            raise InputError(f"{op.where}: input {x.shape} / output shape {dims} do not fit a "
                             f"filter of shape {filt.shape}")
        y = conv_transpose_channels_last(x, geo, wmat, dims[1:3])
        if bias is not None:
            y = y + bias
        return act(y)

    return compute


# ----- pooling and reductions ------------------------------------------------------------
def _pool(kind: str) -> Callable[[TfliteOp], Compute]:
    def make(op: TfliteOp) -> Compute:
        size = (int(op.options.get("filter_h", 0)), int(op.options.get("filter_w", 0)))
        geo = op.geometry(size)
        act = op.activation()

        def compute(x: np.ndarray) -> np.ndarray:
            if x.ndim != 4:
                raise InputError(f"{op.where}: expects a rank-4 NHWC input, got {x.shape}")
            return act(pool_channels_last(x, geo, kind))

        return compute

    return make


tflite_op("MAX_POOL_2D")(_pool("max"))
tflite_op("AVERAGE_POOL_2D")(_pool("avg"))

REDUCERS: dict[str, Callable[..., np.ndarray]] = {
    "MEAN": np.mean, "SUM": np.sum, "REDUCE_MAX": np.max, "REDUCE_MIN": np.min,
    "REDUCE_PROD": np.prod,
}


def _reducer(code: str) -> Callable[[TfliteOp], Compute]:
    fn = REDUCERS[code]

    def make(op: TfliteOp) -> Compute:
        keep = bool(op.options.get("keep_dims", False))

        def compute(x: np.ndarray, axes: np.ndarray) -> np.ndarray:
            return np.asarray(fn(x, axis=_axes(axes, x.ndim), keepdims=keep), dtype=x.dtype)

        return compute

    return make


for _code in REDUCERS:
    tflite_op(_code)(_reducer(_code))


# ----- elementwise -----------------------------------------------------------------------
def _int_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """TFLite integer DIV truncates toward zero (C++ division)."""
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) != (b < 0), -q, q).astype(np.result_type(a, b))


BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "ADD": np.add, "SUB": np.subtract, "MUL": np.multiply,
    "DIV": lambda a, b: np.true_divide(a, b) if a.dtype.kind == "f" else _int_div(a, b),
    "MAXIMUM": np.maximum, "MINIMUM": np.minimum,
    "SQUARED_DIFFERENCE": lambda a, b: np.square(a - b),
    "POW": np.power,
    "FLOOR_DIV": lambda a, b: np.floor(a / b) if a.dtype.kind == "f" else np.floor_divide(a, b),
    "FLOOR_MOD": np.mod,
}


def _binary(code: str) -> Callable[[TfliteOp], Compute]:
    fn = BINARY[code]

    def make(op: TfliteOp) -> Compute:
        act = op.activation()

        def compute(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            a, b = np.asarray(a), np.asarray(b)
            return act(fn(a, b).astype(np.result_type(a, b), copy=False))

        return compute

    return make


for _code in BINARY:
    tflite_op(_code)(_binary(_code))


COMPARISONS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "LESS": np.less, "LESS_EQUAL": np.less_equal, "GREATER": np.greater,
    "GREATER_EQUAL": np.greater_equal, "EQUAL": np.equal, "NOT_EQUAL": np.not_equal,
    "LOGICAL_AND": np.logical_and, "LOGICAL_OR": np.logical_or,
}


def _comparison(code: str) -> Callable[[TfliteOp], Compute]:
    fn = COMPARISONS[code]

    def make(op: TfliteOp) -> Compute:
        return lambda a, b: np.asarray(fn(a, b))

    return make


for _code in COMPARISONS:
    tflite_op(_code)(_comparison(_code))


@tflite_op("LOGICAL_NOT")
def logical_not(op: TfliteOp) -> Compute:
    return lambda x: np.logical_not(x)


@tflite_op("SELECT", "SELECT_V2")
def select(op: TfliteOp) -> Compute:
    return lambda cond, a, b: np.where(cond, a, b)


def _hard_swish(x: np.ndarray) -> np.ndarray:
    return x * np.clip(x + F32(3), F32(0), F32(6)) / F32(6)


UNARY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "LOGISTIC": sigmoid,
    "TANH": np.tanh,
    "RELU": lambda x: np.maximum(x, x.dtype.type(0)),
    "RELU6": lambda x: np.clip(x, x.dtype.type(0), x.dtype.type(6)),
    "RELU_N1_TO_1": lambda x: np.clip(x, x.dtype.type(-1), x.dtype.type(1)),
    "RELU_0_TO_1": lambda x: np.clip(x, x.dtype.type(0), x.dtype.type(1)),
    "HARD_SWISH": _hard_swish,
    "ELU": elu,
    "RSQRT": lambda x: F32(1) / np.sqrt(x),
    "SQRT": np.sqrt,
    "EXP": np.exp,
    "LOG": np.log,
    "ABS": np.abs,
    "NEG": np.negative,
    "SQUARE": np.square,
    "FLOOR": np.floor,
    "CEIL": np.ceil,
    "ZEROS_LIKE": np.zeros_like,
}


def _unary(code: str) -> Callable[[TfliteOp], Compute]:
    fn = UNARY[code]

    def make(op: TfliteOp) -> Compute:
        return lambda x: np.asarray(fn(x), dtype=x.dtype)

    return make


for _code in UNARY:
    tflite_op(_code)(_unary(_code))


@tflite_op("GELU")
def gelu_op(op: TfliteOp) -> Compute:
    approximate = bool(op.options.get("approximate", False))
    return lambda x: gelu(x, approximate)


@tflite_op("LEAKY_RELU")
def leaky_relu(op: TfliteOp) -> Compute:
    alpha = F32(op.options.get("alpha", 0.0))
    return lambda x: np.where(x > 0, x, x * alpha)


@tflite_op("PRELU")
def prelu(op: TfliteOp) -> Compute:
    return lambda x, alpha: np.where(x >= 0, x, x * alpha).astype(x.dtype, copy=False)


@tflite_op("SOFTMAX")
def softmax(op: TfliteOp) -> Compute:
    beta = F32(op.options.get("beta", 1.0))

    def compute(x: np.ndarray) -> np.ndarray:
        e = np.exp((x - np.max(x, axis=-1, keepdims=True)) * beta)
        return e / np.sum(e, axis=-1, keepdims=True)

    return compute


@tflite_op("LOG_SOFTMAX")
def log_softmax(op: TfliteOp) -> Compute:
    def compute(x: np.ndarray) -> np.ndarray:
        s = x - np.max(x, axis=-1, keepdims=True)
        return s - np.log(np.sum(np.exp(s), axis=-1, keepdims=True))

    return compute


@tflite_op("CAST")
def cast(op: TfliteOp) -> Compute:
    dtype = op.output_dtypes[0] if op.output_dtypes else None
    if dtype is None:
        raise UnsupportedLayer(f"{op.where}: cast to a non-numeric type is not supported")
    return lambda x: np.asarray(x).astype(dtype)


@tflite_op("DEQUANTIZE", "QUANTIZE")
def float_convert(op: TfliteOp) -> Compute:
    """Only the float <-> float16 conversions: integer (de)quantization is refused by the
    reader (full-integer models), and constant weights are dequantized at load."""
    dtype = op.output_dtypes[0] if op.output_dtypes else None
    if dtype not in ("float32", "float16"):
        raise UnsupportedLayer(f"{op.where}: quantization to {dtype} is not supported; tfless "
                               "runs float TFLite models only")

    def compute(x: np.ndarray) -> np.ndarray:
        if x.dtype.kind != "f":
            raise InputError(f"{op.where}: expects a float tensor, got {x.dtype}")
        return x.astype(dtype)

    return compute


# ----- shapes and data movement ----------------------------------------------------------
@tflite_op("RESHAPE")
def reshape(op: TfliteOp) -> Compute:
    fixed = op.options.get("new_shape")

    def compute(x: np.ndarray, shape: np.ndarray | None = None) -> np.ndarray:
        dims = _ints(shape) if shape is not None else list(fixed or [])
        if shape is None and fixed is None:
            raise ModelFormatError(f"{op.where}: no target shape (neither input nor option)")
        return np.reshape(x, dims)

    return compute


@tflite_op("SQUEEZE")
def squeeze(op: TfliteOp) -> Compute:
    dims = op.options.get("squeeze_dims") or []

    def compute(x: np.ndarray) -> np.ndarray:
        axes = _axes(dims, x.ndim) if dims else tuple(i for i, d in enumerate(x.shape) if d == 1)
        return np.squeeze(x, axis=axes)

    return compute


@tflite_op("EXPAND_DIMS")
def expand_dims(op: TfliteOp) -> Compute:
    def compute(x: np.ndarray, axis: np.ndarray) -> np.ndarray:
        a = _ints(axis)[0]
        return np.expand_dims(x, a if a >= 0 else x.ndim + 1 + a)

    return compute


@tflite_op("TRANSPOSE")
def transpose(op: TfliteOp) -> Compute:
    return lambda x, perm: np.array(np.transpose(x, _ints(perm)), order="C")


@tflite_op("CONCATENATION")
def concatenation(op: TfliteOp) -> Compute:
    axis = int(op.options.get("axis", 0))
    act = op.activation()
    return lambda *xs: act(np.concatenate(xs, axis=axis))


@tflite_op("PACK")
def pack(op: TfliteOp) -> Compute:
    axis = int(op.options.get("axis", 0))
    return lambda *xs: np.stack(xs, axis=axis)


@tflite_op("UNPACK")
def unpack(op: TfliteOp) -> Compute:
    axis = int(op.options.get("axis", 0))

    def compute(x: np.ndarray) -> tuple[np.ndarray, ...]:
        if x.shape[axis] != op.num_outputs:
            raise InputError(f"{op.where}: cannot unpack axis {axis} of {x.shape} into "
                             f"{op.num_outputs} tensors")
        return tuple(np.take(x, i, axis=axis) for i in range(op.num_outputs))

    return compute


@tflite_op("SPLIT")
def split(op: TfliteOp) -> Compute:
    def compute(axis: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(np.split(x, op.num_outputs, axis=_ints(axis)[0]))

    return compute


@tflite_op("SPLIT_V")
def split_v(op: TfliteOp) -> Compute:
    def compute(x: np.ndarray, sizes: np.ndarray, axis: np.ndarray) -> tuple[np.ndarray, ...]:
        a = _ints(axis)[0]
        parts = _ints(sizes)
        if parts.count(-1) == 1:
            parts[parts.index(-1)] = x.shape[a] - (sum(parts) + 1)
        return tuple(np.split(x, np.cumsum(parts)[:-1], axis=a))

    return compute


@tflite_op("PAD", "PADV2")
def pad(op: TfliteOp) -> Compute:
    def compute(x: np.ndarray, pads: np.ndarray, value: np.ndarray | None = None) -> np.ndarray:
        widths = np.asarray(pads).reshape(-1, 2).tolist()
        fill = 0 if value is None else np.asarray(value).reshape(-1)[0]
        return np.pad(x, widths, constant_values=fill)

    return compute


@tflite_op("MIRROR_PAD")
def mirror_pad(op: TfliteOp) -> Compute:
    mode = "reflect" if int(op.options.get("mode", 0)) == 0 else "symmetric"
    return lambda x, pads: np.pad(x, np.asarray(pads).reshape(-1, 2).tolist(), mode=mode)


@tflite_op("SHAPE")
def shape(op: TfliteOp) -> Compute:
    dtype = INT_TYPES.get(int(op.options.get("out_type", 2)), np.int32)
    return lambda x: np.array(x.shape, dtype=dtype)


@tflite_op("FILL")
def fill(op: TfliteOp) -> Compute:
    return lambda dims, value: np.full(_ints(dims), np.asarray(value).reshape(()))


@tflite_op("TILE")
def tile(op: TfliteOp) -> Compute:
    return lambda x, multiples: np.tile(x, _ints(multiples))


@tflite_op("BROADCAST_TO")
def broadcast_to(op: TfliteOp) -> Compute:
    return lambda x, shape: np.array(np.broadcast_to(x, _ints(shape)))


@tflite_op("SPACE_TO_BATCH_ND")
def space_to_batch_nd(op: TfliteOp) -> Compute:
    """Pad the spatial axes, then move each block offset into the batch (how converters
    express dilated convolutions)."""

    def compute(x: np.ndarray, block: np.ndarray, pads: np.ndarray) -> np.ndarray:
        blocks = _ints(block)
        m = len(blocks)
        widths = [(0, 0), *np.asarray(pads).reshape(-1, 2).tolist(),
                  *[(0, 0)] * (x.ndim - m - 1)]
        xp = np.pad(x, widths)
        spatial = xp.shape[1:m + 1]
        if any(n % b for n, b in zip(spatial, blocks)):
            raise InputError(f"{op.where}: padded spatial shape {spatial} is not divisible by "
                             f"block shape {blocks}")
        split = [xp.shape[0]]
        for n, b in zip(spatial, blocks):
            split += [n // b, b]
        y = xp.reshape(*split, *xp.shape[m + 1:])
        # (B, n1, b1, n2, b2, ..., rest) -> (b1, b2, ..., B, n1, n2, ..., rest)
        perm = [2 + 2 * i for i in range(m)] + [0] + [1 + 2 * i for i in range(m)]
        perm += list(range(2 * m + 1, y.ndim))
        y = y.transpose(perm)
        return np.ascontiguousarray(y.reshape(-1, *y.shape[m + 1:]))

    return compute


@tflite_op("BATCH_TO_SPACE_ND")
def batch_to_space_nd(op: TfliteOp) -> Compute:
    def compute(x: np.ndarray, block: np.ndarray, crops: np.ndarray) -> np.ndarray:
        blocks = _ints(block)
        m = len(blocks)
        total = int(np.prod(blocks))
        if x.shape[0] % total:
            raise InputError(f"{op.where}: batch {x.shape[0]} is not divisible by the block "
                             f"size {total}")
        y = x.reshape(*blocks, x.shape[0] // total, *x.shape[1:])
        # (b1, ..., bM, B, s1, ..., sM, rest) -> (B, s1, b1, s2, b2, ..., rest)
        perm = [m]
        for i in range(m):
            perm += [m + 1 + i, i]
        perm += list(range(2 * m + 1, y.ndim))
        y = y.transpose(perm)
        y = y.reshape(y.shape[0], *[x.shape[1 + i] * blocks[i] for i in range(m)],
                      *x.shape[m + 1:])
        cut = np.asarray(crops).reshape(-1, 2).tolist()
        index = (slice(None), *(slice(a, n - b) for (a, b), n in zip(cut, y.shape[1:m + 1])))
        return np.ascontiguousarray(y[index])

    return compute


@tflite_op("SLICE")
def slice_op(op: TfliteOp) -> Compute:
    def compute(x: np.ndarray, begin: np.ndarray, size: np.ndarray) -> np.ndarray:
        index = tuple(slice(b, None if s == -1 else b + s) for b, s in zip(_ints(begin), _ints(size)))
        return x[index]

    return compute


@tflite_op("STRIDED_SLICE")
def strided_slice(op: TfliteOp) -> Compute:
    o = op.options
    masks = {k: int(o.get(k, 0)) for k in ("begin_mask", "end_mask", "ellipsis_mask",
                                           "new_axis_mask", "shrink_axis_mask")}
    offset = bool(o.get("offset", False))

    def compute(x: np.ndarray, begin: np.ndarray, end: np.ndarray,
                strides: np.ndarray | None = None) -> np.ndarray:
        b, e = _ints(begin), _ints(end)
        s = _ints(strides) if strides is not None else [1] * len(b)
        index: list[Any] = []
        for i, (bi, ei, si) in enumerate(zip(b, e, s)):
            bit = 1 << i
            if masks["ellipsis_mask"] & bit:
                index.append(Ellipsis)
            elif masks["new_axis_mask"] & bit:
                index.append(np.newaxis)
            elif masks["shrink_axis_mask"] & bit:
                index.append(bi)
            else:
                stop = bi + ei if offset else ei
                index.append(slice(None if masks["begin_mask"] & bit else bi,
                                   None if masks["end_mask"] & bit else stop, si))
        return np.array(x[tuple(index)])

    return compute


@tflite_op("GATHER")
def gather(op: TfliteOp) -> Compute:
    axis = int(op.options.get("axis", 0))
    if int(op.options.get("batch_dims", 0)) != 0:
        raise UnsupportedLayer(f"{op.where}: GATHER with batch_dims != 0 is not supported. "
                               f"Received: batch_dims={op.options.get('batch_dims')}")

    def compute(params: np.ndarray, indices: np.ndarray) -> np.ndarray:
        idx = np.asarray(indices)
        n = params.shape[axis]
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise InputError(f"{op.where}: indices must be in [0, {n}); got values in "
                             f"[{idx.min()}, {idx.max()}]")
        return np.take(params, idx, axis=axis)

    return compute


@tflite_op("BATCH_MATMUL")
def batch_matmul(op: TfliteOp) -> Compute:
    adj_x = bool(op.options.get("adj_x", False))
    adj_y = bool(op.options.get("adj_y", False))

    def compute(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.matmul(np.swapaxes(x, -1, -2) if adj_x else x,
                         np.swapaxes(y, -1, -2) if adj_y else y)

    return compute


def _arg(fn: Callable[..., np.ndarray]) -> Callable[[TfliteOp], Compute]:
    def make(op: TfliteOp) -> Compute:
        dtype = INT_TYPES.get(int(op.options.get("output_type", 4)), np.int64)
        return lambda x, axis: fn(x, axis=_ints(axis)[0]).astype(dtype)

    return make


tflite_op("ARG_MAX")(_arg(np.argmax))
tflite_op("ARG_MIN")(_arg(np.argmin))


# ----- recurrent -------------------------------------------------------------------------
LSTM_GATE_WEIGHTS = (1, 2, 3, 4)       # input-to-{input, forget, cell, output}
LSTM_RECURRENT_WEIGHTS = (5, 6, 7, 8)  # recurrent-to-{input, forget, cell, output}
LSTM_BIASES = (12, 13, 14, 15)
LSTM_UNSUPPORTED = {9: "peephole", 10: "peephole", 11: "peephole", 16: "projection",
                    17: "projection", 20: "layer normalization", 21: "layer normalization",
                    22: "layer normalization", 23: "layer normalization"}


@tflite_op("UNIDIRECTIONAL_SEQUENCE_LSTM")
def unidirectional_sequence_lstm(op: TfliteOp) -> Compute:
    """The fused LSTM tf_keras conversions produce: four gates, no peephole, projection or
    layer normalization (those variants are refused). State starts from the stored
    initial value each call, as a Keras predict does (the interpreter instead keeps its
    variable tensors between invocations)."""
    for slot, feature in LSTM_UNSUPPORTED.items():
        if op.present(slot):
            raise UnsupportedLayer(f"{op.where}: LSTM with {feature} (input {slot}) is not "
                                   "supported; tfless runs the Keras-style LSTM")
    if not op.present(1):
        raise UnsupportedLayer(f"{op.where}: coupled input-forget gate (CIFG) LSTM is not "
                               "supported")
    if op.num_outputs != 1:
        raise UnsupportedLayer(f"{op.where}: LSTM returning its states is not supported")
    gates = [np.asarray(op.require_const(i, "input weight"), F32) for i in LSTM_GATE_WEIGHTS]
    recurrent = [np.asarray(op.require_const(i, "recurrent weight"), F32)
                 for i in LSTM_RECURRENT_WEIGHTS]
    biases = [np.asarray(op.require_const(i, "gate bias"), F32) for i in LSTM_BIASES]
    kernel = np.ascontiguousarray(np.concatenate(gates, axis=0).T)          # (in, 4u)
    rkernel = np.ascontiguousarray(np.concatenate(recurrent, axis=0).T)     # (u, 4u)
    bias = np.concatenate(biases)
    units = gates[0].shape[0]
    act = op.activation()
    clip = F32(op.options.get("cell_clip", 0.0))
    time_major = bool(op.options.get("time_major", False))

    def initial(state: np.ndarray | None, batch: int) -> np.ndarray:
        if state is None or not np.any(state):
            return np.zeros((batch, units), F32)
        return np.broadcast_to(np.asarray(state, F32), (batch, units)).copy()

    def compute(x: np.ndarray, *rest: Any) -> np.ndarray:
        seq = np.asarray(x, F32)
        if seq.ndim != 3 or seq.shape[-1] != kernel.shape[0]:
            raise InputError(f"{op.where}: expects (batch, time, {kernel.shape[0]}) inputs, "
                             f"got {seq.shape}")
        if time_major:
            seq = seq.transpose(1, 0, 2)
        batch, steps = seq.shape[:2]
        h = initial(rest[17], batch)
        c = initial(rest[18], batch)
        projected = (seq.reshape(-1, seq.shape[-1]) @ kernel + bias).reshape(batch, steps, -1)
        out = np.empty((batch, steps, units), F32)
        for t in range(steps):
            z = projected[:, t] + h @ rkernel
            i = sigmoid(z[:, :units])
            f = sigmoid(z[:, units:2 * units])
            g = act(z[:, 2 * units:3 * units])
            o = sigmoid(z[:, 3 * units:])
            c = f * c + i * g
            if clip > 0:
                c = np.clip(c, -clip, clip)
            h = o * act(c)
            out[:, t] = h
        return out.transpose(1, 0, 2).copy() if time_major else out

    return compute
