"""Sweep: every keras.applications model, saved by Keras 3 and by tf_keras, read by tfless.

Builds each application with weights=None at a small input size (the smallest the
architecture accepts, ImageNet head reduced to 10 classes, logits out), gives its
BatchNormalization layers non-default statistics (random, or with --bn calibrated taken
from the data), saves `.keras` and `.h5` with each API, loads every file in tfless and
compares with the Keras model's own predictions (max error <= 1e-4 of the output scale +
1e-6, identical top-1). A mismatch is then measured against Keras's float64 result for the
same weights: "rounding" when tfless is no farther from it than Keras's own float32 output
(x2), "unstable" when Keras's own float32 output is off by >= 10% (no float32 answer
exists to match), "WRONG" otherwise. Prints a Markdown table (docs/formats.md keeps the latest one).
Each model runs in a subprocess so a crash or memory blow-up stays one row.

    .venv/bin/python bench/applications.py                 # every model, both APIs
    .venv/bin/python bench/applications.py --only MobileNetV3Small,InceptionResNetV2
    .venv/bin/python bench/applications.py --only EfficientNetV2M --bn calibrated
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


def calibrate_batchnorm(model, x, api: str, seed: int = 3) -> None:
    """BatchNormalization statistics taken from a forward pass over `x` (then perturbed).

    With weights=None and made-up statistics the activations of deep models grow without
    bound (EfficientNetV2M: ~1e4 after five stages, and there Keras's own float32 result
    differs from its float64 one as much as tfless's does, so no tolerance separates a bug
    from rounding). Statistics measured on the data keep every layer near unit scale, as
    trained weights do, so the tight tolerance applies. Each BatchNormalization layer is
    set, in call order during one eager pass, from the inputs it actually receives: moving
    mean = batch mean + 0.1 std noise, moving variance = mean square x U(0.8, 1.25),
    gamma ~ U(0.8, 1.2), beta ~ N(0, 0.05) -- still nothing at a default value.
    The mean square, not the variance: deep in a network two random images give nearly the
    same features on a 1x1 map, and dividing by their tiny spread would turn one float32
    rounding step into a large difference (catastrophic cancellation, compounding per block).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    cls = _module(api).layers.BatchNormalization
    original = cls.__dict__.get("call")
    base_call = cls.call

    def call(self, inputs, *args, **kwargs):
        v = np.asarray(inputs, dtype=np.float64)
        axes = self.axis if isinstance(self.axis, (list, tuple)) else [self.axis]
        axes = [a % v.ndim for a in axes]
        others = tuple(i for i in range(v.ndim) if i not in axes)
        mean, var = v.mean(axis=others), (v * v).mean(axis=others)
        values = []
        for w in self.weights:
            label = getattr(w, "path", None) or w.name
            shape = tuple(w.shape)
            if "moving_mean" in label:
                spread = np.sqrt(np.maximum(var - mean * mean, 0.0)).reshape(shape)
                values.append(mean.reshape(shape) + rng.normal(0, 0.1, shape) * spread)
            elif "moving_variance" in label:
                # a floor: a channel that is (almost) zero is not divided by sqrt(epsilon)
                values.append(np.full(shape, max(float(var.mean()), 1e-2)) * rng.uniform(0.8, 1.25, shape))
            elif "gamma" in label:
                values.append(rng.uniform(0.8, 1.2, shape))
            else:
                values.append(rng.normal(0, 0.05, shape))
        self.set_weights([np.asarray(a, dtype="float32") for a in values])
        return base_call(self, inputs, *args, **kwargs)

    cls.call = call
    try:
        model(x, training=False)
    finally:
        if original is None:
            del cls.call
        else:
            cls.call = original


def float64_reference(name: str, api: str, model, x):
    """The same model and weights computed by Keras in float64 (the rounding-free answer)."""
    import numpy as np

    K = _module(api)
    if api == "keras3":
        K.config.set_dtype_policy("float64")
    else:
        K.backend.set_floatx("float64")
    try:
        size = input_size(name)
        twin = getattr(K.applications, name)(weights=None, input_shape=(size, size, 3),
                                             classes=10, classifier_activation=None)
        twin.set_weights([w.astype("float64") for w in model.get_weights()])
        return np.asarray(twin.predict(x.astype("float64"), verbose=0))
    finally:
        if api == "keras3":
            K.config.set_dtype_policy("float32")
        else:
            K.backend.set_floatx("float32")


