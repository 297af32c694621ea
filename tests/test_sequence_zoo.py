"""Model zoo of sequence and transformer architectures, compared with Keras 3 and tf_keras.

Keras 3.15 records a functional model's mask computation as `NotEqual`/`Any` op layers, so
masked Keras 3 models here are Sequential; the tf_keras variants are functional.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

import tfless
from tests.parity import (
    assert_close,
    check_parity,
    keras_module,
    rand,
    randomize_weights,
)

pytestmark = pytest.mark.slow
APIS = ["keras3", "tf_keras"]
VOCAB, MAXLEN = 50, 12


def token_batch(batch: int = 4, steps: int = MAXLEN, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).integers(1, VOCAB, (batch, steps)).astype(np.int32)
    for row, length in enumerate((steps, steps - 3, 4, 1)[:batch]):
        x[row, length:] = 0
    return x


@pytest.mark.parametrize("api", APIS)
def test_embedding_lstm_text_classifier(api: str) -> None:
    def build(K):
        return K.Sequential([
            K.Input((MAXLEN,), dtype="int32"),
            K.layers.Embedding(VOCAB, 16, mask_zero=True),
            K.layers.LSTM(24, dropout=0.2, recurrent_dropout=0.1),
            K.layers.Dense(16, activation="relu"),
            K.layers.Dropout(0.3),
            K.layers.Dense(3, activation="softmax"),
        ])

    check_parity(build, token_batch(), api=api)


@pytest.mark.parametrize("api", APIS)
def test_stacked_bidirectional_gru_tagger(api: str) -> None:
    def layers(K):
        return [
            K.layers.Embedding(VOCAB, 12, mask_zero=True),
            K.layers.Bidirectional(K.layers.GRU(10, return_sequences=True)),
            K.layers.Bidirectional(K.layers.GRU(8, return_sequences=True), merge_mode="sum"),
            K.layers.TimeDistributed(K.layers.Dense(5, activation="softmax")),
        ]

    def build(K):
        if api == "keras3":
            return K.Sequential([K.Input((None,), dtype="int32"), *layers(K)])
        inp = K.Input((None,), dtype="int32")
        x = inp
        for layer in layers(K):
            x = layer(x)
        return K.Model(inp, x)

    check_parity(build, token_batch(), api=api)


@pytest.mark.parametrize("api", APIS)
def test_seq2seq_encoder_decoder_states(api: str) -> None:
    def build(K):
        enc_in = K.Input((None,), dtype="int32", name="encoder_tokens")
        dec_in = K.Input((None,), dtype="int32", name="decoder_tokens")
        masked = api == "tf_keras"
        enc = K.layers.Embedding(VOCAB, 16, mask_zero=masked)(enc_in)
        _, h, c = K.layers.LSTM(20, return_state=True)(enc)
        dec = K.layers.Embedding(VOCAB, 16, mask_zero=masked)(dec_in)
        dec_seq, _, _ = K.layers.LSTM(20, return_sequences=True, return_state=True)(
            dec, initial_state=[h, c])
        probs = K.layers.Dense(VOCAB, activation="softmax")(dec_seq)
        return K.Model([enc_in, dec_in], probs)

    check_parity(build, [token_batch(), token_batch(steps=7, seed=1)], api=api)


@pytest.mark.parametrize("api", APIS)
def test_conv_lstm_next_frame(api: str) -> None:
    def build(K):
        inp = K.Input((None, 12, 12, 1))
        x = K.layers.ConvLSTM2D(8, 3, padding="same", return_sequences=True, activation="relu")(inp)
        x = K.layers.BatchNormalization()(x)
        x = K.layers.ConvLSTM2D(8, 3, padding="same", return_sequences=True)(x)
        x = K.layers.Conv3D(1, 3, padding="same", activation="sigmoid")(x)
        return K.Model(inp, x)

    check_parity(build, rand(2, 4, 12, 12, 1, low=0.0), api=api)


def transformer_block(K, x, heads: int, dim: int, ff: int):
    att = K.layers.MultiHeadAttention(heads, dim // heads, dropout=0.1)(x, x)
    x = K.layers.LayerNormalization(epsilon=1e-6)(K.layers.Add()([x, K.layers.Dropout(0.1)(att)]))
    h = K.layers.Dense(ff, activation="relu")(x)
    h = K.layers.Dense(dim)(h)
    return K.layers.LayerNormalization(epsilon=1e-6)(K.layers.Add()([x, h]))


@pytest.mark.parametrize("api", APIS)
def test_transformer_text_classifier(api: str) -> None:
    """Token + position embeddings (positions fed as a second input), one encoder block."""
    def build(K):
        tokens = K.Input((MAXLEN,), dtype="int32")
        positions = K.Input((MAXLEN,), dtype="int32")
        x = K.layers.Add()([K.layers.Embedding(VOCAB, 16)(tokens),
                            K.layers.Embedding(MAXLEN, 16)(positions)])
        x = transformer_block(K, x, heads=2, dim=16, ff=32)
        x = K.layers.GlobalAveragePooling1D()(x)
        x = K.layers.Dense(2, activation="softmax")(x)
        return K.Model([tokens, positions], x)

    positions = np.tile(np.arange(MAXLEN, dtype=np.int32), (4, 1))
    check_parity(build, [token_batch(), positions], api=api, atol=2e-5)


@pytest.mark.parametrize("api", APIS)
def test_vit_style_classifier(api: str) -> None:
    """Patches by a strided Conv2D, flattened by Reshape, two encoder blocks."""
    def build(K):
        inp = K.Input((16, 16, 3))
        patches = K.layers.Conv2D(24, 4, strides=4)(inp)
        x = K.layers.Reshape((16, 24))(patches)
        for _ in range(2):
            x = transformer_block(K, x, heads=3, dim=24, ff=48)
        x = K.layers.GlobalAveragePooling1D()(x)
        return K.Model(inp, K.layers.Dense(5, activation="softmax")(x))

    check_parity(build, rand(2, 16, 16, 3), api=api, atol=2e-5)


@pytest.mark.parametrize("api", APIS)
def test_dynamic_sequence_length(api: str) -> None:
    """A model saved with a free time axis predicts lengths never seen at save time."""
    K = keras_module(api)
    inp = K.Input((None, 4))
    x = K.layers.Bidirectional(K.layers.LSTM(6, return_sequences=True))(inp)
    x = K.layers.GRU(5, return_sequences=True)(x)
    x = K.layers.MultiHeadAttention(2, 3)(x, x)
    seq = K.layers.TimeDistributed(K.layers.Dense(3))(x)
    last = K.layers.SimpleRNN(4)(x)
    model = K.Model(inp, [seq, last])
    randomize_weights(model)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("model.keras" if api == "keras3" else "model.h5")
        model.save(path)
        loaded = tfless.load(path)
        for steps in (1, 3, 17):
            x_in = rand(2, steps, 4, seed=steps)
            # an eager call: Keras 3's predict retraces badly across lengths (drops a step)
            want = [np.asarray(y) for y in model(x_in, training=False)]
            assert_close(loaded.predict(x_in), want, f"{api} length {steps}")


def _two_headed_tagger(K, api: str):
    """Token ids + per-token features in, a tag sequence and a sentence score out; inputs
    input keys are not the layer names; Keras flattens dicts by sorted key."""
    tokens = K.Input((MAXLEN,), dtype="int32", name="tokens")
    feats = K.Input((MAXLEN, 2), name="feats")
    x = K.layers.Embedding(VOCAB, 6)(tokens)
    x = K.layers.Concatenate()([x, feats])
    seq = K.layers.Bidirectional(K.layers.GRU(4, return_sequences=True))(x)
    tags = K.layers.TimeDistributed(K.layers.Dense(3), name="tags")(seq)
    score = K.layers.Dense(1, name="score")(K.layers.LSTM(3)(seq))
    inputs = {"z_ids": tokens, "a_feats": feats} if api == "keras3" else [tokens, feats]
    return K.Model(inputs, {"tags": tags, "score": score})


def _tagger_inputs(api: str) -> dict:
    ids, feats = token_batch(), rand(4, MAXLEN, 2, seed=7)
    if api == "keras3":
        return {"z_ids": ids, "a_feats": feats}
    return {"tokens": ids, "feats": feats}


@pytest.mark.parametrize("api", APIS)
def test_dict_inputs_and_outputs(api: str) -> None:
    check_parity(lambda K: _two_headed_tagger(K, api), _tagger_inputs(api), api=api)


@pytest.mark.parametrize("api", APIS)
def test_structured_predict_matches_keras(api: str) -> None:
    """`predict` returns Keras's dict / nested lists; `structured=False` returns the flat
    list in Keras's flattening order (dict keys sorted)."""
    K = keras_module(api)
    model = _two_headed_tagger(K, api)
    if api == "keras3":
        a = K.Input((3,), name="a")
        b = K.Input((2,), name="b")
        d1, d2, d3 = (K.layers.Dense(n, name=f"d{n}") for n in (1, 2, 3))
        nested = K.Model([a, [b]], [[d2(a), d1(b)], [d3(a)]])
    randomize_weights(model)
    x = _tagger_inputs(api)
    want = model.predict(x, verbose=0)
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("keras", "h5"):
            path = Path(tmp) / f"model.{fmt}"
            model.save(path)
            loaded = tfless.load(path)
            got = loaded.predict(x)
            assert isinstance(got, dict) and list(got) == list(want)
            for key in want:
                assert_close(got[key], [want[key]], f"{fmt} {key}")
            flat = loaded.predict(x, structured=False)
            assert_close(flat, [want[key] for key in sorted(want)], f"{fmt} flat")
        if api == "keras3":
            randomize_weights(nested)
            xn = [rand(2, 3), [rand(2, 2, seed=2)]]
            want_n = nested.predict(xn, verbose=0)
            for fmt in ("keras", "h5"):
                path = Path(tmp) / f"nested.{fmt}"
                nested.save(path)
                got = tfless.load(path).predict(xn)
                assert [len(g) for g in got] == [2, 1]
                for g, w in zip(got, want_n):
                    assert_close(list(g), [np.asarray(v) for v in w], f"nested {fmt}")


