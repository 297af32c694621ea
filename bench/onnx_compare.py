"""ONNX export side by side: tfless (no TensorFlow) against tf2onnx, on the bench model set.

    .venv/bin/python bench/onnx_compare.py                        # every model
    .venv/bin/python bench/onnx_compare.py --models mlp digits_cnn --calls 50
    .venv/bin/python bench/onnx_compare.py --tf2onnx-python /tmp/t2o/venv/bin/python

For each model (built by bench/models.py, cached like bench/run.py does): conversion time,
success, ONNX node count (top-level graph; recurrent Scan/Loop bodies not counted), file
size, ONNX Runtime latency at batch 1 of the converted file (median) and the largest
absolute difference from Keras's own prediction on a batch of 2 (so a fixed batch axis
shows up as a failure). Every step runs in its own process: Keras for the reference
outputs, tfless for its export (timed from `tfless.load` to the written file, including
its built-in ONNX Runtime self-check), tf2onnx in the interpreter given by
`--tf2onnx-python` (default: this one) and ONNX Runtime for the latency. tf2onnx is tried
with `tf2onnx.convert.from_keras` first, then through a SavedModel (`model.export`) and
`python -m tf2onnx.convert --saved-model`; each failure is reported as it happened. When
tf2onnx cannot be imported there, its cells say "not installed".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import models as catalog  # noqa: E402  (bench/models.py; imports Keras only inside build())

OPSET = 17
TIMEOUT = 1800


# ===== workers (each runs in a fresh process: `onnx_compare.py worker KIND SPEC`) ===============
def _quiet_tf() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def _inputs(spec: dict) -> list:
    import numpy as np

    with np.load(spec["inputs"]) as data:
        return [data[f"input_{i}"] for i in range(len(data.files))]


def work_keras(spec: dict) -> dict:
    _quiet_tf()
    import keras
    import numpy as np

    model = keras.saving.load_model(spec["path"], compile=False)
    xs = _inputs(spec)
    ys = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
    ys = ys if isinstance(ys, (list, tuple)) else [ys]
    np.savez(spec["keras_out"], **{f"out_{i}": np.asarray(y) for i, y in enumerate(ys)})
    return {"keras": keras.__version__}


def work_tfless(spec: dict) -> dict:
    import tfless

    t0 = time.perf_counter()
    tfless.export_onnx(tfless.load(spec["path"]), spec["onnx"], opset=spec["opset"])
    return {"seconds": time.perf_counter() - t0, "route": "tfless.export_onnx"}


def work_tf2onnx(spec: dict) -> dict:
    _quiet_tf()
    try:
        import tf2onnx
    except ImportError as exc:
        return {"not_installed": f"not installed ({exc})"}
    import keras
    import tensorflow as tf

    model = keras.saving.load_model(spec["path"], compile=False)
    failures = []
    t0 = time.perf_counter()
    try:
        signature = [tf.TensorSpec((None, *t.shape[1:]), t.dtype, name=f"input_{i}")
                     for i, t in enumerate(model.inputs)]
        tf2onnx.convert.from_keras(model, input_signature=signature, opset=spec["opset"],
                                   output_path=spec["onnx"])
        return {"seconds": time.perf_counter() - t0, "route": "from_keras",
                "version": tf2onnx.__version__}
    except Exception as exc:  # tf2onnx raises many types; the message is what we report
        failures.append(f"from_keras: {type(exc).__name__}: {_one_line(exc)}")
        traceback.print_exc()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        try:
            model.export(tmp, format="tf_saved_model", verbose=False)
        except Exception as exc:  # as above
            failures.append(f"model.export: {type(exc).__name__}: {_one_line(exc)}")
            return {"failed": "; ".join(failures), "version": tf2onnx.__version__}
        done = subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", tmp,
                               "--output", spec["onnx"], "--opset", str(spec["opset"])],
                              capture_output=True, text=True, timeout=TIMEOUT)
        if done.returncode == 0 and Path(spec["onnx"]).exists():
            return {"seconds": time.perf_counter() - t0, "route": "SavedModel + tf2onnx.convert",
                    "version": tf2onnx.__version__, "earlier_failures": failures}
        errors = [ln for ln in done.stderr.splitlines() if "Error" in ln or "error" in ln]
        failures.append(f"--saved-model: {(errors or done.stderr.splitlines() or ['?'])[-1][:300]}")
    return {"failed": "; ".join(failures), "version": tf2onnx.__version__}


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def work_ort(spec: dict) -> dict:
    import numpy as np
    import onnx
    import onnxruntime as ort

    proto = onnx.load(spec["onnx"])
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(spec["onnx"], options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    xs = _inputs(spec)
    with np.load(spec["keras_out"]) as data:
        want = [data[f"out_{i}"] for i in range(len(data.files))]
    try:
        got = session.run(None, dict(zip(names, xs)))
        err = max(float(np.max(np.abs(np.asarray(g, np.float64) - np.asarray(w, np.float64))))
                  for g, w in zip(got, want))
        if len(got) != len(want) or any(np.shape(g) != np.shape(w) for g, w in zip(got, want)):
            err_text = f"shape mismatch: {[np.shape(g) for g in got]} vs Keras {[w.shape for w in want]}"
        else:
            err_text = None
    except Exception as exc:  # onnxruntime's own exception types
        err, err_text = None, f"batch 2 failed: {_one_line(exc)[:160]}"
    one = [x[:1] for x in xs]
    feed = dict(zip(names, one))
    for _ in range(spec["warmup"]):
        session.run(None, feed)
    times = []
    for _ in range(spec["calls"]):
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - t0)
    return {"nodes": len(proto.graph.node), "bytes": os.path.getsize(spec["onnx"]),
            "latency_ms": statistics.median(times) * 1e3, "max_err": err, "err_text": err_text,
            "ops": sorted({n.op_type for n in proto.graph.node})}


WORKERS = {"keras": work_keras, "tfless": work_tfless, "tf2onnx": work_tf2onnx, "ort": work_ort}


# ===== the parent ===========================================================================
def spawn(kind: str, spec: dict, python: str = sys.executable) -> dict:
    cmd = [python, str(Path(__file__).resolve()), "worker", kind, json.dumps(spec)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "Error" in ln or "Exception" in ln]
    return {"failed": " ".join((errors or lines or ["worker died without output"])[-1].split())[:300]}


def make_inputs(name: str, path: Path, out: Path) -> None:
    import numpy as np

    from tfless.formats import read_graph

    rng = np.random.default_rng(0)
    arrays = {}
    for i, s in enumerate(read_graph(path).inputs):
        shape = (2, *(32 if d is None else d for d in s.shape[1:]))
        if s.dtype.startswith(("int", "uint")):
            arrays[f"input_{i}"] = rng.integers(1, catalog.TOKENS.get(name, 10), shape).astype(s.dtype)
        else:
            arrays[f"input_{i}"] = rng.uniform(0, 1, shape).astype(np.float32)
    np.savez(out, **arrays)


def tf2onnx_version(python: str) -> str | None:
    done = subprocess.run([python, "-c", "import importlib.metadata as m; "
                           "print(m.version('tf2onnx'))"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def compare(names: list[str], cache: Path, t2o_python: str, calls: int, opset: int,
            log: Any) -> list[dict]:
    built = subprocess.run([sys.executable, str(HERE / "models.py"), str(cache), *names],
                           check=True, capture_output=True, text=True)
    paths = json.loads(built.stdout.strip().splitlines()[-1])
    have_t2o = tf2onnx_version(t2o_python) is not None
    rows = []
    for name in names:
        path = Path(paths[name])
        stem = cache / f"onnxcmp-{name}"
        spec = {"path": str(path), "inputs": f"{stem}-inputs.npz",
                "keras_out": f"{stem}-keras.npz", "opset": opset, "calls": calls,
                "warmup": max(3, calls // 10)}
        make_inputs(name, path, Path(spec["inputs"]))
        log(f"[onnx-compare] {name}: Keras reference")
        ref = spawn("keras", spec)
        for side in ("tfless", "tf2onnx"):
            onnx_path = f"{stem}-{side}.onnx"
            Path(onnx_path).unlink(missing_ok=True)
            side_spec = dict(spec, onnx=onnx_path)
            row: dict[str, Any] = {"model": name, "converter": side}
            if side == "tf2onnx" and not have_t2o:
                row["failed"] = f"not installed in {t2o_python}"
                rows.append(row)
                continue
            log(f"[onnx-compare] {name}: {side} conversion")
            row.update(spawn(side, side_spec, t2o_python if side == "tf2onnx" else sys.executable))
            if "not_installed" in row:
                row["failed"] = row.pop("not_installed")
            if "failed" not in row and "failed" not in ref:
                log(f"[onnx-compare] {name}: {side} ONNX Runtime latency and error")
                measured = spawn("ort", side_spec)
                if "failed" in measured:
                    row["failed"] = f"converted, but ONNX Runtime: {measured['failed']}"
                row.update({k: v for k, v in measured.items() if k != "failed"})
            rows.append(row)
            log(f"[onnx-compare] {name} {side}: " + json.dumps(row, default=str)[:400])
    return rows


def _fmt(v: Any, fmt: str) -> str:
    return fmt.format(v) if isinstance(v, (int, float)) else "n/a"


def table(rows: list[dict], t2o_python: str, calls: int, opset: int) -> str:
    import onnx
    import onnxruntime

    from tfless import __version__ as tfless_version

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from importlib import metadata

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    lines = [f"Machine: {cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}; "
             f"Python {platform.python_version()}; tfless {tfless_version}, onnx {onnx.__version__}, "
             f"onnxruntime {onnxruntime.__version__} (default threads), TensorFlow "
             f"{version('tensorflow')}, Keras {version('keras')}, tf2onnx "
             f"{tf2onnx_version(t2o_python) or 'not installed'} (run by {t2o_python}); "
             f"opset {opset}; latency = median of {calls} batch-1 ONNX Runtime calls; error = max "
             "|ONNX Runtime - Keras| on a batch of 2.", ""]
    header = ["model", "converter", "result", "convert (s)", "nodes", "size (MB)",
              "ORT batch-1 (ms)", "max err vs Keras"]
    body = []
    notes = []
    for r in rows:
        if "failed" in r:
            result = "FAILED"
            notes.append(f"- {r['model']} / {r['converter']}: {r['failed']}")
        else:
            result = "ok" if r["converter"] == "tfless" else f"ok ({r.get('route')})"
            if r.get("err_text"):
                result += f"; {r['err_text'][:60]}"
                notes.append(f"- {r['model']} / {r['converter']}: {r['err_text']}")
            for earlier in r.get("earlier_failures", []):
                notes.append(f"- {r['model']} / {r['converter']} (first attempt): {earlier}")
        body.append([r["model"], r["converter"], result, _fmt(r.get("seconds"), "{:.2f}"),
                     _fmt(r.get("nodes"), "{:d}"), _fmt(r.get("bytes", 0) / 2**20 if "bytes" in r
                                                        else None, "{:.2f}"),
                     _fmt(r.get("latency_ms"), "{:.3g}"), _fmt(r.get("max_err"), "{:.2g}")])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    fmt = lambda cells: "| " + " | ".join(f"{c:<{w}}" for c, w in zip(cells, widths)) + " |"
    lines += [fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(fmt, body)]
    if notes:
        lines += ["", "Failures and notes:", *notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=catalog.ORDER, default=catalog.ORDER)
    parser.add_argument("--tf2onnx-python", default=sys.executable,
                        help="interpreter with tf2onnx + TensorFlow (default: this one)")
    parser.add_argument("--calls", type=int, default=100, help="batch-1 latency calls")
    parser.add_argument("--opset", type=int, default=OPSET)
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "tfless-bench")
    parser.add_argument("--output", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    log = lambda s: print(s, file=sys.stderr, flush=True)
    rows = compare(args.models, args.cache_dir, args.tf2onnx_python, args.calls, args.opset, log)
    text = table(rows, args.tf2onnx_python, args.calls, args.opset)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        print("RESULT " + json.dumps(WORKERS[sys.argv[2]](json.loads(sys.argv[3]))), flush=True)
    else:
        sys.exit(main())
