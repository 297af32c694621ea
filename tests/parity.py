"""Parity harness: build a model with real Keras, save it in each format, compare tfless.

`check_parity(build, inputs)` builds the model with Keras 3 (`api="keras3"`) or with
tf_keras (the Keras 2 API, `api="tf_keras"`), gives it non-trivial random weights,
saves it in every format that API writes, and asserts that tfless's outputs match
Keras's within 1e-5 absolute + 1e-4 relative.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import tfless

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ATOL, RTOL = 1e-5, 1e-4
FORMATS = {
    "keras3": ("keras", "h5"),
    "tf_keras": ("h5", "json", "keras"),
}


def keras_module(api: str) -> Any:
    if api == "keras3":
        import keras

        return keras
    if api == "tf_keras":
        import tf_keras

        return tf_keras
    raise ValueError(api)


def randomize_weights(model: Any, seed: int = 0) -> None:
    """Trained-like weights: nothing at its initializer default, variances positive."""
    rng = np.random.default_rng(seed)
    new = []
    for w in model.weights:
        name = (getattr(w, "path", None) or w.name).lower()
        shape = tuple(w.shape)
        dtype = np.dtype(getattr(w.dtype, "name", None) or str(w.dtype).replace("<dtype: '", "").rstrip("'>"))
        if dtype.kind in "iu":
            value = np.asarray(w.numpy()) if hasattr(w, "numpy") else np.zeros(shape, dtype)
        elif "variance" in name or "moving_var" in name:
            value = rng.uniform(0.5, 1.5, shape)
        elif "gamma" in name or name.endswith("scale") or "/scale" in name:
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0.0, 0.5, shape)
        new.append(np.asarray(value, dtype=dtype))
    model.set_weights(new)


def save_all(model: Any, api: str, formats: Sequence[str], directory: Path) -> dict[str, tuple]:
    """Save `model` in each format; returns format -> (path, weights path or None)."""
    directory.mkdir(parents=True, exist_ok=True)
    out: dict[str, tuple] = {}
    for fmt in formats:
        if fmt == "keras":
            path = directory / "model.keras"
            model.save(path)
            out[fmt] = (path, None)
        elif fmt == "h5":
            path = directory / "model.h5"
            model.save(path)
            out[fmt] = (path, None)
        elif fmt == "json":
            arch = directory / "model.json"
            arch.write_text(model.to_json())
            weights = directory / "weights.h5"
            model.save_weights(weights)
            out[fmt] = (arch, weights)
        else:
            raise ValueError(fmt)
    return out


def keras_predict(model: Any, inputs: Any) -> list[np.ndarray]:
    y = model.predict(inputs, verbose=0)
    if isinstance(y, dict):
        y = [y[k] for k in model.output_names]
    return [np.asarray(v) for v in (y if isinstance(y, list) else [y])]


def assert_close(got: Any, want: list[np.ndarray], label: str, atol: float = ATOL,
                 rtol: float = RTOL) -> None:
    got_list = got if isinstance(got, list) else [got]
    assert len(got_list) == len(want), f"{label}: {len(got_list)} outputs, Keras has {len(want)}"
    for i, (g, w) in enumerate(zip(got_list, want)):
        assert g.shape == w.shape, f"{label} output {i}: shape {g.shape} != Keras {w.shape}"
        err = np.abs(g.astype(np.float64) - w.astype(np.float64))
        bound = atol + rtol * np.abs(w.astype(np.float64))
        if not np.all(err <= bound):
            k = int(np.argmax(err - bound))
            raise AssertionError(
                f"{label} output {i}: max abs err {err.max():.3g} at flat index {k} "
                f"(got {g.flat[k]!r}, Keras {w.flat[k]!r})"
            )


def check_parity(
    build: Callable[[Any], Any],
    inputs: Any,
    api: str = "keras3",
    formats: Sequence[str] | None = None,
    seed: int = 0,
    randomize: bool = True,
    atol: float = ATOL,
    rtol: float = RTOL,
    label: str = "",
    load_kwargs: dict | None = None,
) -> list[np.ndarray]:
    """Build with `api`, save in `formats`, assert tfless == Keras for each. Returns Keras outputs."""
    K = keras_module(api)
    model = build(K)
    if randomize:
        randomize_weights(model, seed)
    want = keras_predict(model, inputs)
    with tempfile.TemporaryDirectory(prefix="tfless-parity-") as tmp:
        saved = save_all(model, api, formats or FORMATS[api], Path(tmp))
        for fmt, (path, weights) in saved.items():
            loaded = tfless.load(path, weights=weights, **(load_kwargs or {}))
            assert_close(loaded.predict(inputs, structured=False), want,
                         f"{label or model.name} [{api} {fmt}]", atol, rtol)
        if "onnxruntime" in os.environ.get("TFLESS_PARITY_BACKENDS", "numpy,onnxruntime"):
            check_onnxruntime(saved, inputs, want, f"{label or model.name} [{api}",
                              max(atol, ATOL), max(rtol, RTOL), load_kwargs)
    return want


def check_onnxruntime(saved: dict, inputs: Any, want: list[np.ndarray], label: str,
                      atol: float, rtol: float, load_kwargs: dict | None) -> None:
    """The parity check through backend="onnxruntime" (export + ONNX Runtime), from the
    first format saved, at the standard tolerances (the NumPy runtime's bit-exact checks
    do not bind another engine's kernels). An op the exporter refuses with a clear
    TflessError before writing anything is reported as a warning, not failed: the
    exporter's contract is "exact or a clear refusal"; a wrong answer always fails."""
    fmt, (path, weights) = next(iter(saved.items()))
    try:
        loaded = tfless.load(path, weights=weights, backend="onnxruntime", **(load_kwargs or {}))
    except tfless.TflessError as exc:
        warnings.warn(f"ONNX export refused {label} {fmt}]: {exc}", stacklevel=2)
        return
    # float32 rounding in another engine's kernel order scales with the data: allow a few
    # ulps of the output scale (bilinear resize of values ~1e3 cancels to ~1e-2 outputs)
    scale = max((float(np.abs(w).max(initial=0)) for w in want), default=0.0)
    assert_close(loaded.predict(inputs, structured=False), want,
                 f"{label} {fmt} onnxruntime]", max(atol, 2e-6 * scale), rtol)


def rand(*shape: int, seed: int = 1, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)
