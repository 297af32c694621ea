"""`tfless bench`: tfless against the TensorFlow route on the same saved files, same machine.

Every measurement runs in a fresh subprocess per side, so TensorFlow never shares a
process with tfless (nor with ONNX Runtime / LiteRT). Workers are this very file run as a
script (`python -c "runpy.run_path(bench.py)" worker KIND SPEC`); its top level imports
only the standard library, and each worker imports just its own runtime, lazily:

- cold start: spawn -> model loaded -> first prediction returned, timed by the parent
  (tfless vs `keras.saving.load_model` + `model.predict` in plain Python);
- latency at batch 1: median and p99 over N calls after warm-up, for tfless, Keras
  `model.predict`, Keras `model(x, training=False)`, ONNX Runtime and LiteRT;
- throughput at batch 32 (samples/s);
- peak resident memory (ru_maxrss) of a process that loaded the model and ran one batch;
- install footprint, from the installed distributions' RECORD files (`bench_report.py`,
  which also holds the subcommand and the report tables).

Thread counts: OMP_NUM_THREADS / OPENBLAS_NUM_THREADS / MKL_NUM_THREADS are passed to
every worker (NumPy's BLAS reads them); when one is set (or `--threads N`), TensorFlow's
intra/inter-op pools and ONNX Runtime's session get the same count so the sides compare
on equal terms.

TensorFlow runs with its oneDNN kernels on (`TF_ENABLE_ONEDNN_OPTS=1` unless the caller set
it): TensorFlow turns them on by default only on some CPUs, and they are its faster CPU
path (measured here on a 2-core AVX2 EPYC at batch 32: MobileNetV2 57 vs 33 samples/s,
EfficientNetB0 42 vs 23), so the ratios are against TensorFlow at its best.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
SIDES = ("tfless", "tf", "ort", "litert")
SIDE_LABEL = {"tfless": "tfless", "tf": "TF Keras", "ort": "ONNX Runtime", "litert": "LiteRT"}
WORKER_TIMEOUT = 900
SERVING_STACK = ("starlette", "uvicorn", "orjson")  # what `tfless serve` needs beyond the core


# ===== settings and results ==================================================================
@dataclass
class Settings:
    """How much to measure. `quick` trades precision for a smoke run."""

    latency_calls: int = 200
    warmup_calls: int = 10
    throughput_batch: int = 32
    throughput_seconds: float = 2.0
    cold_runs: int = 3
    threads: int | None = None
    cache_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "tfless-bench")

    @classmethod
    def quick(cls, **kw: Any) -> Settings:
        return cls(latency_calls=30, warmup_calls=3, throughput_seconds=0.3, cold_runs=1, **kw)


@dataclass
class ModelResult:
    name: str
    path: str
    params: int | None = None
    cold: dict[str, float | str] = field(default_factory=dict)
    latency: dict[str, dict[str, float] | str] = field(default_factory=dict)
    throughput: dict[str, float | str] = field(default_factory=dict)
    memory: dict[str, float | str] = field(default_factory=dict)


# ===== workers (run in their own process) ======================================================
def _load_inputs(spec: dict, batch: int) -> list[Any]:
    import numpy as np

    arrays = []
    with np.load(spec["inputs"]) as data:
        for key in sorted(data.files, key=lambda k: int(k.split("_")[1])):
            a = data[key]
            reps = -(-batch // a.shape[0])
            arrays.append(np.ascontiguousarray(np.concatenate([a] * reps)[:batch]))
    return arrays


def _timed_calls(fn: Callable[[], Any], n: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    p99 = times[min(len(times) - 1, int(round(0.99 * (len(times) - 1))))]
    return {"median_ms": statistics.median(times) * 1e3, "p99_ms": p99 * 1e3, "calls": n}


# Calls at the throughput batch size before its timing starts, for every side alike: TF
# traces its function on the first, and tfless's plan tries its ways of running a new batch
# size (whole, single-threaded BLAS, shards) on its first three before it keeps the fastest.
THROUGHPUT_WARMUP = 4


def _throughput(fn: Callable[[], Any], batch: int, seconds: float,
                warmup: int = THROUGHPUT_WARMUP) -> float:
    for _ in range(warmup):
        fn()
    count, t0 = 0, time.perf_counter()
    while True:
        fn()
        count += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and count >= 3:
            return count * batch / elapsed


def _peak_rss_mb() -> float:
    """Peak resident memory of this process. On Linux, VmHWM of /proc/self/status: unlike
    ru_maxrss it starts afresh at exec, so the spawning parent's size does not leak in."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    # ru_maxrss is kilobytes on Linux, bytes on macOS
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _threads() -> int | None:
    value = os.environ.get("TFLESS_BENCH_THREADS")
    return int(value) if value else None


