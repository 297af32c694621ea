"""ONNX converters for pooling: MaxPool/AveragePool and global reductions."""

from __future__ import annotations

import numpy as np

from ...graph import Node
from ...ops.convolutional import channels_first, geometry
from ...ops.pooling import explicit_mask_input
from ..onnx import OnnxBuilder, converter
from .convolutional import from_channels_first, spatial_sizes, to_channels_first, window_pads


def convert_pool(rank: int, kind: str):
    def convert(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
        geo = geometry(node.config, rank, allow_causal=False, size_field="pool_size",
                       default_size=2)
        first = channels_first(node.config, node.name)
        sizes = spatial_sizes(b, node, rank, first)
        # count_include_pad=0: 'same' average pooling divides by the real cells only
        y = b.op("MaxPool" if kind == "max" else "AveragePool",
                 [to_channels_first(b, xs[0], rank, first)], name=node.name,
                 kernel_shape=list(geo.kernel), strides=list(geo.strides),
                 **window_pads(geo, sizes))
        return from_channels_first(b, y, rank, first)

    return convert


def _global_axes(node: Node, rank: int) -> tuple[list[int], bool]:
    first = channels_first(node.config, node.name)
    axes = list(range(2, rank + 2)) if first else list(range(1, rank + 1))
    return axes, bool(node.config.get("keepdims", False))


def convert_global_max(rank: int):
    def convert(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
        axes, keepdims = _global_axes(node, rank)
        return b.reduce("ReduceMax", xs[0], axes, keepdims)

    return convert


def convert_global_average(rank: int):
    def convert(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
        axes, keepdims = _global_axes(node, rank)
        explicit = explicit_mask_input(node.config)
        mask = b.cast(xs[explicit], bool) if explicit is not None else b.in_masks(node)[0]
        if mask is None:
            return b.reduce("ReduceMean", xs[0], axes, keepdims)
        keep = b.op("Unsqueeze", [mask, b.i64([1 if axes[0] == 2 else -1])])
        weight = b.cast(keep, np.float32)
        if "keras_major" in node.config:
            kept = b.op("Mul", [xs[0], weight])
        else:
            kept = b.op("Where", [keep, xs[0], b.f32(0)])
        return b.op("Div", [b.reduce("ReduceSum", kept, axes, keepdims),
                            b.reduce("ReduceSum", weight, axes, keepdims)], name=node.name)

    return convert


for _rank in (1, 2, 3):
    converter(f"MaxPooling{_rank}D")(convert_pool(_rank, "max"))
    converter(f"AveragePooling{_rank}D")(convert_pool(_rank, "avg"))
    converter(f"GlobalMaxPooling{_rank}D")(convert_global_max(_rank))
    converter(f"GlobalAveragePooling{_rank}D", uses_mask=_rank == 1)(convert_global_average(_rank))
