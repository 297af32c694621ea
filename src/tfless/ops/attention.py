"""Attention layers: Attention, AdditiveAttention, MultiHeadAttention, GroupedQueryAttention.

The formulas follow the Keras version that wrote the file, because masked positions are
treated differently: tf_keras adds -1e9 to masked scores; Keras 3's Softmax replaces
them with -1e9 and zeroes masked weights afterwards, while its fused
`dot_product_attention` route (rank-4 projections, no dropout, no returned scores) fills
them with -0.7 * float32 max and leaves fully masked rows uniform.
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import InputError, ModelFormatError, UnsupportedLayer
from ..registry import register
from .activations import masked_softmax, sigmoid, softmax

F32 = np.float32
TENSOR = "__tensor__"
KERAS3_FUSED_NEGATIVE = F32(3.38953e38 * -0.7)


# ----- call arguments ---------------------------------------------------------------------
def _position(value: Any) -> int | None:
    if isinstance(value, dict) and TENSOR in value:
        return int(value[TENSOR])
    return None


class CallArgs:
    """Named tensor positions and plain values of one layer call (`call_args`/`call_kwargs`)."""

    def __init__(self, config: dict[str, Any], names: tuple[str, ...]) -> None:
        args = config.get("call_args")
        kwargs = config.get("call_kwargs") or {}
        self.values: dict[str, Any] = dict(kwargs)
        if args is None:
            args = [[{TENSOR: i} for i in range(len(names))]] if names[0] == "inputs" \
                else [{TENSOR: 0}]
        for name, value in zip(names, args):
            self.values.setdefault(name, value)

    def tensor(self, name: str) -> int | None:
        return _position(self.values.get(name))

    def tensors(self, name: str) -> list[int | None]:
        value = self.values.get(name)
        if isinstance(value, (list, tuple)):
            return [_position(v) for v in value]
        pos = _position(value)
        return [] if pos is None else [pos]

    def flag(self, name: str) -> bool:
        return bool(self.values.get(name, False))


def _input_mask(masks: list | None, pos: int | None) -> np.ndarray | None:
    if masks is None or pos is None or pos >= len(masks) or masks[pos] is None:
        return None
    return np.asarray(masks[pos]).astype(bool)


# ----- Attention / AdditiveAttention ------------------------------------------------------
def _dense_attention_weights(additive: bool) -> Callable[[dict[str, Any]], list[str]]:
    def names(config: dict[str, Any]) -> list[str]:
        out = ["scale"] if config.get("use_scale", additive) else []
        if not additive and config.get("score_mode", "dot") == "concat":
            out.append("concat_score_weight")
        return out

    return names


def _dense_attention_outputs(config: dict[str, Any]) -> int:
    return 2 if CallArgs(config, ("inputs",)).flag("return_attention_scores") else 1


def _dense_attention_masks(config: dict[str, Any], inputs: list, masks: list) -> list:
    call = CallArgs(config, ("inputs",))
    positions = call.tensors("inputs")
    explicit = call.tensors("mask")
    if explicit and explicit[0] is not None:
        q_mask = np.asarray(inputs[explicit[0]]).astype(bool)
    else:
        q_mask = _input_mask(masks, positions[0] if positions else None)
    return [q_mask] + [None] * (_dense_attention_outputs(config) - 1)


def _build_dense_attention(config: dict[str, Any], weights: dict[str, np.ndarray],
                           additive: bool) -> Callable:
    name = config.get("name", "")
    call = CallArgs(config, ("inputs",))
    positions = call.tensors("inputs")
    if len(positions) not in (2, 3) or None in positions:
        raise ModelFormatError(
            f"layer '{name}': attention layers take [query, value] or [query, value, key]; "
            f"got call arguments {config.get('call_args')!r}"
        )
    explicit_masks = call.tensors("mask")
    score_mode = "additive" if additive else config.get("score_mode", "dot")
    if score_mode not in ("dot", "concat", "additive"):
        raise UnsupportedLayer(f"layer '{name}': score_mode '{score_mode}' is not supported")
    scale = weights.get("scale")
    concat_weight = weights.get("concat_score_weight")
    causal = call.flag("use_causal_mask") or bool(config.get("causal", False))
    return_scores = call.flag("return_attention_scores")
    keras3 = "keras_major" not in config

    def scores_of(q: np.ndarray, k: np.ndarray) -> np.ndarray:
        if score_mode == "dot":
            s = q @ np.swapaxes(k, -1, -2)
            return s * scale if scale is not None else s
        pair = q[..., :, None, :] + k[..., None, :, :]
        if score_mode == "additive":
            return np.sum((scale if scale is not None else F32(1)) * np.tanh(pair), axis=-1)
        inner = np.tanh(scale * pair) if scale is not None else np.tanh(pair)
        return concat_weight * np.sum(inner, axis=-1)

    def run(*inputs: np.ndarray, mask: list | None = None) -> Any:
        q, v = (np.asarray(inputs[p], F32) for p in positions[:2])
        k = np.asarray(inputs[positions[2]], F32) if len(positions) > 2 else v
        if explicit_masks:
            q_mask, v_mask = (None if p is None else np.asarray(inputs[p]).astype(bool)
                              for p in (explicit_masks + [None, None])[:2])
        else:
            q_mask, v_mask = (_input_mask(mask, p) for p in positions[:2])
        scores = scores_of(q, k)
        keep = None if v_mask is None else v_mask[..., None, :]
        if causal:
            lower = np.tril(np.ones(scores.shape[-2:], bool))[None]
            keep = lower if keep is None else keep & lower
        if keep is not None:
            scores = np.where(keep, scores, scores - F32(1e9)) if keras3 \
                else scores - F32(1e9) * (~keep).astype(F32)
        weights_ = softmax(scores, axis=-1)
        out = weights_ @ v
        if q_mask is not None:
            out = np.where(q_mask[..., None], out, F32(0)) if keras3 \
                else out * q_mask[..., None].astype(F32)
        return (out, weights_) if return_scores else out

    return run


@register("Attention", weights=_dense_attention_weights(False), mask=_dense_attention_masks,
          uses_mask=True, num_outputs=_dense_attention_outputs)
def build_attention(config: dict, weights: dict) -> Callable:
    return _build_dense_attention(config, weights, additive=False)


@register("AdditiveAttention", weights=_dense_attention_weights(True),
          mask=_dense_attention_masks, uses_mask=True, num_outputs=_dense_attention_outputs)
def build_additive_attention(config: dict, weights: dict) -> Callable:
    return _build_dense_attention(config, weights, additive=True)


# ----- MultiHeadAttention / GroupedQueryAttention ---------------------------------------
MHA_ARGS = ("query", "value", "key", "query_mask", "value_mask", "key_mask", "attention_mask",
            "return_attention_scores", "training", "use_causal_mask")
PROJECTIONS = ("query", "key", "gate", "value", "attention_output")
# Keras 3 object paths of the projections, in `layer.weights` order (newer Keras 3 versions
# save them without the leading underscore).
HEAD_CHILDREN = tuple(f"{u}{p}_dense" for p in ("query", "key", "gate", "value", "output")
                      for u in ("_", ""))


def _projections(config: dict[str, Any]) -> list[str]:
    return [p for p in PROJECTIONS if p != "gate" or config.get("use_gate")]


def _mha_weight_names(config: dict[str, Any]) -> list[str]:
    per = ("kernel", "bias") if config.get("use_bias", True) else ("kernel",)
    return [f"{p}/{w}" for p in _projections(config) for w in per]


def _mha_outputs(config: dict[str, Any]) -> int:
    return 2 if CallArgs(config, MHA_ARGS).flag("return_attention_scores") else 1


def _mha_masks(config: dict[str, Any], inputs: list, masks: list) -> list:
    call = CallArgs(config, MHA_ARGS)
    explicit = call.tensor("query_mask")
    q_mask = np.asarray(inputs[explicit]).astype(bool) if explicit is not None \
        else _input_mask(masks, call.tensor("query"))
    return [q_mask] + [None] * (_mha_outputs(config) - 1)


def _letters(i: int) -> str:
    return string.ascii_lowercase[i]


def attention_equations(rank: int, attn_axes: tuple[int, ...]) -> tuple[str, str, int]:
    """Keras's einsum equations for scores and combination over `attn_axes` of projected
    tensors of rank `rank` (the heads axis counts as a batch axis)."""
    target = "".join(_letters(i) for i in range(rank))
    batch_dims = tuple(np.delete(range(rank), attn_axes + (rank - 1,)))
    offset = rank
    source = ""
    for i in range(rank):
        if i in batch_dims or i == rank - 1:
            source += target[i]
        else:
            source += _letters(offset)
            offset += 1
    product = "".join([target[i] for i in batch_dims] + [target[i] for i in attn_axes]
                      + [source[i] for i in attn_axes])
    return f"{source},{target}->{product}", f"{product},{source}->{target}", len(product)


def _project(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None, bound: int
             ) -> np.ndarray:
    """x's last `bound` axes contracted with kernel's first ones, as one 2-D matmul (what
    np.tensordot does, without its per-call axis bookkeeping)."""
    inner = kernel.shape[:bound]
    if x.shape[x.ndim - bound:] != inner:
        raise InputError(f"projection of an input of shape {x.shape} with a kernel of shape "
                         f"{kernel.shape}: the last {bound} axes must be {inner}")
    flat = kernel.reshape(math.prod(inner), -1)
    y = np.matmul(x.reshape(-1, flat.shape[0]), flat)
    y = y.reshape(*x.shape[:x.ndim - bound], *kernel.shape[bound:]).astype(F32, copy=False)
    if bias is not None:
        y += bias
    return y


def _combined_mask(q_mask: np.ndarray | None, v_mask: np.ndarray | None,
                   k_mask: np.ndarray | None, attention_mask: np.ndarray | None,
                   causal: bool, window: int | None, t: int, s: int, keras3: bool
                   ) -> np.ndarray | None:
    """Keras's `_compute_attention_mask`: query/value/key masks, causal and sliding-window
    masks ANDed with an explicit attention mask."""
    auto = None
    if q_mask is not None:
        auto = q_mask[..., :, None]
    for m in (v_mask, k_mask):
        if m is not None:
            auto = m[..., None, :] if auto is None else auto & m[..., None, :]
    rows, cols = np.arange(t)[:, None], np.arange(s)[None, :]
    if causal:
        lower = (rows >= cols)[None]
        auto = lower if auto is None else auto & lower
    if window is not None:
        band = (np.abs(rows - cols) < window)[None]
        auto = band if auto is None else auto & band
    if attention_mask is not None and (keras3 or auto is not None):
        attention_mask = attention_mask.astype(bool)
    if auto is None:
        return attention_mask
    return auto if attention_mask is None else attention_mask & auto


def _expand_mask(mask: np.ndarray, rank: int, n_attn_axes: int) -> np.ndarray:
    axis = -n_attn_axes * 2 - 1
    while mask.ndim < rank:
        mask = np.expand_dims(mask, axis)
    return mask


def _fused_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None,
                     scale: float) -> np.ndarray:
    """Keras 3's `ops.dot_product_attention` on (B, T, N, H) tensors."""
    # batched matmuls over (B, N): einsum with optimize=True searched its contraction path
    # on every call, which cost as much as the arithmetic for a 128-step sequence
    logits = np.matmul(q.transpose(0, 2, 1, 3), k.transpose(0, 2, 3, 1)).astype(F32, copy=False)
    logits *= F32(scale)
    if mask is not None:
        logits = np.where(mask.astype(bool), logits, KERAS3_FUSED_NEGATIVE)
    probs = softmax(logits, axis=-1)
    out = np.matmul(probs, v.transpose(0, 2, 1, 3)).astype(F32, copy=False)
    return out.transpose(0, 2, 1, 3)


