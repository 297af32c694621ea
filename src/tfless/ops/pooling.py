"""Pooling layers: max/average pooling and their global forms, 1D/2D/3D.

Windowed pooling runs channels-last over strided views of the (padded) input, one
vectorized max/add per pool tap. As in TensorFlow, 'same' max pooling never picks a
padded cell and 'same' average pooling divides by the number of real cells in each window.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..errors import InputError
from ..registry import register
from .activations import mean_f32
from .convolutional import (
    Geometry,
    channels_first,
    from_channels_last,
    geometry,
    pad_spatial,
    to_channels_last,
)

F32 = np.float32


def _window_counts(geo: Geometry, sizes: tuple[int, ...], out: tuple[int, ...]) -> np.ndarray:
    """Real (unpadded) cells in each window, shaped to broadcast over (batch, *out, C)."""
    counts = np.ones((), dtype=F32)
    for axis, (n, o, k, s, (before, _)) in enumerate(
            zip(sizes, out, geo.kernel, geo.strides, geo.pads(sizes))):
        start = np.arange(o) * s - before
        per_axis = (np.minimum(start + k, n) - np.maximum(start, 0)).astype(F32)
        shape = [1] * len(sizes)
        shape[axis] = o
        counts = counts * per_axis.reshape(shape)
    return counts[..., None]


def pool_channels_last(x: np.ndarray, geo: Geometry, kind: str) -> np.ndarray:
    """Max ('max') or average ('avg') pooling of (batch, *spatial, C)."""
    sizes = x.shape[1:-1]
    fill = -np.inf if kind == "max" else 0.0
    pads = geo.pads(sizes)
    if kind == "max" and geo.strides == geo.kernel and not any(b or a for b, a in pads) and \
            all(d == 1 for d in geo.dilation):
        # windows tile the input: one reduction over a reshaped view (the common 2x2 / 2)
        out = geo.out_sizes(sizes)
        tiles = x[(slice(None), *(slice(0, o * k) for o, k in zip(out, geo.kernel)))]
        split = [n for o, k in zip(out, geo.kernel) for n in (o, k)]
        tiled = tiles.reshape(x.shape[0], *split, x.shape[-1])
        # one axis at a time, by np.maximum over its slices: a multi-axis reduce walks the
        # strided view 4-5x slower (32x8x8x16: 99 vs 19 us)
        for i, k in enumerate(geo.kernel):
            lead = (slice(None),) * (2 + i)
            if k > 1:
                acc = np.maximum(tiled[(*lead, 0)], tiled[(*lead, 1)])
                for j in range(2, k):
                    np.maximum(acc, tiled[(*lead, j)], out=acc)
                tiled = acc
            else:
                tiled = tiled[(*lead, 0)]
        return np.ascontiguousarray(tiled)
    xp = pad_spatial(x, pads, fill)
    out = geo.out_sizes(xp.shape[1:-1])
    taps = list(np.ndindex(*geo.kernel))
    acc = xp[(slice(None), *geo.tap_slices(taps[0], out))].copy()
    for tap in taps[1:]:
        view = xp[(slice(None), *geo.tap_slices(tap, out))]
        if kind == "max":
            np.maximum(acc, view, out=acc)
        else:
            acc += view
    if kind == "avg":
        if geo.padding == "same":
            acc /= _window_counts(geo, sizes, out)
        else:
            acc /= F32(math.prod(geo.kernel))
    return acc


def make_pool(rank: int, kind: str) -> Callable[[dict, dict], Callable]:
    def build(config: dict, weights: dict) -> Callable:
        name = config.get("name", "")
        geo = geometry(config, rank, allow_causal=False, size_field="pool_size",
                       default_size=2, pooling=True)
        first = channels_first(config, name)

        def run(x: np.ndarray) -> np.ndarray:
            _check_rank(name, x, rank)
            y = pool_channels_last(to_channels_last(x, first), geo, kind)
            return from_channels_last(y, first)

        return run

    return build


for _rank in (1, 2, 3):
    register(f"MaxPooling{_rank}D")(make_pool(_rank, "max"))
    register(f"AveragePooling{_rank}D")(make_pool(_rank, "avg"))


# ----- global pooling --------------------------------------------------------------------
def _global_axes(config: dict, rank: int) -> tuple[tuple[int, ...], bool]:
    first = channels_first(config, config.get("name", ""))
    axes = tuple(range(2, rank + 2)) if first else tuple(range(1, rank + 1))
    return axes, bool(config.get("keepdims", False))


def _check_rank(name: str, x: np.ndarray, rank: int) -> None:
    if x.ndim != rank + 2:
        raise InputError(f"layer '{name}' expects inputs of rank {rank + 2}, got shape {x.shape}")


def make_global_max(rank: int) -> Callable[[dict, dict], Callable]:
    def build(config: dict, weights: dict) -> Callable:
        name = config.get("name", "")
        axes, keepdims = _global_axes(config, rank)

        def run(x: np.ndarray) -> np.ndarray:
            _check_rank(name, x, rank)
            return np.max(x, axis=axes, keepdims=keepdims)

        return run

    return build


def explicit_mask_input(config: dict) -> int | None:
    """Keras 3 records a mask passed to a call as a `mask=` tensor argument: its input index."""
    ref = (config.get("call_kwargs") or {}).get("mask")
    return ref["__tensor__"] if isinstance(ref, dict) and "__tensor__" in ref else None


def make_global_average(rank: int) -> Callable[[dict, dict], Callable]:
    def build(config: dict, weights: dict) -> Callable:
        name = config.get("name", "")
        axes, keepdims = _global_axes(config, rank)
        # Keras 3 zeroes masked steps with `where`; tf_keras multiplies by the mask.
        multiply = "keras_major" in config
        mask_input = explicit_mask_input(config)

        def run(x: np.ndarray, *extra: np.ndarray, mask: list | None = None) -> np.ndarray:
            _check_rank(name, x, rank)
            if mask_input is not None:
                keep = (x, *extra)[mask_input]
            elif mask and mask[0] is not None:
                keep = mask[0]
            else:
                return mean_f32(x, axes, keepdims)
            keep = np.asarray(keep, dtype=bool)
            if keep.shape != x.shape[:1] + tuple(x.shape[a] for a in axes):
                raise InputError(
                    f"layer '{name}': mask of shape {keep.shape} does not match input {x.shape}"
                )
            keep = np.expand_dims(keep, 1 if axes[0] == 2 else -1)
            weight = keep.astype(x.dtype)
            kept = x * weight if multiply else np.where(keep, x, x.dtype.type(0))
            # A fully masked row is 0/0 = NaN in Keras too; do not warn about it.
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.sum(kept, axis=axes, keepdims=keepdims) / np.sum(
                    weight, axis=axes, keepdims=keepdims)

        return run

    return build


# Keras's GlobalMaxPooling1D ignores masks (it does not support masking), so only the
# 1D average pooling reads them.
register("GlobalAveragePooling1D", uses_mask=True)(make_global_average(1))
register("GlobalMaxPooling1D")(make_global_max(1))
for _rank in (2, 3):
    register(f"GlobalAveragePooling{_rank}D")(make_global_average(_rank))
    register(f"GlobalMaxPooling{_rank}D")(make_global_max(_rank))


# ----- adaptive pooling ------------------------------------------------------------------
def _adaptive_windows(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, length) of each output's window, as Keras's TensorFlow backend picks them:
    windows start at floor(i * size / out) (float32) and take ceil(size / out) cells, or one
    more where the exact window [start, ceil((i + 1) * size / out)) is that long."""
    small = -(-size // out)
    i = np.arange(out, dtype=F32)
    starts = np.floor(i * F32(size) / F32(out)).astype(np.int64)
    ends = np.ceil((i + F32(1)) * F32(size) / F32(out)).astype(np.int64)
    starts, ends = np.minimum(starts, size - 1), np.minimum(ends, size)
    return starts, np.where(ends - starts == small + 1, small + 1, small)


def adaptive_pool_axis(x: np.ndarray, axis: int, out: int, kind: str) -> np.ndarray:
    """Adaptive max/average pooling of `x` along one axis (one gather per window tap)."""
    starts, lengths = _adaptive_windows(x.shape[axis], out)
    acc = None
    for tap in range(int(lengths.max())):
        inside = tap < lengths
        view = np.take(x, np.minimum(starts + tap, x.shape[axis] - 1), axis=axis)
        shape = [1] * x.ndim
        shape[axis] = out
        inside = inside.reshape(shape)
        if kind == "max":
            view = np.where(inside, view, x.dtype.type(-np.inf))
            acc = view if acc is None else np.maximum(acc, view)
        else:
            view = np.where(inside, view, x.dtype.type(0))
            acc = view if acc is None else acc + view
    if kind == "avg":
        shape = [1] * x.ndim
        shape[axis] = out
        acc = acc / lengths.astype(x.dtype).reshape(shape)
    return acc


def make_adaptive_pool(rank: int, kind: str) -> Callable[[dict, dict], Callable]:
    def build(config: dict, weights: dict) -> Callable:
        name = config.get("name", "")
        size = config.get("output_size")
        sizes = (size,) * rank if isinstance(size, int) else tuple(int(s) for s in size or ())
        if len(sizes) != rank or min(sizes) < 1:
            raise InputError(f"layer '{name}': output_size must be {rank} positive integers. "
                             f"Received: output_size={size!r}")
        first = channels_first(config, name)

        def run(x: np.ndarray) -> np.ndarray:
            _check_rank(name, x, rank)
            y = x if x.dtype.kind == "f" else x.astype(F32)
            for d, out in enumerate(sizes):
                y = adaptive_pool_axis(y, d + (2 if first else 1), out, kind)
            return y

        return run

    return build


for _rank in (1, 2, 3):
    register(f"AdaptiveMaxPooling{_rank}D")(make_adaptive_pool(_rank, "max"))
    register(f"AdaptiveAveragePooling{_rank}D")(make_adaptive_pool(_rank, "avg"))