class Runner:
    """One side's way to load a model file and call it: `call(arrays)` returns outputs."""

    def __init__(self, side: str, spec: dict, mode: str = "predict") -> None:
        self.side, self.mode = side, mode
        getattr(self, f"_load_{side}")(spec)

    def _load_tfless(self, spec: dict) -> None:
        import tfless

        model = tfless.load(spec["path"])
        self.call = lambda xs: model.predict(xs if len(xs) > 1 else xs[0], structured=False)

    def _load_tf(self, spec: dict) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        import tensorflow as tf

        n = _threads()
        if n:
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(n)
        import keras

        model = keras.saving.load_model(spec["path"], compile=False)
        if self.mode == "call":
            self.call = lambda xs: model(xs if len(xs) > 1 else xs[0], training=False)
        else:
            self.call = lambda xs: model.predict(xs if len(xs) > 1 else xs[0], verbose=0)

    def _load_ort(self, spec: dict) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        n = _threads()
        if n:
            options.intra_op_num_threads = n
            options.inter_op_num_threads = n
        session = ort.InferenceSession(spec["onnx"], options, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        self.call = lambda xs: session.run(None, dict(zip(names, xs)))

    def _load_litert(self, spec: dict) -> None:
        from ai_edge_litert.interpreter import Interpreter

        interp = Interpreter(model_path=spec["tflite"], num_threads=_threads() or os.cpu_count())
        details = interp.get_input_details()
        state = {"batch": None}

        def call(xs: list) -> list:
            if state["batch"] != xs[0].shape[0]:
                for d, x in zip(details, xs):
                    interp.resize_tensor_input(d["index"], x.shape)
                interp.allocate_tensors()
                state["batch"] = xs[0].shape[0]
            for d, x in zip(details, xs):
                interp.set_tensor(d["index"], x.astype(d["dtype"], copy=False))
            interp.invoke()
            return [interp.get_tensor(o["index"]) for o in interp.get_output_details()]

        self.call = call


def worker(kind: str, side: str, spec: dict) -> dict:
    """Run one measurement; returns a JSON-able dict (printed by the worker process)."""
    if kind == "cold":
        Runner(side, spec).call(_load_inputs(spec, 1))
        return {}
    if kind == "memory":
        Runner(side, spec).call(_load_inputs(spec, 1))
        return {"peak_rss_mb": _peak_rss_mb()}
    if kind == "convert_tflite":
        return _convert_tflite(spec)
    if kind == "input_specs":
        return _input_specs(spec)
    out: dict[str, Any] = {}
    x1 = _load_inputs(spec, 1)
    xb = _load_inputs(spec, spec["throughput_batch"])
    modes = ("predict", "call") if side == "tf" else ("predict",)
    for mode in modes:
        call = Runner(side, spec, mode).call
        out[f"latency_{mode}"] = _timed_calls(lambda c=call: c(x1), spec["latency_calls"],
                                              spec["warmup_calls"])
        out[f"throughput_{mode}"] = _throughput(lambda c=call: c(xb), len(xb[0]) if xb else 1,
                                                spec["throughput_seconds"],
                                                min(THROUGHPUT_WARMUP, spec["warmup_calls"]))
    return out


def _input_specs(spec: dict) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    model = keras.saving.load_model(spec["path"], compile=False)
    return {"inputs": [[list(t.shape), str(getattr(t.dtype, "name", t.dtype))]
                       for t in model.inputs]}


def _convert_tflite(spec: dict) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    model = keras.saving.load_model(spec["path"], compile=False)
    data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    Path(spec["tflite"]).write_bytes(data)
    return {"bytes": len(data)}


def _worker_main(argv: Sequence[str]) -> int:
    kind, side, spec = argv[0], argv[1], json.loads(argv[2])
    print("READY " + json.dumps(worker(kind, side, spec)), flush=True)
    return 0


# ===== the parent: spawn workers, collect, tabulate ===========================================
class WorkerFailed(Exception):
    pass


def _worker_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.setdefault("KERAS_BACKEND", "tensorflow")
    env.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    threads = settings.threads or _env_threads()
    if threads:
        for var in THREAD_VARS:
            env[var] = str(threads)
        env["TFLESS_BENCH_THREADS"] = str(threads)
    return env


def _env_threads() -> int | None:
    for var in THREAD_VARS:
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return None


def spawn(kind: str, side: str, spec: dict, settings: Settings) -> tuple[dict, float]:
    """Run one worker; returns its result and the seconds from spawn to its READY line."""
    script = "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    cmd = [sys.executable, "-c", script, str(Path(__file__).resolve()), "worker", kind, side,
           json.dumps(spec)]
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_worker_env(settings), cwd=settings.cache_dir)
    result, elapsed = None, 0.0
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("READY "):
            elapsed = time.perf_counter() - t0
            result = json.loads(line[6:])
    try:
        _, err = proc.communicate(timeout=WORKER_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise WorkerFailed("timed out") from None
    if result is None or proc.returncode != 0:
        raise WorkerFailed(_last_error(err))
    return result, elapsed


def _last_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception|Layer|Failed)\b", ln)]
    text = (errors or lines or ["worker failed without output"])[-1]
    return text[:160]


