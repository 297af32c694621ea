"""ONNX converters for attention layers: Attention, AdditiveAttention, MultiHeadAttention and
GroupedQueryAttention, with Keras masks, causal/sliding-window masks and explicit
attention masks.

Each converter mirrors `tfless/ops/attention.py` branch for branch, because the Keras
versions treat masked positions differently: tf_keras adds -1e9 to masked scores, Keras 3's
Softmax replaces them with -1e9 and zeroes masked weights afterwards, and Keras 3's fused
`dot_product_attention` route (rank-4 projections, no dropout, no returned scores) fills them
with -0.7 * float32 max. Projections are MatMuls on flattened kernels; attention over
several axes uses the runtime's own einsum equations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import ModelFormatError, UnsupportedLayer
from ...graph import Node
from ...ops.attention import (
    KERAS3_FUSED_NEGATIVE,
    MHA_ARGS,
    CallArgs,
    attention_equations,
)
from ..onnx_builder import OnnxBuilder, converter

F32 = np.float32
SOFTMAX_NEGATIVE = F32(-1e9)  # what Keras's masked Softmax puts on masked scores


@dataclass
class Mask:
    """A mask tensor in the ONNX graph: its name, its rank, and whether it is boolean (an
    explicit tf_keras attention mask stays numeric, as the runtime keeps it)."""

    name: str
    rank: int
    boolean: bool = True


def _is_keras3(node: Node) -> bool:
    return "keras_major" not in node.config


def _length(b: OnnxBuilder, x: str, axis: int) -> str:
    """The scalar int64 size of `x` along `axis`."""
    return b.op("Gather", [b.op("Shape", [x]), b.i64(axis)], axis=0)


def _positions(b: OnnxBuilder, length: str) -> str:
    return b.op("Range", [b.i64(0), length, b.i64(1)])


def _swap_last(b: OnnxBuilder, x: str, rank: int) -> str:
    return b.op("Transpose", [x], perm=[*range(rank - 2), rank - 1, rank - 2])


def _and(b: OnnxBuilder, a: Mask | None, c: Mask) -> Mask:
    if a is None:
        return c
    return Mask(b.op("And", [a.name, c.name]), max(a.rank, c.rank))


def _bool(b: OnnxBuilder, m: Mask) -> Mask:
    return m if m.boolean else Mask(b.cast(m.name, bool), m.rank)


def _softmax(b: OnnxBuilder, scores: str, axes: tuple[int, ...]) -> str:
    if len(axes) == 1:
        return b.op("Softmax", [scores], axis=axes[0])
    # the runtime's log-sum-exp form for several axes
    peak = b.reduce("ReduceMax", scores, axes)
    total = b.reduce("ReduceSum", b.op("Exp", [b.op("Sub", [scores, peak])]), axes)
    lse = b.op("Add", [peak, b.op("Log", [total])])
    return b.op("Exp", [b.op("Sub", [scores, lse])])


def _masked_softmax(b: OnnxBuilder, scores: str, mask: Mask | None, axes: tuple[int, ...],
                    keras3: bool) -> str:
    """Keras's Softmax layer with a mask (see `ops.attention._masked_softmax`)."""
    if mask is None:
        return _softmax(b, scores, axes)
    if keras3:
        keep = _bool(b, mask).name
        scores = b.op("Where", [keep, scores, b.f32(SOFTMAX_NEGATIVE)])
        return b.op("Where", [keep, _softmax(b, scores, axes), b.f32(0)])
    as_float = b.cast(mask.name, F32)
    penalty = b.op("Mul", [b.op("Sub", [b.f32(1), as_float]), b.f32(SOFTMAX_NEGATIVE)])
    return _softmax(b, b.op("Add", [scores, penalty]), axes)


def _expand_mask(b: OnnxBuilder, mask: Mask, rank: int, n_axes: int) -> Mask:
    missing = rank - mask.rank
    if missing <= 0:
        return mask
    axis = -n_axes * 2 - 1
    name = mask.name
    for _ in range(missing):
        name = b.op("Unsqueeze", [name, b.i64([axis])])
    return Mask(name, rank, mask.boolean)


