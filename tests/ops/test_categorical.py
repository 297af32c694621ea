"""Parity of the categorical preprocessing layers (encoding, discretization, hashing,
lookups, text vectorization) with Keras 3 and tf_keras, including string inputs."""

from __future__ import annotations

import numpy as np
import pytest

import tfless
from tests.parity import check_parity
from tfless.errors import UnsupportedLayer
from tfless.ops import string_hash

APIS = ["keras3", "tf_keras"]


def strings(rows: list) -> object:
    """A string batch as Keras's predict takes it (a tf.string tensor: Keras 3 refuses NumPy
    string arrays); tfless reads the same tensor as an object array of bytes."""
    import tensorflow as tf

    return tf.constant(rows)


WORDS = [["cat"], ["dog"], ["emu"], [""], ["cat"], ["yak"]]
INTS = np.array([[1, 3], [4, 0], [2, 2], [7, 9]], dtype=np.int64)


def _int_model(K, layer, shape=(2,), dtype="int64"):
    inp = K.Input(shape, dtype=dtype)
    return K.Model(inp, layer(inp))


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("mode", ["one_hot", "multi_hot", "count"])
def test_category_encoding(api: str, mode: str) -> None:
    shape, x = ((1,), INTS[:, :1]) if mode == "one_hot" else ((2,), INTS)
    check_parity(lambda K: _int_model(K, K.layers.CategoryEncoding(10, output_mode=mode), shape),
                 x, api=api, randomize=False)


def test_category_encoding_rank3_and_count_weights_keras3() -> None:
    def build(K):
        inp = K.Input((2, 3), dtype="int64")
        return K.Model(inp, K.layers.CategoryEncoding(5, output_mode="multi_hot")(inp))

    check_parity(build, np.array([[[0, 1, 4], [1, 1, 2]]] * 2), randomize=False)

    def weighted(K):
        ids, w = K.Input((3,), dtype="int64"), K.Input((3,))
        out = K.layers.CategoryEncoding(5, output_mode="count")(ids, count_weights=w)
        return K.Model([ids, w], out)

    check_parity(weighted, [np.array([[0, 1, 1], [4, 4, 2]]),
                            np.array([[0.5, 1.5, 2.0], [1.0, -1.0, 3.0]], np.float32)],
                 randomize=False)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("mode", ["int", "one_hot", "multi_hot", "count"])
def test_discretization(api: str, mode: str) -> None:
    shape = (1,) if mode == "one_hot" else (3,)
    x = np.array([[-1.5], [0.0], [0.25], [9.0]], np.float32) if mode == "one_hot" else \
        np.array([[-1.5, 0.0, 0.5], [0.25, 1.0, 9.0]], np.float32)

    def build(K):
        layer = K.layers.Discretization(bin_boundaries=[0.0, 0.25, 1.0], output_mode=mode)
        return _int_model(K, layer, shape, "float32")

    check_parity(build, x, api=api, randomize=False)


def test_discretization_adapted_keras3() -> None:
    def build(K):
        layer = K.layers.Discretization(num_bins=4)
        layer.adapt(np.linspace(-2, 2, 50, dtype=np.float32))
        return _int_model(K, layer, (3,), "float32")

    check_parity(build, np.array([[-3, 0.1, 1.9], [0.5, -0.5, 3]], np.float32), randomize=False)


def test_string_hashes_match_tensorflow() -> None:
    import tensorflow as tf

    rng = np.random.default_rng(3)
    strs = [bytes(rng.integers(0, 256, n, dtype=np.uint8)) for n in (0, 1, 3, 4, 8, 9, 16, 17,
                                                                       32, 33, 64, 65, 130, 200)]
    buckets = (1 << 63) - 1
    fast = tf.strings.to_hash_bucket_fast(strs, buckets).numpy()
    strong = tf.strings.to_hash_bucket_strong(strs, buckets, key=[7, 1 << 40]).numpy()
    assert [string_hash.fingerprint64(s) % buckets for s in strs] == fast.tolist()
    assert [string_hash.siphash24([7, 1 << 40], s) % buckets for s in strs] == strong.tolist()


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("kwargs", [{}, {"salt": 133}, {"salt": [5, 9], "mask_value": ""},
                                    {"output_mode": "multi_hot"}], ids=str)
