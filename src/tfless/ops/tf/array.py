"""Raw TensorFlow array ops: constants, identities, shapes, reshaping, slicing, joining,
gathering, padding and selection (TF's array_ops vocabulary).

Shape arithmetic is dtype-faithful: Shape gives `out_type` (int32 by default), and the
int32 tensors that graphs compute shapes with stay int32 through every kernel here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import UnsupportedLayer
from .common import Compute, TfNode, arr, ints, norm_axis, scalar_int, tf_kernel


@tf_kernel("Const", weights=("value",))
def const(node: TfNode) -> Compute:
    if "value" not in node.weights:
        raise node.bad_input("the Const node carries no value")
    value = np.asarray(node.weights["value"])
    if value.dtype.kind not in "fiub":
        raise UnsupportedLayer(f"{node.where}: constants of type {value.dtype} (strings, "
                               "resources) are not supported; supported: numeric and bool")
    value.setflags(write=False)  # shared by every run; kernels never write their inputs
    return lambda: value


def _identity(node: TfNode) -> Compute:
    return lambda x: x


tf_kernel("Identity", "StopGradient", "PreventGradient", "Snapshot",
          "PlaceholderWithDefault")(_identity)


@tf_kernel("IdentityN", num_outputs=lambda config: len(config.get("T") or ()) or 1)
def identity_n(node: TfNode) -> Compute:
    return lambda *xs: tuple(xs)


@tf_kernel("NoOp", num_outputs=lambda config: 0)
def no_op(node: TfNode) -> Compute:
    return lambda *xs: ()


@tf_kernel("EnsureShape")
def ensure_shape(node: TfNode) -> Compute:
    shape: Any = node.attr("shape", None)

    def compute(x: np.ndarray) -> np.ndarray:
        if shape is not None and (len(shape) != x.ndim or any(
                d is not None and d != n for d, n in zip(shape, x.shape))):
            raise node.bad_input(f"tensor of shape {x.shape} does not have the shape {shape} "
                                 "the graph requires")
        return x

    return compute


@tf_kernel("CheckNumerics")
def check_numerics(node: TfNode) -> Compute:
    message = str(node.attr("message", ""))

    def compute(x: np.ndarray) -> np.ndarray:
        if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
            raise node.bad_input(f"tensor holds Inf or NaN values: {message}")
        return arr(x)

    return compute


# ----- shapes ----------------------------------------------------------------------------
def _shape_type(node: TfNode) -> np.dtype:
    dt = node.dtype("out_type", "int32")
    if dt not in (np.int32, np.int64):
        raise node.refuse("out_type", str(dt), "int32, int64")
    return dt


@tf_kernel("Shape")
def shape(node: TfNode) -> Compute:
    dt = _shape_type(node)
    return lambda x: np.asarray(np.shape(x), dt)


@tf_kernel("ShapeN", num_outputs=lambda config: int(config.get("N", 1)))
def shape_n(node: TfNode) -> Compute:
    dt = _shape_type(node)
    return lambda *xs: tuple(np.asarray(np.shape(x), dt) for x in xs)


@tf_kernel("Size")
def size(node: TfNode) -> Compute:
    dt = _shape_type(node)
    return lambda x: np.asarray(np.size(x), dt)


@tf_kernel("Rank")
def rank(node: TfNode) -> Compute:
    return lambda x: np.asarray(np.ndim(x), np.int32)


@tf_kernel("Reshape")
def reshape(node: TfNode) -> Compute:
    def compute(x: np.ndarray, new_shape: np.ndarray) -> np.ndarray:
        dims = ints(new_shape)
        try:
            if min(dims, default=0) < -1:
                raise ValueError
            return np.reshape(x, dims)
        except ValueError:
            raise node.bad_input(f"cannot reshape a tensor of shape {np.shape(x)} "
                                 f"({np.size(x)} values) to {dims}") from None

    return compute


@tf_kernel("Squeeze")
def squeeze(node: TfNode) -> Compute:
    dims = [int(d) for d in node.attr("squeeze_dims", None) or node.attr("axis", None) or []]

    def compute(x: np.ndarray) -> np.ndarray:
        if not dims:
            return np.reshape(x, [n for n in x.shape if n != 1])
        axes = {norm_axis(node, d, x.ndim, "squeeze_dims") for d in dims}
        if any(x.shape[a] != 1 for a in axes):
            raise node.bad_input(f"cannot squeeze axes {sorted(axes)} of shape {x.shape}: "
                                 "their size is not 1")
        return np.reshape(x, [n for a, n in enumerate(x.shape) if a not in axes])

    return compute


@tf_kernel("ExpandDims")
def expand_dims(node: TfNode) -> Compute:
    def compute(x: np.ndarray, axis: np.ndarray) -> np.ndarray:
        a = scalar_int(node, axis, "axis")
        x = arr(x)
        a = norm_axis(node, a, x.ndim + 1)
        return np.expand_dims(x, a)

    return compute


@tf_kernel("Transpose")
def transpose(node: TfNode) -> Compute:
    def compute(x: np.ndarray, perm: np.ndarray) -> np.ndarray:
        p = ints(perm)
        if sorted(p) != list(range(np.ndim(x))):
            raise node.bad_input(f"perm {p} is not a permutation of the {np.ndim(x)} axes")
        return np.transpose(x, p)

    return compute


@tf_kernel("BroadcastTo")
def broadcast_to(node: TfNode) -> Compute:
    def compute(x: np.ndarray, to: np.ndarray) -> np.ndarray:
        try:
            return np.broadcast_to(x, ints(to)).copy()
        except ValueError:
            raise node.bad_input(f"cannot broadcast shape {np.shape(x)} to {ints(to)}") from None

    return compute


@tf_kernel("BroadcastArgs")
def broadcast_args(node: TfNode) -> Compute:
    def compute(s0: np.ndarray, s1: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(np.broadcast_shapes(tuple(ints(s0)), tuple(ints(s1))), s0.dtype)
        except ValueError:
            raise node.bad_input(f"shapes {ints(s0)} and {ints(s1)} do not broadcast") from None

    return compute


# ----- slicing ---------------------------------------------------------------------------
def _bits(mask: int, n: int) -> list[bool]:
    return [bool(mask >> i & 1) for i in range(n)]


@tf_kernel("StridedSlice")
def strided_slice(node: TfNode) -> Compute:
    masks = {k: int(node.attr(k, 0)) for k in ("begin_mask", "end_mask", "ellipsis_mask",
                                                "new_axis_mask", "shrink_axis_mask")}
    if bin(masks["ellipsis_mask"]).count("1") > 1:
        raise node.bad_input("a slice may hold only one ellipsis (ellipsis_mask has several bits)")

    def compute(x: np.ndarray, begin: np.ndarray, end: np.ndarray,
                strides: np.ndarray) -> np.ndarray:
        b, e, s = ints(begin), ints(end), ints(strides)
        n = len(b)
        if not len(e) == len(s) == n:
            raise node.bad_input(f"begin/end/strides have different lengths {len(b)}, {len(e)}, "
                                 f"{len(s)}")
        bm, em = _bits(masks["begin_mask"], n), _bits(masks["end_mask"], n)
        ell, new = _bits(masks["ellipsis_mask"], n), _bits(masks["new_axis_mask"], n)
        shrink = _bits(masks["shrink_axis_mask"], n)
        index: list[Any] = []
        # Python slices clamp out-of-range bounds exactly as TF's canonicalization does
        # (to [0, dim] for positive strides, [-1, dim - 1] for negative ones).
        for i in range(n):
            if ell[i]:
                index.append(Ellipsis)
            elif new[i]:
                index.append(None)
            elif s[i] == 0:
                raise node.bad_input("strides must be non-zero")
            elif shrink[i]:
                if s[i] < 0:
                    raise node.bad_input("only positive strides on a shrunk axis")
                index.append(b[i])  # TF ignores begin_mask on a shrunk axis
            else:
                index.append(slice(None if bm[i] else b[i], None if em[i] else e[i], s[i]))
        x = arr(x)
        dense = sum(1 for i in index if i is not None and i is not Ellipsis)
        if dense > x.ndim:
            raise node.bad_input(f"slice spec indexes {dense} axes of a rank-{x.ndim} tensor")
        try:
            return arr(x[tuple(index)])
        except IndexError:
            raise node.bad_input(f"slice index out of bounds: begin {b} on shape {x.shape}") \
                from None

    return compute


@tf_kernel("Slice")
def slice_(node: TfNode) -> Compute:
    def compute(x: np.ndarray, begin: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        b, n = ints(begin), ints(sizes)
        x = arr(x)
        if len(b) != x.ndim or len(n) != x.ndim:
            raise node.bad_input(f"begin {b} / size {n} do not fit a rank-{x.ndim} tensor")
        index = []
        for start, count, dim in zip(b, n, x.shape):
            stop = dim if count == -1 else start + count
            if start < 0 or count < -1 or stop > dim:
                raise node.bad_input(f"slice begin {b} size {n} is outside shape {x.shape}")
            index.append(slice(start, stop))
        return x[tuple(index)]

    return compute


# ----- joining and splitting -------------------------------------------------------------
def _concat(node: TfNode, values: tuple, axis: Any) -> np.ndarray:
    values = tuple(arr(v) for v in values)
    a = norm_axis(node, scalar_int(node, axis, "axis"), values[0].ndim)
    try:
        return np.concatenate(values, axis=a)
    except ValueError:
        raise node.bad_input("cannot concatenate shapes "
                             f"{[v.shape for v in values]} on axis {a}") from None


@tf_kernel("ConcatV2")
def concat_v2(node: TfNode) -> Compute:
    return lambda *args: _concat(node, args[:-1], args[-1])


@tf_kernel("Concat")
def concat(node: TfNode) -> Compute:
    return lambda axis, *values: _concat(node, values, axis)


@tf_kernel("Pack")
def pack(node: TfNode) -> Compute:
    axis = int(node.attr("axis", 0))

    def compute(*values: np.ndarray) -> np.ndarray:
        values = tuple(arr(v) for v in values)
        a = norm_axis(node, axis, values[0].ndim + 1)
        if any(v.shape != values[0].shape for v in values):
            raise node.bad_input(f"cannot stack shapes {[v.shape for v in values]}")
        return np.stack(values, axis=a)

    return compute


@tf_kernel("Unpack", num_outputs=lambda config: int(config.get("num", 1)))
def unpack(node: TfNode) -> Compute:
    num, axis = int(node.attr("num")), int(node.attr("axis", 0))

    def compute(x: np.ndarray) -> tuple:
        a = norm_axis(node, axis, x.ndim)
        if x.shape[a] != num:
            raise node.bad_input(f"cannot unstack {num} tensors from axis {a} of shape {x.shape}")
        return tuple(np.take(x, i, axis=a) for i in range(num))

    return compute


@tf_kernel("Split", num_outputs=lambda config: int(config.get("num_split", 1)))
def split(node: TfNode) -> Compute:
    num = int(node.attr("num_split"))

    def compute(axis: np.ndarray, x: np.ndarray) -> tuple:
        a = norm_axis(node, scalar_int(node, axis, "axis"), x.ndim)
        if x.shape[a] % num:
            raise node.bad_input(f"axis {a} of shape {x.shape} does not split into {num} parts")
        return tuple(np.split(x, num, axis=a))

    return compute


@tf_kernel("SplitV", num_outputs=lambda config: int(config.get("num_split", 1)))
def split_v(node: TfNode) -> Compute:
    num = int(node.attr("num_split"))

    def compute(x: np.ndarray, size_splits: np.ndarray, axis: np.ndarray) -> tuple:
        a = norm_axis(node, scalar_int(node, axis, "axis"), x.ndim)
        sizes = ints(size_splits)
        free = [i for i, n in enumerate(sizes) if n == -1]
        if len(free) == 1:
            sizes[free[0]] = x.shape[a] - (sum(sizes) + 1)
        if len(sizes) != num or len(free) > 1 or min(sizes) < 0 or sum(sizes) != x.shape[a]:
            raise node.bad_input(f"size_splits {ints(size_splits)} do not split axis {a} of "
                                 f"shape {x.shape} into {num} parts")
        return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=a))

    return compute


@tf_kernel("Tile")
def tile(node: TfNode) -> Compute:
    def compute(x: np.ndarray, multiples: np.ndarray) -> np.ndarray:
        m = ints(multiples)
        if len(m) != np.ndim(x) or min(m, default=0) < 0:
            raise node.bad_input(f"multiples {m} do not fit a rank-{np.ndim(x)} tensor")
        return np.tile(x, m)

    return compute


@tf_kernel("Roll")
def roll(node: TfNode) -> Compute:
    def compute(x: np.ndarray, shift: np.ndarray, axis: np.ndarray) -> np.ndarray:
        shifts, axes = ints(shift), ints(axis)
        if len(shifts) != len(axes):
            raise node.bad_input(f"shift {shifts} and axis {axes} differ in length")
        axes = [norm_axis(node, a, x.ndim) for a in axes]
        return np.roll(x, shifts, axes) if axes else x  # repeated axes add their shifts

    return compute


@tf_kernel("ReverseSequence")
def reverse_sequence(node: TfNode) -> Compute:
    seq_dim, batch_dim = int(node.attr("seq_dim")), int(node.attr("batch_dim", 0))

    def compute(x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        s, b = norm_axis(node, seq_dim, x.ndim), norm_axis(node, batch_dim, x.ndim)
        lens = np.asarray(lengths).reshape(-1).astype(np.int64)
        if s == b or lens.size != x.shape[b] or (lens.size and (lens.min() < 0 or
                                                                lens.max() > x.shape[s])):
            raise node.bad_input(f"seq_lengths {lens.tolist()} do not fit axis {s} of shape "
                                 f"{x.shape} (batch axis {b})")
        shape = [1] * x.ndim
        shape[s], shape[b] = x.shape[s], x.shape[b]
        j = np.arange(x.shape[s]).reshape([-1 if a == s else 1 for a in range(x.ndim)])
        n = lens.reshape([-1 if a == b else 1 for a in range(x.ndim)])
        # the first n[b] steps of item b run backwards, the rest stay
        index = np.broadcast_to(np.where(j < n, n - 1 - j, j), shape)
        full = [x.shape[a] if a not in (s, b) else shape[a] for a in range(x.ndim)]
        return np.take_along_axis(x, np.broadcast_to(index, full), axis=s)

    return compute


@tf_kernel("ReverseV2")
def reverse_v2(node: TfNode) -> Compute:
    def compute(x: np.ndarray, axis: np.ndarray) -> np.ndarray:
        axes = tuple(norm_axis(node, a, x.ndim) for a in ints(axis))
        return np.flip(x, axes) if axes else x

    return compute


# ----- creation ---------------------------------------------------------------------------
@tf_kernel("Fill")
def fill(node: TfNode) -> Compute:
    def compute(dims: np.ndarray, value: np.ndarray) -> np.ndarray:
        value = arr(value)
        if value.ndim:
            raise node.bad_input(f"value must be a scalar, got shape {value.shape}")
        return np.full(ints(dims), value, value.dtype)

    return compute


@tf_kernel("ZerosLike")
def zeros_like(node: TfNode) -> Compute:
    return lambda x: np.zeros_like(x)


@tf_kernel("OnesLike")
def ones_like(node: TfNode) -> Compute:
    return lambda x: np.ones_like(x)


@tf_kernel("Range")
def range_(node: TfNode) -> Compute:
    def compute(start: np.ndarray, limit: np.ndarray, delta: np.ndarray) -> np.ndarray:
        dt = arr(start).dtype
        s, lim, d = (arr(v).reshape(()) for v in (start, limit, delta))
        if d == 0 or (d > 0 and s > lim) or (d < 0 and s < lim):
            raise node.bad_input(f"range({s}, {lim}, {d}) requires start <= limit for a "
                                 "positive delta, start >= limit for a negative one, delta != 0")
        if dt.kind in "iu":
            count = (abs(int(lim) - int(s)) + abs(int(d)) - 1) // abs(int(d))
        else:
            count = int(np.ceil(abs((float(lim) - float(s)) / float(d))))
        return (s + np.arange(count, dtype=dt) * d).astype(dt, copy=False)

    return compute


@tf_kernel("OneHot")
def one_hot(node: TfNode) -> Compute:
    axis = int(node.attr("axis", -1))

    def compute(indices: np.ndarray, depth: np.ndarray, on: np.ndarray,
                off: np.ndarray) -> np.ndarray:
        n = scalar_int(node, depth, "depth")
        idx = arr(indices)
        hot = idx[..., None] == np.arange(n, dtype=idx.dtype)
        y = np.where(hot, arr(on), arr(off)).astype(arr(on).dtype, copy=False)
        return y if axis == -1 else np.moveaxis(y, -1, norm_axis(node, axis, y.ndim))

    return compute


# ----- padding and selection ---------------------------------------------------------------
def _pads(node: TfNode, x: np.ndarray, paddings: np.ndarray) -> list[tuple[int, int]]:
    p = np.asarray(paddings)
    if p.shape != (x.ndim, 2) or (p.size and p.min() < 0):
        raise node.bad_input(f"paddings of shape {p.shape} do not fit a rank-{x.ndim} tensor "
                             "(need (rank, 2), non-negative)")
    return [(int(a), int(b)) for a, b in p]


@tf_kernel("Pad", "PadV2")
def pad(node: TfNode) -> Compute:
    def compute(x: np.ndarray, paddings: np.ndarray, value: Any = None) -> np.ndarray:
        x = arr(x)
        fill = x.dtype.type(0) if value is None else arr(value).reshape(()).astype(x.dtype)
        return np.pad(x, _pads(node, x, paddings), constant_values=fill)

    return compute


@tf_kernel("MirrorPad")
def mirror_pad(node: TfNode) -> Compute:
    mode = node.choice("mode", ("REFLECT", "SYMMETRIC"))

    def compute(x: np.ndarray, paddings: np.ndarray) -> np.ndarray:
        x = arr(x)
        pads = _pads(node, x, paddings)
        room = 1 if mode == "REFLECT" else 0
        if any(max(p) > n - room for p, n in zip(pads, x.shape)):
            raise node.bad_input(f"paddings {pads} are too large for shape {x.shape} in "
                                 f"{mode} mode")
        return np.pad(x, pads, mode="reflect" if mode == "REFLECT" else "symmetric")

    return compute


@tf_kernel("SelectV2")
def select_v2(node: TfNode) -> Compute:
    def compute(cond: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if arr(a).dtype != arr(b).dtype:
            raise node.bad_input(f"branches have different types {a.dtype} and {b.dtype}")
        return arr(np.where(cond, a, b))

    return compute


@tf_kernel("Select")
def select(node: TfNode) -> Compute:
    def compute(cond: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b, cond = arr(a), arr(b), arr(cond)
        if a.shape != b.shape:
            raise node.bad_input(f"branches have different shapes {a.shape} and {b.shape}")
        if cond.ndim == 1 and a.ndim > 1:  # a vector condition picks whole rows
            if cond.shape[0] != a.shape[0]:
                raise node.bad_input(f"condition {cond.shape} does not fit {a.shape}")
            cond = cond.reshape((-1,) + (1,) * (a.ndim - 1))
        elif cond.shape != a.shape and cond.ndim:
            raise node.bad_input(f"condition {cond.shape} does not fit {a.shape}")
        return arr(np.where(cond, a, b))

    return compute


@tf_kernel("Where")
def where(node: TfNode) -> Compute:
    return lambda x: np.argwhere(arr(x)).astype(np.int64)


@tf_kernel("TopKV2", num_outputs=lambda config: 2)
def top_k(node: TfNode) -> Compute:
    index_type = node.dtype("index_type", "int32")

    def compute(x: np.ndarray, k: np.ndarray) -> tuple:
        n = scalar_int(node, k, "k")
        if x.ndim < 1 or not 0 <= n <= x.shape[-1]:
            raise node.bad_input(f"k={n} does not fit the last axis of shape {x.shape}")
        # stable descending order: equal values keep the lower index first, as TF does
        order = np.argsort(-x if x.dtype.kind == "f" else ~x if x.dtype.kind == "i" else
                           -x.astype(np.int64), axis=-1, kind="stable")[..., :n]
        return np.take_along_axis(x, order, axis=-1), order.astype(index_type)

    return compute


# ----- space <-> batch (dilated depthwise convolutions) and band matrices ---------------------
def _block_args(node: TfNode, x: np.ndarray, block: np.ndarray, pads: np.ndarray, what: str
                ) -> tuple[list[int], list[tuple[int, int]]]:
    shape = ints(block)
    p = np.asarray(pads)
    m = len(shape)
    if m < 1 or x.ndim < m + 1 or p.shape != (m, 2) or min(shape) < 1 or (p.size and p.min() < 0):
        raise node.bad_input(f"block_shape {shape} / {what} of shape {p.shape} do not fit an "
                             f"input of shape {x.shape}")
    return shape, [(int(a), int(b)) for a, b in p]


@tf_kernel("SpaceToBatchND")
def space_to_batch_nd(node: TfNode) -> Compute:
    def compute(x: np.ndarray, block: np.ndarray, paddings: np.ndarray) -> np.ndarray:
        shape, pads = _block_args(node, x, block, paddings, "paddings")
        m, batch = len(shape), x.shape[0]
        xp = np.pad(x, [(0, 0), *pads] + [(0, 0)] * (x.ndim - 1 - m))
        spatial, rest = xp.shape[1:1 + m], xp.shape[1 + m:]
        if any(n % b for n, b in zip(spatial, shape)):
            raise node.bad_input(f"padded spatial shape {spatial} is not divisible by the "
                                 f"block shape {shape}")
        split = [batch]
        for n, b in zip(spatial, shape):
            split += [n // b, b]
        y = xp.reshape(split + list(rest))
        # (B, s1, b1, s2, b2, ..., rest) -> (b1, b2, ..., B, s1, s2, ..., rest)
        perm = [2 + 2 * i for i in range(m)] + [0] + [1 + 2 * i for i in range(m)] + \
            list(range(1 + 2 * m, y.ndim))
        y = y.transpose(perm)
        return y.reshape([batch * int(np.prod(shape))] + [n // b for n, b in zip(spatial, shape)]
                         + list(rest))

    return compute


@tf_kernel("BatchToSpaceND")
def batch_to_space_nd(node: TfNode) -> Compute:
    def compute(x: np.ndarray, block: np.ndarray, crops: np.ndarray) -> np.ndarray:
        shape, cuts = _block_args(node, x, block, crops, "crops")
        m, total = len(shape), int(np.prod(shape))
        if x.shape[0] % total:
            raise node.bad_input(f"batch {x.shape[0]} is not divisible by the block size {total}")
        batch, spatial, rest = x.shape[0] // total, x.shape[1:1 + m], x.shape[1 + m:]
        y = x.reshape(shape + [batch] + list(spatial) + list(rest))
        # (b1, ..., bM, B, s1, ..., sM, rest) -> (B, s1, b1, ..., sM, bM, rest)
        perm = [m]
        for i in range(m):
            perm += [m + 1 + i, i]
        perm += list(range(1 + 2 * m, y.ndim))
        y = y.transpose(perm).reshape([batch] + [n * b for n, b in zip(spatial, shape)]
                                      + list(rest))
        sizes = [n * b for n, b in zip(spatial, shape)]
        if any(a + b > n for (a, b), n in zip(cuts, sizes)):
            raise node.bad_input(f"crops {cuts} exceed the spatial shape {sizes}")
        index = (slice(None), *(slice(a, n - b) for (a, b), n in zip(cuts, sizes)))
        return np.ascontiguousarray(y[index])

    return compute


@tf_kernel("MatrixBandPart")
def matrix_band_part(node: TfNode) -> Compute:
    def compute(x: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
        lo, up = scalar_int(node, lower, "num_lower"), scalar_int(node, upper, "num_upper")
        if x.ndim < 2 or lo > x.shape[-2] or up > x.shape[-1]:
            raise node.bad_input(f"num_lower {lo} / num_upper {up} do not fit shape {x.shape}")
        rows = np.arange(x.shape[-2])[:, None]
        cols = np.arange(x.shape[-1])[None, :]
        keep = ((lo < 0) | (rows - cols <= lo)) & ((up < 0) | (cols - rows <= up))
        return np.where(keep, x, x.dtype.type(0))

    return compute
