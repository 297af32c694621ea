"""ONNX converters for convolutions: Conv and ConvTranspose with Keras's explicit padding.

ONNX convolutions are channels-first, so a channels_last layer is wrapped in two
Transposes. 'same' padding is written as explicit (before, after) pads computed exactly as
the runtime computes them (TensorFlow's split: the odd cell after); when a spatial size is
free and the pads depend on it, SAME_UPPER (the same split, resolved at run time) is used.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...errors import UnsupportedLayer
from ...graph import Node
from ...ops.convolutional import (
    Geometry,
    _keras1_kernel,
    _keras1_output_shape,
    channels_first,
    geometry,
    int_tuple,
    transpose_out_size,
)
from ..onnx_builder import OnnxBuilder, converter
from .activations import activation

F32 = np.float32
PROBE_SIZES = (8, 9)


def to_channels_first(b: OnnxBuilder, x: str, rank: int, first: bool) -> str:
    return x if first else b.op("Transpose", [x], perm=[0, rank + 1, *range(1, rank + 1)])


def from_channels_first(b: OnnxBuilder, y: str, rank: int, first: bool) -> str:
    return y if first else b.op("Transpose", [y], perm=[0, *range(2, rank + 2), 1])


def spatial_sizes(b: OnnxBuilder, node: Node, rank: int, first: bool) -> tuple[int | None, ...]:
    shape = b.in_shape(node)
    if len(shape) != rank + 2:
        raise UnsupportedLayer(
            f"layer '{node.name}' ({node.op}): ONNX export needs inputs of rank {rank + 2}, "
            f"this one has shape {shape}")
    return tuple(shape[2:] if first else shape[1:-1])


def window_pads(geo: Geometry, sizes: Sequence[int | None]) -> dict:
    """Conv/pool padding attributes: explicit pads when they are known, else SAME_UPPER."""
    candidates = [geo.pads([n if n is not None else probe for n in sizes]) for probe in PROBE_SIZES]
    if candidates[0] != candidates[1]:
        return {"auto_pad": "SAME_UPPER"}
    pads = candidates[0]
    return {"pads": [p for p, _ in pads] + [p for _, p in pads]}


def _finish(b: OnnxBuilder, node: Node, y: str, rank: int, first: bool) -> str:
    return activation(b, node.config.get("activation"), from_channels_first(b, y, rank, first),
                      node.name)


def _bias(b: OnnxBuilder, node: Node) -> list[str]:
    if "bias" not in node.weights:
        return []
    return [b.weight(node, "bias", np.asarray(node.weights["bias"], F32).reshape(-1))]


def _conv_common(node: Node, rank: int, allow_causal: bool) -> tuple[Geometry, bool]:
    geo = geometry(node.config, rank, allow_causal=allow_causal)
    return geo, channels_first(node.config, node.name)


def convert_conv(rank: int):
    def convert(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
        geo, first = _conv_common(node, rank, rank == 1)
        sizes = spatial_sizes(b, node, rank, first)
        groups = int(node.config.get("groups", 1) or 1)
        kernel = _keras1_kernel("conv", node.config, np.asarray(node.weights["kernel"], F32), rank)
        # Keras (*k, C/groups, F) -> ONNX (F, C/groups, *k)
        w = np.ascontiguousarray(kernel.transpose(rank + 1, rank, *range(rank)))
        y = b.op("Conv", [to_channels_first(b, xs[0], rank, first), b.weight(node, "kernel", w),
                          *_bias(b, node)], name=node.name, kernel_shape=list(geo.kernel),
                 strides=list(geo.strides), dilations=list(geo.dilation), group=groups,
                 **window_pads(geo, sizes))
        return _finish(b, node, y, rank, first)

    return convert


def _depthwise(b: OnnxBuilder, node: Node, x: str, geo: Geometry, sizes: Sequence,
               rank: int, bias: list[str]) -> str:
    kernel = _keras1_kernel("separable", node.config,
                            np.asarray(node.weights["depthwise_kernel"], F32), rank)
    n_in, mult = kernel.shape[-2], kernel.shape[-1]
    # (*k, C, M) -> (C*M, 1, *k): output channel c*M + m reads input channel c
    w = kernel.reshape(*kernel.shape[:rank], n_in * mult)
    w = np.ascontiguousarray(np.moveaxis(w, -1, 0)[:, None])
    return b.op("Conv", [x, b.weight(node, "depthwise_kernel", w), *bias], name=node.name,
                kernel_shape=list(geo.kernel), strides=list(geo.strides),
                dilations=list(geo.dilation), group=n_in, **window_pads(geo, sizes))


def convert_depthwise(rank: int):
    def convert(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
        geo, first = _conv_common(node, rank, rank == 1)
        sizes = spatial_sizes(b, node, rank, first)
        y = _depthwise(b, node, to_channels_first(b, xs[0], rank, first), geo, sizes, rank,
                       _bias(b, node))
        return _finish(b, node, y, rank, first)

    return convert


def convert_separable(rank: int):
    def convert(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
        geo, first = _conv_common(node, rank, rank == 1)
        sizes = spatial_sizes(b, node, rank, first)
        depth = _depthwise(b, node, to_channels_first(b, xs[0], rank, first), geo, sizes, rank, [])
        pointwise = _keras1_kernel("separable", node.config,
                                   np.asarray(node.weights["pointwise_kernel"], F32), rank)
        # (1.., C*M, F) -> (F, C*M, 1..)
        w = np.ascontiguousarray(pointwise.transpose(rank + 1, rank, *range(rank)))
        y = b.op("Conv", [depth, b.weight(node, "pointwise_kernel", w), *_bias(b, node)],
                 name=node.name, kernel_shape=[1] * rank)
        return _finish(b, node, y, rank, first)

    return convert


def _transpose_pads(geo: Geometry, n: int, out: int, axis: int) -> tuple[int, int, int]:
    """(pad before, pad after, output_padding) of ONNX ConvTranspose for one axis, matching
    the runtime's full scatter cropped at the forward 'same' padding of the output."""
    k, s, d, span = geo.kernel[axis], geo.strides[axis], geo.dilation[axis], geo.span[axis]
    before = 0
    if geo.padding == "same":
        before = Geometry(geo.layer, (k,), (s,), (d,), "same").pads([out])[0][0]
    full = (n - 1) * s + span
    end = full - before - out
    return (before, end, 0) if end >= 0 else (before, 0, -end)


