"""The NumPy runtime against ONNX Runtime (and TF): batch-1 latency and batch-32 throughput.

    .venv/bin/python bench/latency.py                       # issue #16's model set
    .venv/bin/python bench/latency.py --models mlp digits_cnn --repeats 3 --no-tf
    .venv/bin/python bench/latency.py --profile mobilenet_v2  # where a batch-1 call spends time

Each figure comes from a fresh worker process per side (`tfless.bench`'s workers: tfless
`Model.predict`, ONNX Runtime on the file `tfless.export_onnx` writes, TF as the faster of
`model.predict` and `model(x)`). With `--repeats N` the sides run in alternation N times
and the medians are printed, because this shared machine's speed drifts between minutes.
Ratios: tfless/ORT latency (target <= 2), tfless/ORT throughput (target >= 0.8 on the
CNNs) and tfless/TF throughput (target >= 1).

`--profile NAME` runs in this process instead: it times every plan step of batch-1 calls
(median per step over the calls) and prints the op types by total time, plus the whole
`Model.predict` call against the sum of its steps (the difference is per-call overhead).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from tfless.bench import Settings, WorkerFailed, available_sides, prepare, spawn
from tfless.bench_report import machine_line

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import models as catalog  # noqa: E402  (bench/models.py; imports Keras only inside build())

ISSUE_MODELS = ["mlp", "digits_cnn", "mobilenet_v2", "resnet50", "lstm_text", "transformer_text"]
CNNS = {"digits_cnn", "mobilenet_v2", "resnet50", "efficientnet_b0"}


def _paths(names: list[str], cache: Path) -> dict[str, str]:
    built = subprocess.run([sys.executable, str(HERE / "models.py"), str(cache), *names],
                           check=True, capture_output=True, text=True)
    return json.loads(built.stdout.strip().splitlines()[-1])


def _measure(spec: dict, settings: Settings, sides: list[str]) -> dict[str, list[tuple]]:
    """side -> [(batch-1 median ms, batch-32 samples/s), ...] over the repeats."""
    out: dict[str, list[tuple]] = defaultdict(list)
    for side in sides:
        try:
            warm = spawn("warm", side, spec, settings)[0]
        except WorkerFailed as exc:
            print(f"  {spec['name']} {side}: failed: {exc}", file=sys.stderr)
            continue
        if side == "tf":
            ms = min(warm["latency_predict"]["median_ms"], warm["latency_call"]["median_ms"])
            rate = max(warm["throughput_predict"], warm["throughput_call"])
        else:
            ms, rate = warm["latency_predict"]["median_ms"], warm["throughput_predict"]
        out[side].append((ms, rate))
        print(f"  {spec['name']} {side}: {ms:.3f} ms, {rate:.1f}/s", file=sys.stderr, flush=True)
    return out


def _fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}g}"


def table(results: dict[str, dict[str, list[tuple]]]) -> str:
    lines = ["| model | tfless ms | ORT ms | TF ms | tfless/ORT | target <=2 | tfless /s | "
             "ORT /s | TF /s | tfless/ORT | tfless/TF | targets (CNN) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, by_side in results.items():
        med = {s: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
               for s, runs in by_side.items() if runs}
        t, o, f = med.get("tfless"), med.get("ort"), med.get("tf")
        lat = t[0] / o[0] if t and o else None
        thr = t[1] / o[1] if t and o else None
        vs_tf = t[1] / f[1] if t and f else None
        met = "-" if lat is None else ("met" if lat <= 2 else "NOT met")
        cnn = "-"
        if name in CNNS and thr is not None:
            cnn = "met" if thr >= 0.8 and (vs_tf is None or vs_tf >= 1) else "NOT met"
        lines.append(f"| {name} | {_fmt(t and t[0])} | {_fmt(o and o[0])} | {_fmt(f and f[0])} | "
                     f"{_fmt(lat)} | {met} | {_fmt(t and t[1], 4)} | {_fmt(o and o[1], 4)} | "
                     f"{_fmt(f and f[1], 4)} | {_fmt(thr)} | {_fmt(vs_tf)} | {cnn} |")
    return "\n".join(lines)


def profile(path: str, calls: int, batch: int) -> None:
    """Per-step batch-1 timings of one model, in this process."""
    import numpy as np

    import tfless

    model = tfless.load(path)
    plan = model.plan
    rng = np.random.default_rng(0)
    xs = []
    for spec in model.inputs:
        shape = (batch, *(32 if d is None else d for d in spec.shape[1:]))
        if str(spec.dtype).startswith("int"):
            xs.append(rng.integers(1, 1000, shape).astype(spec.dtype))
        else:
            xs.append(rng.uniform(0, 1, shape).astype(np.float32))
    feed = xs if len(xs) > 1 else xs[0]
    for _ in range(5):
        model.predict(feed)
    whole = []
    for _ in range(calls):
        t0 = time.perf_counter()
        model.predict(feed)
        whole.append(time.perf_counter() - t0)
    steps = plan.plain_steps  # what a call runs (a folded ZeroPadding is trace-only)
    per_step: list[list[float]] = [[] for _ in steps]
    for _ in range(calls):
        values: list = [None] * plan.n_slots
        for s, x in zip(plan.input_slots, xs):
            values[s] = x
        for i, step in enumerate(steps):
            args = [values[s] for s in step.inputs]
            t0 = time.perf_counter()
            out = step.run(*args)
            per_step[i].append(time.perf_counter() - t0)
            outs = out if isinstance(out, (tuple, list)) else (out,)
            for s, y in zip(step.outputs, outs):
                values[s] = y
            for s in step.release:  # as a call does: a batch-32 ResNet50 kept whole ran
                values[s] = None  # its last layers 4x slower under the memory it held
    by_op: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for step, times in zip(steps, per_step):
        by_op[step.node.op] += statistics.median(times)
        count[step.node.op] += 1
    steps_ms = sum(by_op.values()) * 1e3
    print(f"{Path(path).name}: batch {batch}, {len(steps)} steps; Model.predict median "
          f"{statistics.median(whole) * 1e3:.3f} ms, sum of step medians {steps_ms:.3f} ms")
    for op, sec in sorted(by_op.items(), key=lambda kv: -kv[1]):
        print(f"  {op:28s} x{count[op]:3d} {sec * 1e3:8.3f} ms  {100 * sec * 1e3 / steps_ms:5.1f}%")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=catalog.ORDER, default=ISSUE_MODELS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calls", type=int, default=100, help="batch-1 calls per figure")
    parser.add_argument("--seconds", type=float, default=1.5, help="batch-32 time per figure")
    parser.add_argument("--no-tf", action="store_true", help="skip the TensorFlow side")
    parser.add_argument("--profile", choices=catalog.ORDER, default=None)
    parser.add_argument("--batch", type=int, default=1, help="batch size of --profile")
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args(argv)

    settings = Settings(latency_calls=args.calls, warmup_calls=10,
                        throughput_seconds=args.seconds)
    if args.cache_dir:
        settings.cache_dir = args.cache_dir
    names = [args.profile] if args.profile else args.models
    paths = _paths(names, settings.cache_dir)
    if args.profile:
        profile(paths[args.profile], args.calls, args.batch)
        return 0
    usable = available_sides()
    sides = [s for s in ("tfless", "ort", "tf") if usable[s] is None and
             not (s == "tf" and args.no_tf)]
    specs = [prepare(n, Path(paths[n]), settings, catalog.TOKENS.get(n)) for n in names]
    results: dict[str, dict[str, list[tuple]]] = {n: defaultdict(list) for n in names}
    for _ in range(args.repeats):
        for spec in specs:
            for side, runs in _measure(spec, settings, sides).items():
                results[spec["name"]][side].extend(runs)
    print(machine_line(settings))
    print(f"batch-1 latency: median of {args.calls} calls; batch {settings.throughput_batch} "
          f"throughput over >= {args.seconds} s; medians of {args.repeats} alternating runs")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