# ----- Attention / AdditiveAttention ------------------------------------------------------
def _dense_call(node: Node) -> tuple[CallArgs, list[int], list[int | None]]:
    call = CallArgs(node.config, ("inputs",))
    positions = call.tensors("inputs")
    if len(positions) not in (2, 3) or None in positions:
        raise ModelFormatError(
            f"layer '{node.name}': attention layers take [query, value] or [query, value, key]; "
            f"got call arguments {node.config.get('call_args')!r}")
    return call, positions, call.tensors("mask")


def _keras_mask(b: OnnxBuilder, node: Node, pos: int | None) -> Mask | None:
    """The Keras mask that arrived with input `pos` (one rank below its tensor)."""
    if pos is None:
        return None
    name = b.in_masks(node)[pos]
    return None if name is None else Mask(name, len(b.in_shape(node, pos)) - 1)


def _explicit_mask(b: OnnxBuilder, node: Node, xs: list[str], pos: int) -> Mask:
    return Mask(b.cast(xs[pos], bool), len(b.in_shape(node, pos)))


def _dense_masks(b: OnnxBuilder, node: Node, xs: list[str]) -> tuple[Mask | None, Mask | None]:
    _, positions, explicit = _dense_call(node)
    if explicit:
        return tuple(None if p is None else _explicit_mask(b, node, xs, p)  # type: ignore
                     for p in (explicit + [None, None])[:2])
    return _keras_mask(b, node, positions[0]), _keras_mask(b, node, positions[1])


def _dense_out_masks(b: OnnxBuilder, node: Node, xs: list[str], masks: list) -> list:
    call, positions, explicit = _dense_call(node)
    if explicit and explicit[0] is not None:
        q_mask = b.cast(xs[explicit[0]], bool)
    else:
        q_mask = masks[positions[0]]
    return [q_mask] + ([None] if call.flag("return_attention_scores") else [])


def _convert_dense_attention(additive: bool):
    def convert(b: OnnxBuilder, node: Node, xs: list[str]) -> str | list[str]:
        call, positions, _ = _dense_call(node)
        keras3 = _is_keras3(node)
        score_mode = "additive" if additive else node.config.get("score_mode", "dot")
        if score_mode not in ("dot", "concat", "additive"):
            raise UnsupportedLayer(f"layer '{node.name}': score_mode '{score_mode}' is not supported")
        q, v = xs[positions[0]], xs[positions[1]]
        k = xs[positions[2]] if len(positions) > 2 else v
        rank = len(b.in_shape(node, positions[0]))
        q_mask, v_mask = _dense_masks(b, node, xs)
        scale = b.weight(node, "scale") if "scale" in node.weights else None
        if score_mode == "dot":
            scores = b.op("MatMul", [q, _swap_last(b, k, rank)])
            if scale is not None:
                scores = b.op("Mul", [scores, scale])
        else:
            pair = b.op("Add", [b.op("Unsqueeze", [q, b.i64([-2])]),
                                b.op("Unsqueeze", [k, b.i64([-3])])])
            if score_mode == "additive":
                t = b.op("Tanh", [pair])
                scores = b.reduce("ReduceSum", b.op("Mul", [scale, t]) if scale else t, [-1],
                                  keepdims=False)
            else:
                inner = b.op("Tanh", [b.op("Mul", [scale, pair]) if scale else pair])
                scores = b.op("Mul", [b.weight(node, "concat_score_weight"),
                                      b.reduce("ReduceSum", inner, [-1], keepdims=False)])
        keep = None if v_mask is None else Mask(b.op("Unsqueeze", [v_mask.name, b.i64([-2])]),
                                                v_mask.rank + 1)
        if call.flag("use_causal_mask") or node.config.get("causal", False):
            rows = b.op("Unsqueeze", [_positions(b, _length(b, scores, -2)), b.i64([1])])
            cols = b.op("Unsqueeze", [_positions(b, _length(b, scores, -1)), b.i64([0])])
            lower = Mask(b.op("Unsqueeze", [b.op("GreaterOrEqual", [rows, cols]), b.i64([0])]), 3)
            keep = _and(b, keep, lower)
        if keep is not None:
            if keras3:
                scores = b.op("Where", [keep.name, scores,
                                        b.op("Sub", [scores, b.f32(1e9)])])
            else:
                dropped = b.cast(b.op("Not", [keep.name]), F32)
                scores = b.op("Sub", [scores, b.op("Mul", [b.f32(1e9), dropped])])
        weights = b.op("Softmax", [scores], axis=-1)
        out = b.op("MatMul", [weights, v])
        if q_mask is not None:
            qm = b.op("Unsqueeze", [q_mask.name, b.i64([-1])])
            out = b.op("Where", [qm, out, b.f32(0)]) if keras3 \
                else b.op("Mul", [out, b.cast(qm, F32)])
        out = b.op("Identity", [out], name=node.name)
        return [out, weights] if call.flag("return_attention_scores") else out

    return convert


