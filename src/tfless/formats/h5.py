"""Legacy HDF5 models (`model.save('m.h5')` in Keras 1, 2 and 3) and weights-only files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py

from ..errors import ModelFormatError
from ..graph import Graph
from .keras_config import GraphBuilder, keras_major
from .weights import WeightSource, decode_attr, open_weight_source


@contextmanager
def open_h5(path: Path) -> Iterator[h5py.File]:
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ModelFormatError(f"{path}: cannot open as HDF5 (truncated or corrupt?): {exc}") from exc
    try:
        yield f
    finally:
        f.close()


def _config(f: h5py.File, path: Path) -> dict[str, Any] | None:
    raw = f.attrs.get("model_config")
    if raw is None:
        return None
    try:
        model = json.loads(decode_attr(raw))
    except (json.JSONDecodeError, TypeError, RecursionError) as exc:
        raise ModelFormatError(f"{path}: model_config attribute is not valid JSON: {exc}") from exc
    if not isinstance(model, dict):
        raise ModelFormatError(f"{path}: model_config is not a JSON object")
    return model


def read_h5_model(path: Path, lenient: bool = False) -> Graph:
    with open_h5(path) as f:
        model = _config(f, path)
        if model is None:
            if "layer_names" in f.attrs or "layers" in f:
                raise ModelFormatError(
                    f"{path}: is a weights-only file (save_weights) with no model architecture; "
                    "load it together with the architecture: tfless.load('model.json', "
                    f"weights='{path.name}')"
                )
            raise ModelFormatError(f"{path}: HDF5 file is not a Keras model (no model_config)")
        version = decode_attr(f.attrs.get("keras_version")) or _version_of(f.get("model_weights"))
        group = f["model_weights"] if "model_weights" in f else f
        source = open_weight_source(group, str(path))
        major = keras_major(version or _guess_version(model))
        builder = GraphBuilder(source, major, str(path), lenient)
        meta = {"format": "hdf5", "keras_version": version or "", "source": str(path),
                "backend": decode_attr(f.attrs.get("backend")) or ""}
        return builder.build_model(model, meta)


def _version_of(group: Any) -> str | None:
    if group is None:
        return None
    return decode_attr(group.attrs.get("keras_version"))


def _guess_version(model: dict[str, Any]) -> str:
    """Files from Keras 1 sometimes carry no version; their configs give them away."""
    text = json.dumps(model)
    if '"border_mode"' in text or '"output_dim"' in text or '"dim_ordering"' in text:
        return "1"
    return "2"


@contextmanager
def read_weights_file(path: Path) -> Iterator[tuple[WeightSource, str | None]]:
    """A weights-only HDF5 file (legacy `save_weights` or Keras 3 `.weights.h5`)."""
    if not path.exists():
        raise ModelFormatError(f"{path}: no such weights file")
    with open_h5(path) as f:
        group = f["model_weights"] if "model_weights" in f else f
        yield open_weight_source(group, str(path)), decode_attr(group.attrs.get("keras_version"))
