"""Raw TensorFlow indexing ops: Gather/GatherV2 (with batch_dims), ResourceGather (after the
reader resolves the variable), GatherNd, ScatterNd and the TensorScatter* updates.

Indices are checked against the dimension they index: TF's CPU kernels reject out-of-range
indices, and so does tfless (never NumPy's wrap-around of negative indices).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .common import Compute, TfNode, arr, ints, norm_axis, scalar_int, tf_kernel


# ----- gathering --------------------------------------------------------------------------
def _check_indices(node: TfNode, idx: np.ndarray, dim: int) -> None:
    if idx.size and (idx.min() < 0 or idx.max() >= dim):
        bad = idx[(idx < 0) | (idx >= dim)].reshape(-1)[0]
        raise node.bad_input(f"index {bad} is not in [0, {dim})")


def gather(node: TfNode, params: np.ndarray, indices: np.ndarray, axis: int,
           batch_dims: int) -> np.ndarray:
    """TF's GatherV2: out = params[:axis] + indices[batch_dims:] + params[axis+1:]."""
    params, idx = arr(params), arr(indices)
    if idx.dtype.kind not in "iu":
        raise node.bad_input(f"indices must be integers, got {idx.dtype}")
    axis = norm_axis(node, axis, params.ndim)
    if batch_dims < 0:
        batch_dims += idx.ndim
    if not 0 <= batch_dims <= min(axis, idx.ndim) or params.shape[:batch_dims] != \
            idx.shape[:batch_dims]:
        raise node.bad_input(f"batch_dims {batch_dims} does not fit params {params.shape} and "
                             f"indices {idx.shape} on axis {axis}")
    _check_indices(node, idx, params.shape[axis])
    if batch_dims == 0:
        return np.take(params, idx, axis=axis)
    lead = params.shape[:batch_dims]
    flat_b = int(np.prod(lead))
    p = params.reshape((flat_b, *params.shape[batch_dims:]))
    i = idx.reshape((flat_b, *idx.shape[batch_dims:]))
    n_pre, n_idx = axis - batch_dims, i.ndim - 1
    p = np.moveaxis(p, n_pre + 1, 1)  # (B, D, pre..., post...)
    rows = np.arange(flat_b).reshape((flat_b,) + (1,) * n_idx)
    out = p[rows, i]  # (B, idx..., pre..., post...)
    out = np.moveaxis(out, list(range(1, 1 + n_idx)), list(range(1 + n_pre, 1 + n_pre + n_idx)))
    return out.reshape((*lead, *out.shape[1:]))


@tf_kernel("GatherV2")
def gather_v2(node: TfNode) -> Compute:
    batch_dims = int(node.attr("batch_dims", 0))
    return lambda params, indices, axis: gather(node, params, indices,
                                                scalar_int(node, axis, "axis"), batch_dims)


@tf_kernel("Gather", "ResourceGather")
def gather_v1(node: TfNode) -> Compute:
    # ResourceGather's resource input is the variable's value once the reader resolves it
    batch_dims = int(node.attr("batch_dims", 0))
    return lambda params, indices: gather(node, params, indices, batch_dims, batch_dims)


@tf_kernel("GatherNd")
def gather_nd(node: TfNode) -> Compute:
    # the GatherNd op has no batch_dims attr: tf.gather_nd(batch_dims=) reshapes around it
    def compute(params: np.ndarray, indices: np.ndarray) -> np.ndarray:
        params, idx = arr(params), arr(indices)
        depth = idx.shape[-1] if idx.ndim else 0
        if idx.ndim < 1 or idx.dtype.kind not in "iu" or depth > params.ndim:
            raise node.bad_input(f"indices of shape {idx.shape} do not fit params {params.shape}")
        for k in range(depth):
            _check_indices(node, idx[..., k], params.shape[k])
        return arr(params[tuple(idx[..., k] for k in range(depth))])

    return compute


def _scatter_args(node: TfNode, shape: tuple[int, ...], idx: np.ndarray, updates: np.ndarray
                  ) -> tuple[np.ndarray, ...]:
    idx = arr(idx)
    depth = idx.shape[-1] if idx.ndim else 0
    want = idx.shape[:-1] + tuple(shape[depth:])
    if idx.ndim < 1 or idx.dtype.kind not in "iu" or depth > len(shape) or \
            updates.shape != want:
        raise node.bad_input(f"indices {idx.shape} / updates {updates.shape} do not fit a "
                             f"tensor of shape {tuple(shape)} (updates must be {want})")
    for k in range(depth):
        _check_indices(node, idx[..., k], shape[k])
    return tuple(idx[..., k] for k in range(depth))


@tf_kernel("ScatterNd")
def scatter_nd(node: TfNode) -> Compute:
    def compute(indices: np.ndarray, updates: np.ndarray, shape: np.ndarray) -> np.ndarray:
        dims = tuple(ints(shape))
        updates = arr(updates)
        out = np.zeros(dims, updates.dtype)
        np.add.at(out, _scatter_args(node, dims, indices, updates), updates)  # repeats add up
        return out

    return compute