converter("Attention", mask=_dense_out_masks, uses_mask=True)(_convert_dense_attention(False))
converter("AdditiveAttention", mask=_dense_out_masks,
          uses_mask=True)(_convert_dense_attention(True))


# ----- MultiHeadAttention / GroupedQueryAttention ---------------------------------------
class Heads:
    """What MultiHeadAttention and GroupedQueryAttention share: call arguments, projections
    and the combined attention mask."""

    def __init__(self, b: OnnxBuilder, node: Node, xs: list[str]) -> None:
        self.b, self.node, self.xs = b, node, xs
        config = node.config
        self.call = CallArgs(config, MHA_ARGS)
        if self.call.tensor("query") is None or self.call.tensor("value") is None:
            raise ModelFormatError(
                f"layer '{node.name}': the call has no query/value tensors "
                f"(call_args={config.get('call_args')!r}, call_kwargs={config.get('call_kwargs')!r})")
        self.keras3 = _is_keras3(node)
        self.dropout = float(config.get("dropout") or 0.0)
        self.window = config.get("sliding_window")
        self.return_scores = self.call.flag("return_attention_scores")
        self.causal = self.call.flag("use_causal_mask")
        self.query_pos = self.call.tensor("query")
        self.value_pos = self.call.tensor("value")
        self.key_pos = self.call.tensor("key")
        self.query = xs[self.query_pos]
        self.value = xs[self.value_pos]
        self.key = self.value if self.key_pos is None else xs[self.key_pos]
        self.query_rank = len(b.in_shape(node, self.query_pos))

    def project(self, part: str, x: str, rank: int, bound: int = 1) -> str:
        """x (..., *in) tensordot kernel (*in, *out) over the last `bound` axes, + bias."""
        b, node = self.b, self.node
        kernel = node.weights[f"{part}/kernel"]
        n_in = int(np.prod(kernel.shape[:bound]))
        out_dims = [int(d) for d in kernel.shape[bound:]]
        flat_kernel = np.asarray(kernel, F32).reshape(n_in, -1)
        if bound > 1:
            x = b.op("Reshape", [x, b.i64([0] * (rank - bound) + [n_in])])
        y = b.op("MatMul", [x, b.weight(node, f"{part}/kernel", flat_kernel)])
        bias = node.weights.get(f"{part}/bias")
        if bias is not None:
            y = b.op("Add", [y, b.weight(node, f"{part}/bias", np.asarray(bias).reshape(-1))])
        if len(out_dims) != 1:
            y = b.op("Reshape", [y, b.i64([0] * (rank - bound) + out_dims)])
        return y

    def mask(self) -> Mask | None:
        """Keras's `_compute_attention_mask`, as `ops.attention._combined_mask` computes it."""
        b, node, call = self.b, self.node, self.call

        def mask_of(arg: str, pos: int | None) -> Mask | None:
            explicit = call.tensor(f"{arg}_mask")
            if explicit is not None:
                return _explicit_mask(b, node, self.xs, explicit)
            return _keras_mask(b, node, pos)

        q_mask = mask_of("query", self.query_pos)
        v_mask = mask_of("value", self.value_pos)
        k_mask = mask_of("key", self.key_pos) if self.key_pos is not None else None
        auto = None
        if q_mask is not None:
            auto = Mask(b.op("Unsqueeze", [q_mask.name, b.i64([-1])]), q_mask.rank + 1)
        for m in (v_mask, k_mask):
            if m is not None:
                auto = _and(b, auto, Mask(b.op("Unsqueeze", [m.name, b.i64([-2])]), m.rank + 1))
        if self.causal or self.window is not None:
            rows = b.op("Unsqueeze", [_positions(b, _length(b, self.query, 1)), b.i64([1])])
            cols = b.op("Unsqueeze", [_positions(b, _length(b, self.value, 1)), b.i64([0])])
            if self.causal:
                lower = b.op("GreaterOrEqual", [rows, cols])
                auto = _and(b, auto, Mask(b.op("Unsqueeze", [lower, b.i64([0])]), 3))
            if self.window is not None:
                distance = b.op("Abs", [b.op("Sub", [rows, cols])])
                band = b.op("Less", [distance, b.i64(int(self.window))])
                auto = _and(b, auto, Mask(b.op("Unsqueeze", [band, b.i64([0])]), 3))
        att_pos = call.tensor("attention_mask")
        if att_pos is None:
            return auto
        attention = Mask(self.xs[att_pos], len(b.in_shape(node, att_pos)),
                         b.dtype(node.inputs[att_pos]) == np.bool_)
        if self.keras3 or auto is not None:
            attention = _bool(b, attention)
        return attention if auto is None else _and(b, attention, auto)

    def finish(self, out: str, gate: str | None, rank: int, scores: str | None) -> str | list[str]:
        b = self.b
        if gate is not None:
            out = b.op("Mul", [out, gate])
        out = self.project("attention_output", out, rank, bound=2)
        out = b.op("Identity", [out], name=self.node.name)
        return [out, scores] if self.return_scores else out


