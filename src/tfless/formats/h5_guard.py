"""Checks on raw HDF5 bytes made before the HDF5 library parses them.

The HDF5 C library trusts some structures it cannot check cheaply: a global heap
collection (where variable-length strings such as Keras's `weight_names` live) is walked
object by object, and an object whose size field was zeroed makes that walk stand still
forever (seen in fuzzing: one damaged byte run hung `tfless.load` in libhdf5). A Python
timeout cannot interrupt C code, so the collections are walked here first, the same way,
and a walk that would not end at the collection's end is a ModelFormatError.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from ..errors import ModelFormatError

SIGNATURE = b"GCOL"
HEADER = 16  # signature, version (1), 3 reserved bytes, collection size (8 bytes)
OBJECT_HEADER = 16  # index (2), reference count (2), reserved (4), object size (8)
MIN_COLLECTION = 4096  # HDF5 never writes a smaller collection


def _align8(n: int) -> int:
    return (n + 7) & ~7


CHUNK = 4 * 1024 * 1024


def find_signatures(chunk: bytes, base: int) -> list[int]:
    """File positions of the heap signatures in a chunk read at file position `base`."""
    found, at = [], chunk.find(SIGNATURE)
    while at != -1:
        found.append(base + at)
        at = chunk.find(SIGNATURE, at + 1)
    return found


def check_heaps(fp: BinaryIO, start: int, end: int, where: str) -> None:
    """Walk every global heap collection in the bytes [start, end) of an open HDF5 file (a
    whole file, or a member of an archive). One sequential pass of chunked reads (100 MB
    take ~0.1-0.2 s, from the page cache); the .keras reader folds it into its CRC pass."""
    fp.seek(start)
    pos, tail, heaps = start, b"", []
    while pos < end:
        chunk = fp.read(min(CHUNK, end - pos))
        if not chunk:
            break
        heaps += find_signatures(tail + chunk, pos - len(tail))
        tail = chunk[-3:]  # a signature across two chunks is seen whole
        pos += len(chunk)
    for heap in heaps:
        check_collection(fp, heap, end, where)


def check_collection(fp: BinaryIO, pos: int, end: int, where: str) -> None:
    """One collection starting at file position `pos` (if it is one), the file ending at end."""
    fp.seek(pos)
    head = fp.read(HEADER)
    # version 1 and zero reserved bytes: anything else is not a collection (weight bytes
    # may spell "GCOL"; HDF5 itself reports a damaged version as an error, not a hang)
    if len(head) != HEADER or head[4:8] != b"\x01\x00\x00\x00":
        return
    size = struct.unpack_from("<Q", head, 8)[0]
    if size < MIN_COLLECTION:
        return
    if pos + size > end:
        raise ModelFormatError(f"{where}: the HDF5 global heap at byte {pos} extends past the "
                               "end of the file (truncated or corrupt)")
    data = head + fp.read(size - HEADER)
    _walk(data, pos, where)


def _walk(data: bytes, pos: int, where: str) -> None:
    """The walk libhdf5 makes over one collection's objects (data: the whole collection)."""
    p, stop = HEADER, len(data)
    while p < stop:
        if p + OBJECT_HEADER > stop:
            return  # too little room for an object header: HDF5 treats it as free space
        index, _refs, _reserved, size = struct.unpack_from("<HHIQ", data, p)
        need = size if index == 0 else OBJECT_HEADER + _align8(size)
        if need == 0 or p + need > stop:
            raise ModelFormatError(
                f"{where}: the HDF5 global heap at byte {pos} is corrupt (object at byte "
                f"{pos + p} has size {size}); the file is damaged")
        p += need


def check_file_heaps(path: Path, where: str) -> None:
    """check_heaps over a whole file."""
    with path.open("rb") as f:
        check_heaps(f, 0, f.seek(0, 2), where)
