"""Quantized TensorFlow Lite builtins, registered as `tflite.quantized.<BUILTIN_NAME>`:
the `QuantOp` machinery and the weight-bearing kernels (FULLY_CONNECTED, BATCH_MATMUL,
CONV_2D, DEPTHWISE_CONV_2D, UNIDIRECTIONAL_SEQUENCE_LSTM); the weightless operators live
in `ops/tflite_quant_ops.py` (split for size).

The TFLite reader sends here every operator that touches a quantized integer tensor:
full-integer models (int8/uint8 activations, int8 per-channel weights, int32 biases) and
the hybrid kernels of dynamic-range models (float activations, int8 weights). Each
kernel computes as LiteRT's CPU kernels define it: integer accumulation with zero-point
offsets, fixed-point requantization (`ops/quantized.py`), fused activations as clamp
ranges; hybrid kernels quantize their float input per batch row (symmetric, or
asymmetric where LiteRT does) and rescale the int32 dot products in float32. Integer dot
products run as float matrix products, which are exact: float32 where every partial sum
is provably an integer below 2**24, float64 (exact below 2**53) otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import InputError, ModelFormatError, UnsupportedLayer
from ..registry import register
from . import tflite as float_ops
from .conv_im2col import windows
from .quantized import (
    activation_range,
    asymmetric_quantize_rows,
    int_range,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    symmetric_quantize_rows,
)
from .tflite import Compute, TfliteOp

F32 = np.float32
F64 = np.float64
ACTIVATION_TYPES = ("int8", "uint8")
# LiteRT's CPU build rescales with one rounding (TFLITE_SINGLE_ROUNDING; checked against
# ai-edge-litert kernel by kernel), not gemmlowp's two-step rounding.
SINGLE_ROUNDING = True


class QuantOp(TfliteOp):
    """A TFLite operator plus the quantization parameters of its operands and outputs."""

    def __init__(self, config: dict[str, Any], weights: dict[str, np.ndarray]) -> None:
        super().__init__(config, weights)
        self.quant: list[dict[str, Any] | None] = list(config.get("quant") or [])
        self.out_quant: list[dict[str, Any] | None] = list(config.get("output_quant") or [])
        self.input_dtypes: list[str | None] = list(config.get("input_dtypes") or [])
        self.code = str(config.get("code", ""))

    def q(self, i: int) -> dict[str, Any] | None:
        return self.quant[i] if i < len(self.quant) else None

    def refuse(self, what: str, q: dict[str, Any] | None = None) -> UnsupportedLayer:
        tensor = f" (tensor '{q['tensor']}', {q['type']})" if q else ""
        return UnsupportedLayer(f"{self.where}: {what}{tensor} is not supported by the "
                                "quantized TFLite kernels")

    def activation_q(self, i: int) -> tuple[float, int, str]:
        """(scale, zero point, dtype) of a per-tensor quantized int8/uint8 activation."""
        q = self.q(i) if i >= 0 else self.out_quant[0] if self.out_quant else None
        if q is None:
            raise self.refuse(f"{'output' if i < 0 else f'input {i}'} without quantization")
        if q["dtype"] not in ACTIVATION_TYPES:
            raise self.refuse(f"{q['dtype']} activations (supported: int8, uint8)", q)
        if len(q["scale"]) != 1:
            raise self.refuse("per-channel quantized activations", q)
        return float(q["scale"][0]), int(q["zero_point"][0]), str(q["dtype"])

    def output_q(self) -> tuple[float, int, str]:
        return self.activation_q(-1)

    def clamp_range(self) -> tuple[int, int]:
        scale, zero, dtype = self.output_q()
        code = int(self.options.get("fused_activation_function", 0))
        rng = activation_range(code, scale, zero, dtype)
        if rng is None:
            raise self.refuse(f"fused activation {float_ops.FUSED_NAMES[code] if code < 6 else code} "
                              "on a quantized output")
        return rng

    def is_hybrid(self) -> bool:
        return bool(self.input_dtypes) and self.input_dtypes[0] == "float32"


def quant_op(*codes: str) -> Callable[[Callable[[QuantOp], Compute]], Callable[[QuantOp], Compute]]:
    """Register `make(op) -> compute(*operands)` under `tflite.quantized.<code>`."""

    def decorate(make: Callable[[QuantOp], Compute]) -> Callable[[QuantOp], Compute]:
        def build(config: dict[str, Any], weights: dict[str, np.ndarray]) -> Compute:
            op = QuantOp(config, weights)
            compute = make(op)
            consts, slots = op.consts, op.dynamic

            def run(*args: Any) -> Any:
                full: list[Any] = list(consts)
                for slot, value in zip(slots, args):
                    full[slot] = value
                return compute(*full)

            return run

        register(*(f"tflite.quantized.{code}" for code in codes),
                 weights=lambda config: [e["const"] for e in config.get("operands", [])
                                         if e is not None and "const" in e],
                 num_outputs=lambda config: int(config.get("num_outputs", 1)))(build)
        return make

    return decorate


def _check_dtype(op: QuantOp, x: np.ndarray, dtype: str) -> None:
    if x.dtype != np.dtype(dtype):
        raise InputError(f"{op.where}: expects a {dtype} tensor, got {x.dtype}")


def _requantize_out(op: QuantOp, acc: np.ndarray, multiplier: np.ndarray, shift: np.ndarray,
                    single_rounding: bool) -> np.ndarray:
    """int32 accumulators -> the output's integers (rescale, add zero point, clamp)."""
    _, zero, dtype = op.output_q()
    lo, hi = op.clamp_range()
    y = multiply_by_quantized_multiplier(acc, multiplier, shift, single_rounding) + zero
    return np.clip(y, lo, hi).astype(dtype)