def convert_conv_transpose(rank: int):
    def convert(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
        geo, first = _conv_common(node, rank, False)
        sizes = spatial_sizes(b, node, rank, first)
        kernel = _keras1_kernel("transpose", node.config, np.asarray(node.weights["kernel"], F32),
                                rank)
        out_pad = node.config.get("output_padding")
        out_pad = None if out_pad is None else int_tuple(out_pad, rank, "output_padding", node.name)
        fixed = _keras1_output_shape(node.config, rank, first)
        per_axis = []
        for axis in range(rank):
            options = set()
            for probe in PROBE_SIZES:
                n = sizes[axis] if sizes[axis] is not None else probe
                out = fixed[axis] if fixed else transpose_out_size(
                    n, geo.kernel[axis], geo.strides[axis], geo.dilation[axis], geo.padding,
                    None if out_pad is None else out_pad[axis])
                options.add(_transpose_pads(geo, n, out, axis))
            if len(options) != 1:
                raise UnsupportedLayer(
                    f"layer '{node.name}' ({node.op}): ONNX export needs a fixed spatial input "
                    "size for this padding/output_padding; the model's input leaves it free")
            per_axis.append(options.pop())
        # Keras (*k, F, C) -> ONNX (C, F, *k)
        w = np.ascontiguousarray(kernel.transpose(rank + 1, rank, *range(rank)))
        y = b.op("ConvTranspose", [to_channels_first(b, xs[0], rank, first),
                                   b.weight(node, "kernel", w), *_bias(b, node)],
                 name=node.name, kernel_shape=list(geo.kernel), strides=list(geo.strides),
                 dilations=list(geo.dilation),
                 pads=[p[0] for p in per_axis] + [p[1] for p in per_axis],
                 output_padding=[p[2] for p in per_axis] if any(p[2] for p in per_axis) else None)
        return _finish(b, node, y, rank, first)

    return convert


for _rank in (1, 2, 3):
    converter(f"Conv{_rank}D")(convert_conv(_rank))
    converter(f"Conv{_rank}DTranspose")(convert_conv_transpose(_rank))
for _rank in (1, 2):
    converter(f"DepthwiseConv{_rank}D")(convert_depthwise(_rank))
    converter(f"SeparableConv{_rank}D")(convert_separable(_rank))
