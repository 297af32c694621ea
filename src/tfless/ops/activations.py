"""Activation functions (by Keras name) and the activation layers built on them."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import UnsupportedLayer
from ..registry import register
from . import compiled

Fn = Callable[[np.ndarray], np.ndarray]
F32 = np.float32


def sigmoid(x: np.ndarray) -> np.ndarray:
    # exp of a non-positive number never overflows
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


POS_INF = F32(np.inf)


# Below this many elements a ufunc call beats np.clip (whose wrapper dominates).
SMALL_ARRAY = 4096


def mean_f32(x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """np.mean(x, axes, keepdims, dtype=float32) by its own steps (a float32 sum, then a
    divide by the count), without its wrapper, which costs more than the sum on small
    arrays (global pooling or LayerNormalization at batch 1)."""
    count = math.prod(x.shape[a] for a in axes)
    return np.add.reduce(x, axis=axes, keepdims=keepdims, dtype=F32) / count


def relu_plain(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """max(x, 0), NaN kept. For float32, np.clip's loop is 2-3x faster than np.maximum's
    (NumPy 2.x on AVX-512) and gives the same bits, but its Python wrapper costs ~5 us a
    call, so small arrays take np.maximum."""
    if x.dtype == F32 and x.size > SMALL_ARRAY:
        return np.clip(x, F32(0), POS_INF, out=out)
    return np.maximum(x, F32(0), out=out)


def softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(F32(0), x).astype(x.dtype, copy=False)


def relu(
    x: np.ndarray, negative_slope: float = 0.0, max_value: float | None = None,
    threshold: float = 0.0,
) -> np.ndarray:
    """Keras's generalized relu (ReLU layer / activations.relu) with its exact branch order."""
    if negative_slope == 0.0 and max_value is None and threshold == 0.0:
        return relu_plain(x)
    if negative_slope != 0.0 and max_value is None and threshold == 0.0:
        return np.where(x >= 0, x, x * F32(negative_slope))
    negative_part = np.maximum(F32(threshold) - x, F32(0))
    if threshold != 0.0:
        y = np.where(x > F32(threshold), x, F32(0))
    else:
        y = np.maximum(x, F32(0))
    if max_value is not None:
        y = np.clip(y, F32(0), F32(max_value))
    if negative_slope != 0.0:
        y = y - F32(negative_slope) * negative_part
    return y


