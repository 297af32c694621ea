"""TensorFlow Lite builtin operators (float32), registered as `tflite.<BUILTIN_NAME>`.

The TFLite reader (`formats/tflite.py`) gives each node its operands in TFLite order:
constants arrive as weights, the rest as run() inputs, omitted optional inputs as None.
`tflite_op` turns a `make(op) -> compute(*operands)` function into a registry builder:
`make` reads options and constant operands once (pre-arranging weights), `compute`
gets every operand in order. Every `fused_activation_function` is applied.

Convolution, pooling and activation math is shared with the Keras ops; only the weight
layouts differ (TFLite filters are (out, kh, kw, in); depthwise filters (1, kh, kw, in*m)).
This module holds the operand reader and the dense, convolution, pooling, reduction and
elementwise operators; `tflite_shapes.py` the shape and data-movement ones,
`tflite_recurrent.py` the fused LSTM.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import InputError, ModelFormatError, UnsupportedLayer
from ..registry import register
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
# UNIDIRECTIONAL_SEQUENCE_LSTM's operand slots, read by its float, quantized and ONNX versions
LSTM_GATE_WEIGHTS = (1, 2, 3, 4)       # input-to-{input, forget, cell, output}
LSTM_RECURRENT_WEIGHTS = (5, 6, 7, 8)  # recurrent-to-{input, forget, cell, output}
LSTM_BIASES = (12, 13, 14, 15)
LSTM_UNSUPPORTED = {9: "peephole", 10: "peephole", 11: "peephole", 16: "projection",
                    17: "projection", 20: "layer normalization", 21: "layer normalization",
                    22: "layer normalization", 23: "layer normalization"}


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
