"""tfless build: bundles round-trip, PyInstaller executables run without the venv, match Keras."""

from __future__ import annotations

import importlib.util
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests

import tfless
from tests.parity import assert_close, keras_module, keras_predict, randomize_weights
from tfless.errors import InputError, MissingExtra
from tfless.package import build as build_module
from tfless.package.bundle import check_test_vector, file_sha256, load_graph, read_manifest, save_bundle
from tfless.serve import ServeOptions
from tfless.serve.app import load_repository
from tfless.serve.metrics import ServingMetrics

CLEAN_ENV = {"PATH": "/usr/bin:/bin"}


def small_cnn(tmp: Path) -> tuple[Path, object]:
    K = keras_module("keras3")
    L = K.layers
    inp = K.Input((8, 8, 2), name="image")
    h = L.MaxPooling2D()(L.Conv2D(3, 3, padding="same", activation="relu")(inp))
    h = L.BatchNormalization()(h)
    model = K.Model(inp, L.Dense(4, activation="softmax")(L.Flatten()(h)))
    randomize_weights(model)
    path = tmp / "cnn.keras"
    model.save(path)
    return path, model


def mlp(tmp: Path) -> tuple[Path, object]:
    K = keras_module("keras3")
    inp = K.Input((5,), name="features")
    model = K.Model(inp, K.layers.Dense(3)(K.layers.Dense(8, activation="tanh")(inp)))
    randomize_weights(model)
    path = tmp / "mlp.h5"
    model.save(path)
    return path, model


def test_bundle_round_trip_and_test_vector(tmp_path: Path) -> None:
    path, keras_model = small_cnn(tmp_path)
    model = tfless.load(path)
    manifest = save_bundle(model, tmp_path / "b", source=path, version=tfless.__version__)
    assert manifest["inputs"][0]["name"] == "image" and len(manifest["source_sha256"]) == 64
    assert read_manifest(tmp_path / "b") == manifest
    again = tfless.Model(load_graph(tmp_path / "b"))
    x = np.random.default_rng(0).uniform(-1, 1, (3, 8, 8, 2)).astype(np.float32)
    assert_close(again.predict(x), keras_predict(keras_model, x), "bundle")
    assert check_test_vector(again, tmp_path / "b") <= 1e-5
    # a bundle whose weights changed no longer passes its own check
    with np.load(tmp_path / "b" / "weights.npz") as z:
        arrays = {k: z[k] + np.float32(0.01) for k in z.files}
    np.savez(tmp_path / "b" / "weights.npz", **arrays)
    with pytest.raises(InputError, match="test vector mismatch"):
        check_test_vector(tfless.Model(load_graph(tmp_path / "b")), tmp_path / "b")


def test_repository_serves_an_in_memory_model_as_version_1(tmp_path: Path) -> None:
    path, keras_model = mlp(tmp_path)
    model = tfless.Model(tfless.load(path).source_graph)  # built, never re-read from a file
    options = ServeOptions(num_batch_threads=1, access_log=False)
    repository = load_repository(options, ServingMetrics(), models={"net": model})
    try:
        assert repository.model_names() == ["net"] and repository.is_ready()
        assert [(s.version, s.state) for s in repository.status("net")] == [(1, "AVAILABLE")]
        x = np.random.default_rng(2).uniform(-1, 1, (3, 5)).astype(np.float32)
        with repository.use("net") as servable:
            assert servable.model is model
            got = servable.predict([x])
        assert_close(got, keras_predict(keras_model, x), "in-memory served model")
    finally:
        repository.close()


def test_missing_pyinstaller_is_a_one_line_error(tmp_path: Path, monkeypatch) -> None:
    path, _ = mlp(tmp_path)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "PyInstaller" else object())
    with pytest.raises(MissingExtra, match=r"pip install 'tfless\[build\]'"):
        build_module.build_executable(path, tmp_path / "dist" / "m")


