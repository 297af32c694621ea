"""tfless build: bundles round-trip, PyInstaller executables run without the venv, match Keras."""

from __future__ import annotations

import ctypes
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
from tfless.errors import InputError, MissingExtra, TflessError
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


def test_missing_pyinstaller_from_the_command_line(tmp_path: Path) -> None:
    path, _ = mlp(tmp_path)
    code = ("import sys; sys.modules['PyInstaller'] = None; from tfless.cli import main; "
            f"sys.exit(main(['build', {str(path)!r}, '-o', {str(tmp_path / 'm')!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "pip install 'tfless[build]'" in done.stderr and not (tmp_path / "m").exists()


def test_an_existing_directory_is_not_replaced(tmp_path: Path) -> None:
    path, _ = mlp(tmp_path)
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "keep.txt").write_text("mine")
    with pytest.raises(TflessError, match="not an earlier tfless --onedir build"):
        build_module.build_executable(path, tmp_path / "dist")
    assert (tmp_path / "dist" / "keep.txt").read_text() == "mine"
    (tmp_path / "file").write_text("")
    with pytest.raises(TflessError, match="is a file, not a directory"):
        build_module.build_executable(path, tmp_path / "file" / "m")


def test_debug_info_is_stripped_from_interpreter_libraries_only(tmp_path: Path,
                                                                monkeypatch) -> None:
    source = tmp_path / "lib.c"
    source.write_text("int twice(int x) { return 2 * x; }\n")
    python_lib = tmp_path / "python" / "lib" / "libdemo.so"
    wheel_lib = tmp_path / "python" / "lib" / "site-packages" / "pkg.libs" / "libdemo.so"
    for lib in (python_lib, wheel_lib):
        lib.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cc", "-g", "-O0", "-shared", "-fPIC", str(source), "-o", str(lib)],
                       check=True)
    monkeypatch.setattr(sys, "base_prefix", str(tmp_path / "python"))
    entries = [("libdemo.so", str(python_lib), "BINARY"),
               ("pkg.libs/libdemo.so", str(wheel_lib), "BINARY"),
               ("data.txt", str(source), "DATA")]
    got = build_module.strip_debug_info(entries, tmp_path / "out")
    assert got[1:] == entries[1:]  # a wheel's library (maybe patchelf'd) is never rewritten
    stripped = Path(got[0][1])
    assert stripped.parent == tmp_path / "out"
    assert stripped.stat().st_size < python_lib.stat().st_size
    assert ctypes.CDLL(str(stripped)).twice(21) == 42
    monkeypatch.setattr(build_module.shutil, "which", lambda name: None)
    assert build_module.strip_debug_info(entries, tmp_path / "out2") == entries


def run_clean(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run with no access to the venv: only /usr/bin and /bin on PATH, no PYTHON* vars."""
    return subprocess.run(args, env=CLEAN_ENV, capture_output=True, check=True, **kwargs)


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits_cnn.keras"
# never inside an executable built without --with-serve
NOT_INSIDE = ("h5py", "tensorflow", "starlette", "uvicorn", "tfless.bench", "tfless.formats",
              "numpy.f2py", "numpy.testing", "unittest", "libcrypto", "_ssl")


def example_model(tmp: Path) -> tuple[Path, object]:
    """The repository's example file (a digits CNN), as saved by examples/train_digits.py."""
    return EXAMPLE, keras_module("keras3").models.load_model(EXAMPLE)


def archive_listing(exe: Path, onedir: bool) -> str:
    if onedir:
        return "\n".join(str(p.relative_to(exe.parent)) for p in exe.parent.rglob("*"))
    viewer = str(Path(sys.executable).parent / "pyi-archive_viewer")
    listing = subprocess.run([viewer, "-l", "-r", str(exe)], capture_output=True, text=True,
                             check=True).stdout
    pyz = subprocess.run([viewer, "-l", str(exe)], capture_output=True, text=True,
                         check=True).stdout
    return listing + pyz


@pytest.mark.slow
@pytest.mark.parametrize("onedir", [False, True], ids=["onefile", "onedir"])
def test_executable_runs_without_python(tmp_path: Path, onedir: bool) -> None:
    path, keras_model = (small_cnn if onedir else example_model)(tmp_path)
    result = build_module.build_executable(path, tmp_path / "dist" / "net", onedir=onedir)
    exe = str(result.executable)
    info = json.loads(run_clean([exe, "info", "--check"]).stdout)
    assert info["check"].startswith("ok") and info["tfless_version"] == tfless.__version__
    assert info["source_sha256"] == file_sha256(path) and info["serve"] is False

    shape = (3, *keras_model.input_shape[1:])
    x = np.random.default_rng(5).uniform(-1, 1, shape).astype(np.float32)
    want = keras_predict(keras_model, x)
    input_name = keras_model.inputs[0].name
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "x.npz", **{input_name: x})
    (tmp_path / "x.json").write_text(json.dumps({"instances": x.tolist()}))
    run_clean([exe, "predict", "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")])
    assert_close(np.load(tmp_path / "y.npy"), want, "executable .npy")
    run_clean([exe, "predict", "-i", str(tmp_path / "x.npz"), "-o", str(tmp_path / "y.npz")])
    with np.load(tmp_path / "y.npz") as z:
        assert_close(z[z.files[0]], want, "executable .npz")
    run_clean([exe, "predict", "-i", str(tmp_path / "x.json"), "-o", str(tmp_path / "y.json")])
    got = next(iter(json.loads((tmp_path / "y.json").read_text())["outputs"].values()))
    assert_close(np.asarray(got, np.float32), want, "executable .json")
    out = run_clean([exe, "predict", "-i", "-"], input=json.dumps({"instances": x.tolist()}).encode())
    got = np.asarray(next(iter(json.loads(out.stdout)["outputs"].values())), np.float32)
    assert_close(got, want, "executable JSON on stdin")

    # user errors: one line on stderr, exit status 2, no traceback
    for args, stdin, message in [
            (["-i", "-"], b"[[1, 2]]", "error: input"),
            (["-i", "-"], b"not json", "not valid JSON"),
            (["-i", str(tmp_path / "missing.npy")], b"", "no such input file"),
            (["-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "no" / "y.npy")], b"",
             "cannot write outputs"),
            (["-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.txt")], b"",
             "unknown output format"),
            (["-i", str(tmp_path / "x.npy"), "--batch-size", "0"], b"", "batch_size")]:
        bad = subprocess.run([exe, "predict", *args], input=stdin, env=CLEAN_ENV,
                             capture_output=True, text=False)
        err = bad.stderr.decode()
        assert bad.returncode == 2 and message in err and err.count("\n") == 1, (args, err)
    no_server = subprocess.run([exe, "serve", "--port", "0"], env=CLEAN_ENV, capture_output=True,
                               text=True, timeout=60)
    assert no_server.returncode == 2 and no_server.stderr.count("\n") == 1
    assert "built without the server" in no_server.stderr and "--with-serve" in no_server.stderr

    listing = archive_listing(result.executable, onedir)
    assert "tfless_bundle" in listing and ("tfless.runtime.plan" in listing or onedir)
    for unwanted in NOT_INSIDE:
        assert unwanted not in listing, unwanted


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
    listing = archive_listing(result.executable, onedir=False)
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
