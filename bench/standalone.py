"""Standalone artifacts benchmark: executable sizes, cold start, C binary vs NumPy runtime.

    .venv/bin/python bench/standalone.py                    # digits CNN + MobileNetV2 (~3 min)
    .venv/bin/python bench/standalone.py --with-tf-route    # also PyInstaller around TensorFlow
    .venv/bin/python bench/standalone.py --quick --no-executables   # C and NumPy only (smoke)

For each model it builds, in this run, `tfless build` onefile and --onedir executables and
the `tfless export -f c` binary (`make`, cc -O2), and measures:
- size: the onefile executable, the onedir directory, the C binary;
- cold start to first prediction: wall time of `NAME predict -i x.npy -o y.npy` (2 rows),
  each run a fresh process under `env -i PATH=/usr/bin:/bin`, median of --runs after one
  unmeasured run that fills the page cache;
- batch-1 latency: the C binary's time per sample (N samples piped through one process,
  minus the same process on no input, fastest of a few runs each; N grows until the work
  takes 0.2 s so start-up noise cannot swamp it) and the tfless NumPy runtime's Model.predict on one
  row (a fresh Python process that never imports TensorFlow, median of --calls).
With --with-tf-route, a small script that loads the same .keras file with Keras/TensorFlow
and predicts is frozen with PyInstaller the same two ways (bounded by --tf-timeout) and
measured alike; a build that fails or runs out of time is reported with its reason.

The second model (MobileNetV2, alpha 0.35, 32x32, 10 classes, weights=None, then random
trained-like weights) is built with Keras in a subprocess and cached in --cache-dir. Only
public tools are used: subprocess and time.perf_counter for wall time,
resource.getrusage for the children's CPU time.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "digits_cnn.keras"
CLEAN_ENV = {"PATH": "/usr/bin:/bin"}
PY = sys.executable
TARGETS = {"onefile_mb": 40.0, "onefile_s": 1.0, "onedir_s": 0.3}
MODELS = ("digits_cnn", "mobilenet_v2_035")

BUILD_MOBILENET = """\
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import keras
import numpy as np
model = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), alpha=0.35,
                                       classes=10)
# trained-like weights: at Keras's initial values this network answers exactly 0.1 for
# every class, which would make the C-vs-runtime check meaningless
rng = np.random.default_rng(0)
values = []
for w in model.weights:
    name = w.path.lower()
    positive = "variance" in name or "gamma" in name
    values.append((rng.uniform(0.5, 1.5, w.shape) if positive else
                   rng.normal(0.0, 0.2, w.shape)).astype("float32"))
