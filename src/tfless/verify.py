"""`tfless verify`: load a file with tfless and with Keras, compare outputs on the same inputs.

Keras is imported here, lazily, and only here: verification is the one job that needs it.
Keras 1/2 files are loaded with tf_keras (the Keras 2 API), Keras 3 files with Keras 3.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import MissingExtra, TflessError
from .model import Model, load


@dataclass
class OutputReport:
    name: str
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float
    top1_agree: float | None
    scale: float

    def ok(self, atol: float, rtol: float) -> bool:
        return self.max_abs <= atol + rtol * self.scale and self.top1_agree in (None, 1.0)


def sample_inputs(model: Model, n: int, seed: int = 0, free_dim: int = 16) -> list[np.ndarray]:
    """Deterministic inputs: uniform [0, 1) floats, small non-negative ints for int inputs."""
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in model.inputs:
        shape = (n,) + tuple(free_dim if d is None else d for d in spec.shape[1:])
        if np.dtype(spec.dtype).kind in "iu" or _feeds_embedding(model, spec.name):
            high = _embedding_rows(model, spec.name) or 10
            arrays.append(rng.integers(0, min(high, 100), shape).astype(spec.dtype))
        else:
            arrays.append(rng.random(shape, dtype=np.float32))
    return arrays


def _feeds_embedding(model: Model, tensor: str) -> bool:
    return _embedding_rows(model, tensor) is not None


def _embedding_rows(model: Model, tensor: str) -> int | None:
    for node in model.graph.nodes:  # Embedding layers are as read: the passes keep them
        if tensor in node.inputs and node.op == "Embedding":
            return int(node.config.get("input_dim") or node.weights["embeddings"].shape[0])
    return None


def _keras_loader(version: str) -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    major = int(version.split(".")[0]) if version and version[0].isdigit() else 3
    try:
        if major >= 3:
            import keras

            return lambda p: keras.saving.load_model(p, compile=False)
        import tf_keras

        return lambda p: tf_keras.models.load_model(p, compile=False)
    except ImportError as exc:
        raise MissingExtra(
            "tensorflow' and 'tf-keras' or 'keras", "test",
            "tfless verify (it compares with Keras itself)",
        ) from exc


def _tf_signature(path: str, model: Model, xs: list[np.ndarray]) -> dict[str, Any]:
    """TensorFlow's outputs of the SavedModel signature tfless loaded (outputs by key)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise MissingExtra("tensorflow", "test",
                           "tfless verify (it compares with TensorFlow itself)") from exc
    fn = tf.saved_model.load(str(path)).signatures[model.meta["signature"]]
    out = fn(**{spec.name: tf.constant(x) for spec, x in zip(model.inputs, xs)})
    return {k: v.numpy() for k, v in out.items()}


def _flatten(value: Any) -> list[Any]:
    """Keras's output structure flattened in its own order (dict keys sorted)."""
    if isinstance(value, dict):
        return [leaf for key in sorted(value) for leaf in _flatten(value[key])]
    if isinstance(value, (list, tuple)):
        return [leaf for item in value for leaf in _flatten(item)]
    return [value]


def verify(path: str, n: int = 4, weights: str | None = None) -> list[OutputReport]:
    model = load(path, weights=weights)
    version = str(model.meta.get("keras_version", ""))
    if weights is not None:
        raise TflessError("verify compares full model files; save the model with model.save()")
    xs = sample_inputs(model, n)
    if model.meta.get("format") == "graphdef":
        raise TflessError("verify compares with Keras or a SavedModel signature; a frozen "
                          "GraphDef has neither")
    if "signature" in model.meta:  # a TF graph SavedModel: compare with TF's signature
        want = _tf_signature(path, model, xs)
    else:
        reference = _keras_loader(version)(path)
        want = reference.predict(xs if len(xs) > 1 else xs[0], verbose=0)
    got = model.predict(xs, structured=False)
    want_list = [np.asarray(w) for w in _flatten(want)]
    got_list = got if isinstance(got, list) else [got]
    reports = []
    for spec, g, w in zip(model.outputs, got_list, want_list):
        if g.shape != w.shape:
            raise TflessError(f"output '{spec.name}': tfless shape {g.shape}, Keras {w.shape}")
        diff = np.abs(g.astype(np.float64) - w.astype(np.float64))
        rel = diff / np.maximum(np.abs(w.astype(np.float64)), 1e-12)
        top1 = None
        if w.ndim >= 2 and w.shape[-1] > 1:
            top1 = float(np.mean(g.argmax(-1) == w.argmax(-1)))
        reports.append(OutputReport(spec.name, tuple(w.shape), float(diff.max(initial=0)),
                                    float(rel.max(initial=0)), top1,
                                    float(np.abs(w).max(initial=0))))
    return reports


def format_reports(path: str, reports: list[OutputReport]) -> str:
    lines = [f"{path}: tfless vs Keras"]
    for r in reports:
        top = "n/a" if r.top1_agree is None else f"{r.top1_agree:.0%}"
        lines.append(f"  {r.name} {r.shape}: max abs diff {r.max_abs:.3g}, "
                     f"max rel diff {r.max_rel:.3g}, top-1 agreement {top}")
    return "\n".join(lines)
