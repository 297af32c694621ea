"""TF graph SavedModels (Keras 3 `model.export()`, a `tf.Module` with two signatures) served by
a real `tfless serve`: TF Serving REST clients (requests) and tritonclient get TF's numbers,
`signature_name` picks the signature and `/metadata` returns the SavedModel's SignatureDefs."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import requests
import tritonclient.http as triton

from tests.parity import randomize_weights
from tests.serve.conftest import Server, assert_served

X = np.random.default_rng(3).uniform(-1, 1, (5, 6)).astype(np.float32)
SEQ = np.random.default_rng(4).uniform(-1, 1, (5, 4, 2)).astype(np.float32)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """TF Serving base directories (`<base>/1/saved_model.pb`) and TF's outputs."""
    import keras
    import tensorflow as tf

    d = tmp_path_factory.mktemp("tf-graph-serving")
    x = keras.Input((6,), name="features")
    h = keras.layers.Dense(8, activation="relu")(x)
    export = keras.Model(x, keras.layers.Dense(3, activation="softmax")(h))
    randomize_weights(export)
    export.export(d / "export" / "1", verbose=False)

    class Twin(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(np.random.default_rng(6).normal(size=(2, 3)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 4, 2], tf.float32, name="seq")])
        def encode(self, seq: Any) -> Any:
            h = tf.tanh(tf.einsum("btc,cd->btd", seq, self.w))
            return {"pooled": tf.reduce_mean(h, axis=1),
                    "argmax": tf.argmax(tf.reduce_max(h, axis=1), axis=1)}

        @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32, name="x")])
        def scale(self, x: Any) -> Any:
            return {"scaled": x * 3.0 - 1.0}

    twin = Twin()
    tf.saved_model.save(twin, str(d / "twin" / "1"), signatures={
        "serving_default": twin.encode.get_concrete_function(),
        "scale": twin.scale.get_concrete_function()})
    encoded = twin.encode(tf.constant(SEQ))
    return {"dir": d, "probs": export.predict(X, verbose=0),
            "pooled": encoded["pooled"].numpy(), "argmax": encoded["argmax"].numpy(),
            "scaled": twin.scale(tf.constant(X))["scaled"].numpy()}


@pytest.fixture(scope="module")
def server(saved: dict[str, Any]) -> Iterator[Server]:
    d = saved["dir"]
    config = d / "models.json"
    config.write_bytes(orjson.dumps({"model_config_list": {"config": [
        {"name": "export", "base_path": str(d / "export")},
        {"name": "twin", "base_path": str(d / "twin")},
    ]}}))
    srv = Server(["--model-config-file", str(config)], d / "server.log")
    yield srv
    assert srv.stop() == 0


def _post(server: Server, model: str, body: dict) -> requests.Response:
    return requests.post(f"{server.url}/v1/models/{model}:predict", json=body, timeout=30)


def test_rest_predict_row_and_columnar(server: Server, saved: dict[str, Any]) -> None:
    r = _post(server, "export", {"instances": X.tolist()})
    assert r.status_code == 200, r.text
    assert_served(r.json()["predictions"], saved["probs"])
    r = _post(server, "export", {"signature_name": "serving_default",
                                 "inputs": {"features": X.tolist()}})
    assert r.status_code == 200, r.text
    assert_served(r.json()["outputs"], saved["probs"])


def test_rest_signature_name_is_honoured(server: Server, saved: dict[str, Any]) -> None:
    r = _post(server, "twin", {"instances": SEQ.tolist()})
    assert r.status_code == 200, r.text
    rows = r.json()["predictions"]
    assert_served([row["pooled"] for row in rows], saved["pooled"])
    assert [row["argmax"] for row in rows] == saved["argmax"].tolist()
    r = _post(server, "twin", {"signature_name": "scale", "inputs": X.tolist()})
    assert r.status_code == 200, r.text
    assert_served(r.json()["outputs"], saved["scaled"])
    r = _post(server, "export", {"signature_name": "serve", "instances": X.tolist()})
    assert r.status_code == 200, r.text  # Keras export's second signature
    assert_served(r.json()["predictions"], saved["probs"])
    r = _post(server, "twin", {"signature_name": "nope", "instances": SEQ.tolist()})
    assert r.status_code == 400
    assert r.json() == {"error": 'Serving signature name: "nope" not found in signature def'}


def _tf_signature_defs(path: Path) -> dict[str, Any]:
    """The SavedModel's SignatureDefs printed as TF Serving prints them (proto JSON with
    field names kept and default values included)."""
    from google.protobuf import json_format
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((path / "saved_model.pb").read_bytes())
    return {k: json_format.MessageToDict(v, preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)
            for k, v in saved.meta_graphs[0].signature_def.items()}


@pytest.mark.parametrize("model", ["twin", "export"])
def test_rest_metadata_returns_signature_defs(server: Server, saved: dict[str, Any],
                                              model: str) -> None:
    r = requests.get(f"{server.url}/v1/models/{model}/metadata", timeout=30)
    assert r.status_code == 200, r.text
    meta = r.json()
    assert meta["model_spec"] == {"name": model, "signature_name": "", "version": "1"}
    defs = meta["metadata"]["signature_def"]["signature_def"]
    assert defs == _tf_signature_defs(saved["dir"] / model / "1")
    if model == "twin":
        assert set(defs) == {"serving_default", "scale", "__saved_model_init_op"}
        assert defs["serving_default"]["outputs"]["argmax"]["dtype"] == "DT_INT64"


def test_tritonclient_infer(server: Server, saved: dict[str, Any]) -> None:
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"),
                                          network_timeout=30)
    try:
        meta = client.get_model_metadata("twin")
        assert meta["inputs"] == [{"name": "seq", "datatype": "FP32", "shape": [-1, 4, 2]}]
        assert {o["name"]: o["datatype"] for o in meta["outputs"]} == {"argmax": "INT64",
                                                                     "pooled": "FP32"}
        inp = triton.InferInput("seq", list(SEQ.shape), "FP32")
        inp.set_data_from_numpy(SEQ)
        result = client.infer("twin", [inp])
        assert_served(result.as_numpy("pooled"), saved["pooled"])
        np.testing.assert_array_equal(result.as_numpy("argmax"), saved["argmax"])
        inp = triton.InferInput("features", list(X.shape), "FP32")
        inp.set_data_from_numpy(X)
        assert_served(client.infer("export", [inp]).as_numpy("output_0"), saved["probs"])
    finally:
        client.close()


def test_serve_a_single_export_directory(serve: Any, saved: dict[str, Any],
                                         tmp_path: Path) -> None:
    single = tmp_path / "exported"
    shutil.copytree(saved["dir"] / "export" / "1", single)
    server = serve(single, "--model-name", "m")
    r = _post(server, "m", {"instances": X[:2].tolist()})
    assert r.status_code == 200, r.text
    assert_served(r.json()["predictions"], saved["probs"][:2])