def fused_attention(b: OnnxBuilder, q: str, k: str, v: str, mask: Mask | None,
                    scale: float) -> str:
    """Keras 3's `ops.dot_product_attention` on (B, T, N, H) tensors."""
    qt = b.op("Transpose", [q], perm=[0, 2, 1, 3])
    kt = b.op("Transpose", [k], perm=[0, 2, 3, 1])
    logits = b.op("Mul", [b.op("MatMul", [qt, kt]), b.f32(scale)])
    if mask is not None:
        logits = b.op("Where", [_bool(b, mask).name, logits, b.f32(KERAS3_FUSED_NEGATIVE)])
    probs = b.op("Softmax", [logits], axis=-1)
    out = b.op("MatMul", [probs, b.op("Transpose", [v], perm=[0, 2, 1, 3])])
    return b.op("Transpose", [out], perm=[0, 2, 1, 3])


def _mha_out_masks(b: OnnxBuilder, node: Node, xs: list[str], masks: list) -> list:
    call = CallArgs(node.config, MHA_ARGS)
    explicit = call.tensor("query_mask")
    q_mask = b.cast(xs[explicit], bool) if explicit is not None else masks[call.tensor("query")]
    return [q_mask] + ([None] if call.flag("return_attention_scores") else [])


def _attention_axes(node: Node, rank: int) -> tuple[int, ...]:
    axes = node.config.get("attention_axes")
    if axes is None:
        return tuple(range(1, rank - 2))
    if isinstance(axes, int):
        axes = (axes,)
    return tuple(int(a) if a >= 0 else (rank - 1) + int(a) for a in axes)


