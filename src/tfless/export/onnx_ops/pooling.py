"""ONNX converters for pooling: MaxPool/AveragePool and global reductions."""

from __future__ import annotations

import numpy as np

from ...graph import Node
from ...ops.convolutional import channels_first, geometry
from ...ops.pooling import _adaptive_windows, explicit_mask_input
from ..onnx_builder import OnnxBuilder, converter
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


def convert_adaptive(rank: int, kind: str):
    """Adaptive pooling: per spatial axis, one Slice + Reduce per output window (the
    runtime's `_adaptive_windows`), concatenated."""
    def convert(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
        size = node.config.get("output_size")
        sizes = (size,) * rank if isinstance(size, int) else tuple(int(s) for s in size)
        first = channels_first(node.config, node.name)
        shape = b.in_shape(node)
        y = xs[0] if b.dtype(node.inputs[0]) == np.float32 else b.cast(xs[0], np.float32)
        reduce = "ReduceMax" if kind == "max" else "ReduceMean"
        for d, out in enumerate(sizes):
            axis = d + (2 if first else 1)
            starts, lengths = _adaptive_windows(int(shape[axis]), out)
            parts = [b.reduce(reduce, b.op("Slice", [y, b.i64([s]), b.i64([s + n]),
                                                     b.i64([axis])]), [axis], True)
                     for s, n in zip(starts.tolist(), lengths.tolist())]
            y = parts[0] if len(parts) == 1 else b.op("Concat", parts, axis=axis)
        return b.op("Identity", [y], name=node.name)

    return convert


for _rank in (1, 2, 3):
    converter(f"AdaptiveMaxPooling{_rank}D")(convert_adaptive(_rank, "max"))
    converter(f"AdaptiveAveragePooling{_rank}D")(convert_adaptive(_rank, "avg"))
