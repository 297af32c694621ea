"""The string hashes Keras's hashing and lookup layers use, written from the public algorithms.

* FarmHash Fingerprint64 (farmhash "na" Hash64, little-endian): TensorFlow's
  `tf.strings.to_hash_bucket_fast` and `tf.fingerprint`.
* SipHash-2-4 with a 128-bit key: `tf.strings.to_hash_bucket_strong` (Keras's `salt`).
* FingerprintCat64: how `tf.sparse.cross_hashed` (HashedCrossing) chains fingerprints.

Strings have no fixed width, so each distinct value is hashed once in Python (unsigned
64-bit arithmetic masked to 64 bits) and the results are spread back with NumPy.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

import numpy as np

M64 = (1 << 64) - 1
K0 = 0xC3A5C85C97CB3127
K1 = 0xB492B66FBE98F273
K2 = 0x9AE16A3B2F90404F
CAT_MUL = 0xC6A4A7935BD1E995
CROSS_DEFAULT_KEY = 0xDECAFCAFFE  # tf.sparse.cross_hashed's default hash key


def _f64(s: bytes, i: int) -> int:
    return struct.unpack_from("<Q", s, i)[0]


def _f32(s: bytes, i: int) -> int:
    return struct.unpack_from("<I", s, i)[0]


def _rot(v: int, shift: int) -> int:
    return v if shift == 0 else ((v >> shift) | (v << (64 - shift))) & M64


def _shift_mix(v: int) -> int:
    return v ^ (v >> 47)


def _len16(u: int, v: int, mul: int) -> int:
    a = ((u ^ v) * mul) & M64
    a ^= a >> 47
    b = ((v ^ a) * mul) & M64
    b ^= b >> 47
    return (b * mul) & M64


def _len0to16(s: bytes) -> int:
    n = len(s)
    if n >= 8:
        mul = K2 + n * 2
        a = (_f64(s, 0) + K2) & M64
        b = _f64(s, n - 8)
        c = (_rot(b, 37) * mul + a) & M64
        d = ((_rot(a, 25) + b) * mul) & M64
        return _len16(c, d, mul)
    if n >= 4:
        mul = K2 + n * 2
        return _len16(n + (_f32(s, 0) << 3), _f32(s, n - 4), mul)
    if n > 0:
        y = (s[0] + (s[n >> 1] << 8)) & 0xFFFFFFFF
        z = (n + (s[n - 1] << 2)) & 0xFFFFFFFF
        return (_shift_mix(((y * K2) ^ (z * K0)) & M64) * K2) & M64
    return K2


def _len17to32(s: bytes) -> int:
    n = len(s)
    mul = K2 + n * 2
    a = (_f64(s, 0) * K1) & M64
    b = _f64(s, 8)
    c = (_f64(s, n - 8) * mul) & M64
    d = (_f64(s, n - 16) * K2) & M64
    return _len16((_rot((a + b) & M64, 43) + _rot(c, 30) + d) & M64,
                  (a + _rot((b + K2) & M64, 18) + c) & M64, mul)


def _len33to64(s: bytes) -> int:
    n = len(s)
    mul = K2 + n * 2
    a = (_f64(s, 0) * K2) & M64
    b = _f64(s, 8)
    c = (_f64(s, n - 8) * mul) & M64
    d = (_f64(s, n - 16) * K2) & M64
    y = (_rot((a + b) & M64, 43) + _rot(c, 30) + d) & M64
    z = _len16(y, (a + _rot((b + K2) & M64, 18) + c) & M64, mul)
    e = (_f64(s, 16) * mul) & M64
    f = _f64(s, 24)
    g = ((y + _f64(s, n - 32)) * mul) & M64
    h = ((z + _f64(s, n - 24)) * mul) & M64
    return _len16((_rot((e + f) & M64, 43) + _rot(g, 30) + h) & M64,
                  (e + _rot((f + a) & M64, 18) + g) & M64, mul)


def _weak32(s: bytes, i: int, a: int, b: int) -> tuple[int, int]:
    w, x, y, z = _f64(s, i), _f64(s, i + 8), _f64(s, i + 16), _f64(s, i + 24)
    a = (a + w) & M64
    b = _rot((b + a + z) & M64, 21)
    c = a
    a = (a + x + y) & M64
    b = (b + _rot(a, 44)) & M64
    return (a + z) & M64, (b + c) & M64


def fingerprint64(s: bytes) -> int:
    """FarmHash Fingerprint64 of `s` as an unsigned 64-bit integer."""
    n = len(s)
    if n <= 16:
        return _len0to16(s)
    if n <= 32:
        return _len17to32(s)
    if n <= 64:
        return _len33to64(s)
    seed = 81
    x = seed
    y = (seed * K1 + 113) & M64
    z = (_shift_mix((y * K2 + 113) & M64) * K2) & M64
    v = (0, 0)
    w = (0, 0)
    x = (x * K2 + _f64(s, 0)) & M64
    end = ((n - 1) // 64) * 64
    last64 = end + ((n - 1) & 63) - 63
    pos = 0
    while True:
        x = (_rot((x + y + v[0] + _f64(s, pos + 8)) & M64, 37) * K1) & M64
        y = (_rot((y + v[1] + _f64(s, pos + 48)) & M64, 42) * K1) & M64
        x ^= w[1]
        y = (y + v[0] + _f64(s, pos + 40)) & M64
        z = (_rot((z + w[0]) & M64, 33) * K1) & M64
        v = _weak32(s, pos, (v[1] * K1) & M64, (x + w[0]) & M64)
        w = _weak32(s, pos + 32, (z + w[1]) & M64, (y + _f64(s, pos + 16)) & M64)
        z, x = x, z
        pos += 64
        if pos == end:
            break
    mul = K1 + ((z & 0xFF) << 1)
    pos = last64
    w0 = (w[0] + ((n - 1) & 63)) & M64
    v0 = (v[0] + w0) & M64
    w0 = (w0 + v0) & M64
    v, w = (v0, v[1]), (w0, w[1])
    x = (_rot((x + y + v[0] + _f64(s, pos + 8)) & M64, 37) * mul) & M64
    y = (_rot((y + v[1] + _f64(s, pos + 48)) & M64, 42) * mul) & M64
    x ^= (w[1] * 9) & M64
    y = (y + v[0] * 9 + _f64(s, pos + 40)) & M64
    z = (_rot((z + w[0]) & M64, 33) * mul) & M64
    v = _weak32(s, pos, (v[1] * mul) & M64, (x + w[0]) & M64)
    w = _weak32(s, pos + 32, (z + w[1]) & M64, (y + _f64(s, pos + 16)) & M64)
    z, x = x, z
    return _len16((_len16(v[0], w[0], mul) + _shift_mix(y) * K0 + z) & M64,
                  (_len16(v[1], w[1], mul) + x) & M64, mul)


def _sip_round(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
    v0 = (v0 + v1) & M64
    v1 = _rot(v1, 64 - 13) ^ v0
    v0 = _rot(v0, 64 - 32)
    v2 = (v2 + v3) & M64
    v3 = _rot(v3, 64 - 16) ^ v2
    v0 = (v0 + v3) & M64
    v3 = _rot(v3, 64 - 21) ^ v0
    v2 = (v2 + v1) & M64
    v1 = _rot(v1, 64 - 17) ^ v2
    v2 = _rot(v2, 64 - 32)
    return v0, v1, v2, v3


def siphash24(key: Sequence[int], s: bytes) -> int:
    """SipHash-2-4 of `s` under the 128-bit key (k0, k1), as an unsigned 64-bit integer."""
    k0, k1 = int(key[0]) & M64, int(key[1]) & M64
    v0, v1 = k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D
    v2, v3 = k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573
    n = len(s)
    tail = n - n % 8
    for i in range(0, tail, 8):
        m = _f64(s, i)
        v3 ^= m
        v0, v1, v2, v3 = _sip_round(*_sip_round(v0, v1, v2, v3))
        v0 ^= m
    m = ((n & 0xFF) << 56) | int.from_bytes(s[tail:], "little")
    v3 ^= m
    v0, v1, v2, v3 = _sip_round(*_sip_round(v0, v1, v2, v3))
    v0 ^= m
    v2 ^= 0xFF
    for _ in range(4):
        v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


def fingerprint_cat64(fp1: int, fp2: int) -> int:
    """Combine two fingerprints as tf.sparse.cross_hashed does."""
    result = fp1 ^ CAT_MUL
    result ^= (_shift_mix((fp2 * CAT_MUL) & M64) * CAT_MUL) & M64
    result = (result * CAT_MUL) & M64
    result = (_shift_mix(result) * CAT_MUL) & M64
    return _shift_mix(result)


def as_tf_strings(values: np.ndarray) -> np.ndarray:
    """What `tf.as_string` gives for a tensor, as an object array of `str` (floats are
    truncated to int64 first, as Keras's Hashing does)."""
    if values.dtype == object:
        return values
    if values.dtype.kind == "f":
        values = values.astype(np.int64)
    if values.dtype.kind == "b":
        return np.where(values, "true", "false").astype(object)
    return values.astype(str).astype(object)


def hash_buckets(values: np.ndarray, num_buckets: int,
                 hash_bytes: Callable[[bytes], int]) -> np.ndarray:
    """`hash(value) % num_buckets` (int64) for an object array of `str`, hashing each distinct
    value once."""
    flat = values.reshape(-1)
    if flat.size == 0:
        return np.zeros(values.shape, dtype=np.int64)
    unique, inverse = np.unique(flat, return_inverse=True)
    table = np.array([hash_bytes(str(u).encode("utf-8")) % num_buckets for u in unique],
                     dtype=np.int64)
    return table[inverse].reshape(values.shape)


def keyed(key: Sequence[int] | None) -> Callable[[bytes], int]:
    """Fingerprint64 without a key (to_hash_bucket_fast), SipHash with one (..._strong)."""
    if key is None:
        return fingerprint64
    return lambda s: siphash24(key, s)