def test_hashing_strings(api: str, kwargs: dict) -> None:
    def build(K):
        return _int_model(K, K.layers.Hashing(num_bins=7, **kwargs), (1,), "string")

    check_parity(build, strings(WORDS), api=api, randomize=False)


# tf_keras's Hashing takes only integer and string inputs
@pytest.mark.parametrize("api,dtype", [("keras3", "int64"), ("keras3", "float32"),
                                       ("tf_keras", "int64")])
def test_hashing_numbers(api: str, dtype: str) -> None:
    def build(K):
        return _int_model(K, K.layers.Hashing(num_bins=5, mask_value=0), (2,), dtype)

    check_parity(build, np.array([[0, 1], [-3, 250], [7.9, 12]], dtype), api=api,
                 randomize=False)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("mode", ["int", "one_hot"])
def test_hashed_crossing(api: str, mode: str) -> None:
    def build(K):
        a, b = K.Input((1,), dtype="int64"), K.Input((1,), dtype="string")
        return K.Model([a, b], K.layers.HashedCrossing(num_bins=11, output_mode=mode)((a, b)))

    check_parity(build, [np.array([[3], [-7], [3]]), strings(WORDS[:3])], api=api, randomize=False)


VOCAB = ["cat", "dog", "emu"]


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("kwargs", [
    {}, {"mask_token": ""}, {"num_oov_indices": 3}, {"num_oov_indices": 2, "mask_token": ""},
    {"output_mode": "one_hot"}, {"output_mode": "multi_hot", "mask_token": ""},
    {"output_mode": "count", "pad_to_max_tokens": True, "max_tokens": 8},
    {"output_mode": "tf_idf", "idf_weights": [0.5, 1.0, 2.0]},
], ids=str)
def test_string_lookup(api: str, kwargs: dict) -> None:
    def build(K):
        return _int_model(K, K.layers.StringLookup(vocabulary=VOCAB, **kwargs), (1,), "string")

    x = strings(WORDS if kwargs.get("mask_token") == "" or kwargs.get("output_mode")
                else [WORDS[i] for i in (0, 1, 2, 5)])
    check_parity(build, x, api=api, randomize=False)


def test_string_lookup_salted_oov_keras3() -> None:
    def build(K):
        layer = K.layers.StringLookup(vocabulary=VOCAB, num_oov_indices=4, salt=[1, 2])
        return _int_model(K, layer, (1,), "string")

    check_parity(build, strings([["ant"], ["cat"], ["bee"], ["yak"]]), randomize=False)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("kwargs", [{}, {"mask_token": ""}], ids=str)
def test_string_lookup_invert(api: str, kwargs: dict) -> None:
    def build(K):
        inp = K.Input((2,), dtype="int64")
        return K.Model(inp, K.layers.StringLookup(vocabulary=VOCAB, invert=True, **kwargs)(inp))

    x = np.array([[0, 1], [2, 3], [4, 9]])
    K_out = check_parity_strings(build, x, api)
    assert K_out.dtype == object


