"""ONNX converters for plain tensor math recorded in functional models: tf_keras
`TFOpLambda` / `SlicingOpLambda` layers and Keras 3 raw `keras.ops` nodes.

The runtime (`tfless/ops/tfop.py`) maps each recorded call onto a whitelisted NumPy kernel;
here every kernel has an ONNX twin with the same parameter names, so the call's argument
templates (tensors as `{"__tensor__": i}`) bind the same way. Tensors become `Sym`s (an ONNX
name and its dtype); constants from the config keep TensorFlow's dtype rules, through the
runtime's own `_constant`. A function the runtime runs but no converter covers fails with
an error naming the layer, before anything is written. This module holds the tensor-math
twins and the tf_keras converter; `tfop_keras.py` the Keras 3 keras.ops table built on them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import UnsupportedLayer
from ...graph import Node
from ...ops import tfop as rt
from ..onnx_builder import OnnxBuilder, converter
from .activations import ACTIVATIONS, softmax

INT64_MAX, INT64_MIN = 2**63 - 1, -(2**63)
TENSOR = "__tensor__"


@dataclass(frozen=True)
class Sym:
    """A tensor in the ONNX graph: its name, dtype and rank (None when not tracked)."""

    name: str
    dtype: np.dtype
    rank: int | None = None


class Ctx:
    """One node's conversion: the builder, the node and helpers that turn values into Syms."""

    def __init__(self, b: OnnxBuilder, node: Node) -> None:
        self.b, self.node = b, node

    def fail(self, what: str) -> UnsupportedLayer:
        return UnsupportedLayer(f"layer '{self.node.name}' ({self.node.op}): {what} has no "
                                "ONNX converter; nothing was written")

    def op(self, op_type: str, inputs: Sequence[str | Sym], dtype: Any,
           rank: int | None = None, **attrs: Any) -> Sym:
        names = [i.name if isinstance(i, Sym) else i for i in inputs]
        return Sym(self.b.op(op_type, names, **attrs), np.dtype(dtype), rank)

    def const(self, value: Any, like: Sym | None = None) -> Sym:
        """A config constant as TensorFlow converts it (see `ops.tfop._constant`)."""
        arr = rt._constant(value, None if like is None else np.zeros((), like.dtype))
        name = self.b.const(arr)
        if arr.dtype == np.float64:  # the builder stores float64 constants as float32
            name = self.b.cast(name, np.float64)
        return Sym(name, arr.dtype, arr.ndim)

    def tensor(self, v: Any, like: Sym | None = None) -> Sym:
        return v if isinstance(v, Sym) else self.const(v, like)

    def cast(self, x: Sym, dtype: Any) -> Sym:
        dtype = np.dtype(dtype)
        return x if x.dtype == dtype else Sym(self.b.cast(x.name, dtype), dtype, x.rank)

    def pair(self, x: Any, y: Any) -> tuple[Sym, Sym]:
        """Operands as `ops.tfop._pair` makes them; two tensors meet at NumPy's common type."""
        if isinstance(x, Sym) and not isinstance(y, Sym):
            return x, self.const(y, x)
        if isinstance(y, Sym) and not isinstance(x, Sym):
            return self.const(x, y), y
        if not isinstance(x, Sym):
            return self.const(x), self.const(y)
        common = np.result_type(x.dtype, y.dtype)
        return self.cast(x, common), self.cast(y, common)

    def i64(self, v: Any) -> str:
        """An int64 vector from ints and scalar Syms (a constant when all are ints)."""
        items = list(v) if isinstance(v, (list, tuple)) else [v]
        if not any(isinstance(i, Sym) for i in items):
            return self.b.i64([int(np.asarray(i)) for i in items])
        parts = []
        for i in items:
            if isinstance(i, Sym):
                parts.append(self.b.op("Reshape", [self.cast(i, np.int64).name, self.b.i64([-1])]))
            else:
                parts.append(self.b.i64([int(np.asarray(i))]))
        return self.b.op("Concat", parts, axis=0)

    def rank_of(self, x: Sym) -> int:
        if x.rank is None:
            raise self.fail("an operation needing the rank of an intermediate tensor")
        return x.rank