model.set_weights(values)
model.save(sys.argv[1])
"""

# The TensorFlow route: the same model file, loaded and run by Keras inside PyInstaller.
TF_SCRIPT = """\
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import numpy as np
import keras
here = getattr(sys, "_MEIPASS", os.path.dirname(os.path.abspath(__file__)))
model = keras.saving.load_model(os.path.join(here, "model.keras"), compile=False)
_, _, _, x_path, _, y_path = sys.argv  # NAME predict -i X -o Y, like the tfless executables
np.save(y_path, model.predict(np.load(x_path), verbose=0))
"""


@dataclass
class Row:
    model: str
    params: int = 0
    sizes: dict[str, int | None] = field(default_factory=dict)
    cold: dict[str, float | str] = field(default_factory=dict)
    build_s: dict[str, float] = field(default_factory=dict)
    c_per_sample_ms: float | str = "n/a"
    numpy_batch1_ms: float | str = "n/a"
    c_matches_runtime: str = "n/a"
    notes: list[str] = field(default_factory=list)


def log(msg: str) -> None:
    print(f"[standalone] {msg}", file=sys.stderr, flush=True)


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


C_MIN_WORK_S = 0.2  # piped work per C timing run, well above process start-up noise
C_MAX_SAMPLES = 1 << 16


def wall(cmd: list[str], env: dict[str, str] | None = None, stdin: bytes | None = None,
         timeout: float = 600) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, input=stdin, capture_output=True, timeout=timeout)
    return time.perf_counter() - start, done


def fail_reason(done: subprocess.CompletedProcess) -> str:
    text = (done.stderr or b"").decode(errors="replace").strip().splitlines()
    return text[-1][:200] if text else f"exit status {done.returncode}"


def model_paths(names: list[str], cache: Path) -> dict[str, Path]:
    paths = {}
    for name in names:
        if name == "digits_cnn":
            paths[name] = EXAMPLE
            continue
        path = cache / f"{name}-randomized.keras"
        if not path.exists():
            log(f"building {name} with Keras (cached in {cache})")
            cache.mkdir(parents=True, exist_ok=True)
            partial = cache / f"{name}.partial.keras"
            subprocess.run([PY, "-c", BUILD_MOBILENET, str(partial)], check=True,
                           capture_output=True)
            partial.replace(path)
        paths[name] = path
    return paths


def cold_start(exe: Path, x_path: Path, work: Path, runs: int) -> float | str:
    cmd = [str(exe), "predict", "-i", str(x_path), "-o", str(work / "cold_y.npy")]
    _, first = wall(cmd, CLEAN_ENV)  # fills the page cache; not measured
    if first.returncode != 0:
        return f"failed: {fail_reason(first)}"
    times = []
    for _ in range(runs):
        seconds, done = wall(cmd, CLEAN_ENV)
        if done.returncode != 0:
            return f"failed: {fail_reason(done)}"
        times.append(seconds)
    return statistics.median(times)


def build_tfless(model: Path, out: Path, onedir: bool) -> tuple[Path | str, float]:
    cmd = [PY, "-m", "tfless.cli", "build", str(model), "-o", str(out)]
    seconds, done = wall(cmd + (["--onedir"] if onedir else []), timeout=1800)
    if done.returncode != 0:
        return f"failed: {fail_reason(done)}", seconds
    return (out / out.name if onedir else out), seconds


def build_tf_route(model: Path, work: Path, onedir: bool, timeout: float) -> tuple[Path | str, float]:
    work.mkdir(parents=True, exist_ok=True)
    script = work / "tf_predict.py"
    script.write_text(TF_SCRIPT)
    kind = "onedir" if onedir else "onefile"
    staged = work / "model.keras"  # the frozen script looks for model.keras next to itself
    shutil.copy2(model, staged)
    cmd = [PY, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN", f"--{kind}",
           "--name", f"tf_{kind}", "--distpath", str(work / "dist"),
           "--workpath", str(work / f"build_{kind}"), "--specpath", str(work),
           "--add-data", f"{staged}:.", str(script)]
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"could not be built: PyInstaller did not finish within {timeout / 60:.0f} min", \
            time.perf_counter() - start
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        return f"could not be built: {fail_reason(done)}", seconds
    exe = work / "dist" / f"tf_{kind}"
    return (exe / exe.name if onedir else exe), seconds


def numpy_batch1_ms(model: Path, x_path: Path, calls: int) -> float:
    code = f"""
import json, statistics, sys, time
import numpy as np
import tfless
model = tfless.load({str(model)!r})
x = np.load({str(x_path)!r})[:1]
for _ in range(10):
    model.predict(x)
times = []
for _ in range({calls}):
    start = time.perf_counter()
    model.predict(x)
    times.append(time.perf_counter() - start)
