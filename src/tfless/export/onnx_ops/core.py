"""ONNX converters for core layers: Dense, EinsumDense, Embedding, Masking and no-ops."""

from __future__ import annotations

import numpy as np

from ...graph import Node
from ...ops.core import INFERENCE_NOOPS
from ..onnx_builder import OnnxBuilder, converter
from .activations import activation


def bias_and_activation(b: OnnxBuilder, node: Node, y: str) -> str:
    if "bias" in node.weights:
        y = b.op("Add", [y, b.weight(node, "bias")], name=node.name)
    return activation(b, node.config.get("activation"), y, node.name)


@converter("Dense")
def convert_dense(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    y = b.op("MatMul", [xs[0], b.weight(node, "kernel")], name=node.name)
    return bias_and_activation(b, node, y)


@converter("EinsumDense")
def convert_einsum_dense(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    y = b.op("Einsum", [xs[0], b.weight(node, "kernel")], name=node.name,
             equation=node.config["equation"])
    return bias_and_activation(b, node, y)


def _embedding_mask(b: OnnxBuilder, node: Node, xs: list[str], masks: list) -> list:
    if node.config.get("mask_zero"):
        zero = b.const(np.zeros((), b.dtype(node.inputs[0])), "zero")
        return [b.op("Not", [b.op("Equal", [xs[0], zero])], name=f"{node.name}/mask")]
    return [None]


@converter("Embedding", mask=_embedding_mask)
def convert_embedding(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    ids = xs[0] if b.dtype(node.inputs[0]) == np.int64 else b.cast(xs[0], np.int64)
    return b.op("Gather", [b.weight(node, "embeddings"), ids], name=node.name, axis=0)


def _keep(b: OnnxBuilder, node: Node, x: str, keepdims: bool) -> str:
    """Positions where any feature differs from mask_value (as float 0/1)."""
    value = b.f32(node.config.get("mask_value", 0.0))
    differs = b.cast(b.op("Not", [b.op("Equal", [x, value])]), np.float32)
    return b.reduce("ReduceMax", differs, [-1], keepdims)


def _masking_mask(b: OnnxBuilder, node: Node, xs: list[str], masks: list) -> list:
    return [b.cast(_keep(b, node, xs[0], False), bool)]


@converter("Masking", mask=_masking_mask)
def convert_masking(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    return b.op("Mul", [xs[0], _keep(b, node, xs[0], True)], name=node.name)


@converter(*INFERENCE_NOOPS)
def convert_identity(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    return b.op("Identity", [xs[0]], name=node.name)


@converter("LayerScale")
def convert_layer_scale(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    return b.op("Mul", [xs[0], b.weight(node, "gamma")], name=node.name)
