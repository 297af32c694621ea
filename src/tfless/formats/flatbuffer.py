"""A minimal, bounds-checked reader for FlatBuffers tables (what `.tflite` files are made of).

Only reading is needed: a table is found through its vtable, scalar fields are read at
their slot with a default when absent, and offsets lead to sub-tables, vectors, strings
and union members (a union is a type field in one slot and a table offset in the next).
Every position is checked against the buffer before it is read, so a truncated or
corrupt file raises FlatBufferError (a ModelFormatError) instead of an IndexError or a
struct.error deep inside NumPy or `struct`.
"""

from __future__ import annotations

import struct

import numpy as np

from ..errors import ModelFormatError

# struct formats of the scalar field types a schema uses (little-endian, as FlatBuffers is)
SCALARS = {"bool": "<?", "int8": "<b", "uint8": "<B", "int16": "<h", "uint16": "<H",
           "int32": "<i", "uint32": "<I", "int64": "<q", "uint64": "<Q", "float32": "<f"}
# A vtable holds its own size, the table size, then one uint16 per slot.
VTABLE_HEADER = 4


class FlatBufferError(ModelFormatError):
    """The bytes do not form a valid FlatBuffer where the schema expects one."""


class Buffer:
    """The raw bytes of one FlatBuffer with checked little-endian reads."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.data = memoryview(data).cast("B")
        self.size = len(self.data)

    def check(self, pos: int, length: int, what: str) -> None:
        if pos < 0 or length < 0 or pos + length > self.size:
            raise FlatBufferError(
                f"{what} at byte {pos} (length {length}) lies outside the file of {self.size} "
                "bytes: the flatbuffer is truncated or corrupt"
            )

    def scalar(self, fmt: str, pos: int, what: str = "field") -> int | float | bool:
        self.check(pos, struct.calcsize(fmt), what)
        return struct.unpack_from(fmt, self.data, pos)[0]

    def uoffset(self, pos: int, what: str) -> int:
        """The position an unsigned 32-bit offset stored at `pos` points to."""
        target = pos + int(self.scalar("<I", pos, what))
        self.check(target, 4, what)
        return target

    def root(self) -> Table:
        return Table(self, self.uoffset(0, "root table offset"), "root table")

    def identifier(self) -> bytes:
        self.check(4, 4, "file identifier")
        return bytes(self.data[4:8])


class Table:
    """One FlatBuffers table: fields are read by slot number (0 = first field in the schema)."""

    def __init__(self, buf: Buffer, pos: int, what: str) -> None:
        self.buf = buf
        self.pos = pos
        self.what = what
        vtable = pos - int(buf.scalar("<i", pos, f"{what} vtable offset"))
        size = int(buf.scalar("<H", vtable, f"{what} vtable"))
        if size < VTABLE_HEADER or size % 2:
            raise FlatBufferError(f"{what}: vtable at byte {vtable} has invalid size {size}")
        buf.check(vtable, size, f"{what} vtable")
        self.vtable = vtable
        self.vtable_size = size

    def _field(self, slot: int) -> int | None:
        entry = VTABLE_HEADER + 2 * slot
        if entry + 2 > self.vtable_size:
            return None
        rel = int(self.buf.scalar("<H", self.vtable + entry, self.what))
        return self.pos + rel if rel else None

    def has(self, slot: int) -> bool:
        return self._field(slot) is not None

    def scalar(self, slot: int, kind: str, default: int | float | bool = 0) -> int | float | bool:
        pos = self._field(slot)
        if pos is None:
            return default
        return self.buf.scalar(SCALARS[kind], pos, f"{self.what} field {slot}")

    def table(self, slot: int, what: str) -> Table | None:
        pos = self._field(slot)
        if pos is None:
            return None
        return Table(self.buf, self.buf.uoffset(pos, what), what)

    def _vector(self, slot: int, item_size: int, what: str) -> tuple[int, int] | None:
        """(position of the first element, element count) of a vector field."""
        pos = self._field(slot)
        if pos is None:
            return None
        start = self.buf.uoffset(pos, what)
        count = int(self.buf.scalar("<I", start, f"{what} length"))
        self.buf.check(start + 4, count * item_size, what)
        return start + 4, count

    def length(self, slot: int, what: str) -> int:
        found = self._vector(slot, 0, what)
        return 0 if found is None else found[1]

    def tables(self, slot: int, what: str) -> list[Table]:
        found = self._vector(slot, 4, what)
        if found is None:
            return []
        start, count = found
        return [Table(self.buf, self.buf.uoffset(start + 4 * i, f"{what}[{i}]"), f"{what}[{i}]")
                for i in range(count)]

    def array(self, slot: int, dtype: str, what: str) -> np.ndarray | None:
        """A vector of scalars as a NumPy array (a copy), or None when the field is absent."""
        dt = np.dtype(dtype).newbyteorder("<")
        found = self._vector(slot, dt.itemsize, what)
        if found is None:
            return None
        start, count = found
        return np.frombuffer(self.buf.data, dt, count, start).astype(dt.newbyteorder("="))

    def bytes(self, slot: int, what: str) -> memoryview | None:
        found = self._vector(slot, 1, what)
        if found is None:
            return None
        start, count = found
        return self.buf.data[start:start + count]

    def string(self, slot: int, what: str) -> str | None:
        raw = self.bytes(slot, what)
        if raw is None:
            return None
        try:
            return bytes(raw).decode("utf8")
        except UnicodeDecodeError as exc:
            raise FlatBufferError(f"{what}: string is not valid UTF-8: {exc}") from exc
