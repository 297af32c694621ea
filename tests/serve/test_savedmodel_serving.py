"""A TF Serving base directory of tf.keras SavedModels (`<base>/<version>/saved_model.pb`,
`variables/`, `keras_metadata.pb`) is served as TF Serving would serve it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import requests

from tests.parity import assert_close, randomize_weights

X = np.random.default_rng(5).uniform(-1, 1, (3, 4)).astype(np.float32)
IDS = np.array([[1, 2, 0], [5, 0, 0], [9, 8, 7]], np.int32)


def _save(model: Any, target: Path) -> None:
    """Write the SavedModel aside, then rename it into place, as a deployment would."""
    staging = target.parent / f".staging-{target.name}"
    model.save(staging, save_format="tf")
    staging.rename(target)


def _mlp(seed: int) -> Any:
    import tf_keras as K

    x = K.Input((4,), name="x")
    h = K.layers.Dense(8, activation="relu", name="hidden")(x)
    model = K.Model(x, K.layers.Dense(3, activation="softmax", name="probs")(h))
    randomize_weights(model, seed)
    return model


def _multi() -> Any:
    import tf_keras as K

    x = K.Input((4,), name="x")
    ids = K.Input((3,), dtype="int32", name="ids")
    h = K.layers.Dense(5, activation="tanh")(x)
    e = K.layers.GlobalAveragePooling1D()(K.layers.Embedding(10, 5, mask_zero=True)(ids))
    merged = K.layers.add([h, e])
    model = K.Model([x, ids], [K.layers.Dense(2, name="score")(merged),
                               K.layers.Dense(1, activation="sigmoid", name="prob")(merged)])
    randomize_weights(model, 4)
    return model


def test_base_dir_of_savedmodels_serves_and_switches_versions(serve, tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    v1, v2 = _mlp(1), _mlp(2)
    _save(v1, base / "1")
    server = serve(base, "--model-name", "mlp", "--poll-seconds", "0.2")
    r = requests.post(f"{server.url}/v1/models/mlp:predict", json={"instances": X.tolist()},
                      timeout=30)
    assert r.status_code == 200, r.text
    assert_close(np.asarray(r.json()["predictions"], np.float32),
                 [v1.predict(X, verbose=0)], "version 1")
    meta = requests.get(f"{server.url}/v1/models/mlp/metadata", timeout=30).json()
    assert meta["model_spec"]["version"] == "1"
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert list(sig["inputs"]) == ["x"] and list(sig["outputs"]) == ["probs"]

    _save(v2, base / "2")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        doc = requests.get(f"{server.url}/v1/models/mlp", timeout=30).json()
        states = {s["version"]: s["state"] for s in doc["model_version_status"]}
        if states.get("2") == "AVAILABLE":
            break
        time.sleep(0.1)
    assert states.get("2") == "AVAILABLE", doc
    r = requests.post(f"{server.url}/v1/models/mlp:predict", json={"instances": X.tolist()},
                      timeout=30)
    assert_close(np.asarray(r.json()["predictions"], np.float32),
                 [v2.predict(X, verbose=0)], "version 2")


def test_multi_input_savedmodel_over_rest_and_kserve(serve, tmp_path: Path) -> None:
    model = _multi()
    want = model.predict([X, IDS], verbose=0)
    base = tmp_path / "base"
    base.mkdir()
    _save(model, base / "7")
    server = serve(base, "--model-name", "multi")
    r = requests.post(f"{server.url}/v1/models/multi/versions/7:predict",
                      json={"inputs": {"x": X.tolist(), "ids": IDS.tolist()}}, timeout=30)
    assert r.status_code == 200, r.text
    out = r.json()["outputs"]
    assert_close([np.asarray(out["score"], np.float32), np.asarray(out["prob"], np.float32)],
                 want, "rest columnar")
    body = {"inputs": [
        {"name": "x", "shape": list(X.shape), "datatype": "FP32", "data": X.ravel().tolist()},
        {"name": "ids", "shape": list(IDS.shape), "datatype": "INT32",
         "data": IDS.ravel().tolist()}]}
    r = requests.post(f"{server.url}/v2/models/multi/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    outs = {o["name"]: np.asarray(o["data"], np.float32).reshape(o["shape"])
            for o in r.json()["outputs"]}
    assert_close([outs["score"], outs["prob"]], want, "kserve v2")
