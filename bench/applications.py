"""Sweep: every keras.applications model, saved by Keras 3 and by tf_keras, read by tfless.

Builds each application with weights=None at a small input size (the smallest the
architecture accepts, ImageNet head reduced to 10 classes), gives its BatchNormalization
layers non-default statistics, saves `.keras` and `.h5` with each API, loads every file
in tfless and compares with the Keras model's own predictions (max error <= 1e-4 of the
output scale + 1e-6, identical top-1). Prints a Markdown table (docs/formats.md keeps the
latest one). Each model runs in a subprocess so a crash or memory blow-up stays one row.

    .venv/bin/python bench/applications.py                 # every model, both APIs
    .venv/bin/python bench/applications.py --only MobileNetV3Small,InceptionResNetV2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Smallest input each family accepts with weights=None (Keras checks `min_size`).
MIN_SIZE = {"InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71}
APIS = ("keras3", "tf_keras")


def names(api: str) -> list[str]:
    mod = _module(api)
    return sorted(n for n in dir(mod.applications) if n[0].isupper())


def _module(api: str):
    if api == "keras3":
        import keras
        return keras
    import tf_keras
    return tf_keras


def input_size(name: str) -> int:
    return MIN_SIZE.get(name, 32)


def perturb_batchnorm(model) -> None:
    """Non-default BatchNormalization statistics, so inference formulas are exercised."""
    import numpy as np

    rng = np.random.default_rng(3)
    stack = list(model.layers)
    while stack:
        layer = stack.pop()
        if hasattr(layer, "layers"):
            stack.extend(layer.layers)
        if layer.__class__.__name__ != "BatchNormalization":
            continue
        values = []
        for w in layer.weights:
            label = getattr(w, "path", None) or w.name
            shape = tuple(w.shape)
            if "moving_mean" in label:
                values.append(rng.normal(0, 0.1, shape))
            elif "moving_variance" in label:
                values.append(rng.uniform(0.5, 1.5, shape))
            elif "gamma" in label:
                values.append(rng.uniform(0.8, 1.2, shape))
            else:
                values.append(rng.normal(0, 0.05, shape))
        layer.set_weights([v.astype("float32") for v in values])


def run_one(name: str, api: str, formats: list[str]) -> dict:
    """Build, save and compare one application; returns format -> result string."""
    import numpy as np

    import tfless

    K = _module(api)
    size = input_size(name)
    model = getattr(K.applications, name)(weights=None, input_shape=(size, size, 3), classes=10)
    perturb_batchnorm(model)
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    want = np.asarray(model.predict(x, verbose=0))
    results: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="tfless-apps-") as tmp:
        for fmt in formats:
            path = Path(tmp) / f"{name}.{fmt}"
            try:
                model.save(path)
            except Exception as exc:  # a Keras save failure is a row of the table, not ours
                results[fmt] = f"Keras cannot save: {type(exc).__name__}: {str(exc)[:80]}"
                continue
            t0 = time.perf_counter()
            try:
                got = tfless.load(path).predict(x)
            except tfless.TflessError as exc:
                results[fmt] = f"refused: {str(exc)[:160]}"
                continue
            seconds = time.perf_counter() - t0
            scale = float(np.abs(want).max())
            err = float(np.abs(got - want).max())
            ok = err <= 1e-4 * max(scale, 1e-6) + 1e-6 and \
                np.array_equal(got.argmax(-1), want.argmax(-1))
            results[fmt] = f"{'ok' if ok else 'WRONG'} (err {err:.1e}, {seconds:.1f} s)"
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", help="comma-separated application names")
    p.add_argument("--api", choices=APIS, action="append", help="default: both")
    p.add_argument("--formats", default="keras,h5")
    p.add_argument("--worker", nargs=2, metavar=("NAME", "API"), help=argparse.SUPPRESS)
    p.add_argument("--timeout", type=float, default=900.0)
    args = p.parse_args()
    formats = args.formats.split(",")
    if args.worker:
        print(json.dumps(run_one(args.worker[0], args.worker[1], formats)))
        return 0
    rows = []
    for api in args.api or APIS:
        wanted = names(api) if not args.only else args.only.split(",")
        for name in wanted:
            t0 = time.perf_counter()
            try:
                proc = subprocess.run(
                    [sys.executable, __file__, "--worker", name, api, "--formats", args.formats],
                    capture_output=True, text=True, timeout=args.timeout)
                last = proc.stdout.strip().splitlines()[-1:] or ["{}"]
                res = json.loads(last[0]) if proc.returncode == 0 else \
                    {f: f"crashed: {proc.stderr.strip().splitlines()[-1:]}" for f in formats}
            except subprocess.TimeoutExpired:
                res = {f: f"timeout {args.timeout:.0f} s" for f in formats}
            rows.append((name, api, res, time.perf_counter() - t0))
            cells = " | ".join(res.get(f, "") for f in formats)
            print(f"| {name} | {api} | {input_size(name)} | {cells} |", flush=True)
    bad = [r for r in rows if any(not v.startswith("ok") for v in r[2].values())]
    print(f"\n{len(rows) - len(bad)} of {len(rows)} (model, API) pairs load and match in "
          f"every format; {len(bad)} do not")
    return 0


if __name__ == "__main__":
    sys.exit(main())