Emit = Callable[..., Sym]


def _axes(c: Ctx, axis: Any) -> tuple[int, ...] | None:
    if isinstance(axis, Sym):
        raise c.fail("an axis given as a tensor")
    value = rt._axis(axis)
    if value is None:
        return None
    return (value,) if isinstance(value, int) else tuple(value)


# ----- elementwise -----------------------------------------------------------------------
def _fmod_python(c: Ctx, x: Sym, y: Sym) -> Sym:
    """np.mod: the remainder takes the divisor's sign."""
    if x.dtype.kind != "f":
        return c.op("Mod", [x, y], x.dtype, fmod=0)
    r = c.op("Mod", [x, y], x.dtype, fmod=1)
    zero = c.const(0, x)
    fix = c.op("And", [c.op("Not", [c.op("Equal", [r, zero], bool)], bool),
                       c.op("Xor", [c.op("Less", [r, zero], bool),
                                    c.op("Less", [y, zero], bool)], bool)], bool)
    return c.op("Where", [fix, c.op("Add", [r, y], x.dtype), r], x.dtype)


def _floordiv(c: Ctx, x: Sym, y: Sym) -> Sym:
    if x.dtype.kind == "f":
        return c.op("Floor", [c.op("Div", [x, y], x.dtype)], x.dtype)
    # exact integer floor division: (x - x mod y) / y with a divisor-signed mod
    rest = c.op("Sub", [x, c.op("Mod", [x, y], x.dtype, fmod=0)], x.dtype)
    return c.op("Div", [rest, y], x.dtype)


def _true_divide(promote_to_64: bool) -> Callable[[Ctx, Sym, Sym], Sym]:
    def divide(c: Ctx, x: Sym, y: Sym) -> Sym:
        if x.dtype.kind in "iub":
            wide = promote_to_64 and x.dtype.itemsize > 2
            x, y = c.cast(x, np.float64 if wide else np.float32), c.cast(y, np.float64 if wide
                                                                         else np.float32)
        return c.op("Div", [x, y], x.dtype)

    return divide


def _simple(op_type: str, boolean: bool = False) -> Callable[[Ctx, Sym, Sym], Sym]:
    def emit(c: Ctx, x: Sym, y: Sym) -> Sym:
        return c.op(op_type, [x, y], bool if boolean else x.dtype,
                    max(x.rank or 0, y.rank or 0) if x.rank is not None and y.rank is not None
                    else None)

    return emit


def _not_equal(c: Ctx, x: Sym, y: Sym) -> Sym:
    return c.op("Not", [_simple("Equal", True)(c, x, y)], bool)


def _logical(op_type: str) -> Callable[[Ctx, Sym, Sym], Sym]:
    return lambda c, x, y: c.op(op_type, [c.cast(x, bool), c.cast(y, bool)], bool)


BINARY: dict[str, Callable[[Ctx, Sym, Sym], Sym]] = {
    "add": _simple("Add"), "subtract": _simple("Sub"), "multiply": _simple("Mul"),
    "truediv": _true_divide(True), "k3_divide": _true_divide(False),
    "floordiv": _floordiv, "mod": _fmod_python, "pow": _simple("Pow"),
    "maximum": _simple("Max"), "minimum": _simple("Min"),
    "equal": _simple("Equal", True), "not_equal": _not_equal,
    "greater": _simple("Greater", True), "greater_equal": _simple("GreaterOrEqual", True),
    "less": _simple("Less", True), "less_equal": _simple("LessOrEqual", True),
    "and": _logical("And"), "or": _logical("Or"),
}


