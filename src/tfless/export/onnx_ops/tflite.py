"""ONNX converters for TensorFlow Lite builtin operators (`tflite.<CODE>` nodes of `.tflite` files).

Each converter mirrors the runtime op in `tfless/ops/tflite.py`: operands arrive in TFLite
order (constants as the node's weights, the rest as ONNX inputs, omitted optional inputs as
None), options are read by the runtime's own `TfliteOp`, and every fused activation is
applied. Tensors are NHWC like TFLite, so convolutions and pooling are wrapped in Transposes.
Operand values the runtime needs as Python numbers (axes, permutations, slice bounds, block
shapes) must be constants in the file; where ONNX can take them as tensors (shapes, pads,
multiples) computed values work too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ...errors import UnsupportedLayer
from ...graph import Node, Shape
from ...ops.activations import ACTIVATIONS as RUNTIME_ACTIVATIONS
from ...ops.recurrent import LSTMCell, RecurrentLayer
from ...ops.tflite import (
    BINARY,
    COMPARISONS,
    LSTM_BIASES,
    LSTM_GATE_WEIGHTS,
    LSTM_RECURRENT_WEIGHTS,
    LSTM_UNSUPPORTED,
    REDUCERS,
    UNARY,
    TfliteOp,
    _axes,
)
from ..onnx_builder import OnnxBuilder, converter
from .activations import ACTIVATIONS
from .convolutional import _transpose_pads, window_pads
from .recurrent import CellEmitter, _act, _cols, run_layer
from .tfop import Ctx, Sym, _floordiv, _fmod_python

F32 = np.float32
INT64_MAX, INT64_MIN = 2**63 - 1, -(2**63)
NHWC_TO_NCHW, NCHW_TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]


class Operands:
    """One TFLite operator's operands as ONNX names, constant values and static facts."""

    def __init__(self, b: OnnxBuilder, node: Node, xs: list[str]) -> None:
        self.b, self.node, self.xs = b, node, xs
        self.op = TfliteOp(node.config, node.weights)
        self.entries: list[dict | None] = list(node.config["operands"])

    def fail(self, what: str) -> UnsupportedLayer:
        return UnsupportedLayer(f"layer '{self.node.name}' ({self.op.where}): {what}; nothing "
                                "was written")

    def present(self, i: int) -> bool:
        return self.op.present(i)

    def value(self, i: int) -> np.ndarray | None:
        return self.op.const(i)

    def _tid(self, i: int) -> str:
        entry = self.entries[i]
        assert entry is not None and "__tensor__" in entry
        return self.node.inputs[int(entry["__tensor__"])]

    def name(self, i: int, weight: bool = False) -> str:
        """The ONNX name of operand i; a constant becomes one initializer per tensor, shared
        by every operator that reads it. `weight`: a layer weight (subject to --float16)."""
        entry = self.entries[i]
        if entry is None:
            raise self.fail(f"operand {i} is missing")
        if "const" not in entry:
            return self.xs[int(entry["__tensor__"])]
        key = ("tflite", entry["const"], weight)
        if key not in self.b.shared:
            arr = np.asarray(self.node.weights[entry["const"]])
            self.b.shared[key] = (self.b.weight(self.node, entry["const"], arr) if weight
                                  else self.b.const(arr, "tflite_const"))
        return self.b.shared[key]

    def derived(self, i: int, tag: str, arr: np.ndarray) -> str:
        """A layer weight computed from constant operand i (e.g. a filter in ONNX layout),
        one initializer per tensor and layout."""
        key = ("tflite", self.entries[i]["const"], tag)
        if key not in self.b.shared:
            self.b.shared[key] = self.b.weight(self.node, f"{self.entries[i]['const']}/{tag}",
                                               np.ascontiguousarray(arr, F32))
        return self.b.shared[key]

    def ints(self, i: int, what: str) -> list[int]:
        value = self.value(i)
        if value is None:
            raise self.fail(f"the {what} (operand {i}) is computed at run time; ONNX export "
                            "needs it as a constant")
        return [int(v) for v in np.asarray(value).reshape(-1)]

    def shape(self, i: int) -> Shape:
        value = self.value(i)
        if value is not None:
            return tuple(np.shape(value))
        return self.b.shape(self._tid(i))

    def dtype(self, i: int) -> np.dtype:
        value = self.value(i)
        return np.asarray(value).dtype if value is not None else self.b.dtype(self._tid(i))

    def out_dtype(self, k: int = 0) -> np.dtype:
        return self.b.dtype(self.node.outputs[k])

    def int64(self, i: int) -> str:
        """Operand i as an int64 tensor (ONNX shape-like inputs)."""
        value = self.value(i)
        if value is not None:
            return self.b.i64(np.asarray(value).reshape(-1))
        return self.b.cast(self.name(i), np.int64)

    def scalar(self, value: float, dtype: Any) -> str:
        return self.b.const(np.asarray(value, dtype=dtype), "c")

    def fused(self, y: str, dtype: Any = F32) -> str:
        """The operator's fused_activation_function (the runtime validates the code)."""
        self.op.activation()
        code = int(self.op.options.get("fused_activation_function", 0))
        return ACTIVATION_CODES[code](self, y, np.dtype(dtype)) if code else y


