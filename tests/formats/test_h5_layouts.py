"""Legacy HDF5 layout details: chunked attributes, list-form Sequential configs."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

import tfless
from tests.parity import assert_close


def test_chunked_layer_names_attribute(tmp_path: Path) -> None:
    """Keras splits attributes over 64 KiB into layer_names0, layer_names1, ..."""
    import tf_keras

    layers = [tf_keras.layers.Dense(2, name=f"dense_with_a_rather_long_name_{'x' * 230}_{i}")
              for i in range(280)]
    model = tf_keras.Sequential([tf_keras.Input((2,)), *layers])
    path = tmp_path / "deep.h5"
    model.save(path)
    with h5py.File(path, "r") as f:
        assert "layer_names" not in f["model_weights"].attrs
        assert "layer_names0" in f["model_weights"].attrs
    x = np.random.default_rng(0).random((3, 2), dtype=np.float32)
    assert_close([tfless.load(path).predict(x)], [model.predict(x, verbose=0)], "chunked")


def test_keras_2_2_list_form_sequential(tmp_path: Path) -> None:
    """Keras <= 2.2 stored a Sequential config as a bare list, with batch_input_shape on the
    first layer and no InputLayer."""
    import tf_keras

    model = tf_keras.Sequential([tf_keras.layers.Dense(3, activation="relu", input_shape=(4,)),
                                 tf_keras.layers.Dense(2)])
    path = tmp_path / "old.h5"
    model.save(path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        layers = [layer for layer in config["config"]["layers"] if layer["class_name"] != "InputLayer"]
        layers[0]["config"]["batch_input_shape"] = [None, 4]
        f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": layers})
        f.attrs["keras_version"] = "2.2.4"
    loaded = tfless.load(path)
    assert loaded.inputs[0].shape == (None, 4)
    x = np.random.default_rng(1).random((2, 4), dtype=np.float32)
    assert_close([loaded.predict(x)], [model.predict(x, verbose=0)], "list-form")


def test_nested_model_group_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a transfer-learning .h5 keeps the whole base model in one group: reading it once per
    # inner layer made a MobileNet base take 40,000 reads and count its bytes per layer
    import keras

    from tfless.formats import weights as weights_module

    base = keras.Sequential([keras.Input((6,)), *[keras.layers.Dense(4) for _ in range(12)]],
                            name="base")
    model = keras.Sequential([keras.Input((6,)), base, keras.layers.Dense(2)])
    path = tmp_path / "nested.h5"
    model.save(path)
    reads = []
    original = weights_module.ArrayReader.read
    monkeypatch.setattr(weights_module.ArrayReader, "read",
                        lambda self, ds, label: reads.append(label) or original(self, ds, label))
    x = np.random.default_rng(0).random((3, 6), dtype=np.float32)
    np.testing.assert_allclose(tfless.load(path).predict(x), model.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-5)
    assert len(reads) == len(set(reads)) == 2 * 13