def binary(kind: str) -> Emit:
    def emit(c: Ctx, x: Any, y: Any, name: Any = None) -> Sym:
        a, b = c.pair(x, y)
        return BINARY[kind](c, a, b)

    return emit


def _activation(name: str) -> Callable[[Ctx, Sym], Sym]:
    return lambda c, x: Sym(ACTIVATIONS[name](c.b, x.name), x.dtype, x.rank)


UNARY: dict[str, Callable[[Ctx, Sym], Sym]] = {
    "negative": lambda c, x: c.op("Neg", [x], x.dtype, x.rank),
    "abs": lambda c, x: c.op("Abs", [x], x.dtype, x.rank),
    "sqrt": lambda c, x: c.op("Sqrt", [x], x.dtype, x.rank),
    "rsqrt": lambda c, x: c.op("Div", [c.const(1, x), c.op("Sqrt", [x], x.dtype)], x.dtype, x.rank),
    "exp": lambda c, x: c.op("Exp", [x], x.dtype, x.rank),
    "log": lambda c, x: c.op("Log", [x], x.dtype, x.rank),
    "square": lambda c, x: c.op("Mul", [x, x], x.dtype, x.rank),
    "tanh": lambda c, x: c.op("Tanh", [x], x.dtype, x.rank),
    "sigmoid": lambda c, x: c.op("Sigmoid", [x], x.dtype, x.rank),
    "softplus": _activation("softplus"),
    "relu": lambda c, x: c.op("Relu", [x], x.dtype, x.rank),
    "relu6": lambda c, x: c.op("Min", [c.op("Max", [x, c.const(0, x)], x.dtype), c.const(6, x)],
                               x.dtype, x.rank),
    "elu": _activation("elu"),
    "selu": _activation("selu"),
    "silu": lambda c, x: c.op("Mul", [x, c.op("Sigmoid", [x], x.dtype)], x.dtype, x.rank),
    "logical_not": lambda c, x: c.op("Not", [c.cast(x, bool)], bool, x.rank),
}


def unary(kind: str) -> Emit:
    def emit(c: Ctx, x: Any, name: Any = None) -> Sym:
        return UNARY[kind](c, c.tensor(x))

    return emit


def features(kind: str) -> Emit:
    return lambda c, features, name=None: UNARY[kind](c, c.tensor(features))


def _leaky_relu(c: Ctx, features: Any, alpha: float = 0.2, name: Any = None) -> Sym:
    x = c.tensor(features)
    return c.op("LeakyRelu", [x], x.dtype, x.rank, alpha=float(alpha))


def _gelu(c: Ctx, features: Any, approximate: bool = False, name: Any = None) -> Sym:
    return _activation("gelu_approximate" if approximate else "gelu")(c, c.tensor(features))


def _silu(c: Ctx, features: Any, beta: float = 1.0, name: Any = None) -> Sym:
    x = c.tensor(features)
    scaled = c.op("Mul", [x, c.const(float(beta), x)], x.dtype)
    return c.op("Mul", [x, c.op("Sigmoid", [scaled], x.dtype)], x.dtype, x.rank)


def _softmax_on(c: Ctx, x: Sym, axis: Any, log: bool = False) -> Sym:
    axes = _axes(c, -1 if axis is None else axis)
    if log:
        if len(axes) != 1:
            raise c.fail("log_softmax over several axes")
        return c.op("LogSoftmax", [x], x.dtype, x.rank, axis=axes[0])
    return Sym(softmax(c.b, x.name, axes[0] if len(axes) == 1 else axes), x.dtype, x.rank)


def _softmax(c: Ctx, logits: Any, axis: Any = None, name: Any = None, dim: Any = None) -> Sym:
    return _softmax_on(c, c.tensor(logits), dim if axis is None else axis)


def _log_softmax(c: Ctx, logits: Any, axis: Any = None, name: Any = None) -> Sym:
    return _softmax_on(c, c.tensor(logits), axis, log=True)


