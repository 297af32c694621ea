"""Load test of `tfless serve`: requests/s and p50/p99 latency at concurrency 1, 8 and 64,
with batching off and on, for an MLP (TF Serving REST v1, JSON rows) and MobileNetV2
(KServe V2, binary tensors); zero errors expected, server memory sampled after each level.

    .venv/bin/python bench/serve_load.py                  # mlp and mobilenet_v2
    .venv/bin/python bench/serve_load.py --models mlp --requests 500 --seconds 20

Everything stays on 127.0.0.1, and every level stops after --requests requests or
--seconds seconds, whichever comes first. Models come from bench/models.py (built with
Keras in a subprocess and cached). The notes give Model.predict on one example without
HTTP (the floor the server's batch-1 latency can approach) and, for the TensorFlow route,
the Keras model called on the same example as a tf.function graph under TensorFlow, in a
subprocess (TF Serving itself is a separate binary that is not installed here).

After the levels, the 64-client level runs REPEATS more times. The first repeats may still
raise the RSS (the allocator keeps buffers for batch sizes not seen before); memory is
"stable" when the last repeat added no more than MEMORY_SLACK_MB (or MEMORY_SLACK_FRACTION)
to the one before it, i.e. the RSS has levelled off. The script exits non-zero when a level
had errors or memory was not stable.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CONCURRENCY = (1, 8, 64)
# model -> (protocol, requests per level for the default run, max batch size with batching on,
#           also run with two server processes)
SCENARIOS = {"mlp": ("v1-json", 2000, 64, True), "mobilenet_v2": ("v2-binary", 150, 8, False)}
REPEATS = 3
MEMORY_SLACK_MB = 16.0
MEMORY_SLACK_FRACTION = 0.05

KERAS_TIMING = """
import os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np, keras, tensorflow as tf
model = keras.models.load_model(sys.argv[1], compile=False)
call = tf.function(lambda t: model(t, training=False))  # a graph, as TF Serving runs it
x = tf.constant(np.load(sys.argv[2]))
call(x).numpy()
times = []
for _ in range(int(sys.argv[3])):
    start = time.perf_counter()
    call(x).numpy()
    times.append(time.perf_counter() - start)