def run_one(name: str, api: str, formats: list[str], bn: str = "random") -> dict:
    """Build, save and compare one application; returns format -> result string.

    A mismatch is judged against Keras's own float64 result for the same weights:
    "rounding" when tfless's float32 output is no farther from it than Keras's float32
    output is (x2), "unstable" when Keras's own float32 output is off by >= 10% of the
    output (random weights amplify rounding; nothing float32 can be checked against),
    "WRONG" otherwise."""
    import numpy as np

    import tfless

    K = _module(api)
    size = input_size(name)
    # classifier_activation=None: logits show differences a saturated softmax would hide
    model = getattr(K.applications, name)(weights=None, input_shape=(size, size, 3), classes=10,
                                          classifier_activation=None)
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    if bn == "calibrated":
        calibrate_batchnorm(model, x, api)
    else:
        perturb_batchnorm(model)
    want = np.asarray(model.predict(x, verbose=0))
    exact = None
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
            if ok:
                results[fmt] = f"ok (err {err:.1e}, {seconds:.1f} s)"
                continue
            if exact is None:
                exact = float64_reference(name, api, model, x)
            ours = float(np.abs(got - exact).max())
            theirs = float(np.abs(want - exact).max())
            # Keras's own float32 result far from float64: float32 has no answer to match
            unstable = theirs >= 0.1 * float(np.abs(exact).max())
            verdict = "unstable" if unstable else "rounding" if ours <= 2 * theirs else "WRONG"
            results[fmt] = (f"{verdict} (err {err:.1e} of {scale:.1e}; vs float64: tfless "
                            f"{ours:.1e}, Keras {theirs:.1e}; {seconds:.1f} s)")
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", help="comma-separated application names")
    p.add_argument("--api", choices=APIS, action="append", help="default: both")
    p.add_argument("--formats", default="keras,h5")
    p.add_argument("--worker", nargs=2, metavar=("NAME", "API"), help=argparse.SUPPRESS)
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--bn", choices=("random", "calibrated"), default="random",
                   help="BatchNormalization statistics: random (perturb_batchnorm) or taken "
                        "from the data (calibrate_batchnorm)")
    args = p.parse_args()
    formats = args.formats.split(",")
    if args.worker:
        print(json.dumps(run_one(args.worker[0], args.worker[1], formats, args.bn)))
        return 0
    rows = []
    for api in args.api or APIS:
        wanted = names(api) if not args.only else args.only.split(",")
        for name in wanted:
            t0 = time.perf_counter()
            try:
                proc = subprocess.run(
                    [sys.executable, __file__, "--worker", name, api, "--formats", args.formats,
                     "--bn", args.bn],
                    capture_output=True, text=True, timeout=args.timeout)
                last = proc.stdout.strip().splitlines()[-1:] or ["{}"]
                res = json.loads(last[0]) if proc.returncode == 0 else \
                    {f: f"crashed: {proc.stderr.strip().splitlines()[-1:]}" for f in formats}
            except subprocess.TimeoutExpired:
                res = {f: f"timeout {args.timeout:.0f} s" for f in formats}
            rows.append((name, api, res, time.perf_counter() - t0))
            cells = " | ".join(res.get(f, "") for f in formats)
            print(f"| {name} | {api} | {input_size(name)} | {cells} |", flush=True)
    unstable = [r for r in rows if any(v.startswith("unstable") for v in r[2].values())]
    bad = [r for r in rows if r not in unstable and
           any(not v.startswith(("ok", "rounding")) for v in r[2].values())]
    rounding = [r for r in rows if r not in bad and
                any(v.startswith("rounding") for v in r[2].values())]
    print(f"\n{len(rows) - len(bad) - len(unstable)} of {len(rows)} (model, API) pairs load and match in "
          f"every format ({len(rounding)} of them only to float32 rounding, as Keras's own "
          f"float32 does); {len(unstable)} unstable in Keras's own float32; {len(bad)} do not")
    return 0


if __name__ == "__main__":
    sys.exit(main())