def _add_n(c: Ctx, inputs: Sequence[Any], name: Any = None) -> Sym:
    total = c.tensor(inputs[0])
    for v in inputs[1:]:
        total = binary("add")(c, total, v)
    return total


def _cast_to(c: Ctx, x: Any, dtype: Any, name: Any = None) -> Sym:
    return c.cast(c.tensor(x), rt._dtype(dtype))


def _clip(c: Ctx, t: Any, clip_value_min: Any, clip_value_max: Any, name: Any = None) -> Sym:
    x = c.tensor(t)
    high = c.cast(c.tensor(clip_value_max, x), x.dtype)
    low = c.cast(c.tensor(clip_value_min, x), x.dtype)
    return c.op("Max", [c.op("Min", [x, high], x.dtype), low], x.dtype, x.rank)


# ----- reductions ------------------------------------------------------------------------
def _reduce_on(c: Ctx, x: Sym, kind: str, axis: Any, keep: bool, tf_mean: bool = True) -> Sym:
    axes = _axes(c, axis)
    rank = c.rank_of(x)
    axes = tuple(range(rank)) if axes is None else tuple(a % rank for a in axes)
    out_rank = rank if keep else rank - len(axes)
    if not axes:
        return c.op("Identity", [x], x.dtype, rank)
    if kind == "mean" and x.dtype.kind in "iub":
        if not tf_mean:  # Keras 3 averages integers in float32
            x = c.cast(x, np.float32)
        else:  # TensorFlow: integer sum divided by the count, truncating like ONNX's Div
            total = Sym(c.b.reduce("ReduceSum", x.name, axes, keep), x.dtype)
            sizes = c.b.op("Gather", [c.b.op("Shape", [x.name]), c.b.i64(list(axes))], axis=0)
            count = c.cast(Sym(c.b.reduce("ReduceProd", sizes, [0], keepdims=False), np.int64),
                           x.dtype)
            return Sym(c.b.op("Div", [total.name, count.name]), x.dtype, out_rank)
    if kind in ("any", "all"):  # ONNX reduces numbers only: max/min over 0/1 as int32
        ints = c.cast(x, np.int32)
        red = c.b.reduce("ReduceMax" if kind == "any" else "ReduceMin", ints.name, axes, keep)
        return c.cast(Sym(red, np.dtype(np.int32), out_rank), bool)
    op_type = {"sum": "ReduceSum", "mean": "ReduceMean", "max": "ReduceMax", "min": "ReduceMin",
               "prod": "ReduceProd"}[kind]
    return Sym(c.b.reduce(op_type, x.name, axes, keep), x.dtype, out_rank)


def tf_reduce(kind: str) -> Emit:
    def emit(c: Ctx, input_tensor: Any, axis: Any = None, keepdims: bool | None = None,
             name: Any = None, reduction_indices: Any = None,
             keep_dims: bool | None = None) -> Sym:
        if axis is None:
            axis = reduction_indices
        keep = bool(keepdims if keepdims is not None else keep_dims)
        return _reduce_on(c, c.tensor(input_tensor), kind, axis, keep)

    return emit


# ----- shapes ----------------------------------------------------------------------------
def _reshape(c: Ctx, tensor: Any, shape: Any, name: Any = None) -> Sym:
    x = c.tensor(tensor)
    if isinstance(shape, Sym):
        dims, rank = c.cast(shape, np.int64).name, None
    else:
        items = list(shape) if isinstance(shape, (list, tuple)) else \
            (np.asarray(shape).reshape(-1).tolist() if not isinstance(shape, int) else [shape])
        if any(not isinstance(d, Sym) and int(np.asarray(d)) == 0 for d in items):
            raise c.fail("a reshape to a zero-sized axis")
        dims, rank = c.i64(items), len(items)
    return c.op("Reshape", [x, dims], x.dtype, rank)


