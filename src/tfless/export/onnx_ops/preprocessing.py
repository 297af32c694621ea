"""ONNX converters for preprocessing layers: Rescaling, Normalization, Resizing, CenterCrop
and RandomCrop (inference behaviour).

Image resizing uses the runtime's own index and weight tables (TensorFlow's half-pixel
kernels), written as one interpolation matrix per axis applied with Einsum: nearest rows
hold a single 1, bilinear rows two weights, bicubic rows four. This needs the image size
to be fixed in the model's input.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import UnsupportedLayer
from ...graph import Node
from ...ops.preprocessing import (
    ANTIALIASED,
    EPSILON,
    RESIZERS,
    _crop_box,
    _cubic_weights,
    _deserialize_number,
    _keep_axes,
    _linear_weights,
    _nearest_index,
    _sampling_weights,
    _size,
    _value_range,
)
from ..onnx_builder import OnnxBuilder, converter

F32 = np.float32


def _float(b: OnnxBuilder, node: Node, x: str) -> str:
    return x if b.dtype(node.inputs[0]) == F32 else b.cast(x, F32)


def _keras3_keeps_mask(b: OnnxBuilder, node: Node, xs: list[str], masks: list) -> list:
    return masks[:1] if "keras_major" not in node.config else [None]


@converter("Rescaling", mask=_keras3_keeps_mask)
def convert_rescaling(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    scale = np.asarray(_deserialize_number(node.config.get("scale", 1.0)), dtype=F32)
    offset = np.asarray(_deserialize_number(node.config.get("offset", 0.0)), dtype=F32)
    y = b.op("Mul", [_float(b, node, xs[0]), b.const(scale, "scale")])
    return b.op("Add", [y, b.const(offset, "offset")], name=node.name)


@converter("Normalization", mask=_keras3_keeps_mask)
def convert_normalization(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    c = node.config
    shape = b.in_shape(node)
    keep = sorted(a % len(shape) for a in _keep_axes(c.get("axis", -1)))
    kept = [shape[d] for d in keep]
    if None in kept:
        raise UnsupportedLayer(f"layer '{node.name}': normalized axes need fixed sizes for ONNX")
    broadcast = [shape[d] if d in keep else 1 for d in range(len(shape))]
    if c.get("mean") is not None:
        mean = np.asarray(_deserialize_number(c["mean"]), dtype=F32)
        variance = np.asarray(_deserialize_number(c["variance"]), dtype=F32)
        std = np.maximum(np.sqrt(variance), EPSILON)
        mean, std = np.broadcast_to(mean, kept), np.broadcast_to(std, kept)
    else:
        mean = node.weights["mean"].astype(F32)
        std = np.maximum(np.sqrt(node.weights["variance"].astype(F32)), EPSILON)
    m = b.weight(node, "mean", np.reshape(mean, broadcast).astype(F32))
    s = b.weight(node, "std", np.reshape(std, broadcast).astype(F32))
    x = _float(b, node, xs[0])
    if c.get("invert"):
        return b.op("Add", [m, b.op("Mul", [x, s])], name=node.name)
    return b.op("Div", [b.op("Sub", [x, m]), s], name=node.name)


# ----- images ----------------------------------------------------------------------------
def _matrix(method: str, in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) interpolation matrix of the runtime's kernel (`method` ends in
    "+antialias" for the runtime's antialiased ScaleAndTranslate kernels)."""
    if method.endswith("+antialias"):
        return _sampling_weights(in_size, out_size, method.split("+")[0], True)
    if method.startswith("lanczos"):
        return _sampling_weights(in_size, out_size, method, False)
    a = np.zeros((out_size, in_size), F32)
    rows = np.arange(out_size)
    if method == "nearest":
        a[rows, _nearest_index(in_size, out_size)] = 1
    elif method == "bilinear":
        lower, upper, frac = _linear_weights(in_size, out_size)
        np.add.at(a, (rows, lower), F32(1) - frac)
        np.add.at(a, (rows, upper), frac)
    else:
        taps, weights = _cubic_weights(in_size, out_size)
        for k in range(4):
            np.add.at(a, (rows, taps[:, k]), weights[:, k])
    return a


