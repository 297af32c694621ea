"""TF graph models: load time and predict speed of tfless vs TensorFlow, in one run.

Exports Keras 3 models with `model.export()` (an MLP, a small CNN, an LSTM, a GRU, an
Embedding + MultiHeadAttention text model and MobileNetV2 alpha=0.35 at 96x96), then for
each SavedModel times:
- load: `tfless.load(dir)` vs `tf.saved_model.load(dir)` (in this process, warm file cache,
  best of `--repeats`);
- predict: the serving_default signature at batch 1 and batch 32 (median of timed calls
  after one warm-up call), tfless's NumPy runtime vs TF's concrete function.
Checks the outputs agree (max abs difference printed) and prints a Markdown table with
tfless/TF speed ratios (> 1 = tfless faster).

    .venv/bin/python bench/graph.py            # all models
    .venv/bin/python bench/graph.py --quick    # fewer timed calls, no MobileNetV2
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def build(name: str) -> tuple[Any, tuple[int, ...], str]:
    import keras

    L = keras.layers
    if name == "mobilenet_v2":
        return (keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35,
                                               weights=None), (96, 96, 3), "float32")
    shapes = {"mlp": ((64,), "float32"), "cnn": ((32, 32, 3), "float32"),
              "lstm": ((20, 8), "float32"), "gru": ((20, 8), "float32"),
              "text": ((32,), "int32")}
    shape, dtype = shapes[name]
    x = keras.Input(shape, dtype=dtype)
    if name == "mlp":
        y = L.Dense(10, activation="softmax")(L.Dense(256, activation="relu")(
            L.Dense(256, activation="relu")(x)))
    elif name == "cnn":
        h = L.MaxPooling2D()(L.BatchNormalization()(L.Conv2D(16, 3, activation="relu")(x)))
        h = L.MaxPooling2D()(L.Conv2D(32, 3, activation="relu")(h))
        y = L.Dense(10)(L.GlobalAveragePooling2D()(h))
    elif name == "lstm":
        y = L.Dense(4)(L.LSTM(32)(x))
    elif name == "gru":
        y = L.Dense(4)(L.GRU(32)(x))
    else:
        h = L.Embedding(1000, 32)(x)
        h = L.LayerNormalization()(h + L.MultiHeadAttention(4, 8)(h, h))
        y = L.Dense(2)(L.GlobalAveragePooling1D()(h))
    return keras.Model(x, y), shape, dtype


def median_seconds(fn: Any, calls: int) -> float:
    fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def best_seconds(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import tensorflow as tf

    import tfless

    names = ["mlp", "cnn", "lstm", "gru", "text"] + ([] if args.quick else ["mobilenet_v2"])
    calls = 5 if args.quick else 20
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            model, shape, dtype = build(name)
            path = Path(tmp) / name
            model.export(path, verbose=False)
            rng = np.random.default_rng(0)
            batches = {}
            for n in (1, 32):
                batches[n] = (rng.integers(0, 1000, (n, *shape)).astype(dtype)
                              if dtype == "int32" else
                              rng.standard_normal((n, *shape)).astype(np.float32))
            load_tfless = best_seconds(lambda p=path: tfless.load(p), args.repeats)
            load_tf = best_seconds(lambda p=path: tf.saved_model.load(str(p)), args.repeats)
            ours = tfless.load(path)
            theirs = tf.saved_model.load(str(path)).signatures["serving_default"]
            key = ours.inputs[0].name
            diff = float(np.abs(ours.predict({key: batches[32]})["output_0"]
                                - theirs(**{key: tf.constant(batches[32])})["output_0"].numpy()
                                ).max())
            row = {"model": name, "load_tfless": load_tfless, "load_tf": load_tf, "diff": diff}
            for n, x in batches.items():
                tx = tf.constant(x)
                row[f"tfless_{n}"] = median_seconds(
                    lambda m=ours, k=key, a=x: m.predict({k: a}), calls)
                row[f"tf_{n}"] = median_seconds(lambda f=theirs, k=key, a=tx: f(**{k: a}), calls)
            rows.append(row)
            print(f"{name}: done", flush=True)
    print()
    print("| model | load tfless (s) | load TF (s) | load ratio | batch 1 tfless / TF (ms) "
          "| ratio | batch 32 tfless / TF (ms) | ratio | max abs diff |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['model']} | {r['load_tfless']:.3f} | {r['load_tf']:.3f} | "
              f"{r['load_tf'] / r['load_tfless']:.1f}x | "
              f"{r['tfless_1'] * 1e3:.2f} / {r['tf_1'] * 1e3:.2f} | "
              f"{r['tf_1'] / r['tfless_1']:.2f}x | "
              f"{r['tfless_32'] * 1e3:.2f} / {r['tf_32'] * 1e3:.2f} | "
              f"{r['tf_32'] / r['tfless_32']:.2f}x | {r['diff']:.1e} |")


if __name__ == "__main__":
    main()
