"""Bring layer configs written by Keras 1, 2 and 3 to one spelling.

The graph builder calls `normalize_layer` on every layer entry; ops then read only the
modern (Keras 2/3) field names. Old class names become their modern class, Keras 1 field
names become Keras 2 ones, and config keys that only some Keras versions know are left
alone (ops ignore what does not change inference).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import UnsupportedLayer

CLASS_RENAMES = {
    "Model": "Functional",
    "Convolution1D": "Conv1D",
    "Convolution2D": "Conv2D",
    "Convolution3D": "Conv3D",
    "AtrousConvolution1D": "Conv1D",
    "AtrousConvolution2D": "Conv2D",
    "Deconvolution2D": "Conv2DTranspose",
    "Deconvolution3D": "Conv3DTranspose",
    "Convolution2DTranspose": "Conv2DTranspose",
    # Keras 3 exports GroupedQueryAttention as GroupQueryAttention; its object path uses the class name.
    "GroupQueryAttention": "GroupedQueryAttention",
    "SeparableConvolution2D": "SeparableConv2D",
    # tf_keras registers InceptionResNetV2's layer as a custom object under this name
    "Custom>CustomScaleLayer": "CustomScaleLayer",
    "MaxPool1D": "MaxPooling1D", "MaxPool2D": "MaxPooling2D", "MaxPool3D": "MaxPooling3D",
    "AvgPool1D": "AveragePooling1D", "AvgPool2D": "AveragePooling2D",
    "AvgPool3D": "AveragePooling3D",
    "GlobalMaxPool1D": "GlobalMaxPooling1D", "GlobalMaxPool2D": "GlobalMaxPooling2D",
    "GlobalMaxPool3D": "GlobalMaxPooling3D",
    "GlobalAvgPool1D": "GlobalAveragePooling1D", "GlobalAvgPool2D": "GlobalAveragePooling2D",
    "GlobalAvgPool3D": "GlobalAveragePooling3D",
}

MERGE_MODES = {
    "sum": "Add", "mul": "Multiply", "concat": "Concatenate", "ave": "Average",
    "max": "Maximum", "dot": "Dot",
}

# Keras 1 field -> Keras 2 field, for every layer.
KERAS1_FIELDS = {
    "border_mode": "padding",
    "subsample": "strides",
    "subsample_length": "strides",
    "nb_filter": "filters",
    "filter_length": "kernel_size",
    "pool_length": "pool_size",
    "stride": "strides",
    "atrous_rate": "dilation_rate",
    "inner_activation": "recurrent_activation",
    "bias": "use_bias",
    "p": "rate",
}

KERAS_OPS_MODULES = ("keras.src.ops.", "keras.ops.")

DATA_FORMATS = {"tf": "channels_last", "th": "channels_first", "default": "channels_last"}

Normalizer = Callable[[dict[str, Any], int], dict[str, Any]]
# Class-specific rewrites (e.g. Keras 1 RNN fields), filled by the op families that need them.
CLASS_NORMALIZERS: dict[str, Normalizer] = {}


def _keras1_fields(cls: str, cfg: dict[str, Any]) -> dict[str, Any]:
    out = dict(cfg)
    for old, new in KERAS1_FIELDS.items():
        if old in out and new not in out:
            out[new] = out.pop(old)
    if "output_dim" in out and "units" not in out and cls != "Embedding":
        out["units"] = out.pop("output_dim")
    if "nb_row" in out and "nb_col" in out and "kernel_size" not in out:
        out["kernel_size"] = [out.pop("nb_row"), out.pop("nb_col")]
    if "dim_ordering" in out and "data_format" not in out:
        out["data_format"] = DATA_FORMATS.get(out.pop("dim_ordering"), "channels_last")
    return out


def _merge(cfg: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    mode = cfg.get("mode", "sum")
    if not isinstance(mode, str) or mode not in MERGE_MODES:
        raise UnsupportedLayer(
            f"Keras 1 Merge layer '{cfg.get('name')}' uses mode {mode!r}; supported modes: "
            f"{', '.join(MERGE_MODES)}"
        )
    out = {"name": cfg.get("name")}
    if mode == "concat":
        out["axis"] = cfg.get("concat_axis", -1)
    if mode == "dot":
        out["axes"] = cfg.get("dot_axes", -1)
    return MERGE_MODES[mode], out


# Activations whose formula changed in Keras 3: a Keras 1/2 file keeps its own formula.
KERAS2_ACTIVATIONS = {"hard_sigmoid": "hard_sigmoid_keras2"}


def _keras2_activations(cfg: dict[str, Any]) -> dict[str, Any]:
    for key in ("activation", "recurrent_activation"):
        value = cfg.get(key)
        if isinstance(value, str) and value in KERAS2_ACTIVATIONS:
            cfg[key] = KERAS2_ACTIVATIONS[value]
    return cfg


def _is_keras_op_only(cls: str) -> bool:
    """A class name tfless knows only as a raw keras.ops call, not as a layer."""
    from ..registry import REGISTRY

    return cls not in REGISTRY and f"keras.ops.{cls}" in REGISTRY


# Config fields that hold whole layer entries (wrapped layers, RNN cells): the ops read them
# in modern spelling too, so they are normalized with the layer that holds them.
NESTED_LAYER_FIELDS = ("layer", "backward_layer", "cell", "cells")


def _nested_entries(cfg: dict[str, Any], keras_major: int) -> dict[str, Any]:
    for key in NESTED_LAYER_FIELDS:
        value = cfg.get(key)
        if isinstance(value, dict) and "class_name" in value:
            cfg[key] = normalize_layer(value, keras_major)
        elif isinstance(value, list):
            cfg[key] = [normalize_layer(v, keras_major)
                        if isinstance(v, dict) and "class_name" in v else v for v in value]
    return cfg


def normalize_layer(layer: dict[str, Any], keras_major: int) -> dict[str, Any]:
    """A copy of a layer entry with its class and config in modern spelling, the layer
    entries inside its config (NESTED_LAYER_FIELDS) included."""
    cls = layer.get("class_name")
    if not isinstance(cls, str):
        raise UnsupportedLayer(f"layer entry without a class_name: {str(layer)[:200]}")
    cfg = layer.get("config")
    module = layer.get("module")
    registered = layer.get("registered_name")
    # tf_keras's own applications register layers as custom objects (InceptionResNetV2's
    # Custom>CustomScaleLayer); those named in CLASS_RENAMES from an applications module run
    if isinstance(registered, str) and ">" in registered and not (
            registered in CLASS_RENAMES and ".applications." in str(module)):
        raise UnsupportedLayer(
            f"layer '{(cfg or {}).get('name') if isinstance(cfg, dict) else cls}' is the custom "
            f"class '{registered}' (module {module!r}); custom layers cannot be loaded without "
            "their Python code. Rebuild the model with built-in layers"
        )
    out = dict(layer)
    cls = CLASS_RENAMES.get(cls, cls)
    if cls.startswith("keras.ops."):
        pass  # normalized before (a wrapper's entry is read again when it is inlined)
    elif isinstance(module, str) and module.startswith(KERAS_OPS_MODULES):
        # a raw keras.ops call recorded in a Keras 3 Functional model, not a layer
        cls = f"keras.ops.{cls}"
    elif module is None and keras_major >= 3 and _is_keras_op_only(cls):
        # Keras 3 .h5 files drop `module`, e.g. the NotEqual op computing an Embedding mask
        cls = f"keras.ops.{cls}"
    if isinstance(cfg, dict):
        cfg = dict(cfg)
        if keras_major < 2 or "border_mode" in cfg or "output_dim" in cfg and cls != "Embedding" \
                or "dim_ordering" in cfg or "nb_filter" in cfg:
            cfg = _keras1_fields(cls, cfg)
        if cls == "Merge":
            cls, cfg = _merge(cfg)
        if keras_major < 3:
            cfg = _keras2_activations(cfg)
        if cls in CLASS_NORMALIZERS:
            cfg = CLASS_NORMALIZERS[cls](cfg, keras_major)
        cfg = _nested_entries(cfg, keras_major)
    out["class_name"] = cls
    out["config"] = cfg
    return out
