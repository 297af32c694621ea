"""Plain tensor math recorded inside functional models.

tf_keras writes `TFOpLambda` / `SlicingOpLambda` layers for TensorFlow calls on Keras
tensors (`x * 2.0`, `tf.reshape`, `x[:, 1:3]`, ...): the config names the TF symbol
("math.multiply", "__operators__.getitem") and the arguments arrive through
`call_args` / `call_kwargs` with tensors as `{"__tensor__": i}`. Keras 3 records raw
`keras.ops` calls as operation nodes whose class lives in a `keras.src.ops.*` module;
the reader files those under `keras.ops.<Class>`. Both map onto one whitelist of NumPy
kernels: nothing from the file is ever executed. This module holds the kernels and the
tf_keras layers; `tfop_keras.py` the Keras 3 keras.ops table built on them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import ModelFormatError, UnsupportedLayer
from ..registry import register
from . import activations as act

F32 = np.float32
TENSOR = "__tensor__"
Kernel = Callable[..., Any]


# ----- argument handling -----------------------------------------------------------------

def _is_array(v: Any) -> bool:
    return isinstance(v, (np.ndarray, np.generic))


def _constant(v: Any, like: np.ndarray | None = None) -> np.ndarray:
    """A constant from the config as TensorFlow converts it: next to a tensor it takes the
    tensor's dtype (floats only for float tensors); alone, Python floats are float32."""
    arr = np.asarray(v)
    if like is not None and (like.dtype.kind == "f" or arr.dtype.kind in "iub"):
        return arr.astype(like.dtype)
    if arr.dtype == np.float64:
        return arr.astype(F32)
    if arr.dtype == np.int64:
        return arr.astype(np.int32)
    return arr