def _joined(c: Ctx, values: Sequence[Any], axis: int, stack: bool) -> Sym:
    dtype = c.b.dtype(c.node.outputs[0])  # NumPy's promoted type, from the probe
    parts = [c.cast(c.tensor(v), dtype) for v in values]
    if stack:
        parts = [c.op("Unsqueeze", [p, c.b.i64([axis])], dtype) for p in parts]
    rank = parts[0].rank
    return c.op("Concat", parts, dtype, rank, axis=axis)


def _concat(c: Ctx, values: Sequence[Any], axis: Any, name: Any = None) -> Sym:
    return _joined(c, values, int(axis), stack=False)


def _stack(c: Ctx, values: Sequence[Any], axis: int = 0, name: Any = None) -> Sym:
    return _joined(c, values, int(axis), stack=True)


def _swap_last(c: Ctx, x: Sym) -> Sym:
    rank = c.rank_of(x)
    return c.op("Transpose", [x], x.dtype, rank, perm=[*range(rank - 2), rank - 1, rank - 2])


def _matmul(c: Ctx, a: Any, b: Any, transpose_a: bool = False, transpose_b: bool = False,
            adjoint_a: bool = False, adjoint_b: bool = False, a_is_sparse: bool = False,
            b_is_sparse: bool = False, output_type: Any = None, name: Any = None,
            grad_a: bool = False, grad_b: bool = False) -> Sym:
    x, y = c.pair(a, b)
    if transpose_a or adjoint_a:
        x = _swap_last(c, x)
    if transpose_b or adjoint_b:
        y = _swap_last(c, y)
    return c.op("MatMul", [x, y], x.dtype)


def _transpose(c: Ctx, a: Any, perm: Any = None, conjugate: bool = False, name: Any = None) -> Sym:
    x = c.tensor(a)
    return c.op("Transpose", [x], x.dtype, x.rank,
                perm=None if perm is None else [int(p) for p in perm])


def _matrix_transpose(c: Ctx, a: Any, name: Any = None, conjugate: bool = False) -> Sym:
    return _swap_last(c, c.tensor(a))


def _expand(c: Ctx, x: Sym, axis: Any) -> Sym:
    axes = _axes(c, axis)
    rank = None if x.rank is None else x.rank + len(axes)
    return c.op("Unsqueeze", [x, c.b.i64(list(axes))], x.dtype, rank)


def _expand_dims(c: Ctx, input: Any, axis: Any = None, name: Any = None, dim: Any = None) -> Sym:
    return _expand(c, c.tensor(input), dim if axis is None else axis)


def _squeeze_on(c: Ctx, x: Sym, axis: Any) -> Sym:
    axes = _axes(c, axis)
    if not axes:  # every size-1 axis, decided at run time as NumPy does
        return c.op("Squeeze", [x], x.dtype)
    rank = None if x.rank is None else x.rank - len(axes)
    return c.op("Squeeze", [x, c.b.i64(list(axes))], x.dtype, rank)


def _squeeze(c: Ctx, input: Any, axis: Any = None, name: Any = None,
             squeeze_dims: Any = None) -> Sym:
    return _squeeze_on(c, c.tensor(input), squeeze_dims if axis is None else axis)


def _shape(c: Ctx, input: Any, out_type: Any = None, name: Any = None) -> Sym:
    x = c.tensor(input)
    return c.cast(c.op("Shape", [x], np.int64, 1), rt._dtype(out_type or "int32"))


# ----- indexing --------------------------------------------------------------------------
def _bound(c: Ctx, v: Any) -> Any:
    if v is None or isinstance(v, Sym):
        return v
    return int(np.asarray(v))


