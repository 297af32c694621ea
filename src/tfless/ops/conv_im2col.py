"""im2col for the regular convolution (ops/convolutional.py): the window matrix a GEMM
multiplies with the kernel matrix, built by one cached gather when it is small and by one
copy from a strided window view of the padded input (per block under a size budget) when it
is not. The int8 TFLite convolution (ops/tflite_quant.py) reads the same view.

`geo` is a `convolutional.Geometry` (kernel, strides, dilation and padding per spatial axis).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

# Upper bound on the im2col buffer (elements) built at once; larger inputs run in chunks.
# 1M elements (4 MB, an eighth of this machine's 32 MB L3) keeps each chunk in cache from
# its copy to its GEMM: ResNet50's 3x3 convolutions over 56x56x64 at batch 32 took 102 ms
# with 32 MB chunks and 68 ms with these, its 7x7 stem 148 -> 97 ms (the whole model 7%
# faster); smaller chunks lost again (GEMMs of too few rows), batch 1 is unchanged.
IM2COL_BUDGET = 1 << 20
# im2col matrices up to this many elements are built by one gather through an index cached
# per input shape (the padding reads a zero appended to the input): a 3x3 convolution over
# 8x8 inputs at batch 1 spent ~100 us in the per-tap slicing and the padded copy, the
# gather takes ~5 us; at 74k elements it still won (148 vs 196 us), at 900k it lost (2.4 vs
# 1.8 ms). Larger ones are copied from a strided view of the padded input (`im2col`).
GATHER_MAX = 1 << 18


def chunks(batch: int, out: tuple[int, ...], per_position: int, budget: int) -> list[tuple]:
    """Index blocks over (batch, first output axis) of at most `budget` elements
    (`per_position` per output position), or one row of one item if that is larger."""
    per_item = math.prod(out) * per_position
    if batch * per_item <= budget:
        return [(slice(0, batch),)]
    if per_item <= budget:
        step = budget // per_item
        return [(slice(b, b + step),) for b in range(0, batch, step)]
    # One item is too large on its own: split its first output axis as well.
    rows = max(1, budget // (per_item // out[0]))
    return [(slice(b, b + 1), slice(r, r + rows)) for b in range(batch) for r in range(0, out[0], rows)]


@functools.lru_cache(maxsize=32)  # at most 32 x 2 MB of indices
def gather_index(shape: tuple[int, ...], geo: Any, limit: int = GATHER_MAX
                  ) -> tuple[tuple[int, ...], np.ndarray] | None:
    """For an input of `shape` (batch, *spatial, C) whose im2col matrix has at most
    `limit` elements and more than one tap: (batch, *output sizes) and the flat indices
    into the input plus one appended zero (index x.size) forming that matrix (rows: batch
    and output positions; columns: taps in row-major order, then channel, as `im2col`
    lays it out). None otherwise."""
    spatial, n_in = shape[1:-1], shape[-1]
    pads, out = geo.padded_out(spatial)
    if math.prod(geo.kernel) == 1 or shape[0] * math.prod(out) * math.prod(geo.kernel) * n_in \
            > limit:
        return None
    positions = np.indices(out).reshape(len(out), -1)  # (rank, P)
    taps = np.indices(geo.kernel).reshape(len(out), -1)  # (rank, T)
    flat = np.zeros((positions.shape[1], taps.shape[1]), np.int64)
    inside = np.ones_like(flat, dtype=bool)
    for axis, (n, (before, _)) in enumerate(zip(spatial, pads)):
        coord = (positions[axis][:, None] * geo.strides[axis]
                 + taps[axis][None, :] * geo.dilation[axis] - before)
        inside &= (coord >= 0) & (coord < n)
        flat = flat * n + coord
    per_item = math.prod(spatial) * n_in
    cols = flat[..., None] * n_in + np.arange(n_in)  # (P, T, C)
    items = np.arange(shape[0])[:, None, None, None] * per_item
    index = np.where(inside[None, ..., None], cols[None] + items, shape[0] * per_item)
    index = index.reshape(shape[0] * positions.shape[1], -1).astype(np.intp)
    index.setflags(write=False)
    return (shape[0], *out), index


def windows(xp: np.ndarray, geo: Any, out: tuple[int, ...]) -> np.ndarray:
    """The read-only view (batch, *out, *kernel, C) of the padded input `xp` (batch,
    *spatial, C): element [n, o..., k..., c] is xp[n, o*stride + k*dilation ..., c]."""
    spatial = xp.strides[1:-1]
    return as_strided(xp, (xp.shape[0], *out, *geo.kernel, xp.shape[-1]),
                      (xp.strides[0], *(st * s for st, s in zip(spatial, geo.strides)),
                       *(st * d for st, d in zip(spatial, geo.dilation)), xp.strides[-1]),
                      writeable=False)


def im2col(xp: np.ndarray, geo: Any, out: tuple[int, ...], block: tuple,
            cols: np.ndarray) -> None:
    """Fill `cols` (items, *rows of out, tap, C) with the input windows of `block` (a slice
    of batch items, optionally a slice of the first output axis) of the padded input `xp`,
    in one copy from the strided `windows` view: without dilation along the last axis a
    kernel row's taps read kernel[-1] * C consecutive input values, which the copy moves as
    one run (one copy per kernel row before: the same runs, more calls; ResNet50's 7x7
    stride-2 stem at batch 1 2.08 -> 1.77 ms with its GEMM, 3x3 convolutions 3-10% faster)."""
    view = windows(xp, geo, out)[block]
    np.copyto(cols.reshape(view.shape), view)
