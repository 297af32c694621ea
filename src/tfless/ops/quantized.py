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


# ----- Keras 3 quantized layers (`model.quantize("int8" | "int4" | "float8")`) -----------------
KERAS_MODES = ("int8", "int4", "float8")
# Extra variables each mode saves after the float ones, in Keras's serialization order
# (`variable_serialization_spec`); int4 zero points and group indexes only when grouped.
KERAS_EXTRA_WEIGHTS = {
    "int8": ("{w}_scale",),
    "int4": ("{w}_scale",),
    "int4_grouped": ("{w}_scale", "{w}_zero", "g_idx"),
    "float8": ("inputs_scale", "inputs_amax_history", "{w}_scale", "{w}_amax_history",
               "outputs_grad_scale", "outputs_grad_amax_history"),
}


KERAS_QUANTIZED_MODES = ("int8", "int4", "float8", "gptq", "awq")


def keras_quantization(config: dict) -> dict | None:
    """What `model.quantize()` recorded in a layer config: mode, int4 block size, and the
    input (activation) quantizer, or None for a float layer."""
    policy = config.get("dtype")
    mode = ""
    if isinstance(policy, dict):
        mode = str((policy.get("config") or {}).get("mode") or "")
    elif isinstance(policy, str):
        mode = policy.split("_from_")[0]
    base, _, block = mode.partition("/")
    qconfig = config.get("quantization_config")
    inner = qconfig.get("config") or {} if isinstance(qconfig, dict) else {}
    if base not in KERAS_QUANTIZED_MODES:
        # A float policy ("float32", "mixed_float16", tf_keras's plain dtype strings) computes
        # in float even where quantize() recorded a config (an Embedding skips float8).
        return None
    block_size = inner.get("block_size", int(block) if block.lstrip("-").isdigit() else None)
    activation = inner.get("activation_quantizer", "default") if inner else "default"
    return {"mode": base, "block_size": block_size, "activation": activation}


def keras_weight_names(config: dict, float_names: list[str], weight: str) -> list[str]:
    """The stored variable names of a quantized layer (`weight` = "kernel"/"embeddings")."""
    q = keras_quantization(config)
    assert q is not None
    key = q["mode"]
    if key == "int4" and q["block_size"] not in (None, -1):
        key = "int4_grouped"
    return [*float_names, *(n.format(w=weight) for n in KERAS_EXTRA_WEIGHTS[key])]


def keras_abs_max_quantize(x: np.ndarray, value_range: tuple[int, int] = (-127, 127),
                           epsilon: float = 1e-7) -> tuple[np.ndarray, np.ndarray]:
    """Keras's AbsMaxQuantizer over the last axis: scale = hi / (max|x| + eps) in float32,
    values round(x * scale) (half to even, as ops.round) clipped to the range."""
    x = np.asarray(x, F32)
    scale = (F32(value_range[1]) / (np.max(np.abs(x), axis=-1, keepdims=True) + F32(epsilon))
             ).astype(F32)
    q = np.clip(np.round(x * scale), value_range[0], value_range[1])
    return q.astype(F32), scale


def unpack_int4(packed: np.ndarray, length: int, axis: int = -1) -> np.ndarray:
    """Keras's int4 packing: two signed nibbles per int8 byte along `axis`, the first
    value in the low nibble; a padded odd length is cut back to `length`."""
    b = np.asarray(packed).astype(np.int8)
    low = ((b.astype(np.int16) << 12) >> 12).astype(np.int8)   # sign-extend the low nibble
    high = (b >> 4).astype(np.int8)
    pair = np.stack([low, high], axis=axis % b.ndim + 1)
    shape = list(b.shape)
    shape[axis % b.ndim] *= 2
    out = pair.reshape(shape)
    return np.take(out, np.arange(length), axis=axis)


def round_to_float8_e4m3fn(x: np.ndarray) -> np.ndarray:
    """Round float32 values (already within +-448) to float8 e4m3fn, ties to even:
    3 mantissa bits, smallest normal exponent -6, subnormal step 2**-9."""
    x = np.asarray(x, F32)
    _, exponent = np.frexp(np.abs(x))
    step = np.ldexp(F32(1), np.maximum(exponent - 1, -6) - 3).astype(F32)
    q = np.round(np.abs(x) / step) * step
    return np.copysign(np.minimum(q, F32(448)), x).astype(F32)