def _index(c: Ctx, spec: Any) -> tuple:
    """One index element (as `ops.tfop._index` reads it) with tensors allowed as bounds:
    ("new",), ("ellipsis",), ("int", i) or ("slice", start, stop, step)."""
    if spec is None:
        return ("new",)
    if isinstance(spec, Sym):
        if spec.rank not in (0, None):
            raise c.fail(f"indexing with a tensor of rank {spec.rank}")
        return ("int", spec)
    if isinstance(spec, dict):
        cls = spec.get("class_name")
        if cls == "__ellipsis__":
            return ("ellipsis",)
        fields = spec.get("config", {}) if cls == "__slice__" else spec
        if set(fields) <= {"start", "stop", "step"}:
            return ("slice", *(_bound(c, fields.get(k)) for k in ("start", "stop", "step")))
    elif isinstance(spec, int) and not isinstance(spec, bool):
        return ("int", spec)
    elif rt._is_array(spec) and np.asarray(spec).ndim == 0 and np.asarray(spec).dtype.kind in "iu":
        return ("int", int(np.asarray(spec)))
    raise c.fail(f"index {spec!r}")


def _getitem(c: Ctx, tensor: Any, slice_spec: Any, var: Any = None) -> Sym:
    x = c.tensor(tensor)
    rank = c.rank_of(x)
    specs = [_index(c, s) for s in (slice_spec if isinstance(slice_spec, (list, tuple))
                                    else [slice_spec])]
    consumed = sum(s[0] in ("int", "slice") for s in specs)
    if sum(s[0] == "ellipsis" for s in specs) > 1 or consumed > rank:
        raise c.fail(f"index {slice_spec!r} for a rank-{rank} tensor")
    starts, ends, axes, steps = [], [], [], []
    gathers, squeezed, new_axes = [], [], []
    axis = out = 0
    for spec in specs:
        kind = spec[0]
        if kind == "ellipsis":
            axis += rank - consumed
            out += rank - consumed
        elif kind == "new":
            new_axes.append(out)
            out += 1
        elif kind == "int":
            i = spec[1]
            if isinstance(i, Sym):
                gathers.append((axis, i))
            else:
                starts.append(i)
                ends.append(i + 1 if i != -1 else INT64_MAX)
                axes.append(axis)
                steps.append(1)
            squeezed.append(axis)
            axis += 1
        else:
            start, stop, step = spec[1:]
            step = 1 if step is None else step
            if isinstance(step, Sym) or step == 0:
                raise c.fail("a slice step given as a tensor or zero")
            if (start, stop, step) != (None, None, 1):
                starts.append(start if start is not None else (0 if step > 0 else INT64_MAX))
                ends.append(stop if stop is not None else (INT64_MAX if step > 0 else INT64_MIN))
                axes.append(axis)
                steps.append(step)
            axis += 1
            out += 1
    y = x
    if axes:
        y = c.op("Slice", [y, c.i64(starts), c.i64(ends), c.b.i64(axes), c.b.i64(steps)],
                 x.dtype, rank)
    for ax, index in gathers:
        y = c.op("Gather", [y, c.i64([index])], x.dtype, rank, axis=ax)
    if squeezed:
        y = c.op("Squeeze", [y, c.b.i64(squeezed)], x.dtype, rank - len(squeezed))
    if new_axes:
        y = c.op("Unsqueeze", [y, c.b.i64(new_axes)], x.dtype, (y.rank or 0) + len(new_axes))
    if not (axes or gathers or squeezed or new_axes):
        y = c.op("Identity", [y], x.dtype, rank)
    return y