def available_sides() -> dict[str, str | None]:
    """Side -> None if usable here, else why not (checked without importing the runtime)."""
    import importlib.util

    need = {"tfless": "numpy", "tf": "tensorflow", "ort": "onnxruntime", "litert": "ai_edge_litert"}
    pip = {"tf": "tensorflow", "ort": "onnxruntime", "litert": "ai-edge-litert", "tfless": "numpy"}
    return {side: None if importlib.util.find_spec(mod) else f"not installed (pip install {pip[side]})"
            for side, mod in need.items()}


def prepare(name: str, path: Path, settings: Settings, token_range: int | None = None) -> dict:
    """Read the model's inputs with tfless, write fixed random inputs, export ONNX."""
    import numpy as np

    from .errors import TflessError
    from .formats import read_graph
    from .model import Model

    spec: dict[str, Any] = {"name": name, "path": str(path.resolve())}
    try:
        graph = read_graph(path)
        inputs = [(s.shape, s.dtype) for s in graph.inputs]
        spec["params"] = graph.param_count()
    except TflessError as exc:
        # tfless cannot read it: its cells say why, the other sides still run
        spec["tfless_error"] = f"failed: {type(exc).__name__}: {str(exc)[:120]}"
        specs = spawn("input_specs", "tf", spec, settings)[0]["inputs"]
        inputs = [(tuple(shape), dtype) for shape, dtype in specs]
    rng = np.random.default_rng(0)
    arrays = {}
    for i, (shape_spec, dtype) in enumerate(inputs):
        shape = (4, *(32 if d is None else d for d in shape_spec[1:]))
        if dtype.startswith(("int", "uint")) or token_range:
            arrays[f"input_{i}"] = rng.integers(1, token_range or 10, shape).astype(
                dtype if dtype.startswith(("int", "uint")) else np.float32)
        else:
            arrays[f"input_{i}"] = rng.uniform(0, 1, shape).astype(np.float32)
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    stem = settings.cache_dir / f"{name}-{digest}"
    np.savez(f"{stem}-inputs.npz", **arrays)
    spec.update({"inputs": f"{stem}-inputs.npz", "onnx": f"{stem}.onnx", "tflite": f"{stem}.tflite",
            "latency_calls": settings.latency_calls, "warmup_calls": settings.warmup_calls,
            "throughput_batch": settings.throughput_batch,
            "throughput_seconds": settings.throughput_seconds})
    if "tfless_error" in spec:
        spec["onnx_error"] = "needs the tfless graph (ONNX is exported by tfless)"
        return spec
    try:
        from .export import export_onnx

        export_onnx(Model(graph), spec["onnx"])
    except Exception as exc:  # any exporter failure only removes the ONNX column for this model
        spec["onnx_error"] = f"ONNX export failed: {type(exc).__name__}: {str(exc)[:100]}"
    return spec


def measure(spec: dict, settings: Settings, sides: dict[str, str | None],
            log: Callable[[str], None]) -> ModelResult:
    res = ModelResult(spec["name"], spec["path"], spec.get("params"))
    usable = dict(sides)
    if spec.get("tfless_error"):
        usable["tfless"] = spec["tfless_error"]
    if spec.get("onnx_error") and usable.get("ort") is None:
        usable["ort"] = spec["onnx_error"]
    if usable.get("litert") is None and usable.get("tf") is None:
        try:
            spawn("convert_tflite", "tf", spec, settings)
        except WorkerFailed as exc:
            usable["litert"] = f"TFLite conversion failed: {exc}"
    for side in SIDES:
        why = usable.get(side)
        if why:
            for table in (res.latency, res.throughput):
                table[side] = why
            if side in ("tfless", "tf"):
                res.cold[side] = res.memory[side] = why
            continue
        try:
            if side in ("tfless", "tf"):
                log(f"  {spec['name']}: {side} cold start x{settings.cold_runs}")
                runs = [spawn("cold", side, spec, settings)[1] for _ in range(settings.cold_runs)]
                res.cold[side] = statistics.median(runs)
                log(f"  {spec['name']}: {side} peak memory")
                res.memory[side] = spawn("memory", side, spec, settings)[0]["peak_rss_mb"]
            log(f"  {spec['name']}: {side} latency and throughput")
            warm = spawn("warm", side, spec, settings)[0]
        except WorkerFailed as exc:
            for table in (res.cold, res.memory, res.latency, res.throughput):
                if side in ("tfless", "tf") or table in (res.latency, res.throughput):
                    table.setdefault(side, f"failed: {exc}")
            continue
        if side == "tf":
            res.latency["tf_predict"] = warm["latency_predict"]
            res.latency["tf_call"] = warm["latency_call"]
            res.throughput[side] = max(warm["throughput_predict"], warm["throughput_call"])
        else:
            res.latency[side] = warm["latency_predict"]
            res.throughput[side] = warm["throughput_predict"]
    if isinstance(res.latency.get("tf"), str):
        res.latency["tf_predict"] = res.latency["tf_call"] = res.latency.pop("tf")
    return res


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[2:]) if sys.argv[1:2] == ["worker"] else 2)