class _Heads:
    """Shared pieces of MultiHeadAttention and GroupedQueryAttention."""

    def __init__(self, config: dict[str, Any], weights: dict[str, np.ndarray]) -> None:
        self.name = config.get("name", "")
        self.call = CallArgs(config, MHA_ARGS)
        if self.call.tensor("query") is None or self.call.tensor("value") is None:
            raise ModelFormatError(
                f"layer '{self.name}': the call has no query/value tensors "
                f"(call_args={config.get('call_args')!r}, call_kwargs={config.get('call_kwargs')!r})"
            )
        self.keras3 = "keras_major" not in config
        self.dropout = float(config.get("dropout") or 0.0)
        self.window = config.get("sliding_window")
        self.return_scores = self.call.flag("return_attention_scores")
        self.causal = self.call.flag("use_causal_mask")
        self.w = {p: (weights[f"{p}/kernel"], weights.get(f"{p}/bias"))
                  for p in _projections(config)}

    def project(self, part: str, x: np.ndarray, bound: int = 1) -> np.ndarray:
        kernel, bias = self.w[part]
        return _project(x, kernel, bias, bound)

    def tensors(self, inputs: tuple, mask: list | None) -> tuple:
        call = self.call
        query = np.asarray(inputs[call.tensor("query")], F32)
        value = np.asarray(inputs[call.tensor("value")], F32)
        key_pos = call.tensor("key")
        key = value if key_pos is None else np.asarray(inputs[key_pos], F32)

        def mask_of(arg: str, pos: int | None) -> np.ndarray | None:
            explicit = call.tensor(f"{arg}_mask")
            if explicit is not None:
                return np.asarray(inputs[explicit]).astype(bool)
            return _input_mask(mask, pos)

        q_mask = mask_of("query", call.tensor("query"))
        v_mask = mask_of("value", call.tensor("value"))
        k_mask = mask_of("key", key_pos) if key_pos is not None else None
        att_pos = call.tensor("attention_mask")
        attention_mask = None if att_pos is None else np.asarray(inputs[att_pos])
        combined = _combined_mask(q_mask, v_mask, k_mask, attention_mask, self.causal,
                                  self.window, query.shape[1], value.shape[1], self.keras3)
        return query, key, value, combined


