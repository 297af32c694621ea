"""Legacy HDF5 models (`model.save('m.h5')` in Keras 1, 2 and 3) and weights-only files.

Every h5py call that walks the file's structures goes through `h5_reading`, so a damaged
file is a ModelFormatError naming the object, and the weights tree is checked to be
self-contained (no soft/external links, no virtual datasets) before anything is read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py

from ..errors import ModelFormatError
from ..graph import Graph
from .h5_guard import check_file_heaps
from .keras_config import GraphBuilder, keras_major
from .weights import WeightSource, h5_reading, has_attr, open_weight_source, text_attr


@contextmanager
def open_h5(path: Path) -> Iterator[h5py.File]:
    check_file_heaps(path, str(path))
    try:
        f = h5py.File(path, "r")
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelFormatError(f"{path}: cannot open as HDF5 (truncated or corrupt?): {exc}") from exc
    try:
        yield f
    finally:
        f.close()


def _config(f: h5py.File, path: Path) -> dict[str, Any] | None:
    raw = text_attr(f, "model_config", str(path))
    if raw is None:
        return None
    try:
        model = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ModelFormatError(f"{path}: model_config attribute is not valid JSON: {exc}") from exc
    if not isinstance(model, dict):
        raise ModelFormatError(f"{path}: model_config is not a JSON object")
    return model


def weights_group(f: h5py.File, where: str) -> h5py.Group:
    """`model_weights` when the file has one (full-model files), else the root."""
    with h5_reading(where, "group 'model_weights'"):
        group = f["model_weights"] if "model_weights" in f else f
    if not isinstance(group, h5py.Group):
        raise ModelFormatError(f"{where}: 'model_weights' should be a group but is a dataset")
    return group


def read_h5_model(path: Path, lenient: bool = False) -> Graph:
    where = str(path)
    with open_h5(path) as f:
        model = _config(f, path)
        if model is None:
            with h5_reading(where, "the root group"):
                has_layers = "layers" in f
            if has_attr(f, "layer_names", where) or has_layers:
                raise ModelFormatError(
                    f"{path}: is a weights-only file (save_weights) with no model architecture; "
                    "load it together with the architecture: tfless.load('model.json', "
                    f"weights='{path.name}')"
                )
            raise ModelFormatError(f"{path}: HDF5 file is not a Keras model (no model_config)")
        group = weights_group(f, where)
        version = text_attr(f, "keras_version", where) or \
            (text_attr(group, "keras_version", where) if group is not f else None)
        source = open_weight_source(group, where)
        major = keras_major(version or _guess_version(model))
        builder = GraphBuilder(source, major, where, lenient)
        meta = {"format": "hdf5", "keras_version": version or "", "source": where,
                "backend": text_attr(f, "backend", where) or ""}
        return builder.build_model(model, meta)


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
        group = weights_group(f, str(path))
        yield open_weight_source(group, str(path)), text_attr(group, "keras_version", str(path))
