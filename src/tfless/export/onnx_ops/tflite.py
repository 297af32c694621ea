"""ONNX converters for TensorFlow Lite builtin operators (`tflite.<CODE>` nodes of `.tflite` files).

Each converter mirrors the runtime op in `tfless/ops/tflite.py`: operands arrive in TFLite
order (constants as the node's weights, the rest as ONNX inputs, omitted optional inputs as
None), options are read by the runtime's own `TfliteOp`, and every fused activation is
applied. Tensors are NHWC like TFLite, so convolutions and pooling are wrapped in Transposes.
Operand values the runtime needs as Python numbers (axes, permutations, slice bounds, block
shapes) must be constants in the file; where ONNX can take them as tensors (shapes, pads,
multiples) computed values work too. This module holds the operand reader and the dense,
convolution, pooling, reduction and elementwise operators; `tflite_shapes.py` the shape and
data-movement ones, `tflite_recurrent.py` the fused LSTM.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ...errors import UnsupportedLayer
from ...graph import Node, Shape
from ...ops.tflite import (
    BINARY,
    COMPARISONS,
    REDUCERS,
    UNARY,
    TfliteOp,
    _axes,
)
from ..onnx_builder import OnnxBuilder, converter
from .activations import ACTIVATIONS
from .convolutional import _transpose_pads, window_pads
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
