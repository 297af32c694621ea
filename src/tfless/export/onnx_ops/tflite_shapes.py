"""ONNX converters for TensorFlow Lite's shape and data-movement operators.

Reshape, squeeze, transpose, concatenation, pack/unpack, split, pads, tile, space/batch
rearrangements, slices, gather, batch matmul and arg-min/max. Operands arrive as in
`tflite.py` (constants as the node's weights); axes, permutations and slice bounds the
runtime needs as Python numbers must be constants in the file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ...ops.tflite import _axes
from .tflite import INT64_MAX, INT64_MIN, Operands, _rank, tflite_converter


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