def elu(x: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    return np.where(x > 0, x, F32(alpha) * np.expm1(np.minimum(x, F32(0))))


def selu(x: np.ndarray) -> np.ndarray:
    alpha, scale = F32(1.6732632423543772), F32(1.0507009873554805)
    return scale * elu(x, alpha)


def celu(x: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    a = F32(alpha)
    return np.maximum(x, F32(0)) + np.minimum(F32(0), a * np.expm1(x / a))


def erf(x: np.ndarray) -> np.ndarray:
    """erf to ~1e-7 absolute (Abramowitz & Stegun 7.1.26 evaluated in float64)."""
    z = np.abs(x.astype(np.float64))
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    y = 1.0 - poly * np.exp(-z * z)
    return (np.sign(x) * y).astype(x.dtype)


def gelu(x: np.ndarray, approximate: bool = False) -> np.ndarray:
    if approximate:
        c = F32(np.sqrt(2.0 / np.pi))
        return F32(0.5) * x * (F32(1) + np.tanh(c * (x + F32(0.044715) * x**3)))
    return F32(0.5) * x * (F32(1) + erf(x / F32(np.sqrt(2.0))))


def softmax(x: np.ndarray, axis: int | tuple[int, ...] = -1) -> np.ndarray:
    if axis in (-1, x.ndim - 1) and compiled.rows_wanted(x):
        return compiled.softmax(x)  # attention logits: one pass per row (ops/compiled.py)
    # the ufuncs' own reduce and in-place steps: np.max/np.sum wrappers cost ~5 us each,
    # which is most of a small softmax
    e = x - np.maximum.reduce(x, axis=axis, keepdims=True)
    if e.dtype.kind != "f":
        e = np.exp(e)
        return e / np.add.reduce(e, axis=axis, keepdims=True)
    np.exp(e, out=e)
    e /= np.add.reduce(e, axis=axis, keepdims=True)
    return e


def log_softmax(x: np.ndarray, axis: int | tuple[int, ...] = -1) -> np.ndarray:
    s = x - np.max(x, axis=axis, keepdims=True)
    return s - np.log(np.sum(np.exp(s), axis=axis, keepdims=True))


def hard_sigmoid_keras3(x: np.ndarray) -> np.ndarray:
    return np.clip(x + F32(3), F32(0), F32(6)) / F32(6)


def hard_sigmoid_keras2(x: np.ndarray) -> np.ndarray:
    return np.clip(F32(0.2) * x + F32(0.5), F32(0), F32(1))


def glu(x: np.ndarray, axis: int = -1) -> np.ndarray:
    if x.shape[axis] % 2:
        raise UnsupportedLayer(f"glu needs an even size on axis {axis}, got shape {x.shape}")
    a, b = np.split(x, 2, axis=axis)
    return a * sigmoid(b)


def sparse_sigmoid(x: np.ndarray) -> np.ndarray:
    return np.where(x <= -1, F32(0), np.where(x >= 1, F32(1), F32(0.5) * (x + F32(1)))).astype(
        x.dtype, copy=False)


def sparsemax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Keras's sparsemax: project onto the simplex through the sorted cumulative sums."""
    ordered = -np.sort(-x, axis=axis)
    cumsum = np.cumsum(ordered, axis=axis, dtype=x.dtype)
    shape = [1] * x.ndim
    shape[axis] = -1
    r = np.arange(1, x.shape[axis] + 1, dtype=x.dtype).reshape(shape)
    support = ordered - (cumsum - F32(1)) / r > 0
    k = np.sum(support, axis=axis, keepdims=True, dtype=x.dtype)
    tau = (np.sum(np.where(support, cumsum, F32(0)), axis=axis, keepdims=True) - F32(1)) / k
    return np.maximum(x - tau, F32(0)).astype(x.dtype, copy=False)


def _shrink(x: np.ndarray, t: float, soft: bool) -> np.ndarray:
    keep = np.abs(x) > F32(t)
    return np.where(keep, x - np.sign(x) * F32(t) if soft else x, F32(0))


ACTIVATIONS: dict[str, Fn] = {
    "linear": lambda x: x,
    "relu": relu,
    "relu6": lambda x: np.clip(x, F32(0), F32(6)),
    "leaky_relu": lambda x: relu(x, negative_slope=0.2),
    "elu": elu,
    "selu": selu,
    "celu": celu,
    "gelu": gelu,
    "gelu_approximate": lambda x: gelu(x, approximate=True),
    "silu": lambda x: x * sigmoid(x),
    "swish": lambda x: x * sigmoid(x),
    "hard_sigmoid": hard_sigmoid_keras3,
    "hard_sigmoid_keras2": hard_sigmoid_keras2,
    "hard_silu": lambda x: x * hard_sigmoid_keras3(x),
    "hard_swish": lambda x: x * hard_sigmoid_keras3(x),
    "sigmoid": sigmoid,
    "log_sigmoid": lambda x: -softplus(-x),
    "tanh": np.tanh,
    "hard_tanh": lambda x: np.clip(x, F32(-1), F32(1)),
    "tanh_shrink": lambda x: x - np.tanh(x),
    "softmax": softmax,
    "log_softmax": log_softmax,
    "softplus": softplus,
    "softsign": lambda x: x / (F32(1) + np.abs(x)),
    "squareplus": lambda x: (x + np.sqrt(x * x + F32(4))) / F32(2),
    "sparse_plus": lambda x: np.where(
        x <= -1, F32(0), np.where(x >= 1, x, (x + F32(1)) ** 2 / F32(4))
    ),
    "soft_shrink": lambda x: _shrink(x, 0.5, soft=True),
    "hard_shrink": lambda x: _shrink(x, 0.5, soft=False),
    "exponential": np.exp,
    "mish": lambda x: x * np.tanh(softplus(x)),
    "glu": glu,
    "sparse_sigmoid": sparse_sigmoid,
    "sparsemax": sparsemax,
}


def activation_name(spec: Any) -> str:
    """The Keras identifier of an activation as stored in a config (str or serialized dict)."""
    if spec is None:
        return "linear"
    if isinstance(spec, str):
        return spec
    if isinstance(spec, dict):
        inner = spec.get("config")
        if isinstance(inner, str):
            return inner
        if isinstance(inner, dict) and isinstance(inner.get("name"), str):
            return inner["name"]
        if isinstance(spec.get("class_name"), str):
            return spec["class_name"]
    raise UnsupportedLayer(f"activation {spec!r} is not a built-in Keras activation")


def get_activation(spec: Any, layer: str = "") -> Fn:
    """The NumPy function for a config's `activation` value."""
    try:
        name = activation_name(spec)
    except UnsupportedLayer as exc:
        raise UnsupportedLayer(f"layer '{layer}': {exc}" if layer else str(exc)) from None
    try:
        return ACTIVATIONS[name]
    except KeyError:
        where = f"layer '{layer}': " if layer else ""
        raise UnsupportedLayer(
            f"{where}activation '{name}' is not supported (custom activations cannot be "
            f"loaded). Supported: {', '.join(sorted(ACTIVATIONS))}"
        ) from None


def is_linear(spec: Any) -> bool:
    return activation_name(spec) == "linear"


@register("Activation", mask="keep")
def build_activation(config: dict, weights: dict) -> Fn:
    return get_activation(config.get("activation"), config.get("name", ""))


@register("ReLU", mask="keep")
def build_relu(config: dict, weights: dict) -> Fn:
    slope = float(config.get("negative_slope") or 0.0)
    max_value = config.get("max_value")
    max_value = None if max_value is None else float(max_value)
    threshold = float(config.get("threshold") or 0.0)
    return lambda x: relu(x, slope, max_value, threshold)


@register("LeakyReLU", mask="keep")
def build_leaky_relu(config: dict, weights: dict) -> Fn:
    slope = config.get("negative_slope", config.get("alpha", 0.3))
    return lambda x: relu(x, negative_slope=float(slope))


@register("ELU", mask="keep")
def build_elu(config: dict, weights: dict) -> Fn:
    alpha = float(config.get("alpha", 1.0))
    return lambda x: elu(x, alpha)


@register("ThresholdedReLU", mask="keep")
def build_thresholded_relu(config: dict, weights: dict) -> Fn:
    theta = F32(config.get("theta", 1.0))
    return lambda x: np.where(x > theta, x, F32(0))


LARGE_NEGATIVE = F32(-1e9)


def masked_softmax(x: np.ndarray, mask: np.ndarray | None, axes: tuple[int, ...],
                   keras3: bool, robust: bool = False) -> np.ndarray:
    """Keras's `Softmax` layer with an optional mask (broadcastable to `x`).

    Keras 3 keeps the scores where `mask` (bool, or > 0.5) holds, puts -1e9 elsewhere and
    zeroes the masked outputs afterwards, so a fully masked row comes out as zeros.
    tf_keras adds `(1 - mask) * -1e9` (its `robust_masking` option replaces instead) and
    leaves a fully masked row uniform. Several axes use exp(x - logsumexp(x)), as Keras does.
    """
    if mask is not None:
        mask = np.asarray(mask)
        if keras3 or robust:
            keep = mask if mask.dtype == bool else mask > 0.5
            x = np.where(keep, x, LARGE_NEGATIVE).astype(F32, copy=False)
        else:
            x = x + (F32(1) - mask.astype(F32)) * LARGE_NEGATIVE
    if len(axes) > 1:
        peak = np.max(x, axis=axes, keepdims=True)
        out = np.exp(x - (peak + np.log(np.sum(np.exp(x - peak), axis=axes, keepdims=True))))
    else:
        out = softmax(x, axis=axes[0])
    if mask is not None and keras3:
        out = np.where(keep, out, F32(0))
    return out.astype(F32, copy=False)


def _softmax_call(config: dict) -> tuple[int, int | None]:
    """Positions of the logits and of an explicit `mask=` among a Softmax call's inputs."""
    args = config.get("call_args") or [{"__tensor__": 0}]
    kwargs = config.get("call_kwargs") or {}
    explicit = kwargs.get("mask", args[1] if len(args) > 1 else None)
    first = args[0]
    if not (isinstance(first, dict) and "__tensor__" in first):
        raise UnsupportedLayer(
            f"layer '{config.get('name', '')}': Softmax is called on {str(first)[:80]}, "
            "expected one tensor"
        )
    if explicit is not None and not (isinstance(explicit, dict) and "__tensor__" in explicit):
        raise UnsupportedLayer(
            f"layer '{config.get('name', '')}': Softmax `mask` must be a tensor "
            f"(got {str(explicit)[:80]})"
        )
    return int(first["__tensor__"]), None if explicit is None else int(explicit["__tensor__"])


def _softmax_masks(config: dict, inputs: list, masks: list) -> list:
    """The output carries the mask the layer applied (explicit `mask=` or the incoming one)."""
    pos, explicit = _softmax_call(config)
    if explicit is not None:
        return [np.asarray(inputs[explicit]).astype(bool)]
    return [masks[pos] if masks and len(masks) > pos else None]


@register("Softmax", mask=_softmax_masks, uses_mask=True)
def build_softmax_layer(config: dict, weights: dict) -> Fn:
    axis = config.get("axis", -1)
    axes = tuple(int(a) for a in axis) if isinstance(axis, (list, tuple)) else (int(axis),)
    keras3 = int(config.get("keras_major", 3)) >= 3
    robust = bool(config.get("robust_masking", False))
    pos, explicit = _softmax_call(config)

    def run(*inputs: np.ndarray, mask: list | None = None) -> np.ndarray:
        x = np.asarray(inputs[pos])
        if explicit is not None:
            m = inputs[explicit]
        else:
            m = mask[pos] if mask and len(mask) > pos else None
        return masked_softmax(x, m, axes, keras3, robust)

    return run


@register("PReLU", weights=("alpha",), mask="keep")
def build_prelu(config: dict, weights: dict) -> Fn:
    alpha = weights["alpha"]
    return lambda x: np.where(x >= 0, x, x * alpha)