assert "tensorflow" not in sys.modules and "keras" not in sys.modules
print(json.dumps(statistics.median(times) * 1e3))
"""
    done = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def c_binary(model: Path, work: Path, samples: int, reps: int, row: Row) -> None:
    import tfless

    out = work / "c"
    done = subprocess.run([PY, "-m", "tfless.cli", "export", str(model), "-f", "c", "-o",
                           str(out)], capture_output=True)
    if done.returncode != 0:
        row.c_per_sample_ms = f"export failed: {fail_reason(done)}"
        return
    made = subprocess.run(["make", "-s", "all", "test"], cwd=out, capture_output=True,
                          env=CLEAN_ENV)
    if made.returncode != 0:
        row.c_per_sample_ms = f"make failed: {fail_reason(made)}"
        return
    row.sizes["c_binary"] = size_of(out / "model")
    row.sizes["c_source"] = size_of(out / "model.c")
    tf_model = tfless.load(model)
    shape = tf_model.inputs[0].shape[1:]
    exe = [str(out / "model")]
    empty = min(wall(exe, CLEAN_ENV, b"")[0] for _ in range(reps))
    # Per-sample time is (piped run - empty run) / samples: grow the sample count until the
    # work dwarfs process start-up, or the difference is timer and scheduler noise.
    while True:
        x = np.random.default_rng(1).uniform(-1, 1, (samples, *shape)).astype(np.float32)
        raw = x.astype("<f4").tobytes()
        runs = [wall(exe, CLEAN_ENV, raw) for _ in range(reps)]
        batch = min(seconds for seconds, _ in runs)
        if batch - empty >= C_MIN_WORK_S or samples >= C_MAX_SAMPLES:
            break
        samples *= 4
    done = runs[-1][1]
    y_c = np.frombuffer(done.stdout, "<f4").reshape(samples, -1)
    y_np = tf_model.predict(x[:8], structured=False)
    y_np = np.concatenate([a.reshape(8, -1) for a in (y_np if isinstance(y_np, list) else [y_np])],
                          axis=1)
    err = float(np.abs(y_c[:8] - y_np).max())
    row.c_matches_runtime = f"max abs diff {err:.2g}"
    if batch > empty:
        row.c_per_sample_ms = (batch - empty) / samples * 1e3
    else:
        row.c_per_sample_ms = f"below timer noise ({samples} samples)"


def fmt_mb(n: int | None) -> str:
    if n is None:
        return "–"
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} KB"


def fmt_s(v: float | str | None) -> str:
    if v is None:
        return "–"
    return f"{v:.2f} s" if isinstance(v, float) else v.replace("|", "/")


def verdict(value: float | str | None, target: float) -> str:
    if not isinstance(value, float):
        return "–"
    return "met" if value <= target else "NOT met"


def machine() -> str:
    import PyInstaller

    from tfless.bench_report import cpu_name

    cpu = cpu_name()

    cc = subprocess.run(["cc", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    load = os.getloadavg()
    return (f"Machine: {platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} CPUs "
            f"(load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end of the run); "
            f"Python {platform.python_version()}, NumPy {np.__version__}, PyInstaller "
            f"{PyInstaller.__version__}, {cc}.")


def table(rows: list[Row], args: argparse.Namespace) -> str:
    out = []
    if not args.no_executables:
        out += [f"### Standalone executables (cold start: median of {args.runs} fresh processes "
                "under `env -i`, `predict` on 2 rows)", "",
                "| model | artifact | size | cold start | targets | build time |",
                "|---|---|---|---|---|---|"]
    for r in rows:
        for key, label in (("onefile", "tfless onefile"), ("onedir", "tfless onedir"),
                           ("tf_onefile", "TF + PyInstaller onefile"),
                           ("tf_onedir", "TF + PyInstaller onedir")):
            if key not in r.cold:
                continue
            size, cold = r.sizes.get(key), r.cold[key]
            if key == "onefile":
                mb = size / 1e6 if size else None
                targets = (f"size ≤ {TARGETS['onefile_mb']:g} MB: {verdict(mb, TARGETS['onefile_mb'])}"
                           f"; start ≤ {TARGETS['onefile_s']:g} s: "
                           f"{verdict(cold, TARGETS['onefile_s'])}")
            elif key == "onedir":
                targets = f"start ≤ {TARGETS['onedir_s']:g} s: {verdict(cold, TARGETS['onedir_s'])}"
            else:
                targets = "(reference)"
            build = f"{r.build_s[key]:.0f} s" if key in r.build_s else "–"
            out.append(f"| {r.model} | {label} | {fmt_mb(size)} | {fmt_s(cold)} | {targets} | "
                       f"{build} |")
        for key, ours in (("tf_onefile", "onefile"), ("tf_onedir", "onedir")):
            theirs_size, our_size = r.sizes.get(key), r.sizes.get(ours)
            if theirs_size and our_size:
                r.notes.append(f"{ours}: the TF route is {theirs_size / our_size:.1f}x the size")
            if isinstance(r.cold.get(key), float) and isinstance(r.cold.get(ours), float):
                r.notes.append(f"{ours}: the TF route takes {r.cold[key] / r.cold[ours]:.1f}x "
                               "as long to its first prediction")
    out += (["", ""] if out else []) + ["### C binary vs the NumPy runtime (batch 1)", ""]
    out.append("| model | params | C binary | model.c | C per sample | NumPy Model.predict | "
               "NumPy / C | C vs runtime |")
    out.append("|---|---|---|---|---|---|---|---|")
    for r in rows:
        c, n = r.c_per_sample_ms, r.numpy_batch1_ms
        ratio = f"{n / c:.1f}x" if isinstance(c, float) and isinstance(n, float) and c > 0 else "–"
        c_cell = f"{c:.3f} ms" if isinstance(c, float) else c
        n_cell = f"{n:.3f} ms" if isinstance(n, float) else n
        out.append(f"| {r.model} | {r.params:,} | {fmt_mb(r.sizes.get('c_binary'))} | "
                   f"{fmt_mb(r.sizes.get('c_source'))} | {c_cell} | {n_cell} | {ratio} | "
                   f"{r.c_matches_runtime} |")
    notes = [f"- {r.model}: {n}" for r in rows for n in r.notes]
    if notes:
        out += ["", *notes]
    out += ["", machine()]
    return "\n".join(out)


def bench_model(name: str, path: Path, work: Path, args: argparse.Namespace) -> Row:
    import tfless

    model = tfless.load(path)
    row = Row(name, params=sum(int(np.prod(a.shape)) for n in model.source_graph.nodes
                               for a in n.weights.values()))
    shape = model.inputs[0].shape[1:]
    x_path = work / "x.npy"
    np.save(x_path, np.random.default_rng(0).uniform(-1, 1, (2, *shape)).astype(np.float32))
    log(f"{name}: C export, make, latency")
    c_binary(path, work, args.c_samples, 3 if args.quick else 5, row)
    log(f"{name}: NumPy runtime batch-1 latency")
    row.numpy_batch1_ms = numpy_batch1_ms(path, x_path, args.calls)
    if not args.no_executables:
        for onedir, key in ((False, "onefile"), (True, "onedir")):
            log(f"{name}: tfless build {key}")
            exe, seconds = build_tfless(path, work / key / name, onedir)
            row.build_s[key] = seconds
            if isinstance(exe, str):
                row.cold[key] = exe
                continue
            row.sizes[key] = size_of(exe if not onedir else exe.parent)
            row.cold[key] = cold_start(exe, x_path, work, args.runs)
    if args.with_tf_route and name == args.models[0]:
        free_gb = shutil.disk_usage(work).free / 1e9
        for onedir, key in ((False, "tf_onefile"), (True, "tf_onedir")):
            if free_gb < 5:
                row.cold[key] = f"could not be built: only {free_gb:.1f} GB free in {work}"
                continue
            log(f"{name}: TensorFlow + PyInstaller {key} (up to {args.tf_timeout / 60:.0f} min)")
            exe, seconds = build_tf_route(path, work / key, onedir, args.tf_timeout)
            row.build_s[key] = seconds
            if isinstance(exe, str):
                row.cold[key] = exe
                continue
            row.sizes[key] = size_of(exe if not onedir else exe.parent)
            row.cold[key] = cold_start(exe, x_path, work, max(3, args.runs // 2))
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=None)
    parser.add_argument("--runs", type=int, default=None, help="cold-start runs (default 7)")
    parser.add_argument("--calls", type=int, default=None, help="NumPy batch-1 calls")
    parser.add_argument("--c-samples", type=int, default=None,
                        help="samples piped through the C binary")
    parser.add_argument("--quick", action="store_true", help="digits CNN only, few repetitions")
    parser.add_argument("--no-executables", action="store_true",
                        help="skip the PyInstaller builds (C binary and NumPy runtime only)")
    parser.add_argument("--with-tf-route", action="store_true",
                        help="also freeze a Keras/TensorFlow predict script with PyInstaller "
                             "(first model only; minutes and GBs)")
    parser.add_argument("--tf-timeout", type=float, default=1200,
                        help="seconds allowed per TF-route build (default 1200)")
    parser.add_argument("--cache-dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "tfless-bench-models")
    parser.add_argument("--keep", type=Path, default=None,
                        help="build into this directory and keep it (default: a temp dir)")
    parser.add_argument("--output", type=Path, default=None, help="also write the tables here")
    args = parser.parse_args(argv)
    args.models = args.models or (["digits_cnn"] if args.quick else list(MODELS))
    args.runs = args.runs or (3 if args.quick else 7)
    args.calls = args.calls or (50 if args.quick else 300)
    args.c_samples = args.c_samples or (100 if args.quick else 500)

    paths = model_paths(args.models, args.cache_dir)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tfless-standalone-") as tmp:
        base = args.keep or Path(tmp)
        for name in args.models:
            work = base / name
            if work.exists():
                shutil.rmtree(work)
            work.mkdir(parents=True)
            rows.append(bench_model(name, paths[name], work, args))
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = table(rows, args) + (f"\nCPU time of all child processes: {usage.ru_utime:.0f} s user, "
                                f"{usage.ru_stime:.0f} s system.")
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
