"""Normalization layers: batch, layer, group, unit and RMS normalization.

Formulas follow the Keras version that saved the file: statistics are float32 means of
squared deviations (as `tf.nn.moments`), epsilon is added to the variance inside the
square root, and where tf_keras takes its fused kernel the output is computed in the
order that kernel uses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InputError, ModelFormatError, UnsupportedLayer
from ..registry import register
from . import compiled
from .activations import mean_f32

F32 = np.float32
# tf_keras silently switches to its fused kernels only above this epsilon
FUSED_MIN_EPSILON = 1.001e-5


def resolve_axes(axis: int | Sequence[int], ndim: int, layer: str) -> list[int]:
    """Non-negative axes, in the order given; errors name the layer."""
    axes = [axis] if isinstance(axis, int) else list(axis)
    out = []
    for a in axes:
        a = int(a)
        if not -ndim <= a < ndim:
            raise InputError(
                f"layer '{layer}': axis {axis} is out of range for an input of rank {ndim}"
            )
        out.append(a % ndim)
    return out


def broadcast_param(param: np.ndarray, shape: tuple[int, ...], axes: Sequence[int]) -> np.ndarray:
    """Reshape a per-axis parameter so it broadcasts against an input of `shape`.

    Keras reshapes (never transposes) the stored values into the input's sizes at
    `axes` and 1 elsewhere; parameters stored with the input's full rank pass through.
    """
    if param.ndim == len(shape):
        return param
    return param.reshape([shape[d] if d in axes else 1 for d in range(len(shape))])


def _moments(x: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    mean = mean_f32(x, axes, keepdims=True)
    centred = x - mean
    np.square(centred, out=centred)
    variance = mean_f32(centred, axes, keepdims=True)
    return mean, variance


def _as_float(x: np.ndarray) -> np.ndarray:
    return x if x.dtype == F32 else np.asarray(x, dtype=F32)


def _check_param(layer: str, name: str, param: np.ndarray, size: int | None) -> None:
    if size is not None and param.size != size:
        raise ModelFormatError(
            f"layer '{layer}': weight '{name}' has shape {param.shape}, expected {size} values"
        )


# ----- BatchNormalization ----------------------------------------------------------------

def _batch_norm_weights(config: dict[str, Any]) -> list[str]:
    names = []
    if config.get("scale", True):
        names.append("gamma")
    if config.get("center", True):
        names.append("beta")
    names += ["moving_mean", "moving_variance"]
    if config.get("renorm"):
        names += ["moving_stddev", "renorm_mean", "renorm_stddev"]
    return names


def _virtual_batch_param(param: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    """tf_keras stores virtual-batch parameters with an extra axis 1; inference ignores it."""
    if config.get("virtual_batch_size") and param.ndim > 1:
        return np.squeeze(param, axis=1)
    return param


@register("BatchNormalization", weights=_batch_norm_weights, mask="keep")
def build_batch_normalization(config: dict, weights: dict) -> Any:
    name = config.get("name", "")
    mode = config.get("mode", 0)
    if mode != 0:
        raise UnsupportedLayer(
            f"layer '{name}': Keras 1 BatchNormalization mode={mode} (sample-wise or "
            "batch-statistics normalization) is not supported; only mode=0 (feature-wise, "
            "moving statistics at inference) is"
        )
    epsilon = F32(config.get("epsilon", 1e-3))
    axis = config.get("axis", -1)
    if config.get("virtual_batch_size") and isinstance(axis, list):
        # saved after build, counting the virtual-batch axis tf_keras inserts at 1
        axis = [a - 1 if a > 0 else a for a in axis]
    mean = _virtual_batch_param(weights["moving_mean"], config)
    variance = _virtual_batch_param(weights["moving_variance"], config)
    gamma = weights.get("gamma")
    beta = weights.get("beta")
    size = mean.size
    for label, param in (("moving_variance", variance), ("gamma", gamma), ("beta", beta)):
        if param is not None:
            _check_param(name, label, param, size)
    # tf.nn.batch_normalization: x * inv + (beta - mean * inv), inv = rsqrt(var + eps) * gamma
    inv = F32(1) / np.sqrt(variance + epsilon)
    if gamma is not None:
        inv = inv * _virtual_batch_param(gamma, config)
    offset = np.zeros_like(mean) if beta is None else _virtual_batch_param(beta, config)
    shift = offset - mean * inv
    inv, shift, mean, offset = (a.astype(F32) for a in (inv, shift, mean, offset))
    may_fuse = (config.get("keras_major") == 2 and config.get("fused") is not False
                and not config.get("renorm") and not config.get("virtual_batch_size"))

    def fused(axes: list[int], ndim: int) -> bool:
        """tf_keras runs 4D/5D inputs normalized on axis 1 or the last one through its fused
        kernel, which subtracts the mean first."""
        return may_fuse and ndim in (4, 5) and len(axes) == 1 and axes[0] in (1, ndim - 1)

    shaped: dict[tuple[int, ...], Any] = {}  # input shape -> how to compute it

    def prepared(shape: tuple[int, ...]) -> Any:
        if len(shaped) >= 64:  # many shapes (sequence lengths): bounded, rebuilt on demand
            shaped.clear()
        axes = resolve_axes(axis, len(shape), name)
        if fused(axes, len(shape)):
            how: Any = ("fused", *(broadcast_param(p, shape, axes) for p in (inv, mean, offset)))
        elif axes == [len(shape) - 1] and shape[-1] == inv.size < WIDE_ROWS:
            how = ("rows", *_tiled_rows(shape, inv, shift))
        else:
            how = ("broadcast", broadcast_param(inv, shape, axes),
                   broadcast_param(shift, shape, axes))
        shaped[shape] = how
        return how

    # Keras 3 records the mask it passes to `call(mask=...)` as a second input; inference
    # with moving statistics does not read it.
    def run(x: np.ndarray, *mask_input: np.ndarray) -> np.ndarray:
        x = _as_float(x)
        kind, a, b, *rest = shaped.get(x.shape) or prepared(x.shape)
        if kind == "fused":
            return (x - b) * a + rest[0]
        if kind == "rows":  # the same products and sums, over wider rows
            y = x.reshape(-1, a.size) * a
            y += b
            return y.reshape(x.shape)
        y = x * a
        y += b  # in place: the same sums as x * a + b, one array fewer
        return y

    return run


# NumPy broadcasts a per-channel parameter over the last axis one row of channels at a time,
# so with few channels its per-row overhead dominates: x * scale + shift over 32x8x8x16 took
# 37 us, over the same values as rows of 128 (the parameters tiled 8 times) 16 us.
WIDE_ROWS = 128


def _tiled_rows(shape: tuple[int, ...], scale: np.ndarray, shift: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (last axis) parameters tiled over as many pixels (a power of two dividing
    the pixel count of `shape`) as fit in a row of WIDE_ROWS values."""
    channels = scale.size
    pixels = math.prod(shape) // max(channels, 1)
    reps = 1
    while reps * 2 * channels <= WIDE_ROWS and pixels % (reps * 2) == 0:
        reps *= 2
    return np.tile(scale.reshape(-1), reps), np.tile(shift.reshape(-1), reps)


