"""Raw TensorFlow indexing ops: Gather/GatherV2 (with batch_dims), ResourceGather (after the
reader resolves the variable), GatherNd, ScatterNd and the TensorScatter* updates.

Indices are checked against the dimension they index: TF's CPU kernels reject out-of-range
indices, and so does tfless (never NumPy's wrap-around of negative indices).
"""

from __future__ import annotations

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
