"""Serving test setup: small Keras models saved to temp dirs, and a real `tfless serve`
process on a free loopback port, stopped (SIGTERM, bounded wait) when the test is done."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests

import tfless

STARTUP_SECONDS = 90
STOP_SECONDS = 30


@dataclass
class Models:
    """Model files built with Keras (Dense/Activation/Dropout/Embedding only)."""

    mlp: Path  # x (4,) float -> probs (3,)
    mlp_b: Path  # same layout, other weights (a second version)
    mlp_c: Path  # same layout, other weights (a third version)
    multi: Path  # x (4,) float, ids (3,) int32 -> probs (2,), score (1,), emb (3, 2)
    half_plus_two: Path  # x (1,) -> 0.5 * x + 2, the TF Serving docs' example
    conv1d: Path  # seq (None, 4): a 'valid' Conv1D of width 3 needs length >= 3 -> (5,)


def _mlp(keras, seed: int):
    keras.utils.set_random_seed(seed)
    x = keras.Input((4,), name="x")
    h = keras.layers.Dense(16, activation="relu", name="hidden")(x)
    h = keras.layers.Dropout(0.2)(h)
    y = keras.layers.Dense(3, name="logits")(h)
    return keras.Model(x, keras.layers.Activation("softmax", name="probs")(y))


def _multi(keras):
    keras.utils.set_random_seed(7)
    x = keras.Input((4,), name="x")
    ids = keras.Input((3,), name="ids", dtype="int32")
    h = keras.layers.Dense(8, activation="tanh")(x)
    probs = keras.layers.Dense(2, activation="softmax", name="probs")(h)
    score = keras.layers.Dense(1, name="score")(h)
    emb = keras.layers.Embedding(10, 2, name="emb")(ids)
    return keras.Model([x, ids], [probs, score, emb])


def _half_plus_two(keras):
    x = keras.Input((1,), name="x")
    layer = keras.layers.Dense(1, name="y")
    model = keras.Model(x, layer(x))
    layer.set_weights([np.array([[0.5]], np.float32), np.array([2.0], np.float32)])
    return model


def _conv1d(keras):
    keras.utils.set_random_seed(11)
    x = keras.Input((None, 4), name="seq")
    h = keras.layers.Conv1D(5, 3, padding="valid", name="conv")(x)
    return keras.Model(x, keras.layers.GlobalMaxPooling1D(name="pool")(h))


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    import keras

    d = tmp_path_factory.mktemp("serve-models")
    built = {"mlp": _mlp(keras, 1), "mlp_b": _mlp(keras, 2), "mlp_c": _mlp(keras, 3),
             "multi": _multi(keras), "half_plus_two": _half_plus_two(keras),
             "conv1d": _conv1d(keras)}
    paths = {}
    for name, model in built.items():
        paths[name] = d / f"{name}.keras"
        model.save(paths[name])
    return Models(**paths)


def predict(path: Path, x) -> np.ndarray | list[np.ndarray]:
    return tfless.load(path).predict(x)


def assert_served(got, want: np.ndarray) -> None:
    """A served output equals `Model.predict` in this process to float32 rounding: the
    server caps BLAS threads per batch thread and may stack requests into one batch, and
    BLAS kernels sum in a different order for other thread counts and row counts (seen in
    CI: one element one ulp apart). Exact JSON/binary round-trips are tested in
    test_units.py."""
    np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=1e-6, atol=1e-7)


def version_dir(base: Path, version: int, model: Path) -> Path:
    """Add <base>/<version>/model.keras atomically (copied aside, then renamed)."""
    staging = base / f".staging-{version}"
    staging.mkdir(parents=True)
    shutil.copy(model, staging / "model.keras")
    target = base / str(version)
    staging.rename(target)
    return target


class Server:
    """A `tfless serve` subprocess; `url` is http://127.0.0.1:PORT (or http://[::1]:PORT).
    With host=None no --host is given, so the server binds its default address."""

    def __init__(self, args: list[str], log_path: Path, host: str | None = "127.0.0.1") -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        host_args = [] if host is None else ["--host", host]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tfless.cli", "serve", *host_args, "--port", "0", *args],
            stdout=self._log, stderr=subprocess.STDOUT, env=env)
        try:
            self.url = self._wait_for_url()
            self._wait_ready()
        except BaseException:
            self.stop()  # never leave a server behind when its start fails
            raise

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            m = re.search(r"listening on (http://(?:127\.0\.0\.1|\[::1\]):\d+)", self.log())
            if m:
                return m.group(1)
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.05)
        raise AssertionError(f"server did not start in {STARTUP_SECONDS} s:\n{self.log()}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            try:  # a connection may wait in the listen backlog while workers start
                if requests.get(f"{self.url}/v2/health/ready", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.05)
        raise AssertionError(f"server not ready in {STARTUP_SECONDS} s:\n{self.log()}")

    def stop(self) -> int:
        """SIGTERM, then SIGKILL if it has not exited in time; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_SECONDS)
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def serve(tmp_path: Path) -> Iterator:
    """Start servers for one test: `serve(args...)` returns a running Server."""
    started: list[Server] = []

    def start(*args: str | Path, host: str | None = "127.0.0.1") -> Server:
        server = Server([str(a) for a in args], tmp_path / f"server-{len(started)}.log", host)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
