"""ONNX converters for merging layers, with the runtime's Keras-version-specific masks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ...errors import UnsupportedLayer
from ...graph import Node
from ..onnx_builder import OnnxBuilder, converter

F32 = np.float32


def _is_keras3(node: Node) -> bool:
    return "keras_major" not in node.config


def _same_rank(b: OnnxBuilder, node: Node, xs: list[str]) -> tuple[list[str], bool]:
    """Keras inserts size-1 axes after the batch axis until all ranks agree."""
    ranks = [len(b.shape(t)) for t in node.inputs]
    top = max(ranks)
    if len(set(ranks)) == 1:
        return list(xs), False
    return [x if r == top else b.op("Unsqueeze", [x, b.i64(list(range(1, 1 + top - r)))])
            for x, r in zip(xs, ranks)], True


def _expanded(b: OnnxBuilder, mask: str) -> str:
    # masks here are one rank below their tensor: add the feature axis, broadcast by Where
    return b.op("Unsqueeze", [mask, b.i64([-1])])


def _elementwise_masks(b: OnnxBuilder, node: Node, xs: list[str], masks: list) -> list:
    """Keras 3 ORs the masks when every input has one; tf_keras ANDs those present."""
    present = [m for m in masks if m is not None]
    if not present or (_is_keras3(node) and len(present) < len(masks)):
        return [None]
    out = present[0]
    for m in present[1:]:
        out = b.op("Or" if _is_keras3(node) else "And", [out, m])
    return [out]


def _fold(b: OnnxBuilder, op: str, xs: list[str]) -> str:
    out = xs[0]
    for x in xs[1:]:
        out = b.op(op, [out, x])
    return out


def _multiply_masked(b: OnnxBuilder, xs: list[str], masks: list) -> str:
    """Keras 3 Multiply: masked entries count as 1; the result is 0 where all are masked."""
    full = all(m is not None for m in masks)
    out = out_mask = None
    for x, m in zip(xs, masks):
        if m is not None:
            em = _expanded(b, m)
            x = b.op("Where", [em, x, b.f32(1)])
            if full:
                out_mask = em if out_mask is None else b.op("Or", [out_mask, em])
        out = x if out is None else b.op("Mul", [out, x])
    return out if out_mask is None else b.op("Where", [out_mask, out, b.f32(0)])


def _or_masked(op: str) -> Callable[[OnnxBuilder, list[str], list], str]:
    """Keras 3 Maximum/Minimum: masked entries take the other operand's value."""

    def merge(b: OnnxBuilder, xs: list[str], masks: list) -> str:
        out = out_mask = None
        for x, m in zip(xs, masks):
            em = None if m is None else _expanded(b, m)
            if out is None:
                out, out_mask = x, em
                continue
            if em is not None:
                x = b.op("Where", [em, x, out])
            if out_mask is not None:
                out = b.op("Where", [out_mask, out, x])
            out_mask = b.op("Or", [out_mask, em]) if em is not None and out_mask is not None \
                else None
            out = b.op(op, [out, x])
        return out

    return merge


def _average(b: OnnxBuilder, xs: list[str]) -> str:
    return b.op("Div", [_fold(b, "Add", xs), b.f32(len(xs))])


ELEMENTWISE = {
    "Add": (lambda b, xs: _fold(b, "Add", xs), None),
    "Subtract": (lambda b, xs: b.op("Sub", xs[:2]), None),
    "Multiply": (lambda b, xs: _fold(b, "Mul", xs), _multiply_masked),
    "Average": (_average, None),
    "Maximum": (lambda b, xs: _fold(b, "Max", xs), _or_masked("Max")),
    "Minimum": (lambda b, xs: _fold(b, "Min", xs), _or_masked("Min")),
}