SCATTER_UPDATES = {"TensorScatterAdd": np.add, "TensorScatterSub": np.subtract,
                   "TensorScatterMax": np.maximum, "TensorScatterMin": np.minimum}


@tf_kernel("TensorScatterUpdate", *SCATTER_UPDATES)
def tensor_scatter(node: TfNode) -> Compute:
    fn = SCATTER_UPDATES.get(node.op)

    def compute(tensor: np.ndarray, indices: np.ndarray, updates: np.ndarray) -> np.ndarray:
        tensor, updates = arr(tensor), arr(updates)
        if updates.dtype != tensor.dtype:
            raise node.bad_input(f"updates of type {updates.dtype} do not fit a {tensor.dtype} "
                                 "tensor")
        where = _scatter_args(node, tensor.shape, indices, updates)
        out = tensor.copy()
        if fn is None:
            out[where] = updates
        else:
            fn.at(out, where, updates)
        return out

    return compute


# ----- segments, unique values, permutations ------------------------------------------------
SEGMENT_REDUCERS = {"Sum": np.add, "Prod": np.multiply, "Max": np.maximum, "Min": np.minimum}


def _segment_fill(op: str, dtype: np.dtype, sorted_form: bool) -> object:
    """What an empty segment holds: 0 for sorted ops' Max/Min, the reduction's identity
    (lowest/highest value for Max/Min) for the unsorted ones."""
    if op == "Sum" or op == "Mean" or (sorted_form and op in ("Max", "Min")):
        return dtype.type(0)
    if op == "Prod":
        return dtype.type(1)
    info = np.finfo(dtype) if dtype.kind == "f" else np.iinfo(dtype)
    return info.min if op == "Max" else info.max


def _segments(op: str, sorted_form: bool) -> Callable[[TfNode], Compute]:
    reduce_op = op[len("Segment"):] if sorted_form else op[len("UnsortedSegment"):]

    def make(node: TfNode) -> Compute:
        def run(data: np.ndarray, ids: np.ndarray, count: int) -> np.ndarray:
            data, ids = arr(data), arr(ids)
            if ids.shape != data.shape[:ids.ndim] or ids.dtype.kind not in "iu":
                raise node.bad_input(f"segment_ids {ids.dtype} {ids.shape} do not fit data "
                                     f"{data.shape}")
            if sorted_form and ids.size and (np.any(np.diff(ids.reshape(-1)) < 0) or
                                             ids.min() < 0):
                raise node.bad_input("segment_ids must be sorted and non-negative")
            flat_ids = ids.reshape(-1)
            rows = data.reshape((-1,) + data.shape[ids.ndim:])
            keep = (flat_ids >= 0) & (flat_ids < count)  # unsorted ops drop other ids
            flat_ids, rows = flat_ids[keep], rows[keep]
            fill = _segment_fill(reduce_op, data.dtype, sorted_form)
            fn = SEGMENT_REDUCERS["Sum" if reduce_op == "Mean" else reduce_op]
            identity = {"Max": _segment_fill("Max", data.dtype, False),
                        "Min": _segment_fill("Min", data.dtype, False)}.get(reduce_op, fill)
            out = np.full((count,) + rows.shape[1:], identity, data.dtype)
            fn.at(out, flat_ids, rows)
            if reduce_op == "Mean":
                n = np.bincount(flat_ids, minlength=count).reshape((count,) + (1,) *
                                                                     (rows.ndim - 1))
                out = (out / np.maximum(n, 1)).astype(data.dtype)
            if reduce_op in ("Max", "Min"):
                empty = np.bincount(flat_ids, minlength=count) == 0
                out[empty] = fill
            return out

        if sorted_form:
            return lambda data, ids: run(data, ids, int(arr(ids).max()) + 1 if arr(ids).size
                                         else 0)
        return lambda data, ids, num: run(data, ids, scalar_int(node, num, "num_segments"))

    return make


for _op in ("Sum", "Prod", "Max", "Min", "Mean"):
    tf_kernel(f"Segment{_op}")(_segments(f"Segment{_op}", True))
for _op in ("Sum", "Prod", "Max", "Min"):
    tf_kernel(f"UnsortedSegment{_op}")(_segments(f"UnsortedSegment{_op}", False))


@tf_kernel("Unique", num_outputs=lambda config: 2)
def unique(node: TfNode) -> Compute:
    out_idx = node.dtype("out_idx", "int32")

    def compute(x: np.ndarray) -> tuple:
        x = arr(x)
        if x.ndim != 1:
            raise node.bad_input(f"input must be a vector, got shape {x.shape}")
        values, first, inverse = np.unique(x, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")  # TF lists values by first occurrence
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        return values[order], rank[inverse.reshape(-1)].astype(out_idx)

    return compute


@tf_kernel("InvertPermutation")
def invert_permutation(node: TfNode) -> Compute:
    def compute(x: np.ndarray) -> np.ndarray:
        x = arr(x)
        if x.ndim != 1 or sorted(x.tolist()) != list(range(x.size)):
            raise node.bad_input(f"{x.tolist()} is not a permutation of 0..{x.size - 1}")
        out = np.empty_like(x)
        out[x] = np.arange(x.size, dtype=x.dtype)
        return out

    return compute
