"""The repository's example model as a user would serve it: `tfless serve BASE` with no
--host (so the default address), the digits CNN as version 1 (.keras) and version 2 (the
same network as .h5), labels from a config file, TF Serving REST v1 clients and
tritonclient. Predictions must be the labels recorded next to the samples, and the outputs
exactly Model.predict's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import requests
import tritonclient.http as triton

from tests.serve.conftest import assert_served, predict

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SAMPLES = np.load(EXAMPLES / "digits_samples.npy")
LABELS = json.loads((EXAMPLES / "digits_samples_labels.json").read_text())


def _base(tmp_path: Path) -> Path:
    base = tmp_path / "digits"
    for version, name in ((1, "digits_cnn.keras"), (2, "digits_cnn.h5")):
        (base / str(version)).mkdir(parents=True)
        shutil.copy(EXAMPLES / name, base / str(version) / f"model{Path(name).suffix}")
    return base


def test_digits_over_both_protocols_on_the_default_address(serve, tmp_path: Path) -> None:
    base = _base(tmp_path)
    config = tmp_path / "models.config"
    config.write_text(f"""
model_config_list {{
  config {{
    name: "digits"
    base_path: "{base}"
    model_platform: "tensorflow"
    model_version_policy {{ all {{}} }}
    version_labels {{ key: "stable" value: 1 }}
    version_labels {{ key: "canary" value: 2 }}
  }}
}}
""")
    server = serve("--model-config-file", config, "--max-batch-size", "16", host=None)
    assert server.url.startswith("http://127.0.0.1:")  # the default bind address
    want = predict(EXAMPLES / "digits_cnn.keras", SAMPLES)
    np.testing.assert_array_equal(want, predict(EXAMPLES / "digits_cnn.h5", SAMPLES))

    status = requests.get(f"{server.url}/v1/models/digits", timeout=30).json()
    assert [(s["version"], s["state"]) for s in status["model_version_status"]] == [
        ("2", "AVAILABLE"), ("1", "AVAILABLE")]
    for path in ("/v1/models/digits:predict", "/v1/models/digits/versions/1:predict",
                 "/v1/models/digits/labels/stable:predict", "/v1/models/digits/labels/canary:predict"):
        r = requests.post(f"{server.url}{path}", json={"instances": SAMPLES.tolist()}, timeout=30)
        assert r.status_code == 200, (path, r.text)
        got = np.asarray(r.json()["predictions"], np.float32)
        assert got.argmax(axis=1).tolist() == LABELS, path
        assert_served(got, want)
    r = requests.post(f"{server.url}/v1/models/digits:predict",
                      json={"signature_name": "serving_default",
                            "inputs": {"image": SAMPLES[:3].tolist()}}, timeout=30)
    assert_served(np.asarray(r.json()["outputs"], np.float32), want[:3])

    client = triton.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=30)
    try:
        meta = client.get_model_metadata("digits")
        assert meta["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 8, 8, 1]}]
        assert meta["versions"] == ["1", "2"]
        config_doc = client.get_model_config("digits")
        assert config_doc["max_batch_size"] == 16
        assert config_doc["input"][0]["dims"] == [8, 8, 1]  # Triton: no batch axis when batching
        for binary in (True, False):
            x = triton.InferInput("image", list(SAMPLES.shape), "FP32")
            x.set_data_from_numpy(SAMPLES, binary_data=binary)
            result = client.infer("digits", [x], model_version="1", outputs=[
                triton.InferRequestedOutput("digit", binary_data=binary)])
            assert_served(result.as_numpy("digit"), want)
    finally:
        client.close()


def test_free_length_model_serves_though_warm_up_cannot_run_it(serve, models) -> None:
    """A 'valid' Conv1D over a free-length sequence refuses the warm-up's length 1; the
    version is served anyway, and a too-short request gets a 400 that says why."""
    server = serve(models.conv1d, "--model-name", "seq")
    status = requests.get(f"{server.url}/v1/models/seq", timeout=30).json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    assert "warm-up skipped" in server.log()
    x = np.random.default_rng(8).uniform(-1, 1, (2, 7, 4)).astype(np.float32)
    r = requests.post(f"{server.url}/v1/models/seq:predict", json={"instances": x.tolist()},
                      timeout=30)
    assert r.status_code == 200, r.text
    assert_served(np.asarray(r.json()["predictions"], np.float32),
                                  predict(models.conv1d, x))
    r = requests.post(f"{server.url}/v1/models/seq:predict",
                      json={"instances": x[:, :2].tolist()}, timeout=30)
    assert r.status_code == 400 and "kernel extent" in r.json()["error"], r.text
