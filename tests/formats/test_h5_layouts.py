"""Legacy HDF5 layout details: chunked attributes, list-form Sequential configs."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

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
