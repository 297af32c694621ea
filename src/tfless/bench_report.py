"""`tfless bench`'s front: the subcommand, the run over the models, and the report tables.

`bench.py` measures (fresh worker processes per side, standard library only at its top so
it runs as the workers' script); this module drives it from the CLI or `bench/run.py`,
measures the install footprint from the installed distributions' RECORD files, and formats
the markdown tables with the TensorFlow route side by side (ratios and targets).
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .bench import (
    SERVING_STACK,
    SIDE_LABEL,
    THREAD_VARS,
    ModelResult,
    Settings,
    _env_threads,
    available_sides,
    measure,
    prepare,
)


def _requirement_names(dist: Any) -> list[str]:
    names = []
    for req in dist.requires or []:
        name, _, marker = req.partition(";")
        if "extra" in marker:
            continue
        if marker.strip():
            from packaging.markers import Marker

            if not Marker(marker.strip()).evaluate():
                continue
        names.append(re.split(r"[\s<>=!~\[(]", name.strip(), maxsplit=1)[0])
    return names


def _dist_bytes(dist: Any) -> int:
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    if direct.get("dir_info", {}).get("editable"):
        import importlib.util

        total = 0
        for top in (dist.read_text("top_level.txt") or dist.metadata["Name"]).split():
            found = importlib.util.find_spec(top)
            for root in (found.submodule_search_locations or []) if found else []:
                total += sum(p.stat().st_size for p in Path(root).rglob("*")
                             if p.is_file() and "__pycache__" not in p.parts)
        return total
    total = 0
    for f in dist.files or []:
        if f.size is not None:
            total += f.size
        else:
            p = Path(str(dist.locate_file(f)))
            total += p.stat().st_size if p.is_file() else 0
    return total


def footprint(root: str, skip: Sequence[str] = (), extra: Sequence[str] = ()
              ) -> tuple[int, list[str]] | None:
    """Installed bytes of distribution `root` (plus `extra` distributions) and their runtime
    dependency closure (RECORD sizes; editable installs: the package directory), or None if
    `root` is absent."""
    from importlib import metadata

    def norm(n: str) -> str:
        return re.sub(r"[-_.]+", "-", n).lower()

    seen: dict[str, Any] = {}
    todo = [*extra, root]
    while todo:
        name = norm(todo.pop())
        if name in seen or name in map(norm, skip):
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            if name == norm(root):
                return None
            continue
        seen[name] = dist
        todo.extend(_requirement_names(dist))
    return sum(_dist_bytes(d) for d in seen.values()), sorted(seen)


# ===== the table =============================================================================
def _ms(v: Any) -> str:
    if isinstance(v, dict):
        return f"{v['median_ms']:.3g} / {v['p99_ms']:.3g}"
    return "n/a"


def _num(v: Any, fmt: str = "{:.3g}") -> str:
    return fmt.format(v) if isinstance(v, (int, float)) else "n/a"


def _ratio(a: Any, b: Any, key: str | None = None) -> str:
    if key and isinstance(a, dict) and isinstance(b, dict):
        a, b = a[key], b[key]
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
        return f"{a / b:.3g}"
    return "n/a"


def _check(ratio: str, target: float, higher: bool = False) -> str:
    try:
        r = float(ratio)
    except ValueError:
        return ""
    ok = r >= target if higher else r <= target
    return "met" if ok else "NOT met"


def _md_table(header: Sequence[str], rows: list[Sequence[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "| " + " | ".join(f"{str(c):<{w}}" for c, w in zip(r, widths)) + " |"
    return [fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(fmt, rows)]


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line(settings: Settings) -> str:
    import numpy as np

    versions = [f"Python {platform.python_version()}", f"NumPy {np.__version__}"]
    from importlib import metadata

    for dist in ("tensorflow", "keras", "onnxruntime", "ai-edge-litert"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{dist} not installed")
    cpu = cpu_name()
    threads = settings.threads or _env_threads()
    thread_text = (f"threads: {threads} ({', '.join(f'{v}={threads}' for v in THREAD_VARS)}; "
                   "TF intra/inter-op and ORT set to match)" if threads else
                   f"threads: runtime defaults ({os.cpu_count()} CPUs visible; no "
                   "OMP_NUM_THREADS set)")
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1")
    return (f"Machine: {cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}; "
            f"{', '.join(versions)}; {thread_text}; TensorFlow oneDNN kernels "
            f"{'on' if onednn == '1' else 'as TF_ENABLE_ONEDNN_OPTS=' + onednn + ' says'}")


def load_line(loads: Sequence[float]) -> list[str]:
    """The 1-minute load averages seen during the run: other processes on the cores distort
    every BLAS-bound figure (OpenBLAS threads spin when oversubscribed)."""
    if not loads:
        return []
    cpus = os.cpu_count() or 1
    line = (f"Load average (1 min) during the run: {min(loads):.1f} to {max(loads):.1f} on "
            f"{cpus} CPUs")
    if max(loads) > 0.75 * cpus:
        line += (" -- the machine was busy with other work: treat the ratios as rough and "
                 "rerun on a quiet machine")
    return [line, ""]


def format_tables(results: list[ModelResult], settings: Settings,
                  sides: dict[str, str | None], with_footprint: bool = True,
                  loads: Sequence[float] = ()) -> str:
    out = [machine_line(settings), "", *load_line(loads)]
    missing = [f"{SIDE_LABEL[s]}: {why}" for s, why in sides.items() if why]
    if missing:
        out += ["Skipped columns: " + "; ".join(missing), ""]

    out += [f"### Cold start (s): fresh process -> model loaded -> first prediction "
            f"(median of {settings.cold_runs}); target tfless/TF <= 0.1", ""]
    rows = [[r.name, _num(r.cold.get("tfless")), _num(r.cold.get("tf")),
             (ratio := _ratio(r.cold.get("tfless"), r.cold.get("tf"))), _check(ratio, 0.1)]
            for r in results]
    out += _md_table(["model", "tfless", "TF Keras", "tfless/TF", "target"], rows) + [""]

    out += [f"### Latency at batch 1 (ms, median / p99 of {settings.latency_calls} calls after "
            f"{settings.warmup_calls} warm-up); targets tfless/predict <= 0.05 (MLP), "
            "tfless/model(x) <= 0.5 (MLP)", ""]
    rows = []
    for r in results:
        lat = r.latency
        vs_pred = _ratio(lat.get("tfless"), lat.get("tf_predict"), "median_ms")
        vs_call = _ratio(lat.get("tfless"), lat.get("tf_call"), "median_ms")
        rows.append([r.name, _ms(lat.get("tfless")), _ms(lat.get("tf_predict")),
                     _ms(lat.get("tf_call")), _ms(lat.get("ort")), _ms(lat.get("litert")),
                     vs_pred, vs_call, _ratio(lat.get("tfless"), lat.get("ort"), "median_ms")])
    out += _md_table(["model", "tfless", "Keras predict", "Keras model(x)", "ONNX Runtime",
                      "LiteRT", "tfless/predict", "tfless/model(x)", "tfless/ORT"], rows) + [""]

    out += [f"### Throughput at batch {settings.throughput_batch} (samples/s; TF = the faster "
            "of predict and model(x)); target tfless/TF >= 1 on the CNNs", ""]
    rows = [[r.name, _num(r.throughput.get("tfless"), "{:.1f}"), _num(r.throughput.get("tf"), "{:.1f}"),
             _num(r.throughput.get("ort"), "{:.1f}"), _num(r.throughput.get("litert"), "{:.1f}"),
             (ratio := _ratio(r.throughput.get("tfless"), r.throughput.get("tf"))),
             _check(ratio, 1.0, higher=True)] for r in results]
    out += _md_table(["model", "tfless", "TF Keras", "ONNX Runtime", "LiteRT", "tfless/TF",
                      "target"], rows) + [""]

    out += ["### Peak resident memory (MB, peak RSS (VmHWM) of a process that loaded the model "
            "and ran one batch of 1); target tfless/TF <= 0.33", ""]
    rows = [[r.name, _num(r.memory.get("tfless"), "{:.0f}"), _num(r.memory.get("tf"), "{:.0f}"),
             (ratio := _ratio(r.memory.get("tfless"), r.memory.get("tf"))), _check(ratio, 1 / 3)]
            for r in results]
    out += _md_table(["model", "tfless", "TF Keras", "tfless/TF", "target"], rows) + [""]

    if with_footprint:
        out += _footprint_table()
    notes = sorted({f"{r.name} {SIDE_LABEL.get(s.split('_')[0], s)}: {v}"
                    for r in results for table in (r.cold, r.latency, r.throughput, r.memory)
                    for s, v in table.items() if isinstance(v, str) and v.startswith("failed")})
    if notes:
        out += ["Failures (n/a cells):", *[f"- {n}" for n in notes], ""]
    return "\n".join(out)


def _footprint_table() -> list[str]:
    core = footprint("tfless", skip=SERVING_STACK)
    full = footprint("tfless", extra=SERVING_STACK)
    tf = footprint("tensorflow")
    mb = lambda f: f"{f[0] / 2**20:.0f}" if f else "n/a"
    count = lambda f: str(len(f[1])) if f else "n/a"
    others = lambda f: ", ".join(d for d in f[1] if d != "tfless") if f else "n/a"
    rows = [[f"tfless core ({others(core)})", mb(core), count(core),
             _ratio(core and core[0], tf and tf[0]), _check(_ratio(core and core[0], tf and tf[0]), 0.1)],
            ["tfless default install (+ serving stack)", mb(full), count(full),
             _ratio(full and full[0], tf and tf[0]), _check(_ratio(full and full[0], tf and tf[0]), 0.1)],
            ["tensorflow (incl. keras)", mb(tf), count(tf), "1", ""]]
    return ["### Install footprint (MB on disk: the distribution plus its runtime dependency "
            "closure, summed from each installed distribution's RECORD file sizes; target "
            "tfless/TF <= 0.1)", "",
            *_md_table(["runtime", "MB", "distributions", "vs TF", "target"], rows), ""]


# ===== entry points ===========================================================================
def _compile_tfless() -> None:
    """Write tfless's bytecode as `pip install` does: an editable install run with
    PYTHONDONTWRITEBYTECODE would compile every module at every start (~0.1-0.2 s counted as
    tfless's cold start), while TensorFlow's installed modules are compiled already."""
    import compileall

    compileall.compile_dir(str(Path(__file__).resolve().parent), quiet=2)


def run_bench(models: Sequence[tuple[str, Path, int | None]], settings: Settings,
              log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
              with_footprint: bool = True) -> str:
    """Measure each (name, path, token_range) model on every available side; the tables."""
    _compile_tfless()
    sides = available_sides()
    results = []
    loads = [os.getloadavg()[0]]
    for name, path, token_range in models:
        log(f"[bench] {name}: preparing inputs and ONNX export")
        spec = prepare(name, Path(path), settings, token_range)
        results.append(measure(spec, settings, sides, log))
        loads.append(os.getloadavg()[0])
        log(f"[bench] {name} done (load {loads[-1]:.1f}): "
            + json.dumps(results[-1].__dict__, default=str))
    return format_tables(results, settings, sides, with_footprint, loads)


def cmd_bench(args: Any) -> int:
    from .errors import InputError

    for m in args.model:
        if not Path(m).exists():
            raise InputError(f"{m}: no such model file")
    settings = Settings.quick() if args.quick else Settings()
    if args.threads:
        settings.threads = args.threads
    if args.calls:
        settings.latency_calls = args.calls
    models = [(Path(m).stem, Path(m), args.tokens) for m in args.model]
    print(run_bench(models, settings))
    return 0


def register_cli(sub: Any) -> None:
    p = sub.add_parser("bench", help="measure tfless against TensorFlow (and ONNX Runtime, "
                       "LiteRT when installed) on the same model files")
    p.add_argument("model", nargs="+", help="saved Keras model files (.keras / .h5)")
    p.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for every runtime (sets OMP/OPENBLAS/MKL_NUM_THREADS in workers; "
                   "default: OMP_NUM_THREADS if set, else each runtime's default)")
    p.add_argument("--calls", type=int, default=None, help="batch-1 latency calls (default 200)")
    p.add_argument("--tokens", type=int, default=None, metavar="VOCAB",
                   help="feed integer token ids in [1, VOCAB) (text models)")
    p.set_defaults(handler=cmd_bench)
