"""Dtype policies in saved configs: float policies (mixed_float16, float64, per-layer dtypes)
are read and run in float32; quantized layers (`model.quantize`) are refused by name."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

import tfless
from tests.parity import (
    FORMATS,
    assert_close,
    keras_module,
    keras_predict,
    rand,
    randomize_weights,
    save_all,
)


def _cnn(K, head_dtype: str | None = None):
    L = K.layers
    inp = K.Input((8, 8, 3))
    x = L.Conv2D(4, 3, activation="relu")(inp)
    x = L.BatchNormalization()(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(3)(x)
    return K.Model(inp, L.Activation("softmax", dtype=head_dtype)(x))


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
def test_mixed_float16_runs_in_float32(api: str, tmp_path: Path) -> None:
    """A mixed_float16 model keeps float32 variables; tfless computes in float32, so it equals
    the float32 model with the same weights, and Keras's float16 result to float16 precision."""
    K = keras_module(api)
    K.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _cnn(K, head_dtype="float32")
    finally:
        K.mixed_precision.set_global_policy("float32")
    randomize_weights(model)
    twin = _cnn(K)
    twin.set_weights(model.get_weights())
    x = rand(2, 8, 8, 3)
    want32 = keras_predict(twin, x)
    want16 = keras_predict(model, x)
    for fmt, (path, weights) in save_all(model, api, FORMATS[api], tmp_path).items():
        got = tfless.load(path, weights=weights).predict(x)
        assert got.dtype == np.float32
        assert_close(got, want32, f"mixed_float16 [{api} {fmt}] vs float32 twin")
        assert_close(got, want16, f"mixed_float16 [{api} {fmt}] vs Keras", atol=2e-3, rtol=1e-2)


def test_per_layer_float64_and_float16_dtypes_keras3(tmp_path: Path) -> None:
    K = keras_module("keras3")
    inp = K.Input((5,))
    a = K.layers.Dense(4, dtype="float64")(inp)
    b = K.layers.Dense(3, dtype="float16")(inp)
    model = K.Model(inp, [a, b])
    randomize_weights(model)
    x = rand(3, 5)
    want = keras_predict(model, x)
    model.save(tmp_path / "m.keras")
    got = tfless.load(tmp_path / "m.keras").predict(x)
    assert_close(got[0], [want[0]], "float64 Dense")
    assert_close(got[1], [want[1]], "float16 Dense", atol=1e-2, rtol=1e-2)


def _quantized_model(mode: str, layer: str):
    K = keras_module("keras3")
    inp = K.Input((6,))
    if layer == "Dense":
        out = K.layers.Dense(4, name="quantized_layer")(K.layers.Dense(8)(inp))
        inputs = inp
    elif layer == "EinsumDense":
        out = K.layers.EinsumDense("ab,bc->ac", output_shape=4, name="quantized_layer")(inp)
        inputs = inp
    else:
        inputs = K.Input((3,), dtype="int32")
        out = K.layers.Embedding(10, 8, name="quantized_layer")(inputs)
    model = K.Model(inputs, out)
    model.quantize(mode)
    return model


# Quantized Dense, EinsumDense (int8/float8) and Embedding layers run
# (tests/ops/test_quantized.py); int4 EinsumDense does not.
@pytest.mark.parametrize("mode,layer", [("int4", "EinsumDense")])
def test_quantized_layers_are_refused_by_name(mode: str, layer: str, tmp_path: Path) -> None:
    path = tmp_path / "quantized.keras"
    _quantized_model(mode, layer).save(path)
    with pytest.raises(tfless.UnsupportedLayer,
                       match=r"quantized\.keras: layer '[a-z_0-9]+' is quantized .*model\.quantize"):
        tfless.load(path)


def test_older_quantized_dtype_policy_by_name_is_refused(tmp_path: Path) -> None:
    """Keras 3.4-3.12 recorded quantization only in the layer's dtype policy name."""
    src = tmp_path / "q.keras"
    _quantized_model("int8", "Dense").save(src)
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(old, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                for layer in config["config"]["layers"]:
                    cfg = layer["config"]
                    if cfg.pop("quantization_config", None):
                        cfg["dtype"] = {"module": "keras", "class_name": "QuantizedDTypePolicy",
                                        "config": {"name": "int8_from_float32"}}
                data = json.dumps(config).encode()
            zout.writestr(item, data)
    with pytest.raises(tfless.UnsupportedLayer, match="int8_from_float32"):
        tfless.load(old)

