"""The `.keras` zip archive (Keras 3, and Keras 2.13-2.15's first version of it).

Members are read in memory, never extracted, and checked before they are read: names
that try to escape a directory, sizes beyond the limits and zip-bomb ratios are refused.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import h5py

from ..errors import ModelFormatError, UnsafeModelError
from ..graph import Graph
from .keras_config import GraphBuilder, keras_major
from .limits import DEFAULT_LIMITS, Limits
from .weights import ObjectPathWeights


def _check_members(zf: zipfile.ZipFile, path: Path, limits: Limits) -> dict[str, zipfile.ZipInfo]:
    members: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in zf.infolist():
        name = info.filename.replace("\\", "/")
        parts = PurePosixPath(name).parts
        if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
            raise UnsafeModelError(f"{path}: archive member name {info.filename!r} escapes the archive")
        total += info.file_size
        if info.compress_size and info.file_size > 1024**2 and \
                info.file_size / info.compress_size > limits.max_zip_ratio:
            raise UnsafeModelError(
                f"{path}: archive member {info.filename!r} expands {info.compress_size} bytes to "
                f"{info.file_size} (ratio above {limits.max_zip_ratio}): refusing a zip bomb"
            )
        members[name] = info
    limits.check_weight_bytes(total, str(path))
    return members


def _read_json(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, limits: Limits) -> Any:
    if info.file_size > limits.max_config_bytes:
        raise UnsafeModelError(f"{path}: {info.filename} is larger than the config size limit")
    try:
        return json.loads(zf.read(info).decode("utf8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{path}: {info.filename} is not valid JSON: {exc}") from exc


def read_keras_zip(path: Path, limits: Limits = DEFAULT_LIMITS, lenient: bool = False) -> Graph:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelFormatError(f"{path}: not a readable zip archive (truncated?): {exc}") from exc
    with zf:
        members = _check_members(zf, path, limits)
        if "config.json" not in members:
            raise ModelFormatError(
                f"{path}: zip archive has no config.json, so it is not a .keras model "
                f"(members: {', '.join(list(members)[:10])})"
            )
        model = _read_json(zf, members["config.json"], path, limits)
        metadata = _read_json(zf, members["metadata.json"], path, limits) \
            if "metadata.json" in members else {}
        version = str(metadata.get("keras_version", "")) if isinstance(metadata, dict) else ""
        if not isinstance(model, dict):
            raise ModelFormatError(f"{path}: config.json is not a JSON object")
        weights_name = "model.weights.h5"
        if weights_name not in members:
            others = [m for m in members if m.endswith((".h5", ".npz", ".json"))]
            raise ModelFormatError(
                f"{path}: archive has no model.weights.h5 (found: {', '.join(others) or 'none'}); "
                "sharded or npz weight stores are not supported"
            )
        meta = {"format": "keras", "keras_version": version, "source": str(path)}
        try:
            with zf.open(members[weights_name]) as raw, h5py.File(raw, "r") as h5:
                source = ObjectPathWeights(h5, f"{path}:{weights_name}", limits)
                builder = GraphBuilder(source, keras_major(version or "3"), str(path), lenient)
                return builder.build_model(model, meta)
        except (OSError, zipfile.BadZipFile) as exc:
            raise ModelFormatError(f"{path}: cannot read {weights_name}: {exc}") from exc
