"""How the runtime's way of running a batch (whole, single-threaded BLAS, or sharded over
threads) performs: an MLP at 65,536 rows, the digits CNN at batch 1 and 32, and a Keras 3
`export()` MobileNetV2 (alpha 0.35, 96x96) SavedModel (a tf.* graph plan) at batch 8, and the
same network as a .keras file at batch 32 (where sharding has paid off for CNNs).

    .venv/bin/python bench/sharding.py [--plan OLD_PLAN.py] [--repeats 9]

`--plan` runs the same cases with another version of runtime/plan.py (for example
`git show REV:src/tfless/runtime/plan.py > old.py`), so before/after can be alternated in
one session on a shared machine. Prints the median seconds per call after warm-up calls
(which are where the runtime measures its choice). Model files are cached in
$TMPDIR/tfless-bench-sharding.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CACHE = Path(tempfile.gettempdir()) / "tfless-bench-sharding"
ROOT = Path(__file__).resolve().parent.parent


def use_plan(path: str) -> None:
    """Install another runtime/plan.py as tfless.runtime.plan, the Plan models build."""
    import tfless.model

    spec = importlib.util.spec_from_file_location("tfless.runtime.plan", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["tfless.runtime.plan"] = module
    spec.loader.exec_module(module)
    tfless.model.Plan = module.Plan  # type: ignore[attr-defined]


def build_models() -> dict[str, Path]:
    CACHE.mkdir(exist_ok=True)
    mlp, mobilenet = CACHE / "mlp.keras", CACHE / "mobilenetv2_035_96"
    keras_cnn = CACHE / "mobilenetv2_035_96.keras"
    if not mlp.exists() or not mobilenet.exists() or not keras_cnn.exists():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import keras

        if not mlp.exists():
            x = keras.Input((16,))
            h = keras.layers.Dense(64, activation="relu")(x)
            h = keras.layers.Dense(32, activation="relu")(h)
            keras.Model(x, keras.layers.Dense(3, activation="softmax")(h)).save(mlp)
        if not mobilenet.exists():
            keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35,
                                           weights=None).export(str(mobilenet), verbose=False)
        if not keras_cnn.exists():
            keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35,
                                           weights=None).save(keras_cnn)
    return {"mlp": mlp, "digits": ROOT / "examples" / "digits_cnn.keras",
            "mobilenet": mobilenet, "mobilenet.keras": keras_cnn}


def median_seconds(model, x: np.ndarray, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        model.predict(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", help="another runtime/plan.py to run the cases with")
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    paths = build_models()
    if args.plan:
        use_plan(args.plan)
    import tfless

    rng = np.random.default_rng(0)
    cases = [("mlp", 65536, (16,)), ("digits", 1, None), ("digits", 32, None),
             ("mobilenet", 8, (96, 96, 3)), ("mobilenet.keras", 32, (96, 96, 3))]
    loaded = {name: tfless.load(p) for name, p in paths.items()}
    for name, batch, shape in cases:
        model = loaded[name]
        shape = shape or tuple(model.graph.inputs[0].shape[1:])
        x = rng.random((batch, *shape), dtype=np.float32)
        seconds = median_seconds(model, x, args.repeats, warmup=4)
        choice = getattr(model.plan, "choices", {}).get(batch.bit_length())
        way = min(choice.seconds, key=choice.seconds.get) if choice else "-"
        print(f"{name:16s} batch {batch:6d}: {seconds * 1e3:9.2f} ms/call  "
              f"{batch / seconds:10.0f} items/s  way: {way}", flush=True)


if __name__ == "__main__":
    main()