def _clip(o: Operands, y: str, low: float | None, high: float | None, dtype: np.dtype) -> str:
    if low is not None:
        y = o.b.op("Max", [y, o.scalar(low, dtype)])
    if high is not None:
        y = o.b.op("Min", [y, o.scalar(high, dtype)])
    return y


ActivationEmit = Callable[[Operands, str, np.dtype], str]
ACTIVATION_CODES: dict[int, ActivationEmit] = {
    1: lambda o, y, t: _clip(o, y, 0, None, t),
    2: lambda o, y, t: _clip(o, y, -1, 1, t),
    3: lambda o, y, t: _clip(o, y, 0, 6, t),
    4: lambda o, y, t: o.b.op("Tanh", [y]),
}


def tflite_converter(*codes: str) -> Callable[[Callable[[Operands], Any]], Callable]:
    """Register `convert(operands) -> output name(s)` under `tflite.<code>` for each code."""

    def decorate(fn: Callable[[Operands], Any]) -> Callable:
        def convert(b: OnnxBuilder, node: Node, xs: list[str]) -> Any:
            return fn(Operands(b, node, xs))

        converter(*(f"tflite.{c}" for c in codes))(convert)
        return fn

    return decorate


def _rank(o: Operands, i: int = 0) -> int:
    return len(o.shape(i))


def _nhwc_sizes(o: Operands) -> tuple[int | None, ...]:
    shape = o.shape(0)
    if len(shape) != 4:
        raise o.fail(f"expects a rank-4 NHWC input, got shape {shape}")
    return tuple(shape[1:3])


def _channels(o: Operands) -> int:
    channels = o.shape(0)[-1]
    if channels is None:
        raise o.fail("the number of input channels is not fixed")
    return int(channels)


# ----- dense and convolution -------------------------------------------------------------
@tflite_converter("FULLY_CONNECTED")
def fully_connected(o: Operands) -> str:
    if int(o.op.options.get("weights_format", 0)) != 0:
        raise o.fail("shuffled int8 weights_format is not supported")
    b = o.b
    weights = o.value(1)
    if weights is not None:
        depth = int(weights.shape[1])
        w = o.derived(1, "T", np.asarray(weights, F32).T)
    else:
        wshape = o.shape(1)
        if wshape[-1] is None:
            raise o.fail("the weight matrix has no fixed input size")
        depth = int(wshape[-1])
        w = b.op("Transpose", [o.name(1)], perm=[1, 0])
    x = o.name(0)
    y = b.op("MatMul", [b.op("Reshape", [x, b.i64([-1, depth])]), w])
    if o.present(2):
        y = b.op("Add", [y, o.name(2, weight=True)])
    if bool(o.op.options.get("keep_num_dims", False)):
        lead = b.op("Slice", [b.op("Shape", [x]), b.i64([0]), b.i64([-1])])
        units = b.op("Slice", [b.op("Shape", [y]), b.i64([-1]), b.i64([INT64_MAX])])
        y = b.op("Reshape", [y, b.op("Concat", [lead, units], axis=0)])
    return o.fused(y)


def _conv_tail(o: Operands, y: str) -> str:
    return o.fused(o.b.op("Transpose", [y], perm=NCHW_TO_NHWC))


