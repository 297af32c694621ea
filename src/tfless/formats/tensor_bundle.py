"""TensorFlow's checkpoint "tensor bundle": `<prefix>.index` plus `<prefix>.data-NNNNN-of-MMMMM`.

The index is a table in LevelDB's SSTable layout: a 48-byte footer (two block handles and
a magic number) points at an index block, whose values point at data blocks. A block is a
run of prefix-compressed key/value entries followed by restart offsets, and is stored with
a 5-byte trailer (compression type, masked CRC-32C of contents + type). In a bundle the
empty key holds a BundleHeaderProto and every other key is a tensor name whose value is a
BundleEntryProto (dtype, shape, shard, offset, size). Data files hold the raw little-endian
tensor bytes at those offsets.

Everything a file declares is checked before it is used: block handles and tensor extents
must lie inside their files, declared sizes must match dtype x shape, and the total must
fit the weight limit, so a hostile file fails with ModelFormatError/UnsafeModelError
before any large allocation. Stored CRC-32C checksums (index blocks and every tensor) are
verified, so a corrupt file fails instead of predicting garbage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFormatError
from .limits import DEFAULT_LIMITS, Limits
from .tf_protos import parse

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5
CRC_MASK_DELTA = 0xA282EAD8
MAX_SHARDS = 100_000
MAX_RANK = 64

# TensorFlow DataType enum (types.proto) -> little-endian NumPy dtype.
DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 5: "<i2", 6: "i1", 9: "<i8", 10: "?",
          14: "<u2", 17: "<u2", 19: "<f2", 22: "<u4", 23: "<u8"}
DT_STRING = 7
DT_BFLOAT16 = 14


def _crc32c_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0x82F63B78), table >> 1)
    return table.astype(np.uint32)


_CRC_TABLE = _crc32c_table()
_CRC_TABLE_LIST = [int(v) for v in _CRC_TABLE]
_BITS = np.arange(32, dtype=np.uint32)
LANE_MIN_BYTES = 1 << 14
MAX_LANE_BITS = 14  # 16K lanes: fastest measured (larger lanes leave the cache)


def _crc_bytes(register: int, data: bytes | memoryview) -> int:
    table = _CRC_TABLE_LIST
    for byte in data:
        register = table[(register ^ byte) & 0xFF] ^ (register >> 8)
    return register


def _apply(columns: np.ndarray, values: np.ndarray) -> np.ndarray:
    """A GF(2)-linear map on 32-bit registers (column k = image of bit k), applied to each value."""
    out = np.zeros_like(values)
    for k in range(32):
        out ^= np.where((values >> np.uint32(k)) & np.uint32(1), columns[k], np.uint32(0))
    return out


def _advance_over(n: int) -> np.ndarray:
    """The map that runs a register over n zero bytes (a power of the one-byte map)."""
    basis = np.uint32(1) << _BITS
    power = _CRC_TABLE[basis & np.uint32(0xFF)] ^ (basis >> np.uint32(8))
    result = basis
    while n:
        if n & 1:
            result = _apply(power, result)
        power = _apply(power, power)
        n >>= 1
    return result


def _crc_register(register: int, data: np.ndarray) -> int:
    """CRC register after `data`; long data is run on many lanes at once. The register
    update is linear, so the CRC of A+B is (A's register advanced over len(B) zero bytes)
    XOR (B's register started from 0): lanes are folded pairwise with that rule."""
    if len(data) < LANE_MIN_BYTES:
        return _crc_bytes(register, data.tobytes())
    lanes = 1 << min(MAX_LANE_BITS, (len(data) // 256).bit_length() - 1)
    n = len(data) // lanes
    rows = np.ascontiguousarray(data[:lanes * n].reshape(lanes, n).T)
    reg = np.zeros(lanes, np.uint32)
    for row in rows:
        reg = _CRC_TABLE[(reg ^ row) & np.uint32(0xFF)] ^ (reg >> np.uint32(8))
    step = _advance_over(n)
    while len(reg) > 1:
        reg = _apply(step, reg[0::2]) ^ reg[1::2]
        step = _apply(step, step)
    start = _apply(step, np.array([register], np.uint32))[0]
    return _crc_register(int(start ^ reg[0]), data[lanes * n:])


def masked_crc32c(data: bytes | bytearray | np.ndarray) -> int:
    """CRC-32C (Castagnoli) of data, masked as LevelDB/TensorFlow store it."""
    raw = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data
    crc = _crc_register(0xFFFFFFFF, raw) ^ 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + CRC_MASK_DELTA) & 0xFFFFFFFF


def _varint(data: bytes, pos: int, end: int, where: str) -> tuple[int, int]:
    result = shift = 0
    while pos < end and shift < 64:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
    raise ModelFormatError(f"{where}: corrupt varint at byte {pos} (truncated file?)")


def _block(data: bytes, handle: bytes | tuple[int, int], where: str) -> bytes:
    """The contents of the block a handle points at, after checking its trailer."""
    if isinstance(handle, bytes):
        offset, pos = _varint(handle, 0, len(handle), where)
        size, _ = _varint(handle, pos, len(handle), where)
    else:
        offset, size = handle
    limit = len(data) - FOOTER_SIZE
    if offset + size + BLOCK_TRAILER_SIZE > limit:
        raise ModelFormatError(
            f"{where}: a table block at bytes {offset}..{offset + size} lies past the end of "
            f"the index ({len(data)} bytes): the file is truncated or corrupt")
    kind = data[offset + size]
    if kind != 0:
        name = {1: "snappy", 2: "zlib"}.get(kind, f"type {kind}")
        raise ModelFormatError(
            f"{where}: a table block is {name}-compressed; tfless reads only uncompressed "
            "tensor bundle indexes (what TensorFlow writes)")
    stored = int.from_bytes(data[offset + size + 1:offset + size + 5], "little")
    if masked_crc32c(data[offset:offset + size + 1]) != stored:
        raise ModelFormatError(f"{where}: checksum mismatch in the table block at byte {offset}: "
                               "the file is corrupt")
    return data[offset:offset + size]


def _entries(block: bytes, where: str) -> list[tuple[bytes, bytes]]:
    """Key/value pairs of one block (keys are prefix-compressed against the previous key)."""
    if len(block) < 4:
        raise ModelFormatError(f"{where}: table block of {len(block)} bytes is too short")
    restarts = int.from_bytes(block[-4:], "little")
    end = len(block) - 4 - 4 * restarts
    if restarts < 1 or end < 0:
        raise ModelFormatError(f"{where}: table block declares {restarts} restart points, "
                               f"impossible in {len(block)} bytes")
    out: list[tuple[bytes, bytes]] = []
    key = b""
    pos = 0
    while pos < end:
        shared, pos = _varint(block, pos, end, where)
        unshared, pos = _varint(block, pos, end, where)
        value_len, pos = _varint(block, pos, end, where)
        if shared > len(key) or pos + unshared + value_len > end:
            raise ModelFormatError(f"{where}: corrupt table entry at block byte {pos}")
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        out.append((key, block[pos:pos + value_len]))
        pos += value_len
    return out


def read_table(data: bytes, where: str) -> dict[bytes, bytes]:
    """Every key/value pair of an SSTable held in memory."""
    if len(data) < FOOTER_SIZE:
        raise ModelFormatError(f"{where}: {len(data)} bytes is too short for a tensor bundle "
                               "index (truncated?)")
    footer = data[-FOOTER_SIZE:]
    if int.from_bytes(footer[-8:], "little") != TABLE_MAGIC:
        raise ModelFormatError(f"{where}: not a tensor bundle index (bad table magic number; "
                               "truncated or not a TensorFlow checkpoint?)")
    pos = 0
    handles = []
    for _ in range(4):  # metaindex offset, size; index offset, size
        value, pos = _varint(footer, pos, FOOTER_SIZE - 8, where)
        handles.append(value)
    index = _block(data, (handles[2], handles[3]), where)
    table: dict[bytes, bytes] = {}
    for _, handle in _entries(index, where):
        table.update(_entries(_block(data, handle, where), where))
    return table


class TensorBundle:
    """A checkpoint's tensors by name, read one at a time on request."""

    def __init__(self, prefix: Path, limits: Limits = DEFAULT_LIMITS) -> None:
        self.prefix = prefix
        self.limits = limits
        self.where = str(prefix.parent)
        index = prefix.with_name(prefix.name + ".index")
        if not index.is_file():
            raise ModelFormatError(f"{self.where}: no {index.name} (the SavedModel has no "
                                   "variables; copy the whole SavedModel directory)")
        if index.stat().st_size > limits.max_config_bytes:
            raise ModelFormatError(f"{index}: index file is larger than the config size limit")
        table = read_table(index.read_bytes(), str(index))
        if b"" not in table:
            raise ModelFormatError(f"{index}: tensor bundle index has no header entry")
        header = parse("BundleHeaderProto", table.pop(b""), str(index))
        if header.endianness != 0:
            raise ModelFormatError(f"{index}: big-endian tensor bundles are not supported")
        if not 1 <= header.num_shards <= MAX_SHARDS:
            raise ModelFormatError(f"{index}: header declares {header.num_shards} data shards")
        self.shards = [prefix.with_name(f"{prefix.name}.data-{i:05d}-of-{header.num_shards:05d}")
                       for i in range(header.num_shards)]
        self._raw = {key.decode("utf8", "replace"): value for key, value in table.items()}
        self._total = 0

    def keys(self) -> list[str]:
        return list(self._raw)

    def _entry(self, key: str) -> Any:
        if key not in self._raw:
            raise ModelFormatError(f"{self.where}: checkpoint has no tensor '{key}'")
        entry = parse("BundleEntryProto", self._raw[key], f"{self.where}: tensor '{key}'")
        if entry.slices:
            raise ModelFormatError(f"{self.where}: tensor '{key}' is stored in slices "
                                   "(a partitioned variable); tfless reads whole tensors only")
        return entry

    def _bytes(self, key: str, entry: Any) -> bytearray:
        """The stored bytes of one tensor, after checking its extent against its data file."""
        if not 0 <= entry.shard_id < len(self.shards):
            raise ModelFormatError(f"{self.where}: tensor '{key}' is in shard {entry.shard_id} "
                                   f"of {len(self.shards)}")
        shard = self.shards[entry.shard_id]
        try:
            file_size = shard.stat().st_size
        except OSError as exc:
            raise ModelFormatError(f"{self.where}: missing data file {shard.name}: {exc}") from exc
        if entry.offset < 0 or entry.size < 0 or entry.offset + entry.size > file_size:
            raise ModelFormatError(
                f"{self.where}: tensor '{key}' declares bytes {entry.offset}..{entry.offset + entry.size}"
                f" but {shard.name} has {file_size}: the data file is truncated or corrupt")
        self._total += entry.size
        self.limits.check_weight_bytes(self._total, self.where)
        buf = bytearray(entry.size)
        with shard.open("rb") as f:
            f.seek(entry.offset)
            if f.readinto(buf) != entry.size:
                raise ModelFormatError(f"{self.where}: short read of tensor '{key}'")
        return buf

    def array(self, key: str) -> np.ndarray:
        """A numeric tensor; floating point comes back as float32 as Keras computes it."""
        entry = self._entry(key)
        if entry.dtype not in DTYPES:
            raise ModelFormatError(f"{self.where}: tensor '{key}' has TensorFlow dtype enum "
                                   f"{entry.dtype}, which tfless does not read")
        if entry.shape.unknown_rank or len(entry.shape.dim) > MAX_RANK:
            raise ModelFormatError(f"{self.where}: tensor '{key}' has no usable shape")
        shape = tuple(int(d.size) for d in entry.shape.dim)
        if any(d < 0 for d in shape):
            raise ModelFormatError(f"{self.where}: tensor '{key}' has negative dimensions {shape}")
        dtype = np.dtype(DTYPES[entry.dtype])
        count = 1
        for d in shape:
            count *= d
        if count * dtype.itemsize != entry.size:
            raise ModelFormatError(
                f"{self.where}: tensor '{key}' of shape {shape} and dtype {dtype} needs "
                f"{count * dtype.itemsize} bytes but its index entry declares {entry.size}")
        raw = self._bytes(key, entry)
        if masked_crc32c(raw) != entry.crc32c:
            raise ModelFormatError(f"{self.where}: checksum mismatch in tensor '{key}': the "
                                   "data file is corrupt")
        arr = np.frombuffer(raw, dtype=dtype).reshape(shape)
        if entry.dtype == DT_BFLOAT16:
            return (arr.astype(np.uint32) << 16).view(np.float32)
        if arr.dtype.kind == "f" and arr.dtype != np.float32:
            return arr.astype(np.float32)
        return arr.astype(arr.dtype.newbyteorder("="), copy=False)

    def scalar_string(self, key: str) -> bytes:
        """A scalar string tensor: varint64 length, the masked CRC-32C of that length as a
        little-endian uint32 (uint64 past 4 GiB), then the bytes. The entry's CRC covers the
        length in that fixed-width form, the length CRC and the bytes."""
        entry = self._entry(key)
        if entry.dtype != DT_STRING or entry.shape.dim:
            raise ModelFormatError(f"{self.where}: tensor '{key}' is not a scalar string")
        raw = bytes(self._bytes(key, entry))
        length, pos = _varint(raw, 0, len(raw), f"{self.where}: tensor '{key}'")
        if pos + 4 + length != len(raw):
            raise ModelFormatError(f"{self.where}: string tensor '{key}' declares {length} bytes "
                                   f"in a {len(raw)}-byte record")
        fixed = length.to_bytes(4 if length < 2**32 else 8, "little")
        if masked_crc32c(fixed) != int.from_bytes(raw[pos:pos + 4], "little") or \
                masked_crc32c(fixed + raw[pos:]) != entry.crc32c:
            raise ModelFormatError(f"{self.where}: checksum mismatch in string tensor '{key}'")
        return raw[pos + 4:]
