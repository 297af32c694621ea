"""Docker export: the generated Dockerfile and model layout, and its command run outside Docker."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.parity import keras_module
from tfless.cli import main
from tfless.errors import ModelFormatError
from tfless.export.docker import export_docker


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    K = keras_module("keras3")
    inp = K.Input((3,))
    path = tmp_path / "Iris Net.keras"
    K.Model(inp, K.layers.Dense(2)(inp)).save(path)
    return path


def test_dockerfile_and_layout(tmp_path: Path, model_file: Path) -> None:
    assert main(["export", str(model_file), "-f", "docker", "-o", str(tmp_path / "ctx")]) == 0
    text = (tmp_path / "ctx" / "Dockerfile").read_text()
    assert (tmp_path / "ctx" / "models" / "Iris_Net" / "1" / "model.keras").read_bytes() \
        == model_file.read_bytes()
    lines = text.splitlines()
    assert lines[[i for i, s in enumerate(lines) if s.startswith("FROM")][0]] \
        == "FROM python:3.11-slim"
    assert "MODEL_NAME=Iris_Net" in text and "MODEL_BASE_PATH=/models" in text
    assert "EXPOSE 8501" in text and "/v2/health/ready" in text and "HEALTHCHECK" in text
    user = text.index("\nUSER tfless")
    assert user > text.index("pip install") and user < text.index("\nCMD ")
    assert "useradd" in text and "--uid 10001" in text
    assert (tmp_path / "ctx" / ".dockerignore").read_text().startswith("*\n!models/")


def test_json_architecture_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text("{}")
    with pytest.raises(ModelFormatError, match="single-file model"):
        export_docker(tmp_path / "m.json", tmp_path / "ctx")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_container_command_serves_outside_docker(tmp_path: Path, model_file: Path) -> None:
    export_docker(model_file, tmp_path / "ctx", name="iris")
    cmd_line = next(s for s in (tmp_path / "ctx" / "Dockerfile").read_text().splitlines()
                    if s.startswith("CMD "))
    port = free_port()
    env = {**os.environ, "MODEL_NAME": "iris", "MODEL_BASE_PATH": str(tmp_path / "ctx" / "models"),
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    shell = cmd_line[len("CMD "):].replace("--port 8501", f"--port {port}") \
        .replace("--host 0.0.0.0", "--host 127.0.0.1")
    proc = subprocess.Popen(["/bin/sh", "-c", shell], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready",
                                            timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
                assert time.time() < deadline, "server did not become ready"
                time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models/iris", timeout=5) as r:
            assert b"AVAILABLE" in r.read()
        # the image's HEALTHCHECK command, as Docker runs it (shell form, continuations joined)
        assert run_healthcheck(tmp_path / "ctx" / "Dockerfile", port, env) == 0
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert shlex.split(shell)[:3] == ["exec", "tfless", "serve"]
    assert run_healthcheck(tmp_path / "ctx" / "Dockerfile", port, env) != 0  # server gone


def run_healthcheck(dockerfile: Path, port: int, env: dict[str, str]) -> int:
    text = dockerfile.read_text().replace("\\\n", "")
    line = next(s for s in text.splitlines() if s.startswith("HEALTHCHECK "))
    command = line.split(" CMD ", 1)[1].replace(":8501/", f":{port}/")
    return subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True,
                          timeout=30).returncode


def test_wheel_is_copied_and_installed(tmp_path: Path, model_file: Path) -> None:
    wheel = tmp_path / "tfless-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK")
    export_docker(model_file, tmp_path / "ctx", wheel=wheel)
    text = (tmp_path / "ctx" / "Dockerfile").read_text()
    assert f"COPY {wheel.name} /tmp/" in text and f"pip install --no-cache-dir /tmp/{wheel.name}" in text
    assert (tmp_path / "ctx" / wheel.name).read_bytes() == b"PK"
    assert f"!{wheel.name}" in (tmp_path / "ctx" / ".dockerignore").read_text().splitlines()


def test_refusals_are_one_line_and_write_nothing(tmp_path: Path, model_file: Path) -> None:
    (tmp_path / "a_file").write_text("")
    for extra, message in [(["-o", str(tmp_path / "ctx"), "--wheel", str(tmp_path / "no.whl")],
                            "not a wheel file"),
                           (["-o", str(tmp_path / "a_file")], "is a file"),
                           (["-o", str(tmp_path / "ctx"), "--model-name", "a b"], "model name")]:
        done = subprocess.run([sys.executable, "-m", "tfless.cli", "export", str(model_file), "-f",
                               "docker", *extra], capture_output=True, text=True)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert message in done.stderr
    assert not (tmp_path / "ctx").exists() and (tmp_path / "a_file").read_text() == ""