@tflite_converter("CONV_2D")
def conv_2d(o: Operands) -> str:
    filt = np.asarray(o.op.require_const(1, "filter"), F32)
    if filt.ndim != 4:
        raise o.fail(f"filter has shape {filt.shape}, expected (out, kh, kw, in)")
    opts = o.op.options
    geo = o.op.geometry(filt.shape[1:3], (int(opts.get("dilation_h", 1)),
                                          int(opts.get("dilation_w", 1))))
    sizes = _nhwc_sizes(o)
    channels = _channels(o)
    if channels % filt.shape[3] or filt.shape[0] % (channels // filt.shape[3]):
        raise o.fail(f"input channels {channels} do not fit a filter of shape {filt.shape}")
    b = o.b
    # (out, kh, kw, in) -> (out, in, kh, kw)
    w = o.derived(1, "oihw", filt.transpose(0, 3, 1, 2))
    bias = [o.name(2, weight=True)] if o.present(2) else []
    y = b.op("Conv", [b.op("Transpose", [o.name(0)], perm=NHWC_TO_NCHW), w, *bias],
             name=o.node.name, kernel_shape=list(geo.kernel), strides=list(geo.strides),
             dilations=list(geo.dilation), group=channels // filt.shape[3],
             **window_pads(geo, sizes))
    return _conv_tail(o, y)


@tflite_converter("DEPTHWISE_CONV_2D")
def depthwise_conv_2d(o: Operands) -> str:
    filt = np.asarray(o.op.require_const(1, "filter"), F32)
    if filt.ndim != 4 or filt.shape[0] != 1:
        raise o.fail(f"filter has shape {filt.shape}, expected (1, kh, kw, channels * "
                     "depth_multiplier)")
    opts = o.op.options
    geo = o.op.geometry(filt.shape[1:3], (int(opts.get("dilation_h", 1)),
                                          int(opts.get("dilation_w", 1))))
    sizes = _nhwc_sizes(o)
    channels = _channels(o)
    if filt.shape[3] % channels:
        raise o.fail(f"input channels {channels} do not fit a depthwise filter with "
                     f"{filt.shape[3]} outputs")
    b = o.b
    # output channel c * multiplier + m reads input channel c: (C*M, 1, kh, kw), one group per c
    w = o.derived(1, "depthwise", np.moveaxis(filt[0], -1, 0)[:, None])
    bias = [o.name(2, weight=True)] if o.present(2) else []
    y = b.op("Conv", [b.op("Transpose", [o.name(0)], perm=NHWC_TO_NCHW), w, *bias],
             name=o.node.name, kernel_shape=list(geo.kernel), strides=list(geo.strides),
             dilations=list(geo.dilation), group=channels, **window_pads(geo, sizes))
    return _conv_tail(o, y)


@tflite_converter("TRANSPOSE_CONV")
def transpose_conv(o: Operands) -> str:
    """Operands (output_shape, filter, input, bias?); the output's spatial size comes from
    the probed shapes, so a computed output_shape (dynamic batch) works."""
    filt = np.asarray(o.op.require_const(1, "filter"), F32)
    if filt.ndim != 4:
        raise o.fail(f"filter has shape {filt.shape}, expected (out, kh, kw, in)")
    geo = o.op.geometry(filt.shape[1:3])
    in_shape, out_shape = o.shape(2), o.b.out_shape(o.node)
    if len(in_shape) != 4 or None in (*in_shape[1:3], *out_shape[1:3]):
        raise o.fail("ONNX export needs fixed spatial input and output sizes")
    pads = [_transpose_pads(geo, int(in_shape[1 + a]), int(out_shape[1 + a]), a) for a in (0, 1)]
    b = o.b
    # (out, kh, kw, in) -> (in, out, kh, kw)
    w = o.derived(1, "iohw", filt.transpose(3, 0, 1, 2))
    y = b.op("ConvTranspose", [b.op("Transpose", [o.name(2)], perm=NHWC_TO_NCHW), w],
             name=o.node.name, kernel_shape=list(geo.kernel), strides=list(geo.strides),
             pads=[p[0] for p in pads] + [p[1] for p in pads],
             output_padding=[p[2] for p in pads] if any(p[2] for p in pads) else None)
    y = b.op("Transpose", [y], perm=NCHW_TO_NHWC)
    if o.present(3):
        y = b.op("Add", [y, o.name(3, weight=True)])
    return o.fused(y)


# ----- pooling and reductions ------------------------------------------------------------
def _pool(kind: str) -> Callable[[Operands], str]:
    def convert(o: Operands) -> str:
        opts = o.op.options
        geo = o.op.geometry((int(opts.get("filter_h", 0)), int(opts.get("filter_w", 0))))
        sizes = _nhwc_sizes(o)
        b = o.b
        # count_include_pad=0: a 'same' average divides by the real cells, as TFLite does
        y = b.op("MaxPool" if kind == "max" else "AveragePool",
                 [b.op("Transpose", [o.name(0)], perm=NHWC_TO_NCHW)], name=o.node.name,
                 kernel_shape=list(geo.kernel), strides=list(geo.strides),
                 **window_pads(geo, sizes))
        return o.fused(b.op("Transpose", [y], perm=NCHW_TO_NHWC))

    return convert


tflite_converter("MAX_POOL_2D")(_pool("max"))
tflite_converter("AVERAGE_POOL_2D")(_pool("avg"))

REDUCE_OPS = {"MEAN": "ReduceMean", "SUM": "ReduceSum", "REDUCE_MAX": "ReduceMax",
              "REDUCE_MIN": "ReduceMin", "REDUCE_PROD": "ReduceProd"}


def _reducer(code: str) -> Callable[[Operands], str]:
    def convert(o: Operands) -> str:
        rank = _rank(o)
        axes = list(_axes(o.ints(1, "reduction axes"), rank))
        keep = bool(o.op.options.get("keep_dims", False))
        x, dtype, b = o.name(0), o.dtype(0), o.b
        if not axes or rank == 0:
            return b.op("Identity", [x])
        if code == "MEAN" and dtype.kind != "f":
            # np.mean averages integers in float64; the result is cast back (truncating)
            mean = b.reduce("ReduceMean", b.cast(x, np.float64), axes, keep)
            return b.cast(mean, dtype)
        return b.reduce(REDUCE_OPS[code], x, axes, keep)

    return convert


for _code in REDUCERS:
    tflite_converter(_code)(_reducer(_code))


# ----- elementwise -----------------------------------------------------------------------
def _int_div(o: Operands, a: str, c: str, dtype: np.dtype) -> str:
    """Truncation toward zero, as the runtime (and C++) divide integers."""
    b = o.b
    q = b.op("Div", [b.op("Abs", [a]), b.op("Abs", [c])])
    zero = o.scalar(0, dtype)
    negative = b.op("Xor", [b.op("Less", [a, zero]), b.op("Less", [c, zero])])
    return b.op("Where", [negative, b.op("Neg", [q]), q])


def _binary_emit(code: str, o: Operands, a: str, c: str, dtype: np.dtype) -> str:
    b = o.b
    simple = {"ADD": "Add", "SUB": "Sub", "MUL": "Mul", "MAXIMUM": "Max", "MINIMUM": "Min",
              "POW": "Pow"}
    if code in simple:
        return b.op(simple[code], [a, c])
    if code == "DIV":
        return b.op("Div", [a, c]) if dtype.kind == "f" else _int_div(o, a, c, dtype)
    if code == "SQUARED_DIFFERENCE":
        d = b.op("Sub", [a, c])
        return b.op("Mul", [d, d])
    ctx = Ctx(b, o.node)
    if code == "FLOOR_DIV":
        return _floordiv(ctx, Sym(a, dtype), Sym(c, dtype)).name
    return _fmod_python(ctx, Sym(a, dtype), Sym(c, dtype)).name  # FLOOR_MOD


def _binary(code: str) -> Callable[[Operands], str]:
    def convert(o: Operands) -> str:
        dtype = np.result_type(o.dtype(0), o.dtype(1))
        a, c = (o.b.cast(o.name(i), dtype) if o.dtype(i) != dtype else o.name(i) for i in (0, 1))
        return o.fused(_binary_emit(code, o, a, c, dtype), dtype)

    return convert


for _code in BINARY:
    tflite_converter(_code)(_binary(_code))

COMPARE_OPS = {"LESS": "Less", "LESS_EQUAL": "LessOrEqual", "GREATER": "Greater",
               "GREATER_EQUAL": "GreaterOrEqual", "EQUAL": "Equal", "NOT_EQUAL": "Equal",
               "LOGICAL_AND": "And", "LOGICAL_OR": "Or"}


def _comparison(code: str) -> Callable[[Operands], str]:
    def convert(o: Operands) -> str:
        b = o.b
        if code.startswith("LOGICAL_"):
            a, c = (b.cast(o.name(i), bool) if o.dtype(i) != np.bool_ else o.name(i)
                    for i in (0, 1))
        else:
            dtype = np.result_type(o.dtype(0), o.dtype(1))
            a, c = (b.cast(o.name(i), dtype) if o.dtype(i) != dtype else o.name(i)
                    for i in (0, 1))
        y = b.op(COMPARE_OPS[code], [a, c])
        return b.op("Not", [y]) if code == "NOT_EQUAL" else y

    return convert


for _code in COMPARISONS:
    tflite_converter(_code)(_comparison(_code))


@tflite_converter("LOGICAL_NOT")
def logical_not(o: Operands) -> str:
    x = o.name(0)
    return o.b.op("Not", [x if o.dtype(0) == np.bool_ else o.b.cast(x, bool)])


@tflite_converter("SELECT", "SELECT_V2")
def select(o: Operands) -> str:
    cond = o.name(0) if o.dtype(0) == np.bool_ else o.b.cast(o.name(0), bool)
    return o.b.op("Where", [cond, o.name(1), o.name(2)])


def _zeros_like(o: Operands, x: str, dtype: np.dtype) -> str:
    value = o.b.onnx.numpy_helper.from_array(np.zeros((1,), dtype), "value")
    return o.b.op("ConstantOfShape", [o.b.op("Shape", [x])], value=value)


def _hard_swish(o: Operands, x: str, dtype: np.dtype) -> str:
    gate = _clip(o, o.b.op("Add", [x, o.scalar(3, dtype)]), 0, 6, dtype)
    return o.b.op("Div", [o.b.op("Mul", [x, gate]), o.scalar(6, dtype)])


UnaryEmit = Callable[[Operands, str, np.dtype], str]
UNARY_OPS: dict[str, UnaryEmit] = {
    "LOGISTIC": lambda o, x, t: o.b.op("Sigmoid", [x]),
    "TANH": lambda o, x, t: o.b.op("Tanh", [x]),
    "RELU": lambda o, x, t: _clip(o, x, 0, None, t),
    "RELU6": lambda o, x, t: _clip(o, x, 0, 6, t),
    "RELU_N1_TO_1": lambda o, x, t: _clip(o, x, -1, 1, t),
    "RELU_0_TO_1": lambda o, x, t: _clip(o, x, 0, 1, t),
    "HARD_SWISH": _hard_swish,
    "ELU": lambda o, x, t: o.b.op("Elu", [x], alpha=1.0),
    "RSQRT": lambda o, x, t: o.b.op("Div", [o.scalar(1, t), o.b.op("Sqrt", [x])]),
    "SQRT": lambda o, x, t: o.b.op("Sqrt", [x]),
    "EXP": lambda o, x, t: o.b.op("Exp", [x]),
    "LOG": lambda o, x, t: o.b.op("Log", [x]),
    "ABS": lambda o, x, t: o.b.op("Abs", [x]),
    "NEG": lambda o, x, t: o.b.op("Neg", [x]),
    "SQUARE": lambda o, x, t: o.b.op("Mul", [x, x]),
    "FLOOR": lambda o, x, t: o.b.op("Floor", [x]),
    "CEIL": lambda o, x, t: o.b.op("Ceil", [x]),
    "ZEROS_LIKE": _zeros_like,
}


def _unary(code: str) -> Callable[[Operands], str]:
    def convert(o: Operands) -> str:
        return UNARY_OPS[code](o, o.name(0), o.dtype(0))

    return convert


for _code in UNARY:
    tflite_converter(_code)(_unary(_code))


@tflite_converter("GELU")
def gelu_op(o: Operands) -> str:
    approximate = bool(o.op.options.get("approximate", False))
    return ACTIVATIONS["gelu_approximate" if approximate else "gelu"](o.b, o.name(0))


@tflite_converter("LEAKY_RELU")
def leaky_relu(o: Operands) -> str:
    x, b = o.name(0), o.b
    alpha = b.f32(float(o.op.options.get("alpha", 0.0)))
    return b.op("Where", [b.op("Greater", [x, b.f32(0)]), x, b.op("Mul", [x, alpha])])


@tflite_converter("PRELU")
def prelu(o: Operands) -> str:
    x, b = o.name(0), o.b
    return b.op("Where", [b.op("GreaterOrEqual", [x, b.f32(0)]), x,
                          b.op("Mul", [x, o.name(1, weight=True)])])


@tflite_converter("SOFTMAX")
def softmax(o: Operands) -> str:
    beta = float(o.op.options.get("beta", 1.0))
    x = o.name(0)
    if beta != 1.0:
        x = o.b.op("Mul", [x, o.b.f32(beta)])
    return o.b.op("Softmax", [x], axis=-1)


@tflite_converter("LOG_SOFTMAX")
def log_softmax(o: Operands) -> str:
    return o.b.op("LogSoftmax", [o.name(0)], axis=-1)


@tflite_converter("CAST", "DEQUANTIZE", "QUANTIZE")
def cast(o: Operands) -> str:
    """CAST to the output tensor's type; (DE)QUANTIZE only between float types (the runtime
    refuses integer quantization when it loads the model)."""
    return o.b.cast(o.name(0), o.out_dtype())


# ----- shapes and data movement ----------------------------------------------------------
@tflite_converter("RESHAPE")
def reshape(o: Operands) -> str:
    b = o.b
    if o.present(1):
        fixed = o.value(1)
        shape = o.int64(1)
    else:
        fixed = o.op.options.get("new_shape")
        if fixed is None:
            raise o.fail("no target shape (neither input nor option)")
        shape = b.i64(list(fixed))
    if b.opset >= 14:  # a 0 in the shape means size 0, as in np.reshape
        return b.op("Reshape", [o.name(0), shape], allowzero=1)
    if fixed is not None and 0 in [int(v) for v in np.asarray(fixed).reshape(-1)]:
        raise o.fail("a zero-sized target dimension needs opset 14 or newer")
    return b.op("Reshape", [o.name(0), shape])


@tflite_converter("SQUEEZE")
def squeeze(o: Operands) -> str:
    dims = o.op.options.get("squeeze_dims") or []
    shape = o.shape(0)
    if dims:
        axes = list(_axes(dims, len(shape)))
    else:
        if shape and shape[0] is None:
            raise o.fail("SQUEEZE without squeeze_dims removes the batch axis only when the "
                         "batch is 1; ONNX export needs explicit squeeze_dims")
        axes = [i for i, d in enumerate(shape) if d == 1]
    if not axes:
        return o.b.op("Identity", [o.name(0)])
    return o.b.op("Squeeze", [o.name(0), o.b.i64(axes)])


@tflite_converter("EXPAND_DIMS")
def expand_dims(o: Operands) -> str:
    a = o.ints(1, "axis")[0]
    a = a if a >= 0 else _rank(o) + 1 + a
    return o.b.op("Unsqueeze", [o.name(0), o.b.i64([a])])


@tflite_converter("TRANSPOSE")
def transpose(o: Operands) -> str:
    return o.b.op("Transpose", [o.name(0)], perm=o.ints(1, "permutation"))


@tflite_converter("CONCATENATION")
def concatenation(o: Operands) -> str:
    axis = int(o.op.options.get("axis", 0))
    names = [o.name(i) for i in range(len(o.entries))]
    return o.fused(o.b.op("Concat", names, axis=axis), o.out_dtype())


@tflite_converter("PACK")
def pack(o: Operands) -> str:
    axis = int(o.op.options.get("axis", 0))
    axis = axis if axis >= 0 else _rank(o) + 1 + axis
    names = [o.b.op("Unsqueeze", [o.name(i), o.b.i64([axis])]) for i in range(len(o.entries))]
    return o.b.op("Concat", names, axis=axis)


@tflite_converter("UNPACK")
def unpack(o: Operands) -> list[str]:
    axis = int(o.op.options.get("axis", 0))
    n = o.op.num_outputs
    parts = o.b.op("Split", [o.name(0), o.b.i64([1] * n)], outputs=n, axis=axis)
    parts = [parts] if isinstance(parts, str) else parts
    return [o.b.op("Squeeze", [p, o.b.i64([axis])]) for p in parts]


def _split(o: Operands, x: str, sizes: list[int], axis: int) -> list[str]:
    parts = o.b.op("Split", [x, o.b.i64(sizes)], outputs=len(sizes), axis=axis)
    return [parts] if isinstance(parts, str) else list(parts)


def _axis_size(o: Operands, i: int, axis: int) -> int:
    shape = o.shape(i)
    d = shape[axis]
    if d is None:
        raise o.fail(f"ONNX export needs a fixed size on the split axis {axis}")
    return int(d)


@tflite_converter("SPLIT")
def split(o: Operands) -> list[str]:
    axis = o.ints(0, "split axis")[0]
    n = o.op.num_outputs
    size = _axis_size(o, 1, axis)
    if size % n:
        raise o.fail(f"axis {axis} of size {size} does not split into {n} equal parts")
    return _split(o, o.name(1), [size // n] * n, axis)


@tflite_converter("SPLIT_V")
def split_v(o: Operands) -> list[str]:
    axis = o.ints(2, "split axis")[0]
    parts = o.ints(1, "split sizes")
    if parts.count(-1) == 1:
        parts[parts.index(-1)] = _axis_size(o, 0, axis) - (sum(parts) + 1)
    return _split(o, o.name(0), parts, axis)


def _onnx_pads(o: Operands, i: int) -> str:
    """TFLite (rank, 2) paddings -> ONNX [begins..., ends...]."""
    value = o.value(i)
    if value is not None:
        widths = np.asarray(value, np.int64).reshape(-1, 2)
        return o.b.i64(np.concatenate([widths[:, 0], widths[:, 1]]))
    pairs = o.b.op("Reshape", [o.int64(i), o.b.i64([-1, 2])])
    return o.b.op("Reshape", [o.b.op("Transpose", [pairs], perm=[1, 0]), o.b.i64([-1])])


@tflite_converter("PAD", "PADV2")
def pad(o: Operands) -> str:
    inputs = [o.name(0), _onnx_pads(o, 1)]
    if o.present(2):
        fill = o.name(2)
        if o.shape(2) != ():
            fill = o.b.op("Reshape", [fill, o.b.i64(np.zeros((0,), np.int64))])
        if o.dtype(2) != o.dtype(0):
            fill = o.b.cast(fill, o.dtype(0))
        inputs.append(fill)
    return o.b.op("Pad", inputs, mode="constant")


def _reverse(o: Operands, x: str, axis: int, start: int, stop: int) -> str:
    """x[start:stop] along `axis`, reversed."""
    piece = o.b.op("Slice", [x, o.b.i64([start]), o.b.i64([stop]), o.b.i64([axis])])
    return o.b.op("Slice", [piece, o.b.i64([-1]), o.b.i64([INT64_MIN]), o.b.i64([axis]),
                            o.b.i64([-1])])


@tflite_converter("MIRROR_PAD")
def mirror_pad(o: Operands) -> str:
    """REFLECT (mode 0) is ONNX's reflect; SYMMETRIC (mode 1, the edge repeated) has no ONNX
    mode and becomes reversed slices concatenated on each side."""
    if int(o.op.options.get("mode", 0)) == 0:
        return o.b.op("Pad", [o.name(0), _onnx_pads(o, 1)], mode="reflect")
    widths = np.asarray(o.ints(1, "paddings")).reshape(-1, 2)
    y = o.name(0)
    for axis, (before, after) in enumerate(widths.tolist()):
        pieces = ([_reverse(o, y, axis, 0, before)] if before else []) + [y]
        if after:
            pieces.append(_reverse(o, y, axis, -after, INT64_MAX))
        if len(pieces) > 1:
            y = o.b.op("Concat", pieces, axis=axis)
    return y


@tflite_converter("SHAPE")
def shape(o: Operands) -> str:
    return o.b.cast(o.b.op("Shape", [o.name(0)]), o.out_dtype())


@tflite_converter("FILL")
def fill(o: Operands) -> str:
    value = o.name(1)
    if o.shape(1) != ():
        value = o.b.op("Reshape", [value, o.b.i64(np.zeros((0,), np.int64))])
    return o.b.op("Expand", [value, o.int64(0)])


@tflite_converter("TILE")
def tile(o: Operands) -> str:
    return o.b.op("Tile", [o.name(0), o.int64(1)])


@tflite_converter("BROADCAST_TO")
def broadcast_to(o: Operands) -> str:
    return o.b.op("Expand", [o.name(0), o.int64(1)])


def _static_dims(o: Operands, dims: Any, what: str) -> list[int]:
    if any(d is None for d in dims):
        raise o.fail(f"ONNX export needs fixed {what}")
    return [int(d) for d in dims]


@tflite_converter("SPACE_TO_BATCH_ND")
def space_to_batch_nd(o: Operands) -> str:
    """Pad the spatial axes, then move each block offset into the batch."""
    blocks = o.ints(1, "block shape")
    widths = np.asarray(o.ints(2, "paddings")).reshape(-1, 2).tolist()
    m = len(blocks)
    shape = o.shape(0)
    spatial = _static_dims(o, shape[1:m + 1], "spatial sizes")
    rest = _static_dims(o, shape[m + 1:], "trailing sizes")
    padded = [n + a + c for n, (a, c) in zip(spatial, widths)]
    if any(n % k for n, k in zip(padded, blocks)):
        raise o.fail(f"padded spatial shape {padded} is not divisible by block shape {blocks}")
    b = o.b
    full = [[0, 0], *widths, *[[0, 0]] * len(rest)]
    x = b.op("Pad", [o.name(0), b.i64([p[0] for p in full] + [p[1] for p in full])])
    split = [0]
    for n, k in zip(padded, blocks):
        split += [n // k, k]
    y = b.op("Reshape", [x, b.i64(split + rest)])
    perm = [2 + 2 * i for i in range(m)] + [0] + [1 + 2 * i for i in range(m)]
    perm += list(range(2 * m + 1, 2 * m + 1 + len(rest)))
    y = b.op("Transpose", [y], perm=perm)
    return b.op("Reshape", [y, b.i64([-1, *[n // k for n, k in zip(padded, blocks)], *rest])])


@tflite_converter("BATCH_TO_SPACE_ND")
def batch_to_space_nd(o: Operands) -> str:
    blocks = o.ints(1, "block shape")
    crops = np.asarray(o.ints(2, "crops")).reshape(-1, 2).tolist()
    m = len(blocks)
    shape = o.shape(0)
    spatial = _static_dims(o, shape[1:m + 1], "spatial sizes")
    rest = _static_dims(o, shape[m + 1:], "trailing sizes")
    b = o.b
    y = b.op("Reshape", [o.name(0), b.i64([*blocks, -1, *spatial, *rest])])
    perm = [m]
    for i in range(m):
        perm += [m + 1 + i, i]
    perm += list(range(2 * m + 1, 2 * m + 1 + len(rest)))
    y = b.op("Transpose", [y], perm=perm)
    grown = [n * k for n, k in zip(spatial, blocks)]
    y = b.op("Reshape", [y, b.i64([-1, *grown, *rest])])
    if not any(a or c for a, c in crops):
        return y
    return b.op("Slice", [y, b.i64([a for a, _ in crops]),
                          b.i64([n - c for n, (_, c) in zip(grown, crops)]),
                          b.i64(list(range(1, m + 1)))])


@tflite_converter("SLICE")
def slice_op(o: Operands) -> str:
    b = o.b
    if o.value(1) is not None and o.value(2) is not None:
        begin, size = o.ints(1, "begin"), o.ints(2, "size")
        ends = [INT64_MAX if s == -1 else bg + s for bg, s in zip(begin, size)]
        return b.op("Slice", [o.name(0), b.i64(begin), b.i64(ends),
                              b.i64(list(range(len(begin))))])
    begin, size = o.int64(1), o.int64(2)
    ends = b.op("Where", [b.op("Equal", [size, b.i64(-1)]), b.i64(INT64_MAX),
                          b.op("Add", [begin, size])])
    return b.op("Slice", [o.name(0), begin, ends])


def _strided_index(o: Operands) -> list[Any]:
    """The NumPy index the runtime builds from begin/end/strides and the five masks."""
    opts = o.op.options
    masks = {k: int(opts.get(k, 0)) for k in ("begin_mask", "end_mask", "ellipsis_mask",
                                              "new_axis_mask", "shrink_axis_mask")}
    offset = bool(opts.get("offset", False))
    begin, end = o.ints(1, "begin"), o.ints(2, "end")
    strides = o.ints(3, "strides") if o.present(3) else [1] * len(begin)
    index: list[Any] = []
    for i, (bi, ei, si) in enumerate(zip(begin, end, strides)):
        bit = 1 << i
        if masks["ellipsis_mask"] & bit:
            index.append(Ellipsis)
        elif masks["new_axis_mask"] & bit:
            index.append(None)
        elif masks["shrink_axis_mask"] & bit:
            index.append(bi)
        else:
            stop = bi + ei if offset else ei
            index.append(slice(None if masks["begin_mask"] & bit else bi,
                               None if masks["end_mask"] & bit else stop, si))
    return index


@tflite_converter("STRIDED_SLICE")
def strided_slice(o: Operands) -> str:
    """NumPy basic indexing as ONNX: one Slice (Python's clamping rules are ONNX's), then
    Squeeze for integer indexes and Unsqueeze for new axes."""
    index = _strided_index(o)
    rank = _rank(o)
    if index.count(Ellipsis) > 1:
        raise o.fail("more than one ellipsis in a strided slice")
    used = sum(1 for item in index if item is not None and item is not Ellipsis)
    if used > rank:
        raise o.fail(f"a strided slice of {used} axes on a rank-{rank} tensor")
    if Ellipsis not in index:
        index.append(Ellipsis)
    starts, ends, axes, steps, squeeze, new_axes = [], [], [], [], [], []
    axis = out = 0
    for item in index:
        if item is Ellipsis:
            axis += rank - used
            out += rank - used
        elif item is None:
            new_axes.append(out)
            out += 1
        elif isinstance(item, slice):
            step = 1 if item.step is None else int(item.step)
            if step == 0:
                raise o.fail("a strided slice with stride 0")
            start = item.start if item.start is not None else (0 if step > 0 else INT64_MAX)
            stop = item.stop if item.stop is not None else (INT64_MAX if step > 0 else INT64_MIN)
            if (start, stop, step) != (0, INT64_MAX, 1):
                starts.append(int(start))
                ends.append(int(stop))
                axes.append(axis)
                steps.append(step)
            axis += 1
            out += 1
        else:
            starts.append(int(item))
            ends.append(INT64_MAX if int(item) == -1 else int(item) + 1)
            axes.append(axis)
            steps.append(1)
            squeeze.append(axis)
            axis += 1
    b = o.b
    y = o.name(0)
    if axes:
        y = b.op("Slice", [y, b.i64(starts), b.i64(ends), b.i64(axes), b.i64(steps)])
    if squeeze:
        y = b.op("Squeeze", [y, b.i64(squeeze)])
    if new_axes:
        y = b.op("Unsqueeze", [y, b.i64(new_axes)])
    return y if axes or squeeze or new_axes else b.op("Identity", [y])


@tflite_converter("GATHER")
def gather(o: Operands) -> str:
    if int(o.op.options.get("batch_dims", 0)) != 0:
        raise o.fail("GATHER with batch_dims != 0 is not supported")
    return o.b.op("Gather", [o.name(0, weight=o.value(0) is not None and o.dtype(0).kind == "f"),
                             o.name(1)], axis=int(o.op.options.get("axis", 0)))


@tflite_converter("BATCH_MATMUL")
def batch_matmul(o: Operands) -> str:
    def side(i: int, adjoint: bool) -> str:
        x = o.name(i)
        if not adjoint:
            return x
        r = _rank(o, i)
        return o.b.op("Transpose", [x], perm=[*range(r - 2), r - 1, r - 2])

    return o.b.op("MatMul", [side(0, bool(o.op.options.get("adj_x", False))),
                             side(1, bool(o.op.options.get("adj_y", False)))])


def _arg(op_type: str) -> Callable[[Operands], str]:
    def convert(o: Operands) -> str:
        y = o.b.op(op_type, [o.name(0)], axis=o.ints(1, "axis")[0], keepdims=0)
        return o.b.cast(y, o.out_dtype())  # the first extreme wins, as np.argmax

    return convert


tflite_converter("ARG_MAX")(_arg("ArgMax"))
tflite_converter("ARG_MIN")(_arg("ArgMin"))


# ----- recurrent -------------------------------------------------------------------------
class ClippedLSTMEmitter(CellEmitter):
    """The LSTM step, with TFLite's cell_clip applied to the new cell state when set."""

    def __init__(self, b: OnnxBuilder, node: Node, cell: LSTMCell, clip: float) -> None:
        super().__init__(b, node, "", cell)
        self.clip = clip

    def step(self, xp: str, states: list[str]) -> tuple[str, list[str]]:
        if self.clip <= 0:
            return super().step(xp, states)
        b, cell, u, name = self.b, self.cell, self.units, self.node.name
        h, c = states
        z = b.op("Add", [xp, b.op("MatMul", [h, self.recurrent])])
        i, f, g, o = (_cols(b, z, k * u, (k + 1) * u) for k in range(4))
        c = b.op("Add", [b.op("Mul", [_act(b, cell.rec_act, f, name), c]),
                         b.op("Mul", [_act(b, cell.rec_act, i, name), _act(b, cell.act, g, name)])])
        c = b.clip(c, -self.clip, self.clip)
        h = b.op("Mul", [_act(b, cell.rec_act, o, name), _act(b, cell.act, c, name)])
        return h, [h, c]


# fused_activation_function code -> the runtime's Keras activation of the same formula
LSTM_ACTIVATION_NAMES = {1: "relu", 2: "hard_tanh", 3: "relu6", 4: "tanh"}


def _initial_state(o: Operands, slot: int, x: str, units: int, batch_axis: int) -> str:
    """The runtime's start state: zeros, or the stored state broadcast over the batch."""
    b = o.b
    value = o.value(slot)
    if value is None and o.present(slot):
        raise o.fail(f"the initial state (operand {slot}) is computed at run time")
    if value is None or not np.any(value):
        return b.zeros(x, [units], batch_axis=batch_axis)
    batch = b.op("Slice", [b.op("Shape", [x]), b.i64([batch_axis]), b.i64([batch_axis + 1])])
    return b.op("Expand", [b.const(np.asarray(value, F32)),
                           b.op("Concat", [batch, b.i64([units])], axis=0)])


@tflite_converter("UNIDIRECTIONAL_SEQUENCE_LSTM")
def unidirectional_sequence_lstm(o: Operands) -> str:
    """One Scan over the runtime's LSTM step (gates i, f, c, o; the fused activation on the
    cell input and output; optional cell clip), starting from the stored state as a Keras
    predict does."""
    for slot, feature in LSTM_UNSUPPORTED.items():
        if o.present(slot):
            raise o.fail(f"LSTM with {feature} (input {slot}) is not supported")
    if not o.present(1):
        raise o.fail("coupled input-forget gate (CIFG) LSTM is not supported")
    if o.op.num_outputs != 1:
        raise o.fail("LSTM returning its states is not supported")
    code = int(o.op.options.get("fused_activation_function", 0))
    if code not in LSTM_ACTIVATION_NAMES:
        raise o.fail(f"LSTM fused_activation_function code {code} is not supported")
    gates = [np.asarray(o.op.require_const(i, "input weight"), F32) for i in LSTM_GATE_WEIGHTS]
    recurrent = [np.asarray(o.op.require_const(i, "recurrent weight"), F32)
                 for i in LSTM_RECURRENT_WEIGHTS]
    biases = [np.asarray(o.op.require_const(i, "gate bias"), F32) for i in LSTM_BIASES]
    cell = LSTMCell(np.concatenate(gates, axis=0).T, np.concatenate(recurrent, axis=0).T,
                    np.concatenate(biases), RUNTIME_ACTIVATIONS[LSTM_ACTIVATION_NAMES[code]],
                    RUNTIME_ACTIVATIONS["sigmoid"])
    time_major = bool(o.op.options.get("time_major", False))
    layer = RecurrentLayer({"name": o.node.name, "return_sequences": True,
                            "time_major": time_major}, cell)
    emitter = ClippedLSTMEmitter(o.b, o.node, cell, float(o.op.options.get("cell_clip", 0.0)))
    x = o.name(0)
    axis = 1 if time_major else 0
    states = [_initial_state(o, 18, x, cell.units, axis), _initial_state(o, 19, x, cell.units, axis)]
    return run_layer(o.b, o.node, layer, "", x, None, states, cells=[emitter])[0]
