"""Raw TensorFlow image ops: ResizeBilinear / ResizeNearestNeighbor / ResizeBicubic (on the
shared resize kernels of `ops/preprocessing.py`, which the Keras Resizing layer uses) and
DepthToSpace / SpaceToDepth.

Keras 3 and TF2's `tf.image.resize` write `half_pixel_centers=True, align_corners=False`;
the TF1 legacy coordinate modes are refused with the attr named.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..preprocessing import RESIZERS
from .common import Compute, TfNode, ints, tf_kernel

F32 = np.float32


def _resize(method: str) -> Callable[[TfNode], Compute]:
    resize = RESIZERS[method]

    def make(node: TfNode) -> Compute:
        if node.attr("align_corners", False):
            raise node.refuse("align_corners", True, "False (with half_pixel_centers=True, as "
                              "tf.image.resize and Keras write)")
        if not node.attr("half_pixel_centers", False):
            raise node.refuse("half_pixel_centers", False, "True (the tf.image.resize / Keras "
                              "coordinate mode)")

        def compute(images: np.ndarray, size: np.ndarray) -> np.ndarray:
            dims = ints(size)
            if images.ndim != 4 or len(dims) != 2 or min(dims) < 1:
                raise node.bad_input(f"needs NHWC images and a [height, width] size, got "
                                     f"{images.shape} and {dims}")
            if images.dtype.kind not in "fiu":
                raise node.bad_input(f"images of type {images.dtype} are not supported")
            if method == "nearest":
                return resize(images, *dims)
            # TF's bilinear/bicubic kernels read any real type and always give float32
            return np.asarray(resize(images.astype(F32, copy=False), *dims), F32)

        return compute

    return make


tf_kernel("ResizeBilinear")(_resize("bilinear"))
tf_kernel("ResizeNearestNeighbor")(_resize("nearest"))
tf_kernel("ResizeBicubic")(_resize("bicubic"))


def _block(node: TfNode) -> int:
    size = int(node.attr("block_size"))
    if size < 2:
        raise node.refuse("block_size", size, "an integer >= 2")
    node.choice("data_format", ("NHWC",), "NHWC")
    return size


@tf_kernel("DepthToSpace")
def depth_to_space(node: TfNode) -> Compute:
    bs = _block(node)

    def compute(x: np.ndarray) -> np.ndarray:
        if x.ndim != 4 or x.shape[3] % (bs * bs):
            raise node.bad_input(f"input of shape {x.shape} has no depth divisible by "
                                 f"{bs * bs}")
        b, h, w, c = x.shape
        y = x.reshape(b, h, w, bs, bs, c // (bs * bs)).transpose(0, 1, 3, 2, 4, 5)
        return y.reshape(b, h * bs, w * bs, c // (bs * bs))

    return compute


@tf_kernel("SpaceToDepth")
def space_to_depth(node: TfNode) -> Compute:
    bs = _block(node)

    def compute(x: np.ndarray) -> np.ndarray:
        if x.ndim != 4 or x.shape[1] % bs or x.shape[2] % bs:
            raise node.bad_input(f"input of shape {x.shape} is not divisible into {bs}x{bs} "
                                 "blocks")
        b, h, w, c = x.shape
        y = x.reshape(b, h // bs, bs, w // bs, bs, c).transpose(0, 1, 3, 2, 4, 5)
        return y.reshape(b, h // bs, w // bs, bs * bs * c)

    return compute