def convert_elementwise(op: str):
    combine, masked = ELEMENTWISE[op]

    def convert(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
        if op == "Subtract" and len(xs) != 2:
            raise UnsupportedLayer(f"layer '{node.name}' (Subtract) takes exactly 2 inputs")
        ys, reshaped = _same_rank(b, node, xs)
        masks = b.in_masks(node)
        if masked is not None and _is_keras3(node) and not reshaped \
                and any(m is not None for m in masks):
            return masked(b, ys, masks)
        return combine(b, ys)

    return convert


for _op in ELEMENTWISE:
    converter(_op, mask=_elementwise_masks, uses_mask=True)(convert_elementwise(_op))


def _bool_reduce(b: OnnxBuilder, mask: str, op: str) -> str:
    as_float = b.cast(mask, F32)
    return b.cast(b.reduce(op, as_float, [-1], keepdims=False), bool)


def _concatenate_masks(b: OnnxBuilder, node: Node, xs: list[str], masks: list) -> list:
    if all(m is None for m in masks):
        return [None]
    axis = int(node.config.get("axis", -1))
    keras3 = _is_keras3(node)
    parts = []
    for x, m in zip(xs, masks):
        shape = b.op("Shape", [x])
        if m is None:
            parts.append(b.op("Expand", [b.const(np.array(True)), shape]))
        elif keras3:
            parts.append(b.op("Expand", [_expanded(b, m), shape]))
        else:
            parts.append(_expanded(b, m))
    joined = b.op("Concat", parts, axis=axis)
    return [_bool_reduce(b, joined, "ReduceMax" if keras3 else "ReduceMin")]


@converter("Concatenate", mask=_concatenate_masks)
def convert_concatenate(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    return b.op("Concat", xs, name=node.name, axis=int(node.config.get("axis", -1)))


def _dot_axes(node: Node, rx: int, ry: int) -> tuple[int, int]:
    axes = node.config.get("axes", -1)
    if isinstance(axes, int):
        return (axes % rx, axes % ry) if axes < 0 else (axes, axes)
    pair = [a[0] if isinstance(a, (list, tuple)) else a for a in axes]
    return int(pair[0]) % rx, int(pair[1]) % ry


def _l2_normalize(b: OnnxBuilder, x: str, axis: int, keras3: bool) -> str:
    square_sum = b.reduce("ReduceSum", b.op("Mul", [x, x]), [axis])
    if keras3:
        inv = b.op("Min", [b.op("Div", [b.f32(1), b.op("Sqrt", [square_sum])]), b.f32(1e7)])
    else:
        inv = b.op("Div", [b.f32(1), b.op("Sqrt", [b.op("Max", [square_sum, b.f32(1e-12)])])])
    return b.op("Mul", [x, inv])


@converter("Dot", mask=lambda b, node, xs, masks: [None])
def convert_dot(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    sx, sy = b.in_shape(node, 0), b.in_shape(node, 1)
    a0, a1 = _dot_axes(node, len(sx), len(sy))
    x, y = xs
    if node.config.get("normalize"):
        x = _l2_normalize(b, x, a0, _is_keras3(node))
        y = _l2_normalize(b, y, a1, _is_keras3(node))
    x_rest = [d for i, d in enumerate(sx) if i not in (0, a0)]
    y_rest = [d for i, d in enumerate(sy) if i not in (0, a1)]
    if None in x_rest + y_rest or sx[a0] is None:
        raise UnsupportedLayer(f"layer '{node.name}' (Dot): ONNX export needs fixed non-batch sizes")
    k = sx[a0]
    x = b.op("Transpose", [x], perm=[i for i in range(len(sx)) if i != a0] + [a0])
    y = b.op("Transpose", [y], perm=[0, a1] + [i for i in range(1, len(sy)) if i != a1])
    out = b.op("MatMul", [b.op("Reshape", [x, b.i64([0, -1, k])]),
                          b.op("Reshape", [y, b.i64([0, k, -1])])])
    return b.op("Reshape", [out, b.i64([0, *(x_rest + y_rest or [1])])], name=node.name)
