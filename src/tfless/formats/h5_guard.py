"""Checks on raw HDF5 bytes made before the HDF5 library parses them.

The HDF5 C library trusts some structures it cannot check cheaply: a global heap
collection (where variable-length strings such as Keras's `weight_names` live) is walked
object by object, and an object whose size field was zeroed makes that walk stand still
forever (seen in fuzzing: one damaged byte run hung `tfless.load` in libhdf5). A Python
timeout cannot interrupt C code, so the collections are walked here first, the same way,
and a walk that would not end at the collection's end is a ModelFormatError.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

from ..errors import ModelFormatError

SIGNATURE = b"GCOL"
HEADER = 16  # signature, version (1), 3 reserved bytes, collection size (8 bytes)
OBJECT_HEADER = 16  # index (2), reference count (2), reserved (4), object size (8)
MIN_COLLECTION = 4096  # HDF5 never writes a smaller collection


def _align8(n: int) -> int:
    return (n + 7) & ~7


def check_heaps(data: mmap.mmap | bytes, start: int, end: int, where: str) -> None:
    """Walk every global heap collection in data[start:end] (an HDF5 file's bytes)."""
    pos = data.find(SIGNATURE, start, end)
    while pos != -1:
        head = data[pos:pos + HEADER]
        # version 1 and zero reserved bytes: anything else is not a collection (weight bytes
        # may spell "GCOL"; HDF5 itself reports a damaged version as an error, not a hang)
        if len(head) == HEADER and head[4:8] == b"\x01\x00\x00\x00":
            size = struct.unpack_from("<Q", head, 8)[0]
            if size >= MIN_COLLECTION:
                _walk(data, pos, min(pos + size, end), pos + size > end, where)
        pos = data.find(SIGNATURE, pos + 4, end)


def _walk(data: mmap.mmap | bytes, pos: int, stop: int, cut: bool, where: str) -> None:
    if cut:
        raise ModelFormatError(f"{where}: the HDF5 global heap at byte {pos} extends past the "
                               "end of the file (truncated or corrupt)")
    p = pos + HEADER
    while p < stop:
        if p + OBJECT_HEADER > stop:
            return  # too little room for an object header: HDF5 treats it as free space
        index, _refs, _reserved, size = struct.unpack_from("<HHIQ", data, p)
        need = size if index == 0 else OBJECT_HEADER + _align8(size)
        if need == 0 or p + need > stop:
            raise ModelFormatError(
                f"{where}: the HDF5 global heap at byte {pos} is corrupt (object at byte {p} "
                f"has size {size}); the file is damaged")
        p += need


def check_file_heaps(path: Path, where: str) -> None:
    """check_heaps over a whole file, through a read-only memory map."""
    with path.open("rb") as f:
        size = f.seek(0, 2)
        if size == 0:
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            check_heaps(data, 0, size, where)
