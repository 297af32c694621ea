"""Layers outside the main families: Keras 3's ReversibleEmbedding, and the tf_keras 2.x
layers Keras 3 dropped (SyncBatchNormalization, LocallyConnected1D/2D,
RandomFourierFeatures).

Each reuses the family kernels where one exists (embedding lookup, batch normalization,
activations) and adds only what is particular to the layer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError, UnsupportedLayer
from ..registry import register
from .activations import get_activation
from .core import build_embedding
from .normalization import _batch_norm_weights, build_batch_normalization

F32 = np.float32


# ----- ReversibleEmbedding ----------------------------------------------------------------

def _reversible_weights(config: dict[str, Any]) -> list[str]:
    if config.get("quantization_mode"):
        raise UnsupportedLayer(f"layer '{config.get('name', '')}': quantized ReversibleEmbedding "
                               "layers are not supported")
    return ["embeddings"] if config.get("tie_weights", True) else \
        ["embeddings", "reverse_embeddings"]


def _reverse(config: dict[str, Any]) -> bool:
    return bool((config.get("call_kwargs") or {}).get("reverse", False))


def _reversible_mask(config: dict, inputs: list, masks: list) -> list:
    if _reverse(config) or not config.get("mask_zero"):
        return [None]
    return [np.asarray(inputs[0]) != 0]


@register("ReversibleEmbedding", weights=_reversible_weights, mask=_reversible_mask)
def build_reversible_embedding(config: dict, weights: dict) -> Any:
    """Forward: an Embedding lookup. `reverse=True`: logits = x @ embeddings.T (or the
    untied reverse_embeddings), optionally soft-capped with tanh."""
    if not _reverse(config):
        return build_embedding({**config, "call_args": None, "call_kwargs": None},
                               {"embeddings": weights["embeddings"]})
    kernel = np.asarray(weights["embeddings"], F32).T if config.get("tie_weights", True) \
        else np.asarray(weights["reverse_embeddings"], F32)
    cap = config.get("logit_soft_cap")
    dtype = config.get("reverse_dtype")
    if dtype not in (None, "float32"):
        raise UnsupportedLayer(f"layer '{config.get('name', '')}': reverse_dtype={dtype!r} is "
                               "not supported (float32 only)")

    def run(x: np.ndarray) -> np.ndarray:
        logits = np.asarray(x, F32) @ kernel
        if cap is not None:
            logits = np.tanh(logits / F32(cap)) * F32(cap)
        return logits

    return run


# ----- tf_keras-only layers ----------------------------------------------------------------

register("SyncBatchNormalization", weights=_batch_norm_weights, mask="keep")(
    build_batch_normalization)


def _locally_connected_weights(config: dict[str, Any]) -> list[str]:
    return ["kernel", "bias"] if config.get("use_bias", True) else ["kernel"]


def _local_windows(size: int, kernel: int, stride: int, padding: str, name: str) -> int:
    if padding != "valid":
        raise UnsupportedLayer(f"layer '{name}': padding='{padding}' is not supported by "
                               "LocallyConnected layers (tf_keras allows only 'valid')")
    return (size - kernel) // stride + 1


def make_locally_connected(rank: int) -> Any:
    def build(config: dict, weights: dict) -> Any:
        name = config.get("name", "")
        impl = int(config.get("implementation", 1))
        if impl != 1:
            raise UnsupportedLayer(f"layer '{name}': implementation={impl} is not supported; "
                                   "tfless runs tf_keras's default implementation=1")
        ks = tuple(int(k) for k in np.broadcast_to(config["kernel_size"], (rank,)))
        st = tuple(int(s) for s in np.broadcast_to(config.get("strides", 1), (rank,)))
        first = config.get("data_format") == "channels_first"
        kernel = np.asarray(weights["kernel"], F32)
        bias = weights.get("bias")
        act = get_activation(config.get("activation"), name)
        filters = int(config["filters"])

        def run(x: np.ndarray) -> np.ndarray:
            x = np.asarray(x, F32)
            if x.ndim != rank + 2:
                raise InputError(f"layer '{name}' expects rank {rank + 2} inputs, got {x.shape}")
            xl = np.moveaxis(x, 1, -1) if first else x
            outs = [_local_windows(n, k, s, config.get("padding", "valid"), name)
                    for n, k, s in zip(xl.shape[1:-1], ks, st)]
            grids = np.meshgrid(*[np.arange(o) * s for o, s in zip(outs, st)], indexing="ij")
            taps = np.meshgrid(*[np.arange(k) for k in ks], indexing="ij")
            index = tuple(g.reshape(g.shape + (1,) * rank) + t.reshape((1,) * rank + t.shape)
                          for g, t in zip(grids, taps))
            patches = xl[(slice(None), *index)]  # (batch, *outs, *ks, C)
            if first:  # tf_keras flattens each channels_first patch as (C, *ks)
                patches = np.moveaxis(patches, -1, rank + 1)
            n_pos = int(np.prod(outs))
            flat = patches.reshape(xl.shape[0], n_pos, -1)
            w = kernel.reshape(n_pos, flat.shape[-1], filters)
            y = np.einsum("bpi,pif->bpf", flat, w).reshape(xl.shape[0], *outs, filters)
            if first:
                y = np.moveaxis(y, -1, 1)
            if bias is not None:
                # tf_keras's bias_add reshapes (not transposes) the (*outs, filters) bias to
                # (filters, *outs) for channels_first
                b = np.asarray(bias, F32)
                y = y + (b.reshape(filters, *outs) if first else b.reshape(*outs, filters))
            return act(y)

        return run

    return build


register("LocallyConnected1D", weights=_locally_connected_weights)(make_locally_connected(1))
register("LocallyConnected2D", weights=_locally_connected_weights)(make_locally_connected(2))


@register("RandomFourierFeatures", weights=("kernel_scale", "unscaled_kernel", "bias"))
def build_random_fourier_features(config: dict, weights: dict) -> Any:
    """tf_keras's RandomFourierFeatures: cos(x @ (unscaled_kernel / kernel_scale) + bias), its
    random kernel and bias stored as non-trainable weights."""
    kernel = (F32(1) / np.asarray(weights["kernel_scale"], F32)) * \
        np.asarray(weights["unscaled_kernel"], F32)
    bias = np.asarray(weights["bias"], F32)
    return lambda x: np.cos(np.asarray(x, F32) @ kernel + bias)