def check_parity_strings(build, x, api: str):
    """String outputs: compare tfless with Keras element by element (check_parity's numeric
    comparison does not apply), in every format the API saves."""
    import tempfile
    from pathlib import Path

    from tests.parity import FORMATS, keras_module, save_all

    model = build(keras_module(api))
    want = np.vectorize(lambda b: b.decode() if isinstance(b, bytes) else str(b),
                        otypes=[object])(np.asarray(model.predict(x, verbose=0)))
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, (path, weights) in save_all(model, api, FORMATS[api], Path(tmp)).items():
            got = tfless.load(path, weights=weights).predict(x)
            assert got.shape == want.shape and got.tolist() == want.tolist(), fmt
    return want


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("kwargs", [
    {}, {"mask_token": 0}, {"num_oov_indices": 2}, {"output_mode": "multi_hot"},
    {"invert": True},
], ids=str)
def test_integer_lookup(api: str, kwargs: dict) -> None:
    build = lambda K: _int_model(K, K.layers.IntegerLookup(vocabulary=[3, 7, 9], **kwargs))  # noqa: E731
    x = np.array([[3, 7], [0, 9], [12, -5]])
    if kwargs.get("invert"):
        x = np.array([[0, 1], [2, 3], [4, 7]])
    check_parity(build, x, api=api, randomize=False)


def test_integer_lookup_farmhash_oov_keras3() -> None:
    def build(K):
        layer = K.layers.IntegerLookup(vocabulary=[3, 7], num_oov_indices=3, oov_method="farmhash")
        return _int_model(K, layer)

    check_parity(build, np.array([[3, 100], [-4, 7]]), randomize=False)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("kwargs", [
    {"output_sequence_length": 5}, {}, {"standardize": "lower", "split": "character",
                                        "output_sequence_length": 6},
    {"ngrams": 2, "output_mode": "multi_hot"}, {"standardize": None, "output_mode": "count"},
    {"split": None, "standardize": "strip_punctuation"},
], ids=str)
def test_text_vectorization(api: str, kwargs: dict) -> None:
    vocab = ["the", "cat", "sat", "the cat", "t", "h", "e", "a", "The", "Mat!"]

    def build(K):
        inp = K.Input((1,), dtype="string")
        return K.Model(inp, K.layers.TextVectorization(vocabulary=vocab, **kwargs)(inp))

    x = strings([["The cat sat, on the Mat!"], ["the"], ["a hat"]])
    check_parity(build, x, api=api, randomize=False)


def test_adapted_vocabulary_is_refused_by_name_in_h5(tmp_path) -> None:
    # .keras files keep it as an asset (tests/ops/test_adapted_vocabulary.py); .h5 keeps none
    import keras

    inp = keras.Input((1,), dtype="string")
    layer = keras.layers.StringLookup()
    layer.adapt(np.array(VOCAB))
    model = keras.Model(inp, layer(inp))
    model.save(tmp_path / "m.h5")
    with pytest.raises(UnsupportedLayer, match="vocabulary is not in the model config"):
        tfless.load(tmp_path / "m.h5")


def test_string_input_accepts_str_bytes_and_objects(tmp_path) -> None:
    import keras

    inp = keras.Input((1,), dtype="string")
    model = keras.Model(inp, keras.layers.StringLookup(vocabulary=VOCAB)(inp))
    model.save(tmp_path / "m.keras")
    loaded = tfless.load(tmp_path / "m.keras")
    assert loaded.inputs[0].dtype == "string"
    for x in (np.array([["dog"], ["yak"]]), np.array([[b"dog"], [b"yak"]]),
              [["dog"], ["yak"]]):
        assert loaded.predict(x).tolist() == [[2], [0]]
    with pytest.raises(tfless.TflessError, match="expected strings"):
        loaded.predict(np.array([[1.0], [2.0]]))


def test_cli_predicts_a_string_model_from_json(tmp_path) -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    import keras

    inp = keras.Input((1,), dtype="string")
    layer = keras.layers.StringLookup(vocabulary=VOCAB, output_mode="one_hot", name="lookup")
    keras.Model(inp, layer(inp)).save(tmp_path / "m.keras")
    tfless_cli = Path(sys.executable).with_name("tfless")
    done = subprocess.run([str(tfless_cli), "predict", str(tmp_path / "m.keras"), "-i", "-"],
                          input=json.dumps([["dog"], ["ant"]]), capture_output=True, text=True,
                          timeout=120, check=True)
    assert json.loads(done.stdout)["outputs"]["lookup"] == [[0, 0, 1, 0], [1, 0, 0, 0]]