@pytest.mark.parametrize("api", APIS)
def test_public_api_on_the_tagger(api: str, tmp_path: Path) -> None:
    """Model.inputs/.outputs (name, shape with free batch, dtype), summary() with Keras's
    parameter count, and predict given a dict, a list in input order, or in batches."""
    K = keras_module(api)
    model = _two_headed_tagger(K, api)
    randomize_weights(model)
    path = tmp_path / "tagger.h5"
    model.save(path)
    loaded = tfless.load(path)
    # inputs are named by their InputLayer, in Keras's order (Keras 3 sorts dict keys)
    assert [s.name for s in loaded.inputs] == [t.name for t in model.inputs]
    by_name = {s.name: s for s in loaded.inputs}
    assert (by_name["tokens"].shape, by_name["tokens"].dtype) == ((None, MAXLEN), "int32")
    assert (by_name["feats"].shape, by_name["feats"].dtype) == ((None, MAXLEN, 2), "float32")
    outs = {s.name: s for s in loaded.outputs}
    assert set(outs) == {"tags", "score"}
    assert outs["tags"].shape == (None, MAXLEN, 3) and outs["score"].shape == (None, 1)
    assert all(s.dtype == "float32" for s in loaded.outputs)

    table = loaded.summary()
    assert f"Total params: {model.count_params():,}" in table
    for layer in ("tags", "score"):
        assert f"{layer} (" in table

    x = _tagger_inputs(api)
    want = loaded.predict(x)
    keys = {"tokens": "z_ids", "feats": "a_feats"} if api == "keras3" else {}
    ordered = [x[keys.get(s.name, s.name)] for s in loaded.inputs]
    by_layer = {s.name: x[keys.get(s.name, s.name)] for s in loaded.inputs}
    for got in (loaded.predict(ordered), loaded.predict(by_layer), loaded.predict(x, batch_size=3)):
        assert list(got) == list(want)
        for key in want:  # batches may round differently in BLAS: within tolerance
            assert_close(got[key], [want[key]], f"{api} {key}")
