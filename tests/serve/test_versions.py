"""Versions: a new version directory is picked up while clients keep sending (no request
fails), a corrupt version leaves the old one serving with the error in the status, and
model_config_list policies and labels choose what is served."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import requests

from tests.serve.conftest import Models, assert_served, predict, version_dir

X = np.random.default_rng(3).uniform(-1, 1, (3, 4)).astype(np.float32)
BODY = {"instances": X.tolist()}
MAX_SECONDS = 40  # every client loop below stops after this, or after its request count


def _status(url: str, model: str = "default") -> dict[str, dict]:
    doc = requests.get(f"{url}/v1/models/{model}", timeout=10).json()
    return {s["version"]: s for s in doc["model_version_status"]}


def _wait_for(check, seconds: float = MAX_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_new_version_is_served_without_dropping_requests(serve, models: Models,
                                                         tmp_path: Path) -> None:
    base = tmp_path / "base"
    version_dir(base, 1, models.mlp)
    server = serve(base, "--poll-seconds", "0.2", "--max-batch-size", "16")
    v1, v2 = predict(models.mlp, X), predict(models.mlp_b, X)
    results: list[tuple[int, str]] = []
    failures: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def client() -> None:
        with requests.Session() as s:
            deadline = time.monotonic() + MAX_SECONDS
            for _ in range(2000):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                try:
                    r = s.post(f"{server.url}/v1/models/default:predict", json=BODY, timeout=10)
                except requests.RequestException as exc:
                    failures.append(repr(exc))
                    continue
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text}")
                    continue
                got = np.asarray(r.json()["predictions"], np.float32)
                which = "v1" if np.allclose(got, v1, atol=1e-6) else (
                    "v2" if np.allclose(got, v2, atol=1e-6) else "neither")
                with lock:
                    results.append((len(results), which))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        _wait_for(lambda: len(results) >= 40)
        version_dir(base, 2, models.mlp_b)
        _wait_for(lambda: any(w == "v2" for _, w in results[-20:]) and
                  all(w == "v2" for _, w in results[-20:]))
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(MAX_SECONDS)
    assert not failures, failures[:5]
    kinds = [w for _, w in results]
    assert "neither" not in kinds
    assert kinds[0] == "v1" and kinds[-1] == "v2"
    _wait_for(lambda: _status(server.url)["1"]["state"] == "END")
    status = _status(server.url)
    assert status["2"]["state"] == "AVAILABLE" and status["2"]["status"]["error_code"] == "OK"
    r = requests.post(f"{server.url}/v1/models/default/versions/1:predict", json=BODY, timeout=10)
    assert r.status_code == 404


def test_corrupt_new_version_keeps_the_old_one_serving(serve, models: Models,
                                                       tmp_path: Path) -> None:
    base = tmp_path / "base"
    version_dir(base, 1, models.mlp)
    server = serve(base, "--poll-seconds", "0.2", "--model-name", "m")
    bad = base / ".staging-2"
    bad.mkdir()
    (bad / "model.keras").write_bytes(b"PK\x03\x04 this is not a zip archive")
    bad.rename(base / "2")
    _wait_for(lambda: _status(server.url, "m").get("2", {}).get("state") == "END")
    status = _status(server.url, "m")
    assert status["1"]["state"] == "AVAILABLE"
    assert status["2"]["status"]["error_code"] != "OK"
    assert "model.keras" in status["2"]["status"]["error_message"]
    for _ in range(5):
        r = requests.post(f"{server.url}/v1/models/m:predict", json=BODY, timeout=10)
        assert r.status_code == 200
        assert_served(np.asarray(r.json()["predictions"], np.float32),
                                      predict(models.mlp, X))
    r = requests.post(f"{server.url}/v1/models/m/versions/2:predict", json=BODY, timeout=10)
    assert r.status_code == 404
    # Fixing the files of the failed version gets it loaded on a later poll.
    (base / "2" / "model.keras").write_bytes(models.mlp_b.read_bytes())
    _wait_for(lambda: _status(server.url, "m")["2"]["state"] == "AVAILABLE")
    r = requests.post(f"{server.url}/v1/models/m:predict", json=BODY, timeout=10)
    assert_served(np.asarray(r.json()["predictions"], np.float32),
                                  predict(models.mlp_b, X))


def test_policies_and_labels_from_a_config_file(serve, models: Models, tmp_path: Path) -> None:
    base = tmp_path / "mlp"
    for v, m in ((1, models.mlp), (2, models.mlp_b), (3, models.mlp_c)):
        version_dir(base, v, m)
    config = tmp_path / "models.config"
    config.write_text(f"""
model_config_list {{
  config {{
    name: "pinned"
    base_path: "{base}"
    model_version_policy {{ specific {{ versions: 1 versions: 3 }} }}
    version_labels {{ key: "stable" value: 1 }}
    version_labels {{ key: "canary" value: 3 }}
  }}
  config {{ name: "two" base_path: "mlp" model_version_policy {{ latest {{ num_versions: 2 }} }} }}
  config {{ name: "every" base_path: "mlp" model_version_policy {{ all {{}} }} }}
}}
""")
    server = serve("--model-config-file", config)
    assert list(_status(server.url, "pinned")) == ["3", "1"]
    assert list(_status(server.url, "two")) == ["3", "2"]
    assert list(_status(server.url, "every")) == ["3", "2", "1"]
    expected = {"stable": models.mlp, "canary": models.mlp_c}
    for label, model in expected.items():
        r = requests.post(f"{server.url}/v1/models/pinned/labels/{label}:predict", json=BODY,
                          timeout=10)
        assert r.status_code == 200, r.text
        assert_served(np.asarray(r.json()["predictions"], np.float32),
                                      predict(model, X))
        status = requests.get(f"{server.url}/v1/models/pinned/labels/{label}", timeout=10).json()
        assert status["model_version_status"][0]["version"] == {"stable": "1", "canary": "3"}[label]
    r = requests.post(f"{server.url}/v1/models/pinned:predict", json=BODY, timeout=10)
    assert_served(np.asarray(r.json()["predictions"], np.float32),
                                  predict(models.mlp_c, X))
    r = requests.post(f"{server.url}/v1/models/pinned/versions/2:predict", json=BODY, timeout=10)
    assert r.status_code == 404
    r = requests.post(f"{server.url}/v1/models/pinned/labels/beta:predict", json=BODY, timeout=10)
    assert r.status_code == 400 and "Unrecognized servable version label: beta" in r.json()["error"]
    r = requests.post(f"{server.url}/v1/models/every/versions/2:predict", json=BODY, timeout=10)
    assert_served(np.asarray(r.json()["predictions"], np.float32),
                                  predict(models.mlp_b, X))