# ----- tf_keras TFOpLambda / SlicingOpLambda -----------------------------------------------
TF_FUNCTIONS: dict[str, Emit] = {
    "math.add": binary("add"), "__operators__.add": binary("add"),
    "math.subtract": binary("subtract"),
    "math.multiply": binary("multiply"),
    "math.truediv": binary("truediv"), "math.divide": binary("truediv"),
    "math.floordiv": binary("floordiv"), "compat.v1.floor_div": binary("floordiv"),
    "math.floormod": binary("mod"),
    "math.pow": binary("pow"),
    "math.maximum": binary("maximum"), "math.minimum": binary("minimum"),
    "math.negative": unary("negative"),
    "math.abs": unary("abs"),
    "math.sqrt": unary("sqrt"),
    "math.rsqrt": unary("rsqrt"),
    "math.exp": unary("exp"),
    "math.log": unary("log"),
    "math.square": unary("square"),
    "math.sigmoid": unary("sigmoid"), "nn.sigmoid": unary("sigmoid"),
    "math.tanh": unary("tanh"), "nn.tanh": unary("tanh"),
    "math.softplus": features("softplus"), "nn.softplus": features("softplus"),
    "nn.relu": features("relu"),
    "nn.relu6": features("relu6"),
    "nn.elu": features("elu"),
    "nn.selu": features("selu"),
    "nn.leaky_relu": _leaky_relu,
    "nn.gelu": _gelu,
    "nn.silu": _silu, "nn.swish": _silu,
    "nn.softmax": _softmax, "math.softmax": _softmax,
    "nn.log_softmax": _log_softmax, "math.log_softmax": _log_softmax,
    "math.add_n": _add_n,
    "math.reduce_sum": tf_reduce("sum"),
    "math.reduce_mean": tf_reduce("mean"),
    "math.reduce_max": tf_reduce("max"),
    "math.reduce_min": tf_reduce("min"),
    "math.reduce_prod": tf_reduce("prod"),
    "reshape": _reshape,
    "concat": _concat,
    "stack": _stack,
    "linalg.matmul": _matmul,
    "transpose": _transpose, "compat.v1.transpose": _transpose,
    "linalg.matrix_transpose": _matrix_transpose,
    "expand_dims": _expand_dims, "compat.v1.expand_dims": _expand_dims,
    "squeeze": _squeeze, "compat.v1.squeeze": _squeeze,
    "cast": _cast_to, "dtypes.cast": _cast_to,
    "clip_by_value": _clip,
    "shape": _shape, "compat.v1.shape": _shape,
    "__operators__.getitem": _getitem,
}



# ----- the converters ----------------------------------------------------------------------
def _substitute(c: Ctx, template: Any, xs: list[str]) -> Any:
    if isinstance(template, dict):
        if TENSOR in template and len(template) == 1:
            i = int(template[TENSOR])
            tid = c.node.inputs[i]
            return Sym(xs[i], c.b.dtype(tid), len(c.b.shape(tid)))
        return {k: _substitute(c, v, xs) for k, v in template.items()}
    if isinstance(template, list):
        return [_substitute(c, v, xs) for v in template]
    if isinstance(template, tuple):
        return tuple(_substitute(c, v, xs) for v in template)
    return template


def _call(b: OnnxBuilder, node: Node, xs: list[str], emit: Emit) -> str:
    c = Ctx(b, node)
    args, kwargs = rt._template(node.config)
    kwargs = {k: v for k, v in kwargs.items() if k != "name"}
    try:
        inspect.signature(emit).bind(c, *args, **kwargs)
    except TypeError as exc:
        raise c.fail(f"a call with arguments {list(kwargs) or args} ({exc})") from None
    y = emit(c, *_substitute(c, args, xs), **_substitute(c, kwargs, xs))
    want = b.dtype(node.outputs[0])
    if y.dtype != want:  # the NumPy kernel's result type is the contract
        y = c.cast(y, want)
    return b.op("Identity", [y.name], name=node.name)


@converter("TFOpLambda", "SlicingOpLambda")
def convert_tf_op_lambda(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    function = node.config.get("function")
    emit = TF_FUNCTIONS.get(function) if isinstance(function, str) else None
    if emit is None:
        raise UnsupportedLayer(
            f"layer '{node.name}' calls tf.{function}, which has no ONNX converter; nothing was "
            f"written. Converted: {', '.join('tf.' + f for f in sorted(TF_FUNCTIONS))}")
    return _call(b, node, xs, emit)
