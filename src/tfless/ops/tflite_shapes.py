"""TensorFlow Lite's shape and data-movement operators (float32 and integer tensors).

Reshape, squeeze, transpose, concatenation, pack/unpack, split, pads, tile, space/batch
rearrangements, slices, gather, batch matmul and arg-min/max, registered as
`tflite.<BUILTIN_NAME>` through `tflite_op` (see `tflite.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import InputError, ModelFormatError, UnsupportedLayer
from .tflite import INT_TYPES, Compute, TfliteOp, _axes, _ints, tflite_op


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
