"""ONNX converters for reshaping layers: Flatten, Reshape, Permute, RepeatVector, padding,
cropping and upsampling."""

from __future__ import annotations

from ...errors import UnsupportedLayer
from ...graph import Node
from ...ops.convolutional import channels_first, int_tuple
from ...ops.reshaping import pairs
from ..onnx_builder import OnnxBuilder, converter
from .convolutional import from_channels_first, to_channels_first

INT64_MAX = 2**63 - 1


@converter("Flatten")
def convert_flatten(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    x = xs[0]
    rank = len(b.in_shape(node))
    if channels_first(node.config, node.name) and rank > 2:
        x = b.op("Transpose", [x], perm=[0, *range(2, rank), 1])
    return b.op("Flatten", [x], name=node.name, axis=1)


@converter("Reshape")
def convert_reshape(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    target = [int(d) for d in node.config["target_shape"]]
    # 0 copies the batch size (Keras never stores 0 in target_shape)
    return b.op("Reshape", [xs[0], b.i64([0, *target])], name=node.name)


@converter("Permute")
def convert_permute(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    return b.op("Transpose", [xs[0]], name=node.name,
                perm=[0, *(int(d) for d in node.config["dims"])])


@converter("RepeatVector")
def convert_repeat_vector(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    x = b.op("Unsqueeze", [xs[0], b.i64([1])])
    return b.op("Expand", [x, b.i64([1, int(node.config["n"]), 1])], name=node.name)


def _spatial_axes(b: OnnxBuilder, node: Node, rank: int) -> list[int]:
    first = channels_first(node.config, node.name) if rank > 1 else False
    return list(range(2, rank + 2)) if first else list(range(1, rank + 1))


def convert_zero_padding(rank: int):
    def convert(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
        pads = pairs(node.config.get("padding", 1), rank, "padding", node.name)
        axes = _spatial_axes(b, node, rank)
        before, after = [0] * (rank + 2), [0] * (rank + 2)
        for axis, (p, q) in zip(axes, pads):
            before[axis], after[axis] = p, q
        return b.op("Pad", [xs[0], b.i64(before + after)], name=node.name, mode="constant")

    return convert


def convert_cropping(rank: int):
    def convert(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
        crops = pairs(node.config.get("cropping", 1), rank, "cropping", node.name)
        axes = _spatial_axes(b, node, rank)
        starts = [p for p, _ in crops]
        ends = [-q if q else INT64_MAX for _, q in crops]
        return b.op("Slice", [xs[0], b.i64(starts), b.i64(ends), b.i64(axes)], name=node.name)

    return convert


def convert_upsampling(rank: int):
    def convert(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
        size = int_tuple(node.config.get("size", node.config.get("length", 2)), rank, "size",
                         node.name)
        first = channels_first(node.config, node.name) if rank > 1 else False
        interpolation = str(node.config.get("interpolation", "nearest")).lower()
        if interpolation not in ("nearest", "bilinear") or (
                interpolation == "bilinear" and rank != 2):
            raise UnsupportedLayer(
                f"layer '{node.name}': interpolation {interpolation!r} has no ONNX converter")
        x = to_channels_first(b, xs[0], rank, first)
        scales = b.const([1.0, 1.0, *(float(s) for s in size)], "scales", dtype="float32")
        if interpolation == "bilinear":
            attrs = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
        else:
            attrs = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                     "nearest_mode": "floor"}
        y = b.op("Resize", [x, "", scales], name=node.name, **attrs)
        return from_channels_first(b, y, rank, first)

    return convert


for _rank in (1, 2, 3):
    converter(f"ZeroPadding{_rank}D")(convert_zero_padding(_rank))
    converter(f"Cropping{_rank}D")(convert_cropping(_rank))
    converter(f"UpSampling{_rank}D")(convert_upsampling(_rank))
