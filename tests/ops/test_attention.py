"""Parity of Attention, AdditiveAttention, MultiHeadAttention and GroupedQueryAttention with
Keras 3 and tf_keras, including Keras masks, causal masks and returned attention scores."""

from __future__ import annotations

import numpy as np
import pytest

from tests.parity import check_parity, rand

APIS = ["keras3", "tf_keras"]


def tokens(batch: int = 3, steps: int = 6, seed: int = 0) -> np.ndarray:
    """Token ids with post-padding (id 0) of different lengths; one row unpadded."""
    x = np.random.default_rng(seed).integers(1, 20, (batch, steps)).astype(np.int32)
    x[0, 3:] = 0
    x[1, 5:] = 0
    return x


def case_id(case: dict) -> str:
    return "-".join(f"{k}{v}" for k, v in case.items()) or "plain"


def flat(y):
    return list(y) if isinstance(y, (list, tuple)) else y


DENSE_CASES = [
    {"use_scale": False, "score_mode": "dot"},
    {"use_scale": True, "score_mode": "dot", "causal": True},
    {"use_scale": True, "score_mode": "concat", "scores": True},
    {"use_scale": False, "score_mode": "concat", "key": True},
]


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("case", DENSE_CASES, ids=lambda c: case_id(c))
def test_dot_attention(api: str, case: dict) -> None:
    def build(K):
        q_in, v_in = K.Input((4, 3)), K.Input((5, 3))
        inputs = [q_in, v_in]
        if case.get("key"):
            inputs.append(K.layers.Dense(3)(v_in))
        layer = K.layers.Attention(use_scale=case["use_scale"], score_mode=case["score_mode"])
        out = layer(inputs, use_causal_mask=case.get("causal", False),
                    return_attention_scores=case.get("scores", False))
        return K.Model([q_in, v_in], flat(out))

    check_parity(build, [rand(2, 4, 3), rand(2, 5, 3, seed=2)], api=api)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("use_scale", [True, False])
def test_additive_attention(api: str, use_scale: bool) -> None:
    def build(K):
        q_in, v_in = K.Input((4, 3)), K.Input((5, 3))
        out = K.layers.AdditiveAttention(use_scale=use_scale)([q_in, v_in, v_in],
                                                              return_attention_scores=True)
        return K.Model([q_in, v_in], flat(out))

    check_parity(build, [rand(2, 4, 3), rand(2, 5, 3, seed=2)], api=api)


@pytest.mark.parametrize("cls", ["Attention", "AdditiveAttention"])
def test_dense_attention_with_embedding_masks_tf_keras(cls: str) -> None:
    def build(K):
        q_in, v_in = K.Input((6,), dtype="int32"), K.Input((6,), dtype="int32")
        q = K.layers.Embedding(20, 4, mask_zero=True)(q_in)
        v = K.layers.Embedding(20, 4, mask_zero=True)(v_in)
        att = getattr(K.layers, cls)()([q, v])
        return K.Model([q_in, v_in], K.layers.LSTM(3)(att))  # the query mask reaches the LSTM

    check_parity(build, [tokens(), tokens(seed=1)], api="tf_keras")


MHA_CASES = [
    {},
    {"value_dim": 3, "use_bias": False, "output_shape": 7},
    {"causal": True},
    {"scores": True},
    {"key": True, "dropout": 0.3},
    {"attention_mask": True},
    {"causal": True, "scores": True},
]


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("case", MHA_CASES, ids=lambda c: case_id(c))
def test_multi_head_attention(api: str, case: dict) -> None:
    options = {k: case[k] for k in ("value_dim", "use_bias", "output_shape", "dropout") if k in case}

    def build(K):
        q_in, v_in = K.Input((4, 6)), K.Input((5, 6))
        mask_in = K.Input((4, 5))
        layer = K.layers.MultiHeadAttention(num_heads=2, key_dim=3, **options)
        kwargs = {}
        if case.get("key"):
            kwargs["key"] = K.layers.Dense(6)(v_in)
        if case.get("attention_mask"):
            kwargs["attention_mask"] = mask_in
        out = layer(q_in, v_in, use_causal_mask=case.get("causal", False),
                    return_attention_scores=case.get("scores", False), **kwargs)
        inputs = [q_in, v_in] + ([mask_in] if case.get("attention_mask") else [])
        return K.Model(inputs, flat(out))

    x = [rand(2, 4, 6), rand(2, 5, 6, seed=2)]
    if case.get("attention_mask"):
        m = np.random.default_rng(4).random((2, 4, 5)) > 0.3
        m[:, :, 0] = True
        x.append(m.astype(np.float32))
    check_parity(build, x, api=api)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("scores", [False, True])
def test_multi_head_self_attention_with_padding_masks(api: str, scores: bool) -> None:
    """Padded query rows are fully masked: Keras 3's fused route leaves them uniform, its
    Softmax route zeroes them, tf_keras adds -1e9."""
    def build(K):
        inp = K.Input((6,), dtype="int32")
        x = K.layers.Embedding(20, 8, mask_zero=True)(inp)
        out = K.layers.MultiHeadAttention(2, 4)(x, x, return_attention_scores=scores)
        return K.Model(inp, flat(out))

    check_parity(build, tokens(), api=api)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("axes", [None, (2,), (1, 2)], ids=str)
def test_multi_head_attention_over_image_axes(api: str, axes) -> None:
    def build(K):
        inp = K.Input((3, 4, 5))
        out = K.layers.MultiHeadAttention(2, 3, attention_axes=axes)(inp, inp)
        return K.Model(inp, out)

    check_parity(build, rand(2, 3, 4, 5), api=api)


