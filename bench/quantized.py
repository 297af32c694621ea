"""Quantized `.tflite` models: size, load time and speed of int8 vs float, tfless vs LiteRT.

One run converts a MobileNetV2 (alpha 0.35, 96x96, random trained-like weights) and a small
MLP with TensorFlow's converter as float32, dynamic-range (int8 weights, hybrid kernels)
and full-integer int8, then times, in the same process on the same inputs:
- load: `tfless.load` vs `ai_edge_litert` Interpreter construction + allocate_tensors;
- predict: median of N calls at batch 1 and batch 8 (LiteRT with its default delegate).
It prints a table with ratios (LiteRT time / tfless time: above 1 means tfless is faster)
and the largest output difference from LiteRT.

    .venv/bin/python bench/quantized.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import tfless


def mobilenet() -> Any:
    import keras

    model = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None,
                                           classifier_activation=None)
    rng = np.random.default_rng(0)
    weights = []
    for w in model.weights:
        value = np.asarray(w.numpy())
        if "moving_variance" in w.path or "gamma" in w.path:
            value = rng.uniform(0.5, 1.5, value.shape)
        elif "moving_mean" in w.path or "beta" in w.path or "bias" in w.path:
            value = rng.normal(0.0, 0.1, value.shape)
        weights.append(value.astype(np.float32))
    model.set_weights(weights)
    return model


def mlp() -> Any:
    import keras

    L = keras.layers
    model = keras.Sequential([keras.Input((256,)), L.Dense(512, activation="relu"),
                              L.Dense(512, activation="relu"), L.Dense(10)])
    return model


def convert(model: Any, mode: str, shape: tuple[int, ...]) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "int8":
        rng = np.random.default_rng(1)
        converter.representative_dataset = lambda: (
            [rng.random((1, *shape)).astype(np.float32)] for _ in range(32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return converter.convert()


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def litert_runner(path: Path, x: np.ndarray) -> Callable[[], np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    d = interp.get_input_details()[0]
    interp.resize_tensor_input(d["index"], x.shape)
    interp.allocate_tensors()
    out = interp.get_output_details()[0]["index"]

    def run() -> np.ndarray:
        interp.set_tensor(d["index"], x)
        interp.invoke()
        return interp.get_tensor(out)

    return run


def litert_load(path: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    Interpreter(model_path=str(path)).allocate_tensors()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, build, shape in (("MobileNetV2-0.35-96", mobilenet, (96, 96, 3)),
                                   ("MLP-256-512-512", mlp, (256,))):
            model = build()
            for mode in ("float32", "dynamic", "int8"):
                path = Path(tmp) / f"{name}_{mode}.tflite"
                path.write_bytes(convert(model, mode, shape))
                load_tfless = median_seconds(lambda p=path: tfless.load(p), 3)
                load_litert = median_seconds(lambda p=path: litert_load(p), 3)
                loaded = tfless.load(path)
                for batch in (1, 8):
                    x = np.random.default_rng(2).random((batch, *shape)).astype(np.float32)
                    ours = median_seconds(lambda m=loaded, v=x: m.predict(v), args.repeats)
                    theirs_run = litert_runner(path, x)
                    theirs = median_seconds(theirs_run, args.repeats)
                    diff = float(np.max(np.abs(loaded.predict(x) - theirs_run())))
                    rows.append((name, mode, path.stat().st_size / 1e6, load_tfless,
                                 load_litert, batch, ours, theirs, diff))
    header = ("model", "mode", "MB", "load tfless s", "load LiteRT s", "batch",
              "tfless ms", "LiteRT ms", "LiteRT/tfless", "max |diff|")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for name, mode, mb, lt, ll, batch, ours, theirs, diff in rows:
        print(f"{name} | {mode} | {mb:.2f} | {lt:.3f} | {ll:.3f} | {batch} | "
              f"{ours * 1e3:.2f} | {theirs * 1e3:.2f} | {theirs / ours:.2f}x | {diff:.2g}")


if __name__ == "__main__":
    main()
