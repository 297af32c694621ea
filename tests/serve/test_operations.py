"""Operations: Prometheus metrics, body size limit, request timeout, queue bound (429),
graceful shutdown on SIGTERM, several workers, and clear startup errors."""

from __future__ import annotations

import gzip
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.serve.conftest import Models, assert_served, predict, version_dir

X = np.random.default_rng(4).uniform(-1, 1, (2, 4)).astype(np.float32)
BODY = {"instances": X.tolist()}


def _predict(url: str, model: str = "default", timeout: float = 30) -> requests.Response:
    return requests.post(f"{url}/v1/models/{model}:predict", json=BODY, timeout=timeout)


def _wait_for_queue_depth(url: str, depth: int, seconds: float = 30) -> None:
    """Until the server reports `depth` requests waiting in its batcher (bounded)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        text = requests.get(f"{url}/metrics", timeout=10).text
        if any(s.name == "tfless_queue_depth" and s.value == depth
               for fam in text_string_to_metric_families(text) for s in fam.samples):
            return
        time.sleep(0.05)
    raise AssertionError(f"queue depth never reached {depth}")


def test_metrics_on_both_paths(serve, models: Models) -> None:
    server = serve(models.mlp, "--model-name", "mlp", "--max-batch-size", "8")
    for _ in range(3):
        assert _predict(server.url, "mlp").status_code == 200
    assert _predict(server.url, "nope").status_code == 404
    texts = [requests.get(f"{server.url}{p}", timeout=10) for p in
             ("/metrics", "/monitoring/prometheus/metrics")]
    assert all(t.status_code == 200 and t.headers["content-type"].startswith("text/plain")
               for t in texts)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(texts[1].text) for s in fam.samples}
    key = ("tfless_requests_total",
           (("api", "predict"), ("model", "mlp"), ("status", "200"), ("version", "1")))
    assert samples[key] == 3
    # a model the server does not have is counted under one label (issue 19)
    assert samples[("tfless_requests_total", (("api", "predict"), ("model", "__unknown__"),
                                              ("status", "404"), ("version", "")))] == 1
    labels = (("api", "predict"), ("model", "mlp"), ("version", "1"))
    assert samples[("tfless_request_latency_seconds_count", labels)] == 3
    assert samples[("tfless_batch_size_count", (("model", "mlp"), ("version", "1")))] == 3
    assert samples[("tfless_batch_size_sum", (("model", "mlp"), ("version", "1")))] == 6
    assert samples[("tfless_queue_depth", (("model", "mlp"), ("version", "1")))] == 0
    assert samples[("tfless_model_version_available", (("model", "mlp"), ("version", "1")))] == 1


def test_body_limits(serve, models: Models) -> None:
    server = serve(models.mlp, "--max-request-bytes", "100000")
    big = b'{"instances": [' + b",".join([b"[1.0, 2.0, 3.0, 4.0]"] * 20000) + b"]}"
    r = requests.post(f"{server.url}/v1/models/default:predict", data=big, timeout=30)
    assert r.status_code == 413 and "larger than the limit of 100000" in r.json()["error"]
    r = requests.post(f"{server.url}/v1/models/default:predict", data=gzip.compress(big),
                      headers={"Content-Encoding": "gzip"}, timeout=30)
    assert r.status_code == 413 and "inflates to more than" in r.json()["error"]
    r = requests.post(f"{server.url}/v1/models/default:predict", data=b"\x1f\x8bnot gzip",
                      headers={"Content-Encoding": "gzip"}, timeout=30)
    assert r.status_code == 400 and "not valid gzip" in r.json()["error"]
    r = requests.post(f"{server.url}/v1/models/default:predict", data=b"{}",
                      headers={"Content-Encoding": "br"}, timeout=30)
    assert r.status_code == 415
    assert _predict(server.url).status_code == 200


def test_request_timeout_and_full_queue(serve, models: Models) -> None:
    # One worker thread, batches that wait 5 s to fill, room for two queued requests.
    server = serve(models.mlp, "--max-batch-size", "64", "--batch-timeout-micros", "5000000",
                   "--num-batch-threads", "1", "--max-queue-size", "2", "--request-timeout", "20")
    with ThreadPoolExecutor(2) as pool:
        waiting = [pool.submit(_predict, server.url) for _ in range(2)]
        _wait_for_queue_depth(server.url, 2)
        refused = _predict(server.url)
        assert refused.status_code == 429, refused.text
        assert "queue" in refused.json()["error"]
        for f in waiting:
            r = f.result(timeout=30)
            assert r.status_code == 200
            np.testing.assert_allclose(np.asarray(r.json()["predictions"], np.float32),
                                       predict(models.mlp, X), rtol=1e-6, atol=1e-7)


def test_deadline_exceeded(serve, models: Models) -> None:
    server = serve(models.mlp, "--max-batch-size", "64", "--batch-timeout-micros", "3000000",
                   "--request-timeout", "0.5")
    r = _predict(server.url)
    assert r.status_code == 504 and "Deadline exceeded" in r.json()["error"]


def test_sigterm_finishes_requests_in_flight(serve, models: Models) -> None:
    server = serve(models.mlp, "--max-batch-size", "64", "--batch-timeout-micros", "3000000")
    with ThreadPoolExecutor(3) as pool:
        in_flight = [pool.submit(_predict, server.url) for _ in range(3)]
        _wait_for_queue_depth(server.url, 3)
        server.proc.send_signal(signal.SIGTERM)
        responses = [f.result(timeout=30) for f in in_flight]
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert server.proc.wait(30) == 0
    try:
        requests.get(f"{server.url}/v2/health/live", timeout=2)
        raise AssertionError("server still answers after SIGTERM")
    except requests.ConnectionError:
        pass


def test_several_workers(serve, models: Models, tmp_path: Path) -> None:
    base = tmp_path / "base"
    version_dir(base, 3, models.mlp_b)
    server = serve(base, "--workers", "2", "--poll-seconds", "0")
    want = predict(models.mlp_b, X)
    stop = time.monotonic() + 30

    def worker(n: int) -> list[int]:
        codes = []
        with requests.Session() as s:
            for _ in range(n):
                if time.monotonic() > stop:
                    break
                r = s.post(f"{server.url}/v1/models/default:predict", json=BODY, timeout=10)
                assert_served(np.asarray(r.json()["predictions"], np.float32), want)
                codes.append(r.status_code)
        return codes

    with ThreadPoolExecutor(4) as pool:
        codes = [c for f in [pool.submit(worker, 10) for _ in range(4)] for c in f.result()]
    assert codes and set(codes) == {200}
    assert server.stop() == 0


def _cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tfless.cli", "serve", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_startup_errors_are_one_clear_line(models: Models, tmp_path: Path) -> None:
    broken = tmp_path / "base"
    (broken / "1").mkdir(parents=True)
    (broken / "1" / "model.keras").write_bytes(b"PK\x03\x04 broken")
    cases = [
        ((tmp_path / "missing.keras",), "no such file or directory"),
        ((tmp_path,), "neither a model file nor a base directory"),
        ((broken,), "no version could be loaded"),
        ((models.mlp, "--model-config-file", tmp_path / "x.config"), "exactly one"),
        ((models.mlp, "--workers", "0"), "--workers must be >= 1"),
    ]
    for args, fragment in cases:
        result = _cli(*args, "--port", "0")
        assert result.returncode == 2, (args, result.stderr)
        errors = [line for line in result.stderr.splitlines() if line.startswith("tfless serve: error:")]
        assert len(errors) == 1 and fragment in errors[0], result.stderr
        assert "Traceback" not in result.stderr


def test_bounded_concurrent_load_with_batching(serve, models: Models) -> None:
    """64 concurrent clients, batching on: every answer correct, batches really formed."""
    server = serve(models.mlp, "--max-batch-size", "32", "--batch-timeout-micros", "2000",
                   "--no-access-log")
    rng = np.random.default_rng(5)
    inputs = [rng.uniform(-1, 1, (1 + i % 3, 4)).astype(np.float32) for i in range(256)]
    model_out = [predict(models.mlp, x) for x in inputs]
    errors: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        r = requests.post(f"{server.url}/v1/models/default:predict",
                          json={"instances": inputs[i].tolist()}, timeout=30)
        if r.status_code != 200:
            with lock:
                errors.append(r.text)
            return
        np.testing.assert_allclose(np.asarray(r.json()["predictions"], np.float32), model_out[i],
                                   rtol=1e-5, atol=1e-6)

    with ThreadPoolExecutor(64) as pool:
        for f in [pool.submit(one, i) for i in range(len(inputs))]:
            f.result(timeout=60)
    assert not errors, errors[:3]
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    fam = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
           if s.name.startswith("tfless_batch_size_")}
    assert fam["tfless_batch_size_sum"] == sum(len(x) for x in inputs)
    assert fam["tfless_batch_size_count"] < len(inputs)  # requests were merged


def test_accepted_connections_disable_nagle() -> None:
    """Without TCP_NODELAY, Nagle + delayed ACK add ~40 ms to every keep-alive response.
    asyncio (under uvicorn) sets it on connections accepted from the server's socket only
    when that socket was made with proto=IPPROTO_TCP: check the flag on a real connection."""
    import asyncio
    import socket

    from tfless.serve.server import listen_socket

    sock = listen_socket("127.0.0.1", 0)

    async def accepted_nodelay() -> int:
        flags: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conn = writer.get_extra_info("socket")
            flags.set_result(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handle, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
            flag = await asyncio.wait_for(flags, 10)
            writer.close()
            return flag

    assert asyncio.run(accepted_nodelay()) == 1


def test_ipv6_loopback(serve, models: Models) -> None:
    server = serve(models.mlp, host="::1")
    assert server.url.startswith("http://[::1]:")
    r = _predict(server.url)
    assert r.status_code == 200, r.text
    assert_served(np.asarray(r.json()["predictions"], np.float32),
                                  predict(models.mlp, X))


def test_request_above_max_batch_size_runs_in_chunks(serve, models: Models) -> None:
    """50 rows with --max-batch-size 4: one model call in chunks of 4, same answer over both
    protocols, and the server keeps merging small requests afterwards."""
    server = serve(models.mlp, "--max-batch-size", "4", "--no-access-log")
    x = np.random.default_rng(6).uniform(-1, 1, (50, 4)).astype(np.float32)
    want = predict(models.mlp, x)
    r = requests.post(f"{server.url}/v1/models/default:predict", json={"instances": x.tolist()},
                      timeout=30)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.asarray(r.json()["predictions"], np.float32), want,
                               rtol=1e-5, atol=1e-6)
    r = requests.post(f"{server.url}/v2/models/default/infer", timeout=30, json={"inputs": [
        {"name": "x", "shape": [50, 4], "datatype": "FP32", "data": x.ravel().tolist()}]})
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    assert out["shape"] == [50, 3]
    np.testing.assert_allclose(np.asarray(out["data"], np.float32).reshape(50, 3), want,
                               rtol=1e-5, atol=1e-6)
    assert _predict(server.url).status_code == 200