class Images:
    """An image tensor as NHWC with its static height and width."""

    def __init__(self, b: OnnxBuilder, node: Node, x: str) -> None:
        self.b, self.node = b, node
        shape = b.in_shape(node)
        if len(shape) not in (3, 4):
            raise UnsupportedLayer(f"layer '{node.name}' expects images of rank 3 or 4")
        self.single = len(shape) == 3
        self.first = node.config.get("data_format") == "channels_first"
        if self.single:
            x = b.op("Unsqueeze", [x, b.i64([0])])
            shape = (None, *shape)
        if self.first:
            x = b.op("Transpose", [x], perm=[0, 2, 3, 1])
            shape = (shape[0], shape[2], shape[3], shape[1])
        self.h, self.w = shape[1], shape[2]
        if self.h is None or self.w is None:
            raise UnsupportedLayer(f"layer '{node.name}' ({node.op}): ONNX export needs a fixed "
                                   "image height and width in the model's input")
        self.x = x

    def crop(self, top: int, left: int, height: int, width: int) -> None:
        b = self.b
        self.x = b.op("Slice", [self.x, b.i64([top, left]), b.i64([top + height, left + width]),
                                b.i64([1, 2])])
        self.h, self.w = height, width

    def pad(self, top: int, left: int, fill: float) -> None:
        b = self.b
        pads = b.i64([0, top, left, 0, 0, top, left, 0])
        self.x = b.op("Pad", [self.x, pads, b.f32(fill)], mode="constant")
        self.h, self.w = self.h + 2 * top, self.w + 2 * left

    def resize(self, method: str, height: int, width: int) -> None:
        b = self.b
        x = self.x if b.dtype(self.node.inputs[0]) == F32 else b.cast(self.x, F32)
        x = b.op("Einsum", [x, b.const(_matrix(method, self.w, width), "resize_w")],
                 equation="nhwc,pw->nhpc")
        self.x = b.op("Einsum", [x, b.const(_matrix(method, self.h, height), "resize_h")],
                      equation="nhwc,qh->nqwc")
        self.h, self.w = height, width

    def smart_resize(self, height: int, width: int, method: str = "bilinear") -> None:
        top, left, crop_h, crop_w = _crop_box(self.h, self.w, height, width)
        self.crop(top, left, crop_h, crop_w)
        self.resize(method, height, width)

    def output(self) -> str:
        b, y = self.b, self.x
        if self.first:
            y = b.op("Transpose", [y], perm=[0, 3, 1, 2])
        if self.single:
            y = b.op("Squeeze", [y, b.i64([0])])
        return b.op("Cast", [y], name=self.node.name, to=b.onnx_dtype(F32))


