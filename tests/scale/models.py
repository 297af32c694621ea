"""Tiny Keras models for the batch-scoring tests, saved once per machine.

Building them imports Keras (seconds), so the saved files are cached in the temp dir
under a hash of this file's text and the Keras version; a stale or half-written cache
is never used (each file is written aside and renamed).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FEATURES = 8  # the MLP's input width


@dataclass(frozen=True)
class ScaleModels:
    mlp: Path  # features (8,) -> probs (3,)
    two: Path  # a (4,), b (2, 3) -> probs (3,), score (1,)


def _build(keras, name: str):
    keras.utils.set_random_seed(3)
    if name == "mlp":
        x = keras.Input((FEATURES,), name="features")
        h = keras.layers.Dense(16, activation="relu")(x)
        return keras.Model(x, keras.layers.Dense(3, activation="softmax", name="probs")(h))
    a = keras.Input((4,), name="a")
    b = keras.Input((2, 3), name="b")
    h = keras.layers.Concatenate()([a, keras.layers.Flatten()(b)])
    h = keras.layers.Dense(8, activation="tanh")(h)
    probs = keras.layers.Dense(3, activation="softmax", name="probs")(h)
    score = keras.layers.Dense(1, name="score")(h)
    return keras.Model([a, b], [probs, score])


def _randomize(model) -> None:
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in model.get_weights()])


def saved_models() -> ScaleModels:
    import importlib.metadata

    version = importlib.metadata.version("keras")
    key = hashlib.sha256(Path(__file__).read_bytes() + version.encode()).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / f"tfless-scale-models-{key}"
    cache.mkdir(exist_ok=True)
    paths = {name: cache / f"{name}.keras" for name in ("mlp", "two")}
    missing = [n for n, p in paths.items() if not p.exists()]
    if missing:
        import keras

        for name in missing:
            model = _build(keras, name)
            _randomize(model)
            tmp = cache / f".{name}-{os.getpid()}.keras"
            model.save(tmp)
            tmp.replace(paths[name])
    return ScaleModels(**paths)
