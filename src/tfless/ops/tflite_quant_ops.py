"""Quantized TFLite builtins without weights: pooling, MEAN/SUM, ADD/SUB/MUL, lookup-table
activations, SOFTMAX, QUANTIZE/DEQUANTIZE and the data-movement operators, registered as
`tflite.quantized.<BUILTIN_NAME>` on the `QuantOp` machinery of `ops/tflite_quant.py`
(which holds the weight-bearing kernels; split for size).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import InputError
from . import tflite_shapes as float_ops
from .quantized import (
    dequantize,
    int_range,
    lookup_table,
    multiply_by_quantized_multiplier,
    multiply_smaller_than_one,
    quantize,
    quantize_multiplier,
    round_half_away,
)
from .tflite import Compute
from .tflite_quant import F32, F64, SINGLE_ROUNDING, QuantOp, _check_dtype, quant_op


# ----- pooling and reductions ------------------------------------------------------------
def _pool(kind: str) -> Callable[[QuantOp], Compute]:
    def make(op: QuantOp) -> Compute:
        size = (int(op.options.get("filter_h", 0)), int(op.options.get("filter_w", 0)))
        geo = op.geometry(size)
        _, _, in_dtype = op.activation_q(0)
        lo, hi = op.clamp_range()

        def compute(x: np.ndarray) -> np.ndarray:
            if x.ndim != 4:
                raise InputError(f"{op.where}: expects a rank-4 NHWC input, got {x.shape}")
            _check_dtype(op, x, in_dtype)
            pads = geo.pads(x.shape[1:-1])
            xi = x.astype(np.int64)
            fill = np.iinfo(np.int64).min if kind == "max" else 0
            xp = np.pad(xi, [(0, 0), *pads, (0, 0)], constant_values=fill)
            ones = np.pad(np.ones((1, *x.shape[1:-1], 1), np.int64), [(0, 0), *pads, (0, 0)])
            out = geo.out_sizes(xp.shape[1:-1])
            acc: np.ndarray | None = None
            count: np.ndarray | None = None
            for tap in np.ndindex(*geo.kernel):
                index = (slice(None), *geo.tap_slices(tap, out))
                view, real = xp[index], ones[index]
                if acc is None:
                    acc, count = view.copy(), real.copy()
                elif kind == "max":
                    np.maximum(acc, view, out=acc)
                else:
                    acc += view
                    count += real
            assert acc is not None and count is not None
            if kind == "avg":
                # Round half away from zero, then C's truncating division.
                half = count // 2
                num = np.where(acc > 0, acc + half, acc - half)
                acc = np.where(num >= 0, num // count, -((-num) // count))
            return np.clip(acc, lo, hi).astype(x.dtype)

        return compute

    return make


quant_op("MAX_POOL_2D")(_pool("max"))
quant_op("AVERAGE_POOL_2D")(_pool("avg"))


@quant_op("MEAN", "SUM")
def mean(op: QuantOp) -> Compute:
    in_scale, in_zero, in_dtype = op.activation_q(0)
    out_scale, out_zero, out_dtype = op.output_q()
    keep = bool(op.options.get("keep_dims", False))
    lo, hi = int_range(out_dtype)
    multiplier, shift = (int(v) for v in quantize_multiplier(F64(in_scale) / F64(out_scale)))
    is_sum = op.code == "SUM"

    def compute(x: np.ndarray, axes: np.ndarray) -> np.ndarray:
        _check_dtype(op, x, in_dtype)
        axis = float_ops._axes(axes, x.ndim)
        count = int(np.prod([x.shape[a] for a in axis]))
        total = np.sum(x.astype(np.int64), axis=axis, keepdims=keep)
        if count == 0:
            return np.zeros(total.shape, out_dtype)
        if keep and x.ndim == 4 and axis == (1, 2) and not is_sum:
            # LiteRT's optimized int8/uint8 4-D spatial mean: one rescale of the raw sum
            # by in_scale / (count * out_scale), the zero points folded into one bias.
            t = F32(F32(in_zero) * F32(in_scale) / F32(out_scale))
            t = t + F32(0.5) if t > 0 else t - F32(0.5)
            bias = out_zero - int(t)
            m, s = (int(v) for v in quantize_multiplier(
                F64(F32(in_scale) / F32(F32(count) * F32(out_scale)))))
            y = multiply_by_quantized_multiplier(total, m, s, SINGLE_ROUNDING) + bias
            return np.clip(y, lo, hi).astype(out_dtype)
        mult, sh = multiplier, shift
        if not is_sum:
            bits = min(count.bit_length() - 1, 32, 31 + sh)
            mult = (mult << bits) // count
            sh = sh - bits
        centered = total - in_zero * count
        y = multiply_by_quantized_multiplier(centered, mult, sh, SINGLE_ROUNDING) + out_zero
        return np.clip(y, lo, hi).astype(out_dtype)

    return compute


# ----- elementwise arithmetic ------------------------------------------------------------
@quant_op("ADD", "SUB")
def add(op: QuantOp) -> Compute:
    s1, z1, dtype = op.activation_q(0)
    s2, z2, _ = op.activation_q(1)
    so, zo, _ = op.output_q()
    lo, hi = op.clamp_range()
    left = 20
    twice = 2 * max(F64(s1), F64(s2))
    m1, sh1 = quantize_multiplier(F64(s1) / twice)
    m2, sh2 = quantize_multiplier(F64(s2) / twice)
    mo, sho = quantize_multiplier(twice / (F64(1 << left) * F64(so)))
    sign = -1 if op.code == "SUB" else 1

    def operand(i: int, x: Any) -> np.ndarray:
        a = np.asarray(x)
        if a.dtype != np.dtype(dtype):
            raise InputError(f"{op.where}: input {i} must be {dtype}, got {a.dtype}")
        return a.astype(np.int64)

    def compute(a: Any, b: Any) -> np.ndarray:
        x1 = (operand(0, a) - z1) * (1 << left)
        x2 = (operand(1, b) - z2) * (1 << left)
        y1 = multiply_smaller_than_one(x1, m1, sh1, SINGLE_ROUNDING)
        y2 = multiply_smaller_than_one(x2, m2, sh2, SINGLE_ROUNDING)
        raw = multiply_smaller_than_one(y1 + sign * y2, mo, sho, SINGLE_ROUNDING) + zo
        return np.clip(raw, lo, hi).astype(dtype)

    return compute


@quant_op("MUL")
def mul(op: QuantOp) -> Compute:
    s1, z1, dtype = op.activation_q(0)
    s2, z2, _ = op.activation_q(1)
    so, zo, _ = op.output_q()
    lo, hi = op.clamp_range()
    m, sh = quantize_multiplier(F64(s1) * F64(s2) / F64(so))

    def compute(a: Any, b: Any) -> np.ndarray:
        prod = (np.asarray(a, np.int64) - z1) * (np.asarray(b, np.int64) - z2)
        y = multiply_by_quantized_multiplier(prod, m, sh, SINGLE_ROUNDING) + zo
        return np.clip(y, lo, hi).astype(dtype)

    return compute


# ----- activations -----------------------------------------------------------------------
def _table_op(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[QuantOp], Compute]:
    def make(op: QuantOp) -> Compute:
        s_in, z_in, dtype = op.activation_q(0)
        s_out, z_out, out_dtype = op.output_q()
        if out_dtype != dtype:
            raise op.refuse(f"{dtype} input with {out_dtype} output")
        table = lookup_table(fn, s_in, z_in, s_out, z_out, dtype)
        offset = int_range(dtype)[0]

        def compute(x: np.ndarray) -> np.ndarray:
            _check_dtype(op, x, dtype)
            return table[x.astype(np.int64) - offset]

        return compute

    return make


def _logistic(v: np.ndarray) -> np.ndarray:
    return (F32(1) / (F32(1) + np.exp(-v))).astype(F32)


quant_op("LOGISTIC")(_table_op(_logistic))
quant_op("TANH")(_table_op(lambda v: np.tanh(v).astype(F32)))
quant_op("RELU")(_table_op(lambda v: np.maximum(v, F32(0))))
quant_op("RELU6")(_table_op(lambda v: np.clip(v, F32(0), F32(6))))
quant_op("HARD_SWISH")(_table_op(lambda v: (v * np.clip(v + F32(3), F32(0), F32(6))
                                             / F32(6)).astype(F32)))


@quant_op("SOFTMAX")
def softmax(op: QuantOp) -> Compute:
    """LiteRT's optimized 8-bit softmax: exp() from a 256-entry float table of
    exp(-scale * beta * (max - q)), summed in order, rounded to the output."""
    s_in, _, dtype = op.activation_q(0)
    s_out, z_out, out_dtype = op.output_q()
    beta = F32(op.options.get("beta", 1.0))
    table = np.exp(F32(-s_in * beta) * np.arange(256, dtype=F32)).astype(F32)
    lo, hi = int_range(out_dtype)

    def compute(x: np.ndarray) -> np.ndarray:
        _check_dtype(op, x, dtype)
        xi = x.astype(np.int64)
        diff = np.max(xi, axis=-1, keepdims=True) - xi            # 0..255
        e = table[diff]
        total = np.zeros(e.shape[:-1], F32)
        for j in range(e.shape[-1]):                              # float32, in order
            total += e[..., j]
        inv = (F32(1) / (total * F32(s_out))).astype(F32)
        prob = (e * inv[..., None]).astype(F32)
        if out_dtype == "uint8":
            q = np.floor(prob + F32(0.5)).astype(np.int64)
        else:
            q = round_half_away(prob).astype(np.int64) + z_out
        return np.clip(q, lo, hi).astype(out_dtype)

    return compute


# ----- conversions -----------------------------------------------------------------------
@quant_op("QUANTIZE")
def quantize_op(op: QuantOp) -> Compute:
    s_out, z_out, out_dtype = op.output_q()
    src = op.input_dtypes[0] if op.input_dtypes else None
    if src in ("float32", "float16"):
        return lambda x: quantize(np.asarray(x, F32), s_out, z_out, out_dtype)
    s_in, z_in, in_dtype = op.activation_q(0)
    m, sh = quantize_multiplier(F64(s_in) / F64(s_out))
    lo, hi = int_range(out_dtype)

    def requantize(x: np.ndarray) -> np.ndarray:
        _check_dtype(op, x, in_dtype)
        y = multiply_by_quantized_multiplier(x.astype(np.int64) - z_in, m, sh, SINGLE_ROUNDING) + z_out
        return np.clip(y, lo, hi).astype(out_dtype)

    return requantize


@quant_op("DEQUANTIZE")
def dequantize_op(op: QuantOp) -> Compute:
    q = op.q(0)
    if q is None or q["dtype"] not in ("int8", "uint8", "int16"):
        raise op.refuse("DEQUANTIZE of this input", q)
    if len(q["scale"]) != 1:
        raise op.refuse("per-channel DEQUANTIZE of a computed tensor", q)
    scale, zero, dtype = float(q["scale"][0]), int(q["zero_point"][0]), q["dtype"]

    def compute(x: np.ndarray) -> np.ndarray:
        _check_dtype(op, x, dtype)
        return dequantize(x, F32(scale), zero)

    return compute


# ----- data movement ---------------------------------------------------------------------
def _same_params(op: QuantOp, inputs: int) -> None:
    """Shape-only operators keep the integers as they are: their inputs and output must
    share one scale and zero point (the converter guarantees it)."""
    out = op.out_quant[0] if op.out_quant else None
    for i in range(inputs):
        q = op.q(i)
        if q is not None and out is not None and (q["scale"] != out["scale"]
                                                   or q["zero_point"] != out["zero_point"]):
            raise op.refuse(f"{op.code} that changes the quantization scale", q)


def _passthrough(make: Callable[[Any], Compute]) -> Callable[[QuantOp], Compute]:
    def build(op: QuantOp) -> Compute:
        _same_params(op, 1)
        return make(op)

    return build


def _unchecked(make: Callable[[Any], Compute]) -> Callable[[QuantOp], Compute]:
    """Operators whose integer output is not on the input's scale (SHAPE) or whose
    outputs all keep it by construction (SPLIT, UNPACK, PACK, FILL)."""
    return lambda op: make(op)


for _code, _make in {
    "SHAPE": float_ops.shape, "SPLIT": float_ops.split, "SPLIT_V": float_ops.split_v,
    "UNPACK": float_ops.unpack, "PACK": float_ops.pack, "FILL": float_ops.fill,
    "TILE": float_ops.tile, "BROADCAST_TO": float_ops.broadcast_to,
}.items():
    quant_op(_code)(_unchecked(_make))

for _code, _make in {
    "RESHAPE": float_ops.reshape, "SQUEEZE": float_ops.squeeze,
    "EXPAND_DIMS": float_ops.expand_dims, "TRANSPOSE": float_ops.transpose,
    "STRIDED_SLICE": float_ops.strided_slice, "SLICE": float_ops.slice_op,
    "GATHER": float_ops.gather, "SPACE_TO_BATCH_ND": float_ops.space_to_batch_nd,
    "BATCH_TO_SPACE_ND": float_ops.batch_to_space_nd,
}.items():
    quant_op(_code)(_passthrough(_make))


@quant_op("PAD", "PADV2")
def pad(op: QuantOp) -> Compute:
    _same_params(op, 1)
    _, zero, _ = op.output_q()

    def compute(x: np.ndarray, pads: np.ndarray, value: np.ndarray | None = None) -> np.ndarray:
        widths = np.asarray(pads).reshape(-1, 2).tolist()
        fill = zero if value is None else int(np.asarray(value).reshape(-1)[0])
        return np.pad(x, widths, constant_values=fill)

    return compute


@quant_op("CONCATENATION")
def concatenation(op: QuantOp) -> Compute:
    axis = int(op.options.get("axis", 0))
    s_out, z_out, dtype = op.output_q()
    lo, hi = int_range(dtype)
    params = [op.activation_q(i) for i in range(len(op.operands))]
    if int(op.options.get("fused_activation_function", 0)) != 0:
        raise op.refuse("CONCATENATION with a fused activation")

    def rescale(i: int, x: np.ndarray) -> np.ndarray:
        s, z, _ = params[i]
        if s == s_out and z == z_out:
            return x
        # Inputs on another scale are requantized in float, as LiteRT does.
        scale = F32(F32(s) * (F32(1) / F32(s_out)))
        shifted = x.astype(F32) * scale + F32(-z) * scale
        q = round_half_away(shifted).astype(np.int64) + z_out
        return np.clip(q, lo, hi).astype(dtype)

    return lambda *xs: np.concatenate([rescale(i, x) for i, x in enumerate(xs)], axis=axis)
