"""Identify a model file by its bytes, never by its extension."""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelFormatError
from .tf_savedmodel import is_graphdef

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"


def sniff(path: Path) -> str:
    """One of: hdf5, zip, json, tflite, savedmodel, graphdef, pickle. ModelFormatError otherwise."""
    if path.is_dir():
        if (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists():
            return "savedmodel"
        raise ModelFormatError(
            f"{path}: is a directory without saved_model.pb; expected a model file or a "
            "TF SavedModel directory"
        )
    if not path.exists():
        raise ModelFormatError(f"{path}: no such file")
    with path.open("rb") as f:
        head = f.read(2048)
    if not head:
        raise ModelFormatError(f"{path}: the file is empty")
    # HDF5 allows a user block: the signature may sit at 0, 512, 1024, ...
    for offset in (0, 512, 1024):
        if head[offset:offset + 8] == HDF5_MAGIC:
            return "hdf5"
    if head.startswith(ZIP_MAGIC) or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head[4:8] == b"TFL3":
        return "tflite"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    if head.lstrip()[:1] in (b"{", b"["):
        return "json"
    if is_graphdef(head):
        return "graphdef"
    if path.name == "saved_model.pb":
        raise ModelFormatError(f"{path}: is the graph file of a SavedModel; load the "
                               f"directory that holds it ({path.parent}) with its variables/")
    raise ModelFormatError(
        f"{path}: not a Keras model file (not HDF5, not a .keras zip, not JSON, not .tflite; "
        f"starts with {head[:8]!r})"
    )