@converter("Resizing")
def convert_resizing(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    c = node.config
    height, width = _size(c, node.name)
    method = c.get("interpolation", "bilinear")
    if method not in RESIZERS:
        raise UnsupportedLayer(f"layer '{node.name}': interpolation '{method}'")
    if c.get("antialias") and method in ANTIALIASED:
        method = f"{method}+antialias"
    images = Images(b, node, xs[0])
    if c.get("crop_to_aspect_ratio"):
        images.smart_resize(height, width, method)
    else:
        if c.get("pad_to_aspect_ratio"):
            if c.get("fill_mode", "constant") != "constant":
                raise UnsupportedLayer(f"layer '{node.name}': fill_mode {c.get('fill_mode')!r}")
            pad_h = max(images.h, int(F32(images.w * height) / F32(width)))
            pad_w = max(images.w, int(F32(images.h * width) / F32(height)))
            images.pad(int(F32(pad_h - images.h) / 2), int(F32(pad_w - images.w) / 2),
                       float(c.get("fill_value", 0.0)))
        images.resize(method, height, width)
    return images.output()


@converter("CenterCrop")
def convert_center_crop(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    height, width = _size(node.config, node.name)
    images = Images(b, node, xs[0])
    h_diff, w_diff = images.h - height, images.w - width
    if h_diff >= 0 and w_diff >= 0:
        images.crop(h_diff // 2, w_diff // 2, height, width)
    else:
        images.smart_resize(height, width)
    return images.output()


@converter("RandomCrop")
def convert_random_crop(b: OnnxBuilder, node: Node, xs: list[str]) -> Any:
    if "keras_major" not in node.config:
        return b.op("Identity", [xs[0]], name=node.name)
    height, width = _size(node.config, node.name)
    images = Images(b, node, xs[0])
    images.smart_resize(height, width)
    return images.output()


# ----- categorical encodings -------------------------------------------------------------
def _encode(b: OnnxBuilder, node: Node, idx: str, rank: int, mode: str, depth: int,
            dtype: np.dtype) -> str:
    """The runtime's `categorical.encode` (TF's bincount for rank <= 2, one-hot reductions
    above) for integer indices `idx` of rank `rank`."""
    if mode == "int":
        return b.op("Cast", [idx], name=node.name, to=b.onnx_dtype(dtype))
    if rank == 0:
        idx, rank = b.op("Unsqueeze", [idx, b.i64([0])]), 1
    if mode == "one_hot":
        shape = b.in_shape(node)
        if rank > 1 and shape[-1] == 1:
            idx, rank = b.op("Squeeze", [idx, b.i64([-1])]), rank - 1
    hot = b.op("Equal", [b.op("Unsqueeze", [idx, b.i64([-1])]),
                         b.const(np.arange(depth, dtype=np.int64), "classes")])
    hot = b.cast(hot, np.float32)
    if mode == "one_hot":
        return b.op("Cast", [hot], name=node.name, to=b.onnx_dtype(dtype))
    axis = rank - 1 if rank <= 2 else 1
    y = b.reduce("ReduceMax" if mode == "multi_hot" else "ReduceSum", hot, [axis], False)
    return b.op("Cast", [y], name=node.name, to=b.onnx_dtype(dtype))


@converter("CategoryEncoding")
def convert_category_encoding(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    from ...ops.categorical import _count_weights_input, _dtype, _output_mode

    c = node.config
    if _count_weights_input(c) is not None:
        raise UnsupportedLayer(f"layer '{node.name}': count_weights has no ONNX converter; "
                               "nothing was written")
    mode = _output_mode(c, ("one_hot", "multi_hot", "count"))
    idx = b.cast(xs[0], np.int64)
    return _encode(b, node, idx, len(b.in_shape(node)), mode, int(c["num_tokens"]),
                   _dtype(c, "float32"))


@converter("Discretization")
def convert_discretization(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    from ...ops.categorical import ENCODINGS, _dtype, _output_mode

    c = node.config
    mode = _output_mode(c, ENCODINGS)
    edges = np.asarray(c["bin_boundaries"], F32)
    x = xs[0] if b.dtype(node.inputs[0]) == F32 else b.cast(xs[0], F32)
    # the number of boundaries <= x, as TF's Bucketize counts
    above = b.op("GreaterOrEqual", [b.op("Unsqueeze", [x, b.i64([-1])]), b.const(edges, "edges")])
    idx = b.reduce("ReduceSum", b.cast(above, np.int64), [-1], False)
    dtype = np.dtype(np.int32) if mode == "int" else _dtype(c, "float32")
    return _encode(b, node, idx, len(b.in_shape(node)), mode, len(edges) + 1, dtype)


@converter("AutoContrast")
def convert_auto_contrast(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    """Per-image, per-channel min/max over axes 1 and 2 stretched to [0, 255] (the value
    range mapped there and back), NaN results keeping the input, as ops.preprocessing."""
    low, high = _value_range(node.config)
    to_255 = (low, high) != (F32(0), F32(255))
    x = _float(b, node, xs[0])
    single = len(b.in_shape(node)) == 3
    images = b.op("Unsqueeze", [x, b.i64([0])]) if single else x
    if to_255:
        images = b.op("Mul", [b.op("Sub", [images, b.f32(low)]), b.f32(F32(255) / (high - low))])
    lo = b.reduce("ReduceMin", images, [1, 2])
    hi = b.reduce("ReduceMax", images, [1, 2])
    scale = b.op("Div", [b.f32(255), b.op("Sub", [hi, lo])])
    shift = b.op("Neg", [b.op("Mul", [lo, scale])])
    out = b.clip(b.op("Add", [b.op("Mul", [images, scale]), shift]), 0.0, 255.0)
    if to_255:
        out = b.op("Add", [b.op("Mul", [out, b.f32((high - low) / F32(255))]), b.f32(low)])
    if single:
        out = b.op("Squeeze", [out, b.i64([0])])
    return b.op("Where", [b.op("IsNaN", [out]), x, out], name=node.name)


@converter("MaxNumBoundingBoxes")
def convert_max_num_bounding_boxes(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    """Only bounding boxes are touched; images pass unchanged (as ops.preprocessing)."""
    return b.op("Identity", [xs[0]], name=node.name)
