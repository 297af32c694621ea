"""The `.keras` zip archive (Keras 3, and Keras 2.13-2.15's first version of it).

Members are read in memory, never extracted, and checked before they are read: names
that try to escape a directory, sizes beyond the limits and zip-bomb ratios are refused.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import h5py

from ..errors import ModelFormatError, UnsafeModelError
from ..graph import Graph
from .h5_guard import check_collection, check_heaps, find_signatures
from .keras_config import GraphBuilder, keras_major
from .limits import DEFAULT_LIMITS, Limits
from .weights import ObjectPathWeights

CRC_CHUNK = 1 << 20
# What zipfile raises for a damaged member: a bad CRC or header (BadZipFile), a corrupt
# deflate stream (zlib.error), a stream that ends early (EOFError), a compression method or
# encryption it does not implement (NotImplementedError, RuntimeError).
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
              RuntimeError, ValueError)


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> bytes:
    """A member's bytes, CRC-checked by zipfile; damage is a ModelFormatError."""
    try:
        return zf.read(info)
    except ZIP_ERRORS as exc:
        raise ModelFormatError(f"{path}: archive member {info.filename!r} is corrupt: "
                               f"{type(exc).__name__}: {exc}") from exc


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
        return json.loads(read_member(zf, info, path).decode("utf8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFormatError(f"{path}: {info.filename} is not valid JSON: {exc}") from exc


class MemberWindow(io.RawIOBase):
    """A read-only, seekable view of the bytes [start, start + size) of an open file.

    h5py seeks all over a weights file; zipfile's member streams emulate a backwards seek by
    reading (and CRC-checking) the member again from its start, which made ResNet50's 98 MB
    of weights take 3 s to read. An uncompressed member is read in place through this view
    instead, with plain file seeks and no copy of the member in memory.
    """

    def __init__(self, raw: io.BufferedIOBase, start: int, size: int) -> None:
        super().__init__()
        self._raw, self._start, self._size, self._pos = raw, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        want = max(0, min(len(view), self._size - self._pos))
        if want == 0:
            return 0
        self._raw.seek(self._start + self._pos)
        got = self._raw.readinto(view[:want]) or 0
        self._pos += got
        return got


def _data_offset(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> int:
    """Where a member's bytes start: after its local header, whose name and extra fields
    may differ in length from the central directory's."""
    fp = zf.fp
    assert fp is not None
    fp.seek(info.header_offset)
    header = fp.read(zipfile.sizeFileHeader)
    if len(header) != zipfile.sizeFileHeader or header[:4] != zipfile.stringFileHeader:
        raise ModelFormatError(f"{path}: archive member {info.filename!r} has a corrupt local header")
    # the local header's last two fields: file name length, extra field length
    name_length, extra_length = struct.unpack(zipfile.structFileHeader, header)[-2:]
    return info.header_offset + zipfile.sizeFileHeader + name_length + extra_length


def _check_crc(fp: io.BufferedIOBase, start: int, info: zipfile.ZipInfo, path: Path) -> None:
    """The member's CRC-32, in one sequential pass (a damaged weight byte must not go
    unnoticed: HDF5 does not checksum raw data); the same pass finds the HDF5 global heaps,
    which are then checked (see h5_guard)."""
    fp.seek(start)
    crc, left, pos, tail = 0, info.file_size, start, b""
    heaps: list[int] = []
    while left:
        chunk = fp.read(min(left, CRC_CHUNK))
        if not chunk:
            break
        crc = zlib.crc32(chunk, crc)
        heaps += find_signatures(tail + chunk, pos - len(tail))
        tail = chunk[-3:]
        pos += len(chunk)
        left -= len(chunk)
    if left or crc != info.CRC:
        raise ModelFormatError(
            f"{path}: archive member {info.filename!r} is corrupt (CRC-32 mismatch or truncated)"
        )
    for heap in heaps:
        check_collection(fp, heap, start + info.file_size, f"{path}:{info.filename}")


@contextmanager
def open_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> Iterator[io.IOBase]:
    """A seekable binary stream of one member: a window on the archive for a stored member
    (Keras writes model.weights.h5 uncompressed), else the decompressed bytes in memory
    (their size was checked against the limits already)."""
    if info.flag_bits & 0x1:
        raise ModelFormatError(f"{path}: archive member {info.filename!r} is encrypted")
    if info.compress_type != zipfile.ZIP_STORED:
        stream = io.BytesIO(read_member(zf, info, path))
        check_heaps(stream, 0, info.file_size, f"{path}:{info.filename}")
        yield stream
        return
    start = _data_offset(zf, info, path)
    assert zf.fp is not None
    fp = zf.fp
    end = fp.seek(0, io.SEEK_END)
    if start + info.file_size > end:
        raise ModelFormatError(
            f"{path}: archive member {info.filename!r} declares {info.file_size} bytes but the "
            f"file ends {end - start} bytes after its start (truncated?)"
        )
    _check_crc(fp, start, info, path)
    yield MemberWindow(fp, start, info.file_size)


ASSET_CONTAINERS = ("layers", "_layer_checkpoint_dependencies")


def _read_assets(zf: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], path: Path,
                 limits: Limits) -> dict[tuple[str, ...], dict[str, bytes]]:
    """Layer assets (`assets/<object path>/<file>`, e.g. an adapted lookup's
    vocabulary.txt) in memory, keyed by the object path without its container names (the
    `saved` path of a LayerRef). Each member is bounded like the config."""
    assets: dict[tuple[str, ...], dict[str, bytes]] = {}
    for name, info in members.items():
        parts = PurePosixPath(name).parts
        if len(parts) < 3 or parts[0] != "assets" or info.is_dir():
            continue
        if info.file_size > limits.max_config_bytes:
            raise UnsafeModelError(f"{path}: asset {name} is larger than the config size limit")
        key = tuple(p for p in parts[1:-1] if p not in ASSET_CONTAINERS)
        assets.setdefault(key, {})[parts[-1]] = read_member(zf, info, path)
    return assets


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
            with open_member(zf, members[weights_name], path) as raw, h5py.File(raw, "r") as h5:
                source = ObjectPathWeights(h5, f"{path}:{weights_name}", limits,
                                           _read_assets(zf, members, path, limits))
                builder = GraphBuilder(source, keras_major(version or "3"), str(path), lenient)
                return builder.build_model(model, meta)
        except (OSError, zipfile.BadZipFile) as exc:
            raise ModelFormatError(f"{path}: cannot read {weights_name}: {exc}") from exc
