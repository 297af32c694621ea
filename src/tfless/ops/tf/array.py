"""Raw TensorFlow array ops: constants, identities, shapes, reshaping, slicing, joining,
gathering, padding and selection (TF's array_ops vocabulary).

Shape arithmetic is dtype-faithful: Shape gives `out_type` (int32 by default), and the
int32 tensors that graphs compute shapes with stay int32 through every kernel here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .common import Compute, TfNode, arr, tf_kernel


@tf_kernel("Const", weights=("value",))
def const(node: TfNode) -> Compute:
    if "value" not in node.weights:
        raise node.bad_input("the Const node carries no value")
    value = np.asarray(node.weights["value"])
    if value.dtype.kind not in "fiub":
        from ...errors import UnsupportedLayer

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