def _mha_attention_axes(config: dict[str, Any], rank: int) -> tuple[int, ...]:
    axes = config.get("attention_axes")
    if axes is None:
        return tuple(range(1, rank - 2))
    if isinstance(axes, int):
        axes = (axes,)
    return tuple(a if a >= 0 else (rank - 1) + a for a in axes)


@register("MultiHeadAttention", weights=_mha_weight_names, mask=_mha_masks, uses_mask=True,
          children=HEAD_CHILDREN,
          num_outputs=_mha_outputs)
def build_multi_head_attention(config: dict, weights: dict) -> Callable:
    heads = _Heads(config, weights)
    key_dim = int(config["key_dim"])
    scale = 1.0 / np.sqrt(float(key_dim))
    kernel_q = weights["query/kernel"]
    if kernel_q.ndim != 3:
        raise ModelFormatError(
            f"layer '{heads.name}': query kernel has shape {kernel_q.shape}, expected "
            "(features, num_heads, key_dim)"
        )

    def run(*inputs: np.ndarray, mask: list | None = None) -> Any:
        query, key, value, attention_mask = heads.tensors(inputs, mask)
        gate = sigmoid(heads.project("gate", query)) if "gate" in heads.w else None
        q = heads.project("query", query)
        k = heads.project("key", key)
        v = heads.project("value", value)
        rank = q.ndim
        axes = _mha_attention_axes(config, rank)
        fused = heads.keras3 and not (heads.dropout > 0.0 or heads.return_scores or rank != 4)
        if fused:
            if attention_mask is not None:
                attention_mask = _expand_mask(attention_mask, 4, len(axes))
            out = _fused_attention(q, k, v, attention_mask, scale)
            scores = None
        else:
            dot_eq, combine_eq, scores_rank = attention_equations(rank, axes)
            q = q * F32(scale)
            raw = np.einsum(dot_eq, k, q, optimize=True).astype(F32)
            norm_axes = tuple(range(scores_rank - len(axes), scores_rank))
            if attention_mask is not None:
                attention_mask = _expand_mask(attention_mask, raw.ndim, len(axes))
            scores = masked_softmax(raw, attention_mask, norm_axes, heads.keras3)
            out = np.einsum(combine_eq, scores, v, optimize=True).astype(F32)
        if gate is not None:
            out = out * gate
        out = heads.project("attention_output", out, bound=2)
        return (out, scores) if heads.return_scores else out

    return run