def round_to_bfloat16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 -> float32, round to nearest even (finite values)."""
    bits = np.ascontiguousarray(x, F32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.astype(np.uint32).view(F32)


def _qdq_float8(x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    s = np.asarray(scale, F32)
    return (round_to_float8_e4m3fn(np.clip(np.asarray(x, F32) / s, -448, 448)) * s).astype(F32)


def _grouped(q: np.ndarray, scale: np.ndarray, zero: np.ndarray, g_idx: np.ndarray,
             axis: int) -> np.ndarray:
    groups = np.asarray(g_idx).astype(np.int64)
    s = np.take(np.asarray(scale, F32), groups, axis=axis)
    z = np.take(np.asarray(zero).astype(F32), groups, axis=axis)
    return ((q.astype(F32) - z) * s).astype(F32)


def keras_quantized_kernel(config: dict, weights: dict, units: int
                           ) -> tuple[str, np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """A quantized Dense kernel as Keras 3 computes with it: (mode, kernel, product) where
    product(x) = the layer's output before bias and activation."""
    q = keras_quantization(config)
    assert q is not None
    mode, name = q["mode"], config.get("name", "")
    kernel = np.asarray(weights["kernel"])
    if mode == "float8":
        w8 = _qdq_float8(kernel, weights["kernel_scale"])
        in_scale = np.asarray(weights["inputs_scale"], F32)
        return mode, w8, lambda x: (_qdq_float8(x, in_scale) @ w8).astype(F32)
    if mode == "int4":
        kernel = unpack_int4(kernel, units, axis=-1)
    grouped = mode == "int4" and q["block_size"] not in (None, -1)
    if grouped:
        w = _grouped(kernel, weights["kernel_scale"], weights["kernel_zero"],
                     weights["g_idx"], axis=0)
        return mode, w, lambda x: (np.asarray(x, F32) @ w).astype(F32)
    scale = np.asarray(weights["kernel_scale"], F32)
    wf = kernel.astype(np.float64)
    activation = q["activation"]
    if mode == "int8" and activation == "default":
        activation = {"config": {}}
    if activation in (None, "default"):
        wk = kernel.astype(F32)
        return mode, wk, lambda x: ((np.asarray(x, F32) @ wk) / scale).astype(F32)
    acfg = activation.get("config") or {}
    value_range = tuple(int(v) for v in acfg.get("value_range", (-127, 127)))
    epsilon = float(acfg.get("epsilon", 1e-7))
    if activation.get("class_name", "AbsMaxQuantizer") != "AbsMaxQuantizer":
        from ..errors import UnsupportedLayer

        raise UnsupportedLayer(f"layer '{name}': activation quantizer "
                               f"{activation.get('class_name')} is not supported; supported: "
                               "AbsMaxQuantizer")

    def product(x: np.ndarray) -> np.ndarray:
        xq, xs = keras_abs_max_quantize(x, value_range, epsilon)
        # Integer products summed exactly (float64 is exact here), then one float32 divide.
        acc = (xq.astype(np.float64) @ wf).astype(F32)
        return (acc / (scale * xs)).astype(F32)

    return mode, kernel, product


def keras_quantized_table(config: dict, weights: dict) -> np.ndarray:
    """A quantized Embedding table dequantized as Keras's int8/int4 lookups compute it."""
    q = keras_quantization(config)
    assert q is not None
    table = np.asarray(weights["embeddings"])
    dim = int(config.get("output_dim") or table.shape[1])
    if q["mode"] == "int4":
        table = unpack_int4(table, dim, axis=-1)
        if q["block_size"] not in (None, -1):
            return _grouped(table, weights["embeddings_scale"], weights["embeddings_zero"],
                            weights["g_idx"], axis=-1)
    scale = np.asarray(weights["embeddings_scale"], F32)
    return (table.astype(F32) / scale[:, None]).astype(F32)


def runs_keras_quantized(op: str, config: dict) -> bool:
    """A Dense/EinsumDense/Embedding node that computes with Keras's quantized arithmetic (exporters
    that read the float weights directly must refuse it)."""
    return op in ("Dense", "Embedding", "EinsumDense") and keras_quantization(config) is not None


def keras_quantized_einsum(config: dict, weights: dict) -> Callable[[np.ndarray], np.ndarray]:
    """EinsumDense in int8 or float8 mode: its output before bias and activation. int8
    quantizes the input with AbsMax over the contracted input axes; the stored
    kernel_scale is already laid out to broadcast over the output."""
    from ..errors import UnsupportedLayer

    q = keras_quantization(config)
    assert q is not None
    name, equation = config.get("name", ""), str(config["equation"])
    kernel = np.asarray(weights["kernel"])
    if q["mode"] == "float8":
        w8 = _qdq_float8(kernel, weights["kernel_scale"])
        in_scale = np.asarray(weights["inputs_scale"], F32)
        return lambda x: np.einsum(equation, _qdq_float8(x, in_scale), w8).astype(F32)
    lhs, _, out = equation.partition("->")
    left, _, _ = lhs.partition(",")
    if "." in equation or not out:
        raise UnsupportedLayer(f"layer '{name}': quantized EinsumDense with equation "
                               f"'{equation}' is not supported (explicit axes only)")
    reduced = tuple(i for i, ch in enumerate(left) if ch not in out)
    kept = "".join(ch for ch in left if ch in out)
    kernel_scale = np.asarray(weights["kernel_scale"], F32)
    wf = kernel.astype(np.float64)
    activation = q["activation"]
    if activation in (None,) or (isinstance(activation, dict) and not activation):
        return lambda x: (np.einsum(equation, np.asarray(x, np.float64), wf).astype(F32)
                          / kernel_scale).astype(F32)
    acfg = (activation.get("config") or {}) if isinstance(activation, dict) else {}
    value_range = tuple(int(v) for v in acfg.get("value_range", (-127, 127)))
    epsilon = F32(acfg.get("epsilon", 1e-7))

    def product(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, F32)
        scale = (F32(value_range[1]) / (np.max(np.abs(x), axis=reduced, keepdims=True)
                                        + epsilon)).astype(F32)
        xq = np.clip(np.round(x * scale), value_range[0], value_range[1])
        # The input scale, laid out over the output axes (size 1 where it does not vary).
        s = np.squeeze(scale, axis=reduced)
        order = sorted(kept, key=out.index)
        s = np.einsum(f"{kept}->{''.join(order)}", s)
        s = s.reshape([s.shape[order.index(ch)] if ch in kept else 1 for ch in out])
        acc = np.einsum(equation, xq.astype(np.float64), wf).astype(F32)
        return (acc / (s * kernel_scale)).astype(F32)

    return product
