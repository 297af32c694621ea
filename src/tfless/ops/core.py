"""Core layers: Dense, EinsumDense, Embedding, Masking, Identity and inference no-ops."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError, ModelFormatError, UnsupportedLayer
from ..registry import register
from .activations import get_activation
from .quantized import (
    KERAS_QUANTIZED_MODES,
    keras_quantization,
    keras_quantized_einsum,
    keras_quantized_kernel,
    keras_quantized_table,
    keras_weight_names,
    round_to_bfloat16,
)

F32 = np.float32


def _bias_names(config: dict[str, Any], kernel: str = "kernel") -> list[str]:
    return [kernel, "bias"] if config.get("use_bias", True) else [kernel]


def check_weight_rank(layer: str, name: str, array: np.ndarray, rank: int) -> None:
    if array.ndim != rank:
        raise ModelFormatError(
            f"layer '{layer}': weight '{name}' has shape {array.shape}, expected rank {rank}"
        )


def _quantization_mode(config: dict[str, Any]) -> str | None:
    """The quantization mode Keras 3 recorded for a layer (`model.quantize(...)`), if any:
    a `quantization_config` object (Keras >= 3.13), or a quantized dtype policy, stored as
    `{"mode": "int8", "source_name": ...}` or by name (`"int8_from_float32"`)."""
    qconfig = config.get("quantization_config")
    if isinstance(qconfig, dict):
        return str(qconfig.get("class_name") or "quantized")
    if qconfig:
        return str(qconfig)
    policy = config.get("dtype")
    if isinstance(policy, dict):
        inner = policy.get("config") or {}
        mode = inner.get("mode") or inner.get("name") or ""
        if "Quantized" in str(policy.get("class_name", "")) and not mode:
            return str(policy["class_name"])
    else:
        mode = policy if isinstance(policy, str) else ""
    mode = str(mode)
    return mode if mode.split("_from_")[0].split("/")[0] in KERAS_QUANTIZED_MODES else None


def check_no_quantization(config: dict[str, Any]) -> None:
    """Keras 3 quantized layers store int8/int4/float8 weights with scales, and int8 layers
    also quantize their inputs: float32 arithmetic cannot reproduce them, so they are refused."""
    mode = _quantization_mode(config)
    if mode:
        raise UnsupportedLayer(
            f"layer '{config.get('name', '')}' is quantized (field 'dtype'/'quantization_config': "
            f"{mode}); tfless runs float models only: save the model before model.quantize()"
        )


def _runs_quantized(config: dict[str, Any], weight: str | None) -> bool:
    """A layer quantized in a mode tfless computes (ops/quantized.py): int8/int4/float8
    Dense, int8/int4 Embedding."""
    q = keras_quantization(config) if weight else None
    modes = {"kernel": ("int8", "int4", "float8"), "embeddings": ("int8", "int4"),
             "einsum_kernel": ("int8", "float8")}.get(str(weight), ())
    return q is not None and q["mode"] in modes


def _check_float(config: dict[str, Any], weight: str | None) -> None:
    """Refuse a quantized layer tfless does not compute; a float dtype policy is float."""
    if weight is None or keras_quantization(config) is not None:
        check_no_quantization(config)
    elif "Quantized" in str((config.get("dtype") or {}).get("class_name", "")
                            if isinstance(config.get("dtype"), dict) else ""):
        check_no_quantization(config)


def _quantizable(names: Any, weight: str | None = None) -> Any:
    """Weight names of a layer Keras 3 can quantize, checked for quantization first (a
    quantized layer stores other weights, and the count mismatch would hide the reason)."""
    def weight_names(config: dict[str, Any]) -> Any:
        plain = list(names(config) if callable(names) else names)
        if _runs_quantized(config, weight):
            return keras_weight_names(config, plain, str(weight).replace("einsum_", ""))
        _check_float(config, weight)
        return plain

    return weight_names


@register("Dense", weights=_quantizable(_bias_names, "kernel"), mask="keep")
def build_dense(config: dict, weights: dict) -> Any:
    name = config.get("name", "")
    kernel = weights["kernel"]
    units = config.get("units")
    product = None
    if _runs_quantized(config, "kernel"):
        mode, kernel, product = keras_quantized_kernel(config, weights, int(units or 0))
        if mode == "float8" and weights.get("bias") is not None:
            weights = {**weights, "bias": round_to_bfloat16(weights["bias"])}  # as Keras
    else:
        _check_float(config, "kernel")
    check_weight_rank(name, "kernel", kernel, 2)
    if units is not None and kernel.shape[1] != int(units):
        raise ModelFormatError(
            f"layer '{name}': kernel has shape {kernel.shape} but units={units}"
        )
    bias = weights.get("bias")
    act = get_activation(config.get("activation"), name)

    def run(x: np.ndarray) -> np.ndarray:
        if x.shape[-1] != kernel.shape[0]:
            raise InputError(
                f"layer '{name}' expects last dimension {kernel.shape[0]}, got shape {x.shape}"
            )
        y = x @ kernel if product is None else product(x)
        if bias is not None:
            y += bias
        return act(y)

    return run


def _einsum_weight_names(config: dict[str, Any]) -> list[str]:
    return ["kernel", "bias"] if config.get("bias_axes") else ["kernel"]


@register("EinsumDense", weights=_quantizable(_einsum_weight_names, "einsum_kernel"))
def build_einsum_dense(config: dict, weights: dict) -> Any:
    product = None
    if _runs_quantized(config, "einsum_kernel"):
        product = keras_quantized_einsum(config, weights)
        if keras_quantization(config)["mode"] == "float8" and weights.get("bias") is not None:
            weights = {**weights, "bias": round_to_bfloat16(weights["bias"])}  # as Keras
    else:
        _check_float(config, "einsum_kernel")
    equation = config["equation"]
    kernel = weights["kernel"]
    bias = weights.get("bias")
    act = get_activation(config.get("activation"), config.get("name", ""))

    def run(x: np.ndarray) -> np.ndarray:
        y = np.einsum(equation, x, kernel, optimize=True) if product is None else product(x)
        if bias is not None:
            y = y + bias
        return act(y)

    return run


def _embedding_mask(config: dict, inputs: list, masks: list) -> list:
    if config.get("mask_zero"):
        return [np.asarray(inputs[0]) != 0]
    return [None]


@register("Embedding", weights=_quantizable(("embeddings",), "embeddings"),
          mask=_embedding_mask)
def build_embedding(config: dict, weights: dict) -> Any:
    if _runs_quantized(config, "embeddings"):
        table = keras_quantized_table(config, weights)
    else:
        _check_float(config, "embeddings")
        table = weights["embeddings"]
    name = config.get("name", "")
    check_weight_rank(name, "embeddings", table, 2)
    rows = table.shape[0]

    def run(x: np.ndarray) -> np.ndarray:
        idx = np.asarray(x)
        if idx.dtype.kind == "f":
            idx = idx.astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= rows):
            raise InputError(
                f"layer '{name}': token ids must be in [0, {rows}); got values in "
                f"[{idx.min()}, {idx.max()}]"
            )
        return table[idx]

    return run


def _masking_mask(config: dict, inputs: list, masks: list) -> list:
    value = F32(config.get("mask_value", 0.0))
    return [np.any(np.asarray(inputs[0]) != value, axis=-1)]


@register("Masking", mask=_masking_mask)
def build_masking(config: dict, weights: dict) -> Any:
    value = F32(config.get("mask_value", 0.0))

    def run(x: np.ndarray) -> np.ndarray:
        keep = np.any(x != value, axis=-1, keepdims=True)
        return x * keep.astype(x.dtype)

    return run


@register("LayerScale", weights=("gamma",), mask="keep")
def build_layer_scale(config: dict, weights: dict) -> Any:
    """ConvNeXt's per-channel scale (keras.applications.convnext.LayerScale): x * gamma."""
    gamma = weights["gamma"]
    return lambda x: x * gamma


INFERENCE_NOOPS = (
    "StochasticDepth",
    "Identity", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
    "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization",
    "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast",
    "RandomBrightness", "RandomHeight", "RandomWidth", "RandomGrayscale", "RandomHue",
    "RandomSaturation", "RandomSharpness", "RandomShear", "RandomColorJitter",
    "RandomPosterization", "RandomInvert", "RandomErasing", "RandomGaussianBlur",
    "RandomPerspective", "RandomElasticTransform", "RandomColorDegeneration",
    "Solarization", "MixUp", "CutMix", "AugMix", "RandAugment",
)


@register(*INFERENCE_NOOPS, mask="keep", noop=True)
def build_identity(config: dict, weights: dict) -> Any:
    return lambda x: x