@converter("MultiHeadAttention", mask=_mha_out_masks, uses_mask=True)
def convert_multi_head_attention(b: OnnxBuilder, node: Node, xs: list[str]) -> str | list[str]:
    heads = Heads(b, node, xs)
    scale = float(1.0 / np.sqrt(float(int(node.config["key_dim"]))))
    x_rank = heads.query_rank
    mask = heads.mask()
    gate = None
    if node.config.get("use_gate"):
        gate = b.op("Sigmoid", [heads.project("gate", heads.query, x_rank)])
    q = heads.project("query", heads.query, x_rank)
    key_pos = heads.value_pos if heads.key_pos is None else heads.key_pos
    k = heads.project("key", heads.key, len(b.in_shape(node, key_pos)))
    v = heads.project("value", heads.value, len(b.in_shape(node, heads.value_pos)))
    rank = x_rank + 1
    axes = _attention_axes(node, rank)
    fused = heads.keras3 and not (heads.dropout > 0.0 or heads.return_scores or rank != 4)
    if fused:
        if mask is not None:
            mask = _expand_mask(b, mask, 4, len(axes))
        return heads.finish(fused_attention(b, q, k, v, mask, scale), gate, rank, None)
    dot_eq, combine_eq, scores_rank = attention_equations(rank, axes)
    q = b.op("Mul", [q, b.f32(scale)])
    raw = b.op("Einsum", [k, q], equation=dot_eq)
    norm_axes = tuple(range(scores_rank - len(axes), scores_rank))
    if mask is not None:
        mask = _expand_mask(b, mask, scores_rank, len(axes))
    scores = _masked_softmax(b, raw, mask, norm_axes, heads.keras3)
    out = b.op("Einsum", [scores, v], equation=combine_eq)
    return heads.finish(out, gate, rank, scores)


@converter("GroupedQueryAttention", mask=_mha_out_masks, uses_mask=True)
def convert_grouped_query_attention(b: OnnxBuilder, node: Node,
                                    xs: list[str]) -> str | list[str]:
    heads = Heads(b, node, xs)
    head_dim = int(node.config["head_dim"])
    n_query = int(node.config["num_query_heads"])
    n_kv = int(node.config["num_key_value_heads"])
    if n_query % n_kv:
        raise ModelFormatError(f"layer '{node.name}': num_query_heads={n_query} is not a "
                               f"multiple of num_key_value_heads={n_kv}")
    if heads.query_rank != 3:
        raise UnsupportedLayer(f"layer '{node.name}' expects (batch, time, features) inputs")
    repeats = n_query // n_kv
    scale = float(1.0 / np.sqrt(float(head_dim)))
    mask = heads.mask()
    gate = None
    if node.config.get("use_gate"):
        gate = b.op("Sigmoid", [heads.project("gate", heads.query, 3)])
    q = heads.project("query", heads.query, 3)

    def repeated(part: str, x: str) -> str:
        # np.repeat along the heads axis: each key/value head serves `repeats` query heads
        y = b.op("Unsqueeze", [heads.project(part, x, 3), b.i64([3])])
        y = b.op("Expand", [y, b.i64([1, 1, 1, repeats, 1])])
        return b.op("Reshape", [y, b.i64([0, 0, n_query, head_dim])])

    k, v = repeated("key", heads.key), repeated("value", heads.value)
    if mask is not None:
        mask = _expand_mask(b, mask, 4, 1)
    if not (heads.dropout > 0.0 or heads.return_scores):
        return heads.finish(fused_attention(b, q, k, v, mask, scale), gate, 4, None)
    raw = b.op("Einsum", [b.op("Mul", [q, b.f32(scale)]), k], equation="bquh,bkuh->buqk")
    scores = _masked_softmax(b, raw, mask, (-1,), keras3=True)
    out = b.op("Einsum", [scores, v], equation="buqk,bkuh->bquh")
    return heads.finish(out, gate, 4, scores)