print(float(np.median(times) * 1000))
"""


@dataclass
class Level:
    model: str
    protocol: str
    batching: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    latencies: list[float]
    rss_mb: float

    def row(self) -> str:
        lat = np.asarray(self.latencies) * 1000
        p50, p99 = (np.percentile(lat, 50), np.percentile(lat, 99)) if len(lat) else (0, 0)
        return (f"| {self.model} | {self.protocol} | {self.batching} | {self.concurrency} | "
                f"{self.requests} | {self.errors} | {self.requests / self.seconds:,.1f} | "
                f"{p50:.2f} | {p99:.2f} | {self.rss_mb:.0f} |")


def request_body(model: str, x: np.ndarray, input_name: str) -> tuple[str, bytes, dict]:
    if SCENARIOS[model][0] == "v1-json":
        body = json.dumps({"instances": x.tolist()}).encode()
        return "/v1/models/{m}:predict", body, {"Content-Type": "application/json"}
    header = json.dumps({"inputs": [{"name": input_name, "shape": list(x.shape), "datatype": "FP32",
                                     "parameters": {"binary_data_size": x.nbytes}}],
                         "parameters": {"binary_data_output": True}}).encode()
    return "/v2/models/{m}/infer", header + x.tobytes(), {
        "Inference-Header-Content-Length": str(len(header)),
        "Content-Type": "application/octet-stream"}


def rss_mb(pid: int) -> float:
    """Resident memory of the server and its worker processes."""
    text = Path(f"/proc/{pid}/status").read_text()
    total = int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            total += rss_mb(int(child))
    return total


def run_level(port: int, path: str, body: bytes, headers: dict, concurrency: int,
              max_requests: int, max_seconds: float) -> tuple[int, int, float, list[float]]:
    """Send at most max_requests (for at most max_seconds) from `concurrency` threads."""
    lock = threading.Lock()
    state: dict = {"left": max_requests, "errors": 0, "kinds": Counter()}
    latencies: list[float] = []
    deadline = time.monotonic() + max_seconds

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            while time.monotonic() < deadline:
                with lock:
                    if state["left"] <= 0:
                        return
                    state["left"] -= 1
                start = time.perf_counter()
                try:
                    conn.request("POST", path, body, headers)
                    response = conn.getresponse()
                    response.read()
                    ok = response.status == 200
                    error = f"HTTP {response.status}"
                except (OSError, http.client.HTTPException) as exc:
                    ok, error = False, type(exc).__name__
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                elapsed = time.perf_counter() - start
                with lock:
                    if ok:
                        latencies.append(elapsed)
                    else:
                        state["errors"] += 1
                        state["kinds"][error] += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max_seconds + 120)
    seconds = time.perf_counter() - start
    if state["errors"]:
        print(f"[serve_load] errors: {dict(state['kinds'])}", file=sys.stderr, flush=True)
    return len(latencies) + state["errors"], state["errors"], seconds, latencies


def start_server(model_path: Path, name: str, extra: list[str], log: Path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tfless.cli", "serve", str(model_path), "--model-name", name,
         "--host", "127.0.0.1", "--port", "0", "--no-access-log", *extra],
        stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", log.read_text(errors="replace"))
        if m:
            return proc, int(m.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"server did not start:\n{log.read_text(errors='replace')}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def in_process_ms(model_path: Path, x: np.ndarray, calls: int = 30) -> float:
    """Median Model.predict time, with the BLAS threads the server gives each model call."""
    from threadpoolctl import threadpool_limits

    import tfless

    model = tfless.load(model_path)
    with threadpool_limits(limits=1, user_api="blas"):
        model.predict(x)
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            model.predict(x)
            times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def keras_ms(model_path: Path, x: np.ndarray, calls: int = 30) -> float:
    """Median time of the Keras model called on `x` as a tf.function graph, in a subprocess
    so that TensorFlow never loads into this process (or the server)."""
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "x.npy", x)
        out = subprocess.run([sys.executable, "-c", KERAS_TIMING, str(model_path),
                              str(Path(tmp) / "x.npy"), str(calls)],
                             check=True, capture_output=True, text=True, timeout=600)
    return float(out.stdout.strip().splitlines()[-1])


def memory_stable(repeats: list[float]) -> bool:
    before, last = repeats[-2], repeats[-1]
    return last - before <= max(MEMORY_SLACK_MB, before * MEMORY_SLACK_FRACTION)


def environment() -> str:
    """Machine and versions, for the record next to the table."""
    import platform
    from importlib.metadata import version

    from threadpoolctl import threadpool_info

    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor() or "unknown CPU")
    blas = ", ".join(sorted({f"{i['internal_api']} {i['version']}" for i in threadpool_info()
                             if i.get("user_api") == "blas"})) or "none found"
    packages = ", ".join(f"{name} {version(name)}" for name in
                         ("tfless", "numpy", "uvicorn", "starlette", "orjson", "tensorflow", "keras"))
    return (f"- machine: {os.cpu_count()} CPU cores ({cpu}), Linux {platform.release()}, "
            f"Python {platform.python_version()}; {packages}; BLAS: {blas}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument("--requests", type=int, default=None,
                        help="requests per level (default: 2000 for mlp, 150 for mobilenet_v2)")
    parser.add_argument("--seconds", type=float, default=60.0, help="time limit per level")
    parser.add_argument("--cache-dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "tfless-bench-models")
    parser.add_argument("--output", type=Path, help="also write the table here")
    args = parser.parse_args(argv)

    built = subprocess.run([sys.executable, str(HERE / "models.py"), str(args.cache_dir),
                            *args.models], check=True, capture_output=True, text=True)
    paths = {k: Path(v) for k, v in json.loads(built.stdout.strip().splitlines()[-1]).items()}
    import tfless

    levels: list[Level] = []
    notes: list[str] = []
    unstable = 0
    for name in args.models:
        protocol, default_count, max_batch, two_workers = SCENARIOS[name]
        spec = tfless.load(paths[name]).inputs[0]
        x = np.random.default_rng(0).uniform(0, 1, (1, *spec.shape[1:])).astype(np.float32)
        path, body, headers = request_body(name, x, spec.name)
        path = path.format(m=name)
        count = args.requests or default_count
        notes.append(f"- {name}: in-process tfless Model.predict of one example (1 BLAS thread, "
                     f"as in the server): {in_process_ms(paths[name], x):.2f} ms; the Keras model "
                     f"on it as a tf.function graph under TensorFlow (all cores): "
                     f"{keras_ms(paths[name], x):.2f} ms; request "
                     f"body {len(body):,} bytes")
        modes = [("off", []), (f"on (<= {max_batch})", ["--max-batch-size", str(max_batch)])]
        if two_workers:
            modes.append(("off, 2 workers", ["--workers", "2"]))
        for mode, extra in modes:
            with tempfile.TemporaryDirectory() as tmp:
                proc, port = start_server(paths[name], name, extra, Path(tmp) / "server.log")
                try:
                    run_level(port, path, body, headers, 4, 20, 30)  # warm-up, not reported
                    for c in CONCURRENCY:
                        total, errors, seconds, lat = run_level(port, path, body, headers, c,
                                                                count, args.seconds)
                        levels.append(Level(name, protocol, mode, c, total, errors, seconds, lat,
                                            rss_mb(proc.pid)))
                        print(levels[-1].row(), file=sys.stderr, flush=True)
                    first = levels[-1].rss_mb
                    repeats = []
                    for _ in range(REPEATS):  # the 64-client level again: memory must level off
                        _, errors, _, _ = run_level(port, path, body, headers, 64, count, args.seconds)
                        levels[-1].errors += errors
                        repeats.append(rss_mb(proc.pid))
                    stable = memory_stable(repeats)
                    unstable += not stable
                    notes.append(f"- {name}, batching {mode}: server RSS after the 64-client level "
                                 f"{first:.0f} MB, after {REPEATS} repeats of it "
                                 f"{', '.join(f'{r:.0f}' for r in repeats)} MB: "
                                 f"{'stable' if stable else 'GROWING'}")
                finally:
                    stop_server(proc)
    header = ("| model | protocol | batching | concurrency | requests | errors | req/s | "
              "p50 ms | p99 ms | server RSS MB |\n|---|---|---|---|---|---|---|---|---|---|")
    load = os.getloadavg()[0]
    table = "\n".join([header, *[lv.row() for lv in levels], "", *notes, environment(),
                       f"- load average {load:.1f} at the end; the client threads run on the "
                       "same cores as the server"])
    print(table)
    if args.output:
        args.output.write_text(table + "\n")
    return 1 if unstable or any(lv.errors for lv in levels) else 0


if __name__ == "__main__":
    sys.exit(main())