# ----- LayerNormalization ------------------------------------------------------------------

def _layer_norm_weights(config: dict[str, Any]) -> list[str]:
    rms = bool(config.get("rms_scaling"))
    names = []
    if config.get("scale", True) or rms:
        names.append("gamma")
    if config.get("center", True) and not rms:
        names.append("beta")
    return names


@register("LayerNormalization", weights=_layer_norm_weights, mask="keep")
def build_layer_normalization(config: dict, weights: dict) -> Any:
    name = config.get("name", "")
    epsilon = F32(config.get("epsilon", 1e-3))
    axis = config.get("axis", -1)
    rms_scaling = bool(config.get("rms_scaling"))
    gamma = weights.get("gamma")
    beta = weights.get("beta")
    keras2 = "keras_major" in config

    def fused(axes: list[int], ndim: int) -> bool:
        # tf_keras's fused kernel: contiguous trailing axes and epsilon >= 1.001e-5
        ordered = sorted(axes)
        return (keras2 and ordered[-1] == ndim - 1 and ordered[-1] - ordered[0] == len(axes) - 1
                and float(epsilon) >= FUSED_MIN_EPSILON)

    shaped: dict[tuple[int, ...], tuple] = {}  # input shape -> axes, reduce, gamma, beta

    def prepared(shape: tuple[int, ...]) -> tuple:
        if shape not in shaped:
            if len(shaped) >= 64:  # many sequence lengths: bounded, rebuilt on demand
                shaped.clear()
            axes = resolve_axes(axis, len(shape), name)
            shaped[shape] = (axes, tuple(sorted(axes)),
                             None if gamma is None else broadcast_param(gamma, shape, axes),
                             None if beta is None else broadcast_param(beta, shape, axes))
        return shaped[shape]

    def run(x: np.ndarray) -> np.ndarray:
        x = _as_float(x)
        axes, reduce, g, b = prepared(x.shape)
        if reduce == (x.ndim - 1,) and not rms_scaling and not fused(axes, x.ndim) \
                and compiled.rows_wanted(x):
            return compiled.layer_norm(x, gamma, beta, float(epsilon))
        mean, variance = _moments(x, reduce)
        inv = F32(1) / np.sqrt(variance + epsilon)
        if rms_scaling:
            y = x * inv
            return y * g if g is not None else y
        if fused(axes, x.ndim):
            y = (x - mean) * inv
            if g is not None:
                y = y * g
            return y + b if b is not None else y
        if g is not None:
            inv = inv * g
        shift = -mean * inv
        if b is not None:
            shift = shift + b
        y = x * inv
        y += shift  # in place: the same sums as x * inv + shift, one allocation fewer
        return y

    return run