def _pair(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    if _is_array(x) and not _is_array(y):
        return np.asarray(x), _constant(y, np.asarray(x))
    if _is_array(y) and not _is_array(x):
        return _constant(x, np.asarray(y)), np.asarray(y)
    if not _is_array(x):
        return _constant(x), _constant(y)
    return np.asarray(x), np.asarray(y)


def _array(x: Any) -> np.ndarray:
    return np.asarray(x) if _is_array(x) else _constant(x)


def _axis(axis: Any) -> int | tuple[int, ...] | None:
    if axis is None or isinstance(axis, int):
        return axis
    if _is_array(axis):
        axis = np.asarray(axis).tolist()
        return axis if isinstance(axis, int) else tuple(axis)
    return tuple(int(a) for a in axis)


def _substitute(template: Any, inputs: Sequence[Any]) -> Any:
    if isinstance(template, dict):
        if TENSOR in template and len(template) == 1:
            return inputs[template[TENSOR]]
        return {k: _substitute(v, inputs) for k, v in template.items()}
    if isinstance(template, list):
        return [_substitute(v, inputs) for v in template]
    if isinstance(template, tuple):
        return tuple(_substitute(v, inputs) for v in template)
    return template


def _has_tensor(template: Any) -> bool:
    if isinstance(template, dict):
        return (TENSOR in template and len(template) == 1) or any(
            _has_tensor(v) for v in template.values())
    if isinstance(template, (list, tuple)):
        return any(_has_tensor(v) for v in template)
    return False


# ----- kernels ---------------------------------------------------------------------------

def _binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Kernel:
    def kernel(x: Any, y: Any, name: Any = None) -> np.ndarray:
        a, b = _pair(x, y)
        return fn(a, b)

    return kernel


def _unary(fn: Callable[[np.ndarray], np.ndarray]) -> Kernel:
    def kernel(x: Any, name: Any = None) -> np.ndarray:
        return fn(_array(x))

    return kernel


def _truediv(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """TF true division: integer operands become float32 (8/16 bit) or float64 first."""
    if x.dtype.kind in "iub":
        dtype = F32 if x.dtype.itemsize <= 2 else np.float64
        x, y = x.astype(dtype), y.astype(dtype)
    return np.true_divide(x, y)


def _floordiv(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.floor(x / y) if x.dtype.kind == "f" else np.floor_divide(x, y)


def _rsqrt(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return x.dtype.type(1) / np.sqrt(x)


def _math(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    def safe(x: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return fn(x)

    return safe


def _reduce(fn: Callable[..., np.ndarray]) -> Kernel:
    def kernel(input_tensor: Any, axis: Any = None, keepdims: bool | None = None,
               name: Any = None, reduction_indices: Any = None,
               keep_dims: bool | None = None) -> np.ndarray:
        if axis is None:
            axis = reduction_indices
        keep = bool(keepdims if keepdims is not None else keep_dims)
        return np.asarray(fn(_array(input_tensor), axis=_axis(axis), keepdims=keep))

    return kernel


def _reduce_mean(x: np.ndarray, axis: Any, keepdims: bool) -> np.ndarray:
    if x.dtype.kind in "iu":  # TF averages integers with C integer division (toward zero)
        total = np.sum(x, axis=axis, keepdims=keepdims)
        count = x.size // max(total.size, 1)
        return (np.sign(total) * (np.abs(total) // count)).astype(x.dtype)
    return np.mean(x, axis=axis, keepdims=keepdims, dtype=x.dtype)


def _reshape(tensor: Any, shape: Any, name: Any = None) -> np.ndarray:
    if _is_array(shape):
        dims = [int(d) for d in np.asarray(shape).reshape(-1)]
    elif isinstance(shape, (list, tuple)):
        dims = [int(np.asarray(d)) for d in shape]
    else:
        dims = [int(shape)]
    return np.reshape(_array(tensor), dims)


def _concat(values: Sequence[Any], axis: Any, name: Any = None) -> np.ndarray:
    return np.concatenate([_array(v) for v in values], axis=int(axis))


def _stack(values: Sequence[Any], axis: int = 0, name: Any = None) -> np.ndarray:
    return np.stack([_array(v) for v in values], axis=int(axis))


def _matmul(a: Any, b: Any, transpose_a: bool = False, transpose_b: bool = False,
            adjoint_a: bool = False, adjoint_b: bool = False, a_is_sparse: bool = False,
            b_is_sparse: bool = False, output_type: Any = None, name: Any = None,
            grad_a: bool = False, grad_b: bool = False) -> np.ndarray:
    x, y = _pair(a, b)
    if transpose_a or adjoint_a:
        x = np.swapaxes(x, -1, -2)
    if transpose_b or adjoint_b:
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


def _transpose(a: Any, perm: Any = None, conjugate: bool = False, name: Any = None) -> np.ndarray:
    return np.transpose(_array(a), None if perm is None else [int(p) for p in perm])


def _expand_dims(input: Any, axis: Any = None, name: Any = None, dim: Any = None) -> np.ndarray:
    return np.expand_dims(_array(input), _axis(dim if axis is None else axis))


def _squeeze(input: Any, axis: Any = None, name: Any = None, squeeze_dims: Any = None) -> np.ndarray:
    axis = squeeze_dims if axis is None else axis
    if isinstance(axis, (list, tuple)) and not axis:
        axis = None
    return np.squeeze(_array(input), _axis(axis))


def _softmax(logits: Any, axis: Any = None, name: Any = None, dim: Any = None) -> np.ndarray:
    axis = dim if axis is None else axis
    return act.softmax(_array(logits), -1 if axis is None else int(axis))


def _log_softmax(logits: Any, axis: Any = None, name: Any = None) -> np.ndarray:
    return act.log_softmax(_array(logits), -1 if axis is None else int(axis))


def _dtype(dtype: Any) -> np.dtype:
    if isinstance(dtype, dict):  # a serialized tf.DType
        dtype = dtype.get("config", dtype).get("name", dtype)
    try:
        return np.dtype(str(dtype))
    except TypeError:
        raise UnsupportedLayer(f"cast to dtype {dtype!r} is not supported") from None


def _cast(x: Any, dtype: Any, name: Any = None) -> np.ndarray:
    return _array(x).astype(_dtype(dtype))


def _clip(t: Any, clip_value_min: Any, clip_value_max: Any, name: Any = None) -> np.ndarray:
    x = _array(t)
    return np.maximum(np.minimum(x, _constant(clip_value_max, x)), _constant(clip_value_min, x))


def _features(fn: Callable[[np.ndarray], np.ndarray]) -> Kernel:
    def kernel(features: Any, name: Any = None) -> np.ndarray:
        return fn(_array(features))

    return kernel


def _leaky_relu(features: Any, alpha: float = 0.2, name: Any = None) -> np.ndarray:
    return act.relu(_array(features), negative_slope=float(alpha))


def _gelu(features: Any, approximate: bool = False, name: Any = None) -> np.ndarray:
    return act.gelu(_array(features), bool(approximate))


def _silu(features: Any, beta: float = 1.0, name: Any = None) -> np.ndarray:
    x = _array(features)
    return x * act.sigmoid(x * x.dtype.type(beta))


def _add_n(inputs: Sequence[Any], name: Any = None) -> np.ndarray:
    arrays = [_array(v) for v in inputs]
    total = arrays[0]
    for a in arrays[1:]:
        total = total + a
    return total


def _tf_shape(input: Any, out_type: Any = None, name: Any = None) -> np.ndarray:
    return np.asarray(_array(input).shape, dtype=_dtype(out_type or "int32"))


def _index(spec: Any) -> Any:
    """One serialized index element as a Python index (slices from tf_keras or Keras 3 dicts)."""
    if spec is None:
        return np.newaxis
    if isinstance(spec, dict):
        cls = spec.get("class_name")
        if cls == "__ellipsis__":
            return Ellipsis
        fields = spec.get("config", {}) if cls == "__slice__" else spec
        if set(fields) <= {"start", "stop", "step"}:
            return slice(*(_scalar(fields.get(k)) for k in ("start", "stop", "step")))
        raise UnsupportedLayer(f"index {spec!r} is not a slice, integer, ellipsis or newaxis")
    if isinstance(spec, bool):
        raise UnsupportedLayer("boolean indexing in a slicing op is not supported")
    if _is_array(spec):
        value = np.asarray(spec)
        if value.ndim == 0 and value.dtype.kind in "iu":
            return int(value)
        raise UnsupportedLayer(f"indexing with a tensor of shape {value.shape} is not supported")
    if isinstance(spec, int):
        return spec
    raise UnsupportedLayer(f"index {spec!r} is not a slice, integer, ellipsis or newaxis")


def _scalar(v: Any) -> Any:
    return None if v is None else int(np.asarray(v))


def _key(spec: Any) -> Any:
    if isinstance(spec, (list, tuple)):
        return tuple(_index(s) for s in spec)
    return _index(spec)


def _getitem(tensor: Any, slice_spec: Any, var: Any = None) -> np.ndarray:
    return np.asarray(_array(tensor)[_key(slice_spec)])


# ----- tf_keras TFOpLambda / SlicingOpLambda -----------------------------------------------

_add = _binary(np.add)
_subtract = _binary(np.subtract)
_multiply = _binary(np.multiply)
_divide = _binary(_truediv)

TF_FUNCTIONS: dict[str, Kernel] = {
    "math.add": _add, "__operators__.add": _add,
    "math.subtract": _subtract,
    "math.multiply": _multiply,
    "math.truediv": _divide, "math.divide": _divide,
    "math.floordiv": _binary(_floordiv), "compat.v1.floor_div": _binary(_floordiv),
    "math.floormod": _binary(np.mod),
    "math.pow": _binary(np.power),
    "math.maximum": _binary(np.maximum), "math.minimum": _binary(np.minimum),
    "math.negative": _unary(np.negative),
    "math.abs": _unary(np.abs),
    "math.sqrt": _unary(_math(np.sqrt)),
    "math.rsqrt": _unary(_rsqrt),
    "math.exp": _unary(_math(np.exp)),
    "math.log": _unary(_math(np.log)),
    "math.square": _unary(np.square),
    "math.sigmoid": _unary(act.sigmoid), "nn.sigmoid": _unary(act.sigmoid),
    "math.tanh": _unary(np.tanh), "nn.tanh": _unary(np.tanh),
    "math.softplus": _features(act.softplus), "nn.softplus": _features(act.softplus),
    "nn.relu": _features(lambda x: np.maximum(x, x.dtype.type(0))),
    "nn.relu6": _features(lambda x: np.clip(x, x.dtype.type(0), x.dtype.type(6))),
    "nn.elu": _features(act.elu),
    "nn.selu": _features(act.selu),
    "nn.leaky_relu": _leaky_relu,
    "nn.gelu": _gelu,
    "nn.silu": _silu, "nn.swish": _silu,
    "nn.softmax": _softmax, "math.softmax": _softmax,
    "nn.log_softmax": _log_softmax, "math.log_softmax": _log_softmax,
    "math.add_n": _add_n,
    "math.reduce_sum": _reduce(np.sum),
    "math.reduce_mean": _reduce(_reduce_mean),
    "math.reduce_max": _reduce(np.max),
    "math.reduce_min": _reduce(np.min),
    "math.reduce_prod": _reduce(np.prod),
    "reshape": _reshape,
    "concat": _concat,
    "stack": _stack,
    "linalg.matmul": _matmul,
    "transpose": _transpose, "compat.v1.transpose": _transpose,
    "linalg.matrix_transpose": lambda a, name=None, conjugate=False: np.swapaxes(_array(a), -1, -2),
    "expand_dims": _expand_dims, "compat.v1.expand_dims": _expand_dims,
    "squeeze": _squeeze, "compat.v1.squeeze": _squeeze,
    "cast": _cast, "dtypes.cast": _cast,
    "clip_by_value": _clip,
    "shape": _tf_shape, "compat.v1.shape": _tf_shape,
    "__operators__.getitem": _getitem,
}


def _bind_check(kernel: Kernel, args: list, kwargs: dict, where: str) -> None:
    try:
        inspect.signature(kernel).bind(*args, **kwargs)
    except TypeError as exc:
        raise UnsupportedLayer(f"{where}: arguments {list(kwargs) or args} are not supported "
                               f"({exc})") from None


def _template(config: dict[str, Any]) -> tuple[list, dict]:
    args = config.get("call_args")
    kwargs = config.get("call_kwargs") or {}
    if args is None:
        args = [{TENSOR: 0}]
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ModelFormatError(f"layer '{config.get('name', '')}': malformed call arguments")
    return _constants(list(args)), _constants(dict(kwargs))


def _constants(template: Any) -> Any:
    """Constant tensors in Keras 3 call arguments (`{"class_name": "__tensor__", "config":
    {"value": ..., "dtype": ...}}`, e.g. `x + keras.ops.eye(3)`) as arrays."""
    if isinstance(template, dict):
        if template.get("class_name") in ("__tensor__", "__numpy__") and "config" in template:
            inner = template["config"]
            return np.asarray(inner.get("value"), dtype=inner.get("dtype"))
        return {k: _constants(v) for k, v in template.items()}
    if isinstance(template, list):
        return [_constants(v) for v in template]
    return template


def _compile_call(kernel: Kernel, args: list, kwargs: dict, where: str) -> Callable[..., Any]:
    """`run(*inputs)` that fills the argument templates and calls the kernel."""
    kwargs = {k: v for k, v in kwargs.items() if k != "name"}
    _bind_check(kernel, args, kwargs, where)
    if not _has_tensor(args) and not _has_tensor(kwargs):
        raise ModelFormatError(f"{where}: the call reads no tensor")

    def run(*inputs: Any) -> Any:
        out = kernel(*_substitute(args, inputs), **_substitute(kwargs, inputs))
        return np.asarray(out)

    return run


@register("TFOpLambda", "SlicingOpLambda")
def build_tf_op_lambda(config: dict, weights: dict) -> Callable[..., Any]:
    name = config.get("name", "")
    function = config.get("function")
    kernel = TF_FUNCTIONS.get(function) if isinstance(function, str) else None
    if kernel is None:
        raise UnsupportedLayer(
            f"layer '{name}' calls TensorFlow function 'tf.{function}', which tfless does not "
            f"support. Supported functions: {', '.join('tf.' + f for f in sorted(TF_FUNCTIONS))}"
        )
    args, kwargs = _template(config)
    return _compile_call(kernel, args, kwargs, f"layer '{name}' (tf.{function})")
