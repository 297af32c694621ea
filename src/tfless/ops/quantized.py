"""Integer arithmetic of quantized models, shared by the TFLite int8 kernels and Keras's
quantized layers.

Everything here follows the definitions of TFLite's reference kernels (and gemmlowp's
fixed-point helpers they build on), vectorized over NumPy int64 arrays:

- a real multiplier becomes a 32-bit fixed-point multiplier and a power-of-two shift
  (`quantize_multiplier`);
- an int32 accumulator is rescaled by it (`multiply_by_quantized_multiplier`) either with
  two roundings (a saturating rounding doubling high multiply, then a rounding right
  shift: TFLite's default build) or with one (the `TFLITE_SINGLE_ROUNDING` build, and
  ruy's GEMM output stage);
- fused activations become clamp ranges in the quantized domain (`activation_range`);
- float <-> integer conversion rounds half away from zero (`std::round`), as TFLite does.

NumPy's `np.round` rounds half to even, so `round_half_away` exists for the C rounding.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

I32_MIN = -(1 << 31)
I32_MAX = (1 << 31) - 1
F32 = np.float32


def int_range(dtype: np.dtype | str) -> tuple[int, int]:
    info = np.iinfo(np.dtype(dtype))
    return int(info.min), int(info.max)


def round_half_away(x: np.ndarray) -> np.ndarray:
    """C's round(): halves go away from zero (NumPy's round goes to even)."""
    return np.copysign(np.floor(np.abs(x) + 0.5), x)


def quantize_multiplier(real: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """(multiplier, shift) with real ~= multiplier * 2**(shift - 31), multiplier in
    [2**30, 2**31) (or 0 for a zero/tiny real), computed from the float64 real value."""
    r = np.asarray(real, np.float64)
    mantissa, shift = np.frexp(r)
    fixed = round_half_away(mantissa * float(1 << 31)).astype(np.int64)
    carry = fixed == (1 << 31)
    fixed = np.where(carry, fixed // 2, fixed)
    shift = np.where(carry, shift + 1, shift).astype(np.int64)
    tiny = (shift < -31) | (r == 0)
    fixed = np.where(tiny, 0, fixed)
    shift = np.where(tiny, 0, shift)
    # Multipliers of 2**30 or more cannot be represented: TFLite saturates them.
    big = shift > 30
    fixed = np.where(big, I32_MAX, fixed)
    shift = np.where(big, 30, shift)
    return fixed.astype(np.int64), shift.astype(np.int64)


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The high 32 bits of 2*a*b, rounded to nearest (ties away from zero), saturated."""
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    v = ab + nudge
    # C division truncates toward zero.
    high = np.where(v >= 0, v >> 31, -((-v) >> 31))
    overflow = (a == I32_MIN) & (b == I32_MIN)
    return np.where(overflow, I32_MAX, high)


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray | int) -> np.ndarray:
    """x / 2**exponent rounded to nearest, ties away from zero."""
    x = np.asarray(x, np.int64)
    e = np.asarray(exponent, np.int64)
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def multiply_by_quantized_multiplier(x: np.ndarray, multiplier: np.ndarray,
                                     shift: np.ndarray, single_rounding: bool = False
                                     ) -> np.ndarray:
    """x * multiplier * 2**(shift - 31) rounded as TFLite does, as int64 (int32 range).
    `multiplier`/`shift` broadcast against x (per-channel rescaling)."""
    x = np.asarray(x, np.int64)
    m = np.asarray(multiplier, np.int64)
    s = np.asarray(shift, np.int64)
    if single_rounding:
        total = 31 - s
        v = x * m + (np.int64(1) << (total - 1))
        return np.clip(v >> total, I32_MIN, I32_MAX)
    left = np.maximum(s, 0)
    right = np.maximum(-s, 0)
    # The left shift happens in int32 in C; it wraps there (never for real models).
    shifted = ((x << left) + (1 << 31)) % (1 << 32) - (1 << 31)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, m), right)


def multiply_smaller_than_one(x: np.ndarray, multiplier: np.ndarray, shift: np.ndarray,
                              single_rounding: bool = False) -> np.ndarray:
    """TFLite's MultiplyByQuantizedMultiplierSmallerThanOneExp (shift <= 0)."""
    if single_rounding:
        return multiply_by_quantized_multiplier(x, multiplier, shift, True)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, multiplier),
                                  -np.asarray(shift, np.int64))


def quantize_value(value: float, scale: float, zero_point: int) -> int:
    """One float in the quantized domain, float32 arithmetic as TFLite's Quantize helper."""
    return int(zero_point) + int(round_half_away(np.float32(value) / np.float32(scale)))


