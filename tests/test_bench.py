"""`tfless bench`: runs end to end on a tiny model and prints the tables; thread settings
reach the workers. No timing is asserted anywhere."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.parity import keras_module, randomize_weights
from tfless.bench import ModelResult, Settings, _worker_env, available_sides
from tfless.bench_report import footprint, format_tables


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    K = keras_module("keras3")
    inp = K.Input((8,))
    model = K.Model(inp, K.layers.Dense(3, activation="softmax")(K.layers.Dense(16)(inp)))
    randomize_weights(model)
    path = tmp_path_factory.mktemp("bench") / "tiny.keras"
    model.save(path)
    return path


def test_bench_quick_prints_tables(tiny_model: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "tfless.cli", "bench", str(tiny_model), "--quick"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    for heading in ("### Cold start", "### Latency at batch 1", "### Throughput at batch 32",
                    "### Peak resident memory", "### Install footprint"):
        assert heading in out
    rows = [line for line in out.splitlines() if line.startswith("| tiny ")]
    assert len(rows) == 4, out
    assert "threads: 1 (OMP_NUM_THREADS=1" in out
    assert "Python " in out and "NumPy " in out
    # every side that is installed produced a number (no n/a) in the latency row
    latency = rows[1]
    assert latency.count("n/a") == (0 if available_sides()["litert"] is None else 1), latency


def test_bench_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "tfless.cli", "bench", str(tmp_path / "nope.keras")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "no such model file" in proc.stderr


def test_thread_settings_reach_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    assert "TFLESS_BENCH_THREADS" not in _worker_env(Settings())
    env = _worker_env(Settings(threads=2))
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == env["TFLESS_BENCH_THREADS"] == "2"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    env = _worker_env(Settings())
    assert env["MKL_NUM_THREADS"] == env["TFLESS_BENCH_THREADS"] == "3"


def test_footprint_closure() -> None:
    numpy_size = footprint("numpy")
    assert numpy_size is not None and numpy_size[0] > 0 and numpy_size[1] == ["numpy"]
    core = footprint("tfless", skip=("starlette", "uvicorn", "orjson"))
    assert core is not None and {"tfless", "numpy", "h5py"} <= set(core[1])
    assert footprint("surely-not-an-installed-distribution") is None


def test_table_marks_missing_and_failed_cells() -> None:
    res = ModelResult("m", "m.keras", 10, cold={"tfless": 0.5, "tf": "failed: boom"},
                      latency={"tfless": {"median_ms": 1.0, "p99_ms": 2.0, "calls": 5},
                               "tf_predict": {"median_ms": 40.0, "p99_ms": 50.0, "calls": 5},
                               "tf_call": {"median_ms": 4.0, "p99_ms": 5.0, "calls": 5},
                               "ort": "not installed (pip install onnxruntime)"},
                      throughput={"tfless": 100.0, "tf": 50.0}, memory={"tfless": 90.0, "tf": 600.0})
    sides = {"tfless": None, "tf": None, "ort": "not installed (pip install onnxruntime)",
             "litert": "not installed (pip install ai-edge-litert)"}
    text = format_tables([res], Settings.quick(), sides, with_footprint=False)
    assert "Skipped columns: ONNX Runtime: not installed" in text
    assert "| m | 1 / 2 | 40 / 50 | 4 / 5 | n/a" in re.sub(" +", " ", text)
    assert "0.025" in text and "met" in text  # 1 ms / 40 ms
    assert "- m TF Keras: failed: boom" in text


def test_table_reports_a_busy_machine() -> None:
    res = ModelResult("m", "m.keras", 10, cold={}, latency={}, throughput={}, memory={})
    sides = {"tfless": None, "tf": None, "ort": None, "litert": None}
    cpus = os.cpu_count() or 1
    quiet = format_tables([res], Settings.quick(), sides, with_footprint=False, loads=[0.1, 0.2])
    assert f"Load average (1 min) during the run: 0.1 to 0.2 on {cpus} CPUs" in quiet
    assert "busy" not in quiet
    busy = format_tables([res], Settings.quick(), sides, with_footprint=False,
                         loads=[0.1, 3.0 * cpus])
    assert "the machine was busy with other work" in busy