def test_multi_head_attention_gate_and_sliding_window_keras3() -> None:
    def build(K):
        inp = K.Input((6, 4))
        out = K.layers.MultiHeadAttention(2, 3, use_gate=True, sliding_window=2)(
            inp, inp, use_causal_mask=True)
        return K.Model(inp, out)

    check_parity(build, rand(2, 6, 4))


GQA_CASES = [
    {},
    {"causal": True},
    {"scores": True, "use_bias": False},
    {"dropout": 0.2, "mask": True},
]


@pytest.mark.parametrize("case", GQA_CASES, ids=lambda c: case_id(c))
def test_grouped_query_attention(case: dict) -> None:
    options = {k: case[k] for k in ("use_bias", "dropout") if k in case}

    def build(K):
        if case.get("mask"):
            inp = K.Input((6,), dtype="int32")
            x = K.layers.Embedding(20, 8, mask_zero=True)(inp)
        else:
            inp = K.Input((6, 8))
            x = inp
        layer = K.layers.GroupQueryAttention(head_dim=3, num_query_heads=4,
                                               num_key_value_heads=2, **options)
        out = layer(x, x, use_causal_mask=case.get("causal", False),
                    return_attention_scores=case.get("scores", False))
        return K.Model(inp, flat(out))

    check_parity(build, tokens() if case.get("mask") else rand(2, 6, 8))


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("cls", ["Attention", "AdditiveAttention"])
def test_dense_attention_passes_query_mask_on(api: str, cls: str) -> None:
    """Query and value masks from embeddings; the query mask reaches a masked pooling (Keras 3
    records that hand-over as a convert_to_tensor op node)."""
    def build(K):
        q_in, v_in = K.Input((6,), dtype="int32"), K.Input((5,), dtype="int32")
        q = K.layers.Embedding(20, 4, mask_zero=True)(q_in)
        v = K.layers.Embedding(20, 4, mask_zero=True)(v_in)
        att = getattr(K.layers, cls)()([q, v])
        return K.Model([q_in, v_in], K.layers.GlobalAveragePooling1D()(att))

    check_parity(build, [tokens(), tokens(steps=5, seed=1)], api=api)


MHA_SHAPE_CASES = [
    # query, value and key of different feature sizes, a tuple output_shape, value_dim
    {"shapes": ((4, 6), (5, 3), (5, 2)), "options": {"value_dim": 4, "output_shape": (2, 5)}},
    # a causal mask combined with an explicit attention_mask
    {"shapes": ((5, 6),), "options": {}, "causal": True, "attention_mask": (5, 5)},
    # attention over two axes with an explicit attention mask
    {"shapes": ((3, 4, 5),), "options": {"attention_axes": (1, 2)}, "attention_mask": (3, 4, 3, 4)},
]


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("case", MHA_SHAPE_CASES, ids=lambda c: f"{c['shapes']}-{sorted(c)}")
def test_multi_head_attention_shapes_and_mask_combinations(api: str, case: dict) -> None:
    shapes = case["shapes"]

    def build(K):
        ins = [K.Input(s) for s in shapes]
        query, value = ins[0], ins[1] if len(ins) > 1 else ins[0]
        kwargs: dict = {"use_causal_mask": case.get("causal", False)}
        if len(ins) > 2:
            kwargs["key"] = ins[2]
        if "attention_mask" in case:
            ins.append(K.Input(case["attention_mask"]))
            kwargs["attention_mask"] = ins[-1]
        out = K.layers.MultiHeadAttention(3, 2, **case["options"])(query, value, **kwargs)
        return K.Model(ins, out)

    x = [rand(2, *s, seed=i) for i, s in enumerate(shapes)]
    if "attention_mask" in case:
        m = np.random.default_rng(4).random((2, *case["attention_mask"])) > 0.3
        m[..., 0] = True
        x.append(m.astype(np.float32))
    check_parity(build, x, api=api)


@pytest.mark.parametrize("api", APIS)
def test_multi_head_cross_attention_with_both_padding_masks(api: str) -> None:
    def build(K):
        q_in, v_in = K.Input((6,), dtype="int32"), K.Input((5,), dtype="int32")
        q = K.layers.Embedding(20, 8, mask_zero=True)(q_in)
        v = K.layers.Embedding(20, 8, mask_zero=True)(v_in)
        causal = K.layers.MultiHeadAttention(2, 4)(q, q, use_causal_mask=True)
        cross = K.layers.MultiHeadAttention(2, 4)(causal, v)
        return K.Model([q_in, v_in], [causal, K.layers.GlobalAveragePooling1D()(cross)])

    check_parity(build, [tokens(), tokens(steps=5, seed=1)], api=api)


def test_grouped_query_attention_explicit_mask_and_cross_lengths() -> None:
    def build(K):
        q, v, m = K.Input((4, 8)), K.Input((6, 8)), K.Input((4, 6))
        layer = K.layers.GroupQueryAttention(head_dim=3, num_query_heads=4, num_key_value_heads=1)
        out = layer(q, v, v, attention_mask=m, return_attention_scores=True)
        return K.Model([q, v, m], flat(out))

    m = np.random.default_rng(4).random((2, 4, 6)) > 0.3
    m[..., 0] = True
    check_parity(build, [rand(2, 4, 8), rand(2, 6, 8, seed=2), m.astype(np.float32)])