# ----- GroupNormalization ------------------------------------------------------------------

def _center_scale_weights(config: dict[str, Any]) -> list[str]:
    names = []
    if config.get("scale", True):
        names.append("gamma")
    if config.get("center", True):
        names.append("beta")
    return names


@register("GroupNormalization", weights=_center_scale_weights, mask="keep")
def build_group_normalization(config: dict, weights: dict) -> Any:
    name = config.get("name", "")
    groups = int(config.get("groups", 32))
    epsilon = F32(config.get("epsilon", 1e-3))
    axis = int(config.get("axis", -1))
    gamma = weights.get("gamma")
    beta = weights.get("beta")

    def run(x: np.ndarray) -> np.ndarray:
        x = _as_float(x)
        a = resolve_axes(axis, x.ndim, name)[0]
        channels = x.shape[a]
        g = channels if groups == -1 else groups
        if g <= 0 or channels % g:
            raise InputError(
                f"layer '{name}': {channels} channels cannot be split into groups={groups}"
            )
        grouped_shape = x.shape[:a] + (g, channels // g) + x.shape[a + 1:]
        grouped = x.reshape(grouped_shape)
        reduce = tuple(i for i in range(1, grouped.ndim) if i != a)
        mean, variance = _moments(grouped, reduce)
        inv = F32(1) / np.sqrt(variance + epsilon)
        param_shape = [1] * grouped.ndim
        param_shape[a], param_shape[a + 1] = g, channels // g
        if gamma is not None:
            inv = inv * gamma.reshape(param_shape)
        shift = -mean * inv
        if beta is not None:
            shift = shift + beta.reshape(param_shape)
        return (grouped * inv + shift).reshape(x.shape)

    return run


# ----- UnitNormalization and RMSNormalization ------------------------------------------------

@register("UnitNormalization", mask="keep")
def build_unit_normalization(config: dict, weights: dict) -> Any:
    name = config.get("name", "")
    axis = config.get("axis", -1)
    keras2 = "keras_major" in config

    def run(x: np.ndarray) -> np.ndarray:
        x = _as_float(x)
        axes = tuple(resolve_axes(axis, x.ndim, name))
        square_sum = np.sum(np.square(x), axis=axes, keepdims=True, dtype=F32)
        if keras2:  # tf.linalg.l2_normalize: rsqrt(max(sum, 1e-12))
            inv = F32(1) / np.sqrt(np.maximum(square_sum, F32(1e-12)))
        else:  # keras.ops.normalize: min(rsqrt(sum), 1 / 1e-12)
            with np.errstate(divide="ignore"):
                inv = np.minimum(F32(1) / np.sqrt(square_sum), F32(1e12))
        return x * inv

    return run


@register("RMSNormalization", weights=("scale",))
def build_rms_normalization(config: dict, weights: dict) -> Any:
    name = config.get("name", "")
    axis = config.get("axis", -1)
    epsilon = F32(config.get("epsilon", 1e-6))
    scale = weights["scale"]

    def run(x: np.ndarray) -> np.ndarray:
        x = _as_float(x)
        axes = resolve_axes(axis, x.ndim, name)
        mean_square = np.mean(np.square(x), axis=tuple(sorted(axes)), keepdims=True, dtype=F32)
        y = x * (F32(1) / np.sqrt(mean_square + epsilon))
        # Keras multiplies by the stored scale as is (trailing-axis broadcasting)
        return y * scale

    return run