@register("GroupedQueryAttention", weights=_mha_weight_names, mask=_mha_masks, uses_mask=True,
          children=HEAD_CHILDREN,
          num_outputs=_mha_outputs)
def build_grouped_query_attention(config: dict, weights: dict) -> Callable:
    heads = _Heads(config, weights)
    head_dim = int(config["head_dim"])
    n_query = int(config["num_query_heads"])
    n_kv = int(config["num_key_value_heads"])
    if n_query % n_kv:
        raise ModelFormatError(
            f"layer '{heads.name}': num_query_heads={n_query} is not a multiple of "
            f"num_key_value_heads={n_kv}"
        )
    repeats = n_query // n_kv
    scale = 1.0 / np.sqrt(float(head_dim))

    def run(*inputs: np.ndarray, mask: list | None = None) -> Any:
        query, key, value, attention_mask = heads.tensors(inputs, mask)
        if query.ndim != 3:
            raise InputError(
                f"layer '{heads.name}' expects (batch, time, features) inputs, got {query.shape}"
            )
        gate = sigmoid(heads.project("gate", query)) if "gate" in heads.w else None
        q = heads.project("query", query)
        k = np.repeat(heads.project("key", key), repeats, axis=2)
        v = np.repeat(heads.project("value", value), repeats, axis=2)
        if attention_mask is not None:
            attention_mask = _expand_mask(attention_mask, 4, 1)
        if not (heads.dropout > 0.0 or heads.return_scores):
            out, scores = _fused_attention(q, k, v, attention_mask, scale), None
        else:
            raw = np.einsum("bquh,bkuh->buqk", q * F32(scale), k, optimize=True).astype(F32)
            scores = masked_softmax(raw, attention_mask, (-1,), keras3=True)
            out = np.einsum("buqk,bkuh->bquh", scores, v, optimize=True).astype(F32)
        if gate is not None:
            out = out * gate
        out = heads.project("attention_output", out, bound=2)
        return (out, scores) if heads.return_scores else out

    return run