def _weights_q(op: QuantOp, index: int, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A constant quantized weight as (values - zero point) in float64, and its per-channel
    (or broadcast per-tensor) scales along `axis`."""
    w = op.require_const(index, "weights")
    q = op.q(index)
    if q is None or w.dtype.kind not in "iu":
        raise op.refuse(f"weights of type {w.dtype} in a quantized {op.code}", q)
    if q["dtype"] not in ("int8", "uint8"):
        raise op.refuse(f"{q['dtype']} weights (supported: int8, uint8)", q)
    scale = np.asarray(q["scale"], F64)
    zero = np.asarray(q["zero_point"], np.int64)
    channels = w.shape[axis]
    if scale.size not in (1, channels) or (scale.size > 1 and q["axis"] != axis):
        raise op.refuse(f"weight quantization along axis {q['axis']} with {scale.size} "
                        f"scales", q)
    shape = [1] * w.ndim
    shape[axis] = -1
    centered = (w.astype(np.int64) - zero.reshape(shape)).astype(F64)
    return centered, np.broadcast_to(scale, (channels,)).copy(), zero


def _exact_dtype(w: np.ndarray, terms: int) -> type:
    """float32 when every partial sum of `terms` products (8-bit input minus zero point,
    at most 255 in size, times a weight) is an integer below 2**24, so float32 sums are
    exact in any order (and twice as fast); float64 otherwise (exact below 2**53)."""
    bound = terms * 255.0 * float(np.max(np.abs(w), initial=0.0))
    return F32 if bound < 2.0 ** 24 else F64


def _bias(op: QuantOp, index: int, channels: int, dtype: str) -> np.ndarray | None:
    if not op.present(index):
        return None
    b = op.require_const(index, "bias")
    if b.size != channels:
        raise ModelFormatError(f"{op.where}: bias has {b.size} values for {channels} outputs")
    if dtype == "float32":
        return np.asarray(b, F32).reshape(-1)
    if b.dtype not in (np.int32, np.int64):
        raise op.refuse(f"bias of type {b.dtype}", op.q(index))
    return b.astype(np.int64).reshape(-1)


# ----- fully connected -------------------------------------------------------------------
def _hybrid_rows(op: QuantOp, rows: np.ndarray, asymmetric: bool
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if asymmetric:
        return asymmetric_quantize_rows(rows)
    q, scale = symmetric_quantize_rows(rows)
    return q, scale, np.zeros(scale.shape, np.int64)


def _float_activation(op: QuantOp) -> Callable[[np.ndarray], np.ndarray]:
    return op.activation()


@quant_op("FULLY_CONNECTED")
def fully_connected(op: QuantOp) -> Compute:
    if int(op.options.get("weights_format", 0)) != 0:
        raise op.refuse("shuffled weights_format")
    w, w_scale, w_zero = _weights_q(op, 1, 0)
    units, depth = w.shape
    wmat = np.ascontiguousarray(w.T)
    keep_dims = bool(op.options.get("keep_num_dims", False))

    def rows_of(x: np.ndarray) -> np.ndarray:
        if x.shape[-1:] != (depth,) and (keep_dims or x.size % depth):
            raise InputError(f"{op.where}: input of shape {x.shape} does not fit weights with "
                             f"{depth} input features")
        return x.reshape(-1, depth)

    def shaped(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return y.reshape((*x.shape[:-1], units)) if keep_dims else y

    if op.is_hybrid():
        if np.any(w_zero):
            raise op.refuse("hybrid weights with a nonzero zero point", op.q(1))
        bias = _bias(op, 2, units, "float32")
        act = _float_activation(op)
        asymmetric = bool(op.options.get("asymmetric_quantize_inputs", False))
        wscale = w_scale.astype(F32)
        row_sums = np.sum(w, axis=1)

        def hybrid(x: np.ndarray, *_: Any) -> np.ndarray:
            rows = rows_of(np.asarray(x, F32))
            q, scale, zero = _hybrid_rows(op, rows, asymmetric)
            acc = (q.astype(F64) @ wmat) - row_sums[None, :] * zero[:, None]
            y = acc.astype(F32) * (scale[:, None] * wscale[None, :]).astype(F32)
            if bias is not None:
                y = y + bias
            return shaped(act(y.astype(F32)), x)

        return hybrid

    in_scale, in_zero, in_dtype = op.activation_q(0)
    out_scale, _, _ = op.output_q()
    bias = _bias(op, 2, units, "int32")
    multiplier, shift = quantize_multiplier(F64(in_scale) * w_scale / F64(out_scale))
    op.clamp_range()
    exact = _exact_dtype(wmat, depth)
    wexact = wmat.astype(exact)

    def compute(x: np.ndarray, *_: Any) -> np.ndarray:
        _check_dtype(op, x, in_dtype)
        rows = rows_of(x).astype(exact) - exact(in_zero)
        acc = (rows @ wexact).astype(np.int64)
        if bias is not None:
            acc += bias
        return shaped(_requantize_out(op, acc, multiplier, shift, SINGLE_ROUNDING), x)

    return compute


@quant_op("BATCH_MATMUL")
def batch_matmul(op: QuantOp) -> Compute:
    """int8 x int8 batched products (attention scores): exact integer sums with both zero
    points removed, one requantization to the output."""
    adj_x = bool(op.options.get("adj_x", False))
    adj_y = bool(op.options.get("adj_y", False))
    if op.is_hybrid():
        raise op.refuse("hybrid (float x int8) BATCH_MATMUL", op.q(1))
    s1, z1, dtype = op.activation_q(0)
    s2, z2, _ = op.activation_q(1)
    so, zo, out_dtype = op.output_q()
    lo, hi = int_range(out_dtype)
    m, sh = quantize_multiplier(F64(s1) * F64(s2) / F64(so))

    def compute(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        a = np.asarray(x).astype(F64) - z1
        b = np.asarray(y).astype(F64) - z2
        acc = np.matmul(np.swapaxes(a, -1, -2) if adj_x else a,
                        np.swapaxes(b, -1, -2) if adj_y else b).astype(np.int64)
        out = multiply_by_quantized_multiplier(acc, m, sh, SINGLE_ROUNDING) + zo
        return np.clip(out, lo, hi).astype(out_dtype)

    return compute


# ----- convolutions ----------------------------------------------------------------------
def _hybrid_images_output(acc: np.ndarray, scale: np.ndarray, wscale: np.ndarray, n_out: int,
                          bias: np.ndarray | None, act: Any) -> np.ndarray:
    """A hybrid convolution's float output: the int32 (batch, h, w, out) accumulator times
    each image's input scale and each channel's (or the one) weight scale, plus bias."""
    factor = np.broadcast_to((scale[:, None] * wscale[None, :]).astype(F32),
                             (scale.shape[0], n_out))
    y = acc.astype(F32) * factor[:, None, None, :]
    if bias is not None:
        y = y + bias
    return act(y.astype(F32))


def _centered_padded(op: QuantOp, x: np.ndarray, geo: Any, zero: np.ndarray | int,
                     dtype: type = F64) -> tuple[np.ndarray, tuple[int, ...]]:
    """x - zero point as floats with zero ('same') padding, and the output size."""
    z = np.asarray(zero, dtype)
    if z.ndim:
        z = z.reshape(-1, *[1] * (x.ndim - 1))
    xc = x.astype(dtype) - z
    pads = geo.pads(x.shape[1:-1])
    xp = np.pad(xc, [(0, 0), *pads, (0, 0)])
    return xp, geo.out_sizes(xp.shape[1:-1])


def _im2col(xp: np.ndarray, geo: Any, out: tuple[int, ...]) -> np.ndarray:
    """(batch, *out, taps * C): the float convolution's window view, copied."""
    return windows(xp, geo, out).reshape(xp.shape[0], *out, -1)


def _hybrid_images(op: QuantOp, x: np.ndarray, asymmetric: bool
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-image quantization of a float NHWC batch: q (int64), scales, zero points."""
    flat = np.asarray(x, F32).reshape(x.shape[0], -1)
    q, scale, zero = _hybrid_rows(op, flat, asymmetric)
    return q.reshape(x.shape), scale, zero


@quant_op("CONV_2D")
def conv_2d(op: QuantOp) -> Compute:
    w, w_scale, w_zero = _weights_q(op, 0 + 1, 0)
    if w.ndim != 4:
        raise ModelFormatError(f"{op.where}: filter has shape {w.shape}, expected "
                               "(out, kh, kw, in)")
    n_out, kh, kw, n_in = w.shape
    o = op.options
    geo = op.geometry((kh, kw), (int(o.get("dilation_h", 1)), int(o.get("dilation_w", 1))))
    wmat = np.ascontiguousarray(w.transpose(1, 2, 3, 0).reshape(-1, n_out))  # (kh*kw*in, out)

    def check(x: np.ndarray) -> None:
        if x.ndim != 4 or x.shape[-1] != n_in:
            raise InputError(f"{op.where}: input of shape {x.shape} does not fit a filter of "
                             f"{n_in} input channels (grouped quantized convolutions are not "
                             "supported)")

    if op.is_hybrid():
        if np.any(w_zero):
            raise op.refuse("hybrid weights with a nonzero zero point", op.q(1))
        bias = _bias(op, 2, n_out, "float32")
        act = _float_activation(op)
        per_channel = len(set(w_scale.tolist())) > 1
        wscale = w_scale.astype(F32)

        def hybrid(x: np.ndarray, *_: Any) -> np.ndarray:
            check(x)
            # LiteRT: per-channel filters quantize each image asymmetrically, per-tensor
            # filters symmetrically.
            q, scale, zero = _hybrid_images(op, x, per_channel)
            xp, out = _centered_padded(op, q, geo, zero)
            return _hybrid_images_output(_im2col(xp, geo, out) @ wmat, scale, wscale, n_out,
                                         bias, act)

        return hybrid

    in_scale, in_zero, in_dtype = op.activation_q(0)
    out_scale, _, _ = op.output_q()
    bias = _bias(op, 2, n_out, "int32")
    multiplier, shift = quantize_multiplier(F64(in_scale) * w_scale / F64(out_scale))
    op.clamp_range()
    exact = _exact_dtype(wmat, wmat.shape[0])
    wexact = wmat.astype(exact)

    def compute(x: np.ndarray, *_: Any) -> np.ndarray:
        check(x)
        _check_dtype(op, x, in_dtype)
        xp, out = _centered_padded(op, x, geo, in_zero, exact)
        acc = (_im2col(xp, geo, out) @ wexact).astype(np.int64)
        if bias is not None:
            acc += bias
        return _requantize_out(op, acc, multiplier, shift, SINGLE_ROUNDING)

    return compute


@quant_op("DEPTHWISE_CONV_2D")
def depthwise_conv_2d(op: QuantOp) -> Compute:
    w, w_scale, w_zero = _weights_q(op, 1, 3)
    if w.ndim != 4 or w.shape[0] != 1:
        raise ModelFormatError(f"{op.where}: filter has shape {w.shape}, expected "
                               "(1, kh, kw, channels * depth_multiplier)")
    taps = w[0]                                    # (kh, kw, C*m)
    n_out = taps.shape[2]
    o = op.options
    geo = op.geometry(taps.shape[:2], (int(o.get("dilation_h", 1)), int(o.get("dilation_w", 1))))

    exact = _exact_dtype(taps, int(np.prod(taps.shape[:2])))
    taps_exact = taps.astype(exact)

    def accumulate(xp: np.ndarray, out: tuple[int, ...]) -> np.ndarray:
        channels = xp.shape[-1]
        mult = n_out // channels
        acc = np.zeros((xp.shape[0], *out, n_out), xp.dtype)
        for tap in np.ndindex(*geo.kernel):
            view = xp[(slice(None), *geo.tap_slices(tap, out))]
            if mult != 1:
                view = np.repeat(view, mult, axis=-1)
            acc += view * (taps_exact[tap] if xp.dtype == exact else taps[tap])
        return acc

    def check(x: np.ndarray) -> None:
        if x.ndim != 4 or n_out % x.shape[-1]:
            raise InputError(f"{op.where}: input of shape {x.shape} does not fit a depthwise "
                             f"filter with {n_out} outputs")

    if op.is_hybrid():
        if np.any(w_zero):
            raise op.refuse("hybrid weights with a nonzero zero point", op.q(1))
        bias = _bias(op, 2, n_out, "float32")
        act = _float_activation(op)
        wscale = w_scale.astype(F32)

        def hybrid(x: np.ndarray, *_: Any) -> np.ndarray:
            check(x)
            q, scale, zero = _hybrid_images(op, x, True)
            xp, out = _centered_padded(op, q, geo, zero)
            return _hybrid_images_output(accumulate(xp, out), scale, wscale, n_out, bias, act)

        return hybrid

    in_scale, in_zero, in_dtype = op.activation_q(0)
    out_scale, _, _ = op.output_q()
    bias = _bias(op, 2, n_out, "int32")
    multiplier, shift = quantize_multiplier(F64(in_scale) * w_scale / F64(out_scale))
    op.clamp_range()

    def compute(x: np.ndarray, *_: Any) -> np.ndarray:
        check(x)
        _check_dtype(op, x, in_dtype)
        xp, out = _centered_padded(op, x, geo, in_zero, exact)
        acc = accumulate(xp, out).astype(np.int64)
        if bias is not None:
            acc += bias
        return _requantize_out(op, acc, multiplier, shift, SINGLE_ROUNDING)

    return compute


# ----- recurrent -------------------------------------------------------------------------
@quant_op("UNIDIRECTIONAL_SEQUENCE_LSTM")
def hybrid_lstm(op: QuantOp) -> Compute:
    """The dynamic-range LSTM (int8 gate weights, float state), as LiteRT's hybrid step
    computes it: each step quantizes the input and the previous output per batch row, each
    gate is bias + input product + recurrent product (int32 dot products rescaled by
    row scale x weight scale), then the float cell update. State starts at zero."""
    if not op.is_hybrid():
        raise op.refuse("full-integer (8x8->16) LSTM", op.q(0))
    for slot, feature in float_ops.LSTM_UNSUPPORTED.items():
        if op.present(slot):
            raise op.refuse(f"LSTM with {feature} (input {slot})")
    if not op.present(1):
        raise op.refuse("coupled input-forget gate (CIFG) LSTM")
    if op.num_outputs != 1:
        raise op.refuse("LSTM returning its states")

    def gate_weights(index: int) -> tuple[np.ndarray, np.ndarray, F32]:
        w, scale, zero = _weights_q(op, index, 0)
        if np.any(zero) or len(set(scale.tolist())) != 1:
            raise op.refuse("LSTM weights with zero points or per-channel scales", op.q(index))
        return np.ascontiguousarray(w.T), np.sum(w, axis=1), F32(scale[0])

    inputs = [gate_weights(i) for i in float_ops.LSTM_GATE_WEIGHTS]
    recurrent = [gate_weights(i) for i in float_ops.LSTM_RECURRENT_WEIGHTS]
    biases = [np.asarray(op.require_const(i, "gate bias"), F32)
              for i in float_ops.LSTM_BIASES]
    units = inputs[0][0].shape[1]
    depth = inputs[0][0].shape[0]
    act = op.activation()
    clip = F32(op.options.get("cell_clip", 0.0))
    time_major = bool(op.options.get("time_major", False))
    asymmetric = bool(op.options.get("asymmetric_quantize_inputs", False))
    sigmoid = float_ops.UNARY["LOGISTIC"]

    def product(q: np.ndarray, scale: np.ndarray, zero: np.ndarray,
                weights: tuple[np.ndarray, np.ndarray, F32]) -> np.ndarray:
        wmat, row_sums, wscale = weights
        acc = (q.astype(F64) @ wmat) - row_sums[None, :] * zero[:, None]
        return acc.astype(F32) * (scale * wscale).astype(F32)[:, None]

    def compute(x: np.ndarray, *rest: Any) -> np.ndarray:
        seq = np.asarray(x, F32)
        if seq.ndim != 3 or seq.shape[-1] != depth:
            raise InputError(f"{op.where}: expects (batch, time, {depth}) inputs, got "
                             f"{seq.shape}")
        if time_major:
            seq = seq.transpose(1, 0, 2)
        batch, steps = seq.shape[:2]
        h = np.zeros((batch, units), F32)
        c = np.zeros((batch, units), F32)
        out = np.empty((batch, steps, units), F32)
        for t in range(steps):
            qx, sx, zx = _hybrid_rows(op, seq[:, t], asymmetric)
            qh, sh, zh = _hybrid_rows(op, h, asymmetric)
            gates = []
            for k in range(4):
                g = biases[k] + product(qx, sx, zx, inputs[k])
                if np.any(h):
                    g = g + product(qh, sh, zh, recurrent[k])
                gates.append(g.astype(F32))
            i, f, o = sigmoid(gates[0]), sigmoid(gates[1]), sigmoid(gates[3])
            c = f * c + i * act(gates[2])
            if clip > 0:
                c = np.clip(c, -clip, clip)
            h = (o * act(c)).astype(F32)
            out[:, t] = h
        return out.transpose(1, 0, 2).copy() if time_major else out

    return compute
