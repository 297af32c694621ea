"""Lookup and text-vectorization layers whose vocabulary was learned with adapt(): Keras 3
keeps it in the `.keras` file's `vocabulary.txt` asset (and a tf_idf layer's weights in a
named `idf_weights` variable), which tfless reads; formats that keep neither are refused."""

from __future__ import annotations

import numpy as np
import pytest

import tfless
from tests.ops.test_categorical import strings
from tests.parity import check_parity, keras_module
from tfless.errors import UnsupportedLayer

WORDS = [["cat", "dog"], ["emu", "cat"], ["cat", "yak"], ["ant", "dog"]]
TRAIN_WORDS = [["cat", "dog"], ["emu", "cat"], ["cat", "cat"]]
INTS = np.array([[3, 5], [7, 3], [9, -1]], dtype=np.int64)
TRAIN_INTS = np.array([[3, 5], [7, 3], [3, 0]], dtype=np.int64)
DOCS = [["The cat sat."], ["A dog, a CAT!"], ["emu"]]
CORPUS = ["The cat sat on the mat.", "dog and cat", "a dog!"]
MODES = ["int", "one_hot", "multi_hot", "count", "tf_idf"]


def _adapted(K, layer, data, shape, dtype):
    layer.adapt(data)
    inp = K.Input(shape, dtype=dtype)
    return K.Model(inp, layer(inp))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kwargs", [{}, {"mask_token": ""}, {"num_oov_indices": 2}], ids=str)
def test_adapted_string_lookup_keras(mode: str, kwargs: dict) -> None:
    if mode == "one_hot" and kwargs.get("mask_token") == "":
        kwargs = {"num_oov_indices": 3}
    width = 1 if mode == "one_hot" else 2
    x = strings([r[:width] for r in WORDS])

    def build(K):
        layer = K.layers.StringLookup(output_mode=mode, **kwargs)
        return _adapted(K, layer, strings(TRAIN_WORDS), (width,), "string")

    check_parity(build, x, randomize=False, formats=("keras",))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kwargs", [{}, {"mask_token": 0}, {"pad_to_max_tokens": True,
                                                            "max_tokens": 9}], ids=str)
def test_adapted_integer_lookup_keras(mode: str, kwargs: dict) -> None:
    if mode == "int" and kwargs.get("pad_to_max_tokens"):
        kwargs = {"num_oov_indices": 2}
    width = 1 if mode == "one_hot" else 2
    if mode == "one_hot" and kwargs.get("mask_token") == 0:
        kwargs = {}

    def build(K):
        layer = K.layers.IntegerLookup(output_mode=mode, **kwargs)
        return _adapted(K, layer, TRAIN_INTS, (width,), "int64")

    check_parity(build, INTS[:, :width], randomize=False, formats=("keras",))


def test_adapted_integer_lookup_invert_keras() -> None:
    def build(K):
        return _adapted(K, K.layers.IntegerLookup(invert=True), TRAIN_INTS, (2,), "int64")

    check_parity(build, np.array([[0, 1], [2, 3], [4, 9]]), randomize=False, formats=("keras",))


@pytest.mark.parametrize("kwargs", [
    {}, {"output_sequence_length": 6}, {"ngrams": 2}, {"output_mode": "multi_hot"},
    {"output_mode": "count", "pad_to_max_tokens": True, "max_tokens": 20},
    {"output_mode": "tf_idf"}, {"output_mode": "multi_hot", "max_tokens": 4},
], ids=str)
def test_adapted_text_vectorization_keras(kwargs: dict) -> None:
    def build(K):
        layer = K.layers.TextVectorization(**kwargs)
        return _adapted(K, layer, strings(CORPUS), (1,), "string")

    check_parity(build, strings(DOCS), randomize=False, formats=("keras",))


def test_adapted_string_lookup_invert_keras(tmp_path) -> None:
    K = keras_module("keras3")
    model = _adapted(K, K.layers.StringLookup(invert=True), strings(TRAIN_WORDS), (2,), "int64")
    x = np.array([[0, 1], [2, 3], [4, 1]])
    want = [[b.decode() for b in row] for row in np.asarray(model.predict(x, verbose=0))]
    model.save(tmp_path / "m.keras")
    assert tfless.load(tmp_path / "m.keras").predict(x).tolist() == want


def test_in_config_tf_idf_keras() -> None:
    """A tf_idf vocabulary given to the constructor: the .keras store still holds the named
    `idf_weights` variable, which used to be refused as a misnumbered weight."""
    def build(K):
        inp = K.Input((2,), dtype="string")
        layer = K.layers.StringLookup(vocabulary=["cat", "dog", "emu"], output_mode="tf_idf",
                                      idf_weights=[0.5, 1.0, 2.0])
        return K.Model(inp, layer(inp))

    check_parity(build, strings(WORDS), randomize=False, formats=("keras",))


@pytest.mark.parametrize("mode", ["int", "multi_hot", "tf_idf"])
def test_adapted_tf_keras_keras_format(mode: str) -> None:
    """tf_keras's `.keras` writer keeps the same assets (and the idf as a named variable)."""
    def lookup(K):
        # (tf_keras's own adapt() fails for tf_idf on TRAIN_WORDS' 3 rows; 2 rows work)
        return _adapted(K, K.layers.StringLookup(output_mode=mode), strings(TRAIN_WORDS[:2]), (2,),
                        "string")

    def text(K):
        return _adapted(K, K.layers.TextVectorization(output_mode=mode), strings(CORPUS), (1,),
                        "string")

    check_parity(lookup, strings(WORDS), api="tf_keras", randomize=False, formats=("keras",))
    check_parity(text, strings(DOCS), api="tf_keras", randomize=False, formats=("keras",))


@pytest.mark.parametrize("api,fmt", [("keras3", "h5"), ("tf_keras", "savedmodel")])
def test_adapted_vocabulary_without_assets_is_refused(tmp_path, api: str, fmt: str) -> None:
    """Formats whose vocabulary tfless does not read (Keras 3 .h5 keeps none; a tf_keras
    SavedModel keeps it in a TF lookup table) are refused naming the layer, never a wrong
    answer. (tf_keras refuses to write an adapted lookup to .h5 or save_weights.)"""
    K = keras_module(api)
    model = _adapted(K, K.layers.StringLookup(), strings(TRAIN_WORDS), (2,), "string")
    if fmt == "h5":
        path = tmp_path / "m.h5"
        model.save(path)
    else:
        path = tmp_path / "sm"
        model.save(path, save_format="tf")
    with pytest.raises(UnsupportedLayer, match="string_lookup.*vocabulary is not in the model"):
        tfless.load(path)


def test_damaged_vocabulary_asset_is_a_format_error(tmp_path) -> None:
    """A vocabulary asset that is not UTF-8 text is reported against the file."""
    import zipfile

    from tfless.errors import ModelFormatError

    K = keras_module("keras3")
    model = _adapted(K, K.layers.StringLookup(), strings(TRAIN_WORDS), (2,), "string")
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as src, \
            zipfile.ZipFile(tmp_path / "bad.keras", "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, b"\xff\xfe cat" if info.filename.endswith("vocabulary.txt")
                         else data)
    with pytest.raises(ModelFormatError, match="vocabulary asset.*not UTF-8"):
        tfless.load(tmp_path / "bad.keras")
