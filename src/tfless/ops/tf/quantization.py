"""Raw TensorFlow fake-quantization ops, as quantization-aware training leaves them in
exported graphs: FakeQuantWithMinMaxArgs / Vars / VarsPerChannel and
QuantizeAndDequantizeV2 / V3 / V4. Each rounds float32 values onto the integer grid its
range defines and back, in float32 with TF's nudging and rounding rules.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .common import Compute, TfNode, scalar_int, tf_kernel

F32 = np.float32


def _nudge(lo: np.ndarray, hi: np.ndarray, q_lo: int, q_hi: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TF's Nudge: shift [lo, hi] so that 0.0 falls exactly on a grid point."""
    qmin, qmax = F32(q_lo), F32(q_hi)
    scale = ((hi - lo) / (qmax - qmin)).astype(F32)
    with np.errstate(divide="ignore", invalid="ignore"):
        zero_from_min = qmin - lo / scale
    # std::round: halves away from zero
    zero = np.where(zero_from_min < qmin, qmin, np.where(
        zero_from_min > qmax, qmax, np.sign(zero_from_min) * np.floor(np.abs(zero_from_min)
                                                                      + F32(0.5))))
    return ((qmin - zero) * scale).astype(F32), ((qmax - zero) * scale).astype(F32), scale


def _fake_quant(x: np.ndarray, lo: Any, hi: Any, bits: int, narrow: bool) -> np.ndarray:
    lo, hi = np.asarray(lo, F32), np.asarray(hi, F32)
    nmin, nmax, scale = _nudge(lo, hi, 1 if narrow else 0, (1 << bits) - 1)
    inv = (F32(1) / scale).astype(F32)
    clamped = np.maximum(np.minimum(x, nmax), nmin)
    return (np.floor((clamped - nmin) * inv + F32(0.5)) * scale + nmin).astype(F32)


def _bits(node: TfNode) -> tuple[int, bool]:
    bits, narrow = int(node.attr("num_bits", 8)), bool(node.attr("narrow_range", False))
    if not 2 <= bits <= 16:
        raise node.refuse("num_bits", bits, "2 to 16")
    return bits, narrow


def _float_input(node: TfNode, x: np.ndarray) -> np.ndarray:
    if x.dtype != F32:
        raise node.bad_input(f"input of type {x.dtype} is not supported (float32)")
    return x


@tf_kernel("FakeQuantWithMinMaxArgs")
def fake_quant_args(node: TfNode) -> Compute:
    bits, narrow = _bits(node)
    lo, hi = F32(node.attr("min", -6.0)), F32(node.attr("max", 6.0))
    if lo >= hi:
        raise node.refuse("min", float(lo), f"a value below max ({float(hi)})")
    return lambda x: _fake_quant(_float_input(node, x), lo, hi, bits, narrow)


@tf_kernel("FakeQuantWithMinMaxVars", "FakeQuantWithMinMaxVarsPerChannel")
def fake_quant_vars(node: TfNode) -> Compute:
    bits, narrow = _bits(node)
    per_channel = node.op.endswith("PerChannel")

    def compute(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        x = _float_input(node, x)
        want = (x.shape[-1],) if per_channel else ()
        if np.shape(lo) != want or np.shape(hi) != want:
            raise node.bad_input(f"min/max of shapes {np.shape(lo)}, {np.shape(hi)} do not "
                                 f"fit input {x.shape} (need {want})")
        return _fake_quant(x, lo, hi, bits, narrow)

    return compute


def _qd_attrs(node: TfNode) -> tuple[bool, bool, bool, str]:
    """QuantizeAndDequantize attrs, checked at build time."""
    axis = int(node.attr("axis", -1))
    if axis != -1:  # TF 2.21's CPU kernel itself rejects per-axis ranges
        raise node.refuse("axis", axis, "-1 (one range for the whole tensor)")
    mode = node.choice("round_mode", ("HALF_TO_EVEN", "HALF_UP"), "HALF_TO_EVEN")
    return (bool(node.attr("signed_input", True)), bool(node.attr("narrow_range", False)),
            bool(node.attr("range_given", False)), mode)


def _quantize_dequantize(node: TfNode, x: np.ndarray, lo: Any, hi: Any, bits: int,
                         attrs: tuple[bool, bool, bool, str]) -> np.ndarray:
    x = _float_input(node, x)
    signed, narrow, given, mode = attrs
    if not 1 <= bits <= 62:
        raise node.refuse("num_bits", bits, "1 to 62")
    if given:
        lo, hi = np.asarray(lo, F32).reshape(()), np.asarray(hi, F32).reshape(())
    else:
        lo, hi = np.min(x), np.max(x)
    if signed:
        q_lo = F32(-(1 << (bits - 1)) + (1 if narrow else 0))
        q_hi = F32((1 << (bits - 1)) - 1)
    else:
        q_lo, q_hi = F32(0), F32((1 << bits) - 1)
    big = np.finfo(F32).max
    with np.errstate(divide="ignore", invalid="ignore"):
        from_min = np.where(q_lo * lo > 0, q_lo / lo, big).astype(F32)
        from_max = np.where(q_hi * hi > 0, q_hi / hi, big).astype(F32)
        use_min = from_min < from_max
        scale = np.where(use_min, from_min, from_max).astype(F32)
        inverse = np.where(use_min, lo / q_lo, hi / q_hi).astype(F32)
    hi = np.where(use_min, q_hi * inverse, hi).astype(F32)
    lo = np.where(use_min, lo, q_lo * inverse).astype(F32)
    y = np.clip(x, lo, hi) if given else x
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = y * scale
        rounded = np.rint(scaled) if mode == "HALF_TO_EVEN" else np.floor(scaled + F32(0.5))
        return (rounded * inverse).astype(F32)


@tf_kernel("QuantizeAndDequantizeV2", "QuantizeAndDequantizeV4")
def quantize_dequantize_v2(node: TfNode) -> Compute:
    bits, attrs = int(node.attr("num_bits", 8)), _qd_attrs(node)
    return lambda x, lo, hi: _quantize_dequantize(node, x, lo, hi, bits, attrs)


@tf_kernel("QuantizeAndDequantizeV3")
def quantize_dequantize_v3(node: TfNode) -> Compute:
    attrs = _qd_attrs(node)
    return lambda x, lo, hi, bits: _quantize_dequantize(
        node, x, lo, hi, scalar_int(node, bits, "num_bits"), attrs)
