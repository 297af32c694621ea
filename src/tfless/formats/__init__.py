"""Readers: every saved-model layout becomes a Graph. Only this package knows file formats."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ModelFormatError
from ..graph import Graph
from .detect import sniff
from .h5 import read_h5_model, read_weights_file
from .keras_config import GraphBuilder, keras_major
from .keras_zip import read_keras_zip
from .limits import DEFAULT_LIMITS
from .savedmodel import read_savedmodel
from .tf_savedmodel import read_graphdef
from .tflite import read_tflite


def read_graph(path: str | Path, weights: str | Path | None = None,
               lenient: bool = False, signature: str | None = None,
               inputs: list[str] | None = None, outputs: list[str] | None = None) -> Graph:
    """Read any supported model file (or architecture JSON + weights file) into a Graph.

    lenient: keep layers tfless cannot run as nodes (for `inspect`) instead of failing.
    signature: which SignatureDef of a SavedModel to run (TF graph; default serving_default).
    inputs/outputs: node names of a frozen GraphDef's inputs and outputs."""
    path = Path(path)
    kind = sniff(path)
    if signature is not None and kind != "savedmodel":
        raise ModelFormatError(f"{path}: signature= applies to SavedModel directories; this "
                               f"file is {kind}")
    if (inputs is not None or outputs is not None) and kind != "graphdef":
        raise ModelFormatError(f"{path}: inputs=/outputs= name the tensors of a frozen "
                               f"GraphDef .pb; this file is {kind}")
    if kind == "graphdef":
        return read_graphdef(path, inputs, outputs)
    if weights is not None and kind != "json":
        raise ModelFormatError(
            f"{path}: a separate weights file is only used with an architecture JSON file; "
            f"this file is {kind}"
        )
    if kind == "hdf5":
        return read_h5_model(path, lenient)
    if kind == "zip":
        return read_keras_zip(path, lenient=lenient)
    if kind == "json":
        return read_json_architecture(path, weights, lenient)
    if kind == "tflite":
        return read_tflite(path, lenient)
    if kind == "savedmodel":
        return read_savedmodel(path, lenient, signature=signature)
    if kind == "pickle":
        raise ModelFormatError(
            f"{path}: is a Python pickle stream, not a Keras model file; tfless never unpickles "
            "files (unpickling runs code). Save the model with model.save('model.keras')"
        )
    raise ModelFormatError(
        f"{path}: {kind} files are not supported yet; supported: .keras, .h5/.hdf5 full "
        "models, architecture JSON + weights .h5, SavedModel directories, frozen GraphDef .pb"
    )


def read_json_architecture(path: Path, weights: str | Path | None,
                           lenient: bool = False) -> Graph:
    if path.stat().st_size > DEFAULT_LIMITS.max_config_bytes:
        raise ModelFormatError(f"{path}: JSON file is larger than the config size limit")
    try:
        model: Any = json.loads(path.read_text(encoding="utf8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFormatError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(model, dict) or "class_name" not in model:
        raise ModelFormatError(f"{path}: JSON is not a Keras model architecture (no class_name)")
    if weights is None:
        raise ModelFormatError(
            f"{path}: an architecture JSON has no weights; pass the weights file too: "
            "tfless.load('model.json', weights='weights.h5') or --weights on the CLI"
        )
    version = model.get("keras_version")
    with read_weights_file(Path(weights)) as (source, file_version):
        major = keras_major(version or file_version)
        builder = GraphBuilder(source, major, str(path), lenient)
        meta = {"format": "json+h5", "keras_version": version or file_version or "",
                "source": str(path), "weights": str(weights)}
        return builder.build_model(model, meta)


__all__ = ["read_graph"]