# ActivationFunctionType codes -> the float range they clamp to (None: unbounded side).
ACTIVATION_BOUNDS: dict[int, tuple[float | None, float | None]] = {
    0: (None, None), 1: (0.0, None), 2: (-1.0, 1.0), 3: (0.0, 6.0),
}


def activation_range(code: int, scale: float, zero_point: int, dtype: np.dtype | str
                     ) -> tuple[int, int] | None:
    """The [lo, hi] integer clamp of a fused activation on a quantized output, or None
    when the activation has no quantized clamp form (TANH, SIGN_BIT)."""
    if code not in ACTIVATION_BOUNDS:
        return None
    qmin, qmax = int_range(dtype)
    low, high = ACTIVATION_BOUNDS[code]
    lo = qmin if low is None else max(qmin, quantize_value(low, scale, zero_point))
    hi = qmax if high is None else min(qmax, quantize_value(high, scale, zero_point))
    return lo, hi


def quantize(x: np.ndarray, scale: np.ndarray | float, zero_point: np.ndarray | int,
             dtype: np.dtype | str) -> np.ndarray:
    """float -> integer: round(x / scale) + zero_point, saturated (TFLite QUANTIZE)."""
    q = round_half_away(np.asarray(x, F32) / np.asarray(scale, F32)).astype(np.int64)
    lo, hi = int_range(dtype)
    return np.clip(q + np.asarray(zero_point, np.int64), lo, hi).astype(dtype)


def dequantize(q: np.ndarray, scale: np.ndarray | float, zero_point: np.ndarray | int
               ) -> np.ndarray:
    """integer -> float32: scale * (q - zero_point), the product formed in float64 as
    TFLite's DEQUANTIZE does, then rounded once to float32."""
    diff = np.asarray(q, np.int64) - np.asarray(zero_point, np.int64)
    return (np.asarray(scale, np.float64) * diff).astype(F32)


def lookup_table(fn: Callable[[np.ndarray], np.ndarray], in_scale: float, in_zero: int,
                 out_scale: float, out_zero: int, dtype: np.dtype | str) -> np.ndarray:
    """The 256-entry table TFLite builds for an 8-bit elementwise function (LOGISTIC,
    TANH, ...), indexed by `q - qmin`: dequantize in float32, apply, requantize."""
    lo, hi = int_range(dtype)
    q = np.arange(lo, hi + 1, dtype=np.int64)
    real = F32(in_scale) * (q - in_zero).astype(F32)
    transformed = np.asarray(fn(real.astype(F32)), F32)
    rescaled = round_half_away(transformed * (F32(1) / F32(out_scale)))
    return np.clip(rescaled.astype(np.int64) + out_zero, lo, hi).astype(dtype)


def symmetric_quantize_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row int8 quantization of float rows (TFLite's hybrid kernels): scale =
    max|x| / 127, values round(x * 127 / max|x|) in [-127, 127]; an all-zero row has
    scale 1 and zeros. Returns (int8 rows as int64, float32 scales)."""
    x = np.asarray(x, F32)
    rng = np.max(np.abs(x), axis=-1)
    zero = rng == 0
    safe = np.where(zero, F32(1), rng)
    inv = (F32(127) / safe).astype(F32)
    q = round_half_away(x * inv[..., None]).astype(np.int64)
    q = np.clip(q, -127, 127)
    q[zero] = 0
    scale = np.where(zero, F32(1), (safe / F32(127)).astype(F32))
    return q, scale.astype(F32)


def asymmetric_quantize_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row asymmetric int8 quantization (hybrid kernels with
    asymmetric_quantize_inputs): the range always includes 0; returns (q, scale, zero)."""
    x = np.asarray(x, F32)
    lo = np.minimum(np.min(x, axis=-1), F32(0)).astype(np.float64)
    hi = np.maximum(np.max(x, axis=-1), F32(0)).astype(np.float64)
    qmin, qmax = -128.0, 127.0
    same = lo == hi
    scale = np.where(same, 1.0, (hi - lo) / (qmax - qmin))
    zp_from_min = qmin - lo / scale
    zp_from_max = qmax - hi / scale
    err_min = abs(qmin) + np.abs(lo / scale)
    err_max = abs(qmax) + np.abs(hi / scale)
    zp_real = np.where(err_min < err_max, zp_from_min, zp_from_max)
    zero = np.where(zp_real <= qmin, qmin, np.where(zp_real >= qmax, qmax,
                                                     round_half_away(zp_real)))
    zero = np.where(same, 0, zero).astype(np.int64)
    scale32 = np.where(same, 1.0, scale).astype(F32)
    inv = (F32(1) / scale32).astype(F32)
    shifted = zero[..., None].astype(F32) + x * inv[..., None]
    q = np.clip(round_half_away(shifted).astype(np.int64), -128, 127)
    q[same] = 0
    return q, scale32, zero