def run_clean(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run with no access to the venv: only /usr/bin and /bin on PATH, no PYTHON* vars."""
    return subprocess.run(args, env=CLEAN_ENV, capture_output=True, check=True, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("onedir", [False, True], ids=["onefile", "onedir"])
def test_executable_runs_without_python(tmp_path: Path, onedir: bool) -> None:
    path, keras_model = (small_cnn if onedir else mlp)(tmp_path)
    result = build_module.build_executable(path, tmp_path / "dist" / "net", onedir=onedir)
    exe = str(result.executable)
    info = json.loads(run_clean([exe, "info", "--check"]).stdout)
    assert info["check"].startswith("ok") and info["tfless_version"] == tfless.__version__
    assert info["source_sha256"] == file_sha256(path)

    shape = (3, *keras_model.input_shape[1:])
    x = np.random.default_rng(5).uniform(-1, 1, shape).astype(np.float32)
    want = keras_predict(keras_model, x)
    np.save(tmp_path / "x.npy", x)
    run_clean([exe, "predict", "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")])
    assert_close(np.load(tmp_path / "y.npy"), want, "executable .npy")
    out = run_clean([exe, "predict", "-i", "-"], input=json.dumps({"instances": x.tolist()}).encode())
    got = np.asarray(next(iter(json.loads(out.stdout)["outputs"].values())), np.float32)
    assert_close(got, want, "executable JSON on stdin")
    bad = subprocess.run([exe, "predict", "-i", "-"], input=b"[[1, 2]]", env=CLEAN_ENV,
                         capture_output=True)
    assert bad.returncode == 2 and b"error: input" in bad.stderr
    no_server = subprocess.run([exe, "serve", "--port", "0"], env=CLEAN_ENV, capture_output=True,
                               text=True, timeout=60)
    assert no_server.returncode == 2 and no_server.stderr.count("\n") == 1
    assert "built without the server" in no_server.stderr and "--with-serve" in no_server.stderr
    if not onedir:
        viewer = str(Path(sys.executable).parent / "pyi-archive_viewer")
        listing = subprocess.run([viewer, "-l", "-r", exe], capture_output=True, text=True,
                                 check=True).stdout
        assert "tfless.runtime.plan" in listing
        assert "h5py" not in listing and "tensorflow" not in listing and "starlette" not in listing


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"server exited with {proc.returncode}"
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready within {deadline_s} s")


@pytest.mark.slow
def test_executable_serves_its_model(tmp_path: Path) -> None:
    path, keras_model = small_cnn(tmp_path)
    result = build_module.build_executable(path, tmp_path / "dist" / "net", with_serve=True)
    exe = str(result.executable)
    viewer = str(Path(sys.executable).parent / "pyi-archive_viewer")
    listing = subprocess.run([viewer, "-l", "-r", exe], capture_output=True, text=True,
                             check=True).stdout
    assert "tfless.serve.server" in listing and "uvicorn" in listing
    assert "h5py" not in listing and "google.protobuf" not in listing
    assert json.loads(run_clean([exe, "info"]).stdout)["serve"] is True

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([exe, "serve", "--port", str(port), "--no-access-log"],
                            env=CLEAN_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_ready(f"{base}/v2/health/ready", proc, 60)
        x = np.random.default_rng(9).uniform(-1, 1, (2, 8, 8, 2)).astype(np.float32)
        reply = requests.post(f"{base}/v1/models/net:predict", json={"instances": x.tolist()},
                              timeout=30)
        assert reply.status_code == 200, reply.text
        want = keras_predict(keras_model, x)
        assert_close(np.asarray(reply.json()["predictions"], np.float32), want, "served REST v1")
        v2 = requests.post(f"{base}/v2/models/net/infer", timeout=30, json={"inputs": [
            {"name": "image", "shape": list(x.shape), "datatype": "FP32",
             "data": x.ravel().tolist()}]})
        assert v2.status_code == 200, v2.text
        out = v2.json()["outputs"][0]
        assert_close(np.asarray(out["data"], np.float32).reshape(out["shape"]), want, "served V2")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
