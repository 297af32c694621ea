"""Optional Numba-compiled kernels (the `fast` extra), for the loops NumPy cannot vectorise.

Only where pure NumPy measured far behind (bench/latency.py --profile): the depthwise
convolution, whose best NumPy form (one einsum over strided windows) reads each tap through
a generic sum-of-products loop; bias + relu on large outputs; and the row-wise
LayerNormalization and softmax of attention blocks, which NumPy runs as 5-7 full passes
with short reductions (a 128x128 LayerNormalization 57 -> 12 us, softmax over 4x128x128
attention logits 180 -> 70 us).

The depthwise loop keeps one output row of channels in registers and adds the taps in the
same row-major order as the NumPy path, and bias_act does NumPy's add and clip, so both give
the NumPy path's bits (no fastmath: the order of the additions is never changed); the
depthwise loop skips taps that fall on the padding instead of copying a padded input. On
MobileNetV2's depthwise shapes it ran 2-4x faster than the einsum (docs/benchmarks.md). The
row kernels sum 8 lanes at a time, so they agree with NumPy to float32 rounding only, and
`rows_wanted` picks them by row length and per-item size, never by batch size.

Numba is imported on the first call that wants a kernel, never at `import tfless`, and the
kernels are compiled once per process (cached on disk by Numba where it may write). Without
Numba, or with TFLESS_KERNELS=numpy in the environment, `available()` is False and the
callers keep their NumPy code. Kernels release the GIL, so batch shards run in parallel.
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Any

import numpy as np

_lock = threading.Lock()
_kernels: dict[str, Any] | None = None  # None: not tried yet; {}: Numba is unavailable


def _array(ndim: int, readonly: bool) -> Any:
    from numba import types

    return types.Array(types.float32, ndim, "C", readonly=readonly)


def _signatures() -> dict[str, Any]:
    """The one signature each kernel is compiled for (eagerly, so a failure shows at once and
    falls back to NumPy). Inputs may be read-only (weights of a frozen graph, a caller's
    input); outputs are contiguous float32.
    - depthwise: input (N, H, W, C), weights (kh, kw, C), bias (C), strides, dilation, the
      padding before each axis, the activation (ACTIVATION_CODES), output (N, H', W', C);
    - bias_act: y (rows, C) in place, bias (C), the activation;
    - layer_norm: x (rows, C), gamma (C), beta (C), epsilon, output (rows, C);
    - softmax: x (rows, C), output (rows, C)."""
    from numba import types

    i64, f32 = types.int64, types.float32
    return {
        "depthwise": types.void(_array(4, True), _array(3, True), _array(1, True), *[i64] * 7,
                                _array(4, False)),
        "bias_act": types.void(_array(2, False), _array(1, True), i64),
        "layer_norm": types.void(_array(2, True), _array(1, True), _array(1, True), f32,
                                 _array(2, False)),
        "softmax": types.void(_array(2, True), _array(2, False)),
    }


# Fastmath flags per compiled function. The sums of the row kernels may be reordered
# (reassoc), which is what lets them run 8 lanes wide; NaN and infinities are never assumed
# away. The bit-exact kernels (depthwise, bias_act) and the exp polynomial take none.
_REDUCE = {"reassoc", "nsz", "contract"}
_FASTMATH: dict[str, Any] = {"layer_norm": _REDUCE, "_row_max": _REDUCE,
                             "_scaled_sum": _REDUCE, "_exp_rows": {"contract"}}
# Helpers the kernels call compiled (Numba resolves these globals as it compiles).
_HELPERS = ("_finish", "_row_max", "_exp_rows", "_scaled_sum")


# The row kernels (layer_norm, softmax) run on rows of at least ROW_MIN values and inputs of
# at least ROWS_MIN values per batch item: below, a compiled call saves little over NumPy's
# few passes, and small models need not import Numba. Their results differ from NumPy's by
# float32 rounding, so the choice never depends on the batch size (a batch scored whole or
# in chunks, on one machine or a cluster, gives the same bits).
ROWS_MIN = 1 << 12
ROW_MIN = 64


def rows_wanted(x: np.ndarray) -> bool:
    """True when the row kernels should take the contiguous float32 `x` (see ROWS_MIN)."""
    return (x.ndim >= 2 and x.shape[-1] >= ROW_MIN and x.shape[0] > 0
            and x.size // x.shape[0] >= ROWS_MIN and x.dtype == np.float32
            and x.flags.c_contiguous and available())

# The activations the kernels apply themselves, on each sum as it is finished.
ACTIVATION_CODES = {"linear": 0, "relu": 1, "relu6": 2}


def _compile() -> dict[str, Any]:
    try:
        from numba import njit
    except ImportError:  # not installed, or a Numba built for another NumPy
        return {}
    names = globals()
    for helper in _HELPERS:
        if not hasattr(names[helper], "py_func"):
            names[helper] = njit(nogil=True, cache=True,
                                 fastmath=_FASTMATH.get(helper, False))(names[helper])
    functions = {"depthwise": _depthwise, "bias_act": _finish.py_func,
                 "layer_norm": _layer_norm, "softmax": _softmax}
    try:
        return {name: njit(sig, cache=True, nogil=True, fastmath=_FASTMATH.get(name, False))(
            functions[name]) for name, sig in _signatures().items()}
    except Exception:  # noqa: BLE001 (no writable cache anywhere: compile without caching)
        pass
    try:
        return {name: njit(sig, nogil=True, fastmath=_FASTMATH.get(name, False))(
            functions[name]) for name, sig in _signatures().items()}
    except Exception as exc:  # noqa: BLE001 (a broken Numba install must not break predict)
        warnings.warn(f"tfless: the Numba kernels failed to compile ({type(exc).__name__}: "
                      f"{exc}); using the NumPy ones", RuntimeWarning, stacklevel=3)
        return {}


def _finish(y, bias, code):  # pragma: no cover (compiled)
    """y += bias, then relu / relu6 (ACTIVATION_CODES), in place on the finished (pixels, C)
    rows `y`. NaN is kept (both comparisons are false); every element gets a new value
    stored, so the loops vectorise (a select; a lone `if v < 0: y[i, c] = 0` became a branch
    and ran 4x slower)."""
    for i in range(y.shape[0]):
        if code == 1:
            for c in range(y.shape[1]):
                v = y[i, c] + bias[c]
                y[i, c] = 0.0 if v < 0.0 else v
        elif code == 2:
            for c in range(y.shape[1]):
                v = y[i, c] + bias[c]
                v = 0.0 if v < 0.0 else v
                y[i, c] = 6.0 if v > 6.0 else v
        else:
            for c in range(y.shape[1]):
                y[i, c] += bias[c]


def _depthwise(x, w, bias, sh, sw, dh, dw, top, left, code, out):  # pragma: no cover (compiled)
    """One output row at a time. A 3x3 window wholly inside the input (most of them) sums its
    nine taps in a register per channel; other windows add their in-bounds taps into the
    output. Either way each output is 0 + tap 0 + tap 1 + ... in row-major tap order, as in
    the NumPy path (MobileNetV2's 112x112x32: 0.70 -> 0.46 ms with the register sums)."""
    n_items, height, width, chans = out.shape
    in_h, in_w = x.shape[1], x.shape[2]
    kh, kw = w.shape[0], w.shape[1]
    three = kh == 3 and kw == 3
    for n in range(n_items):
        for oy in range(height):
            y0 = oy * sh - top
            rows_inside = three and y0 >= 0 and y0 + 2 * dh < in_h
            o = out[n, oy]
            for ox in range(width):
                x0 = ox * sw - left
                if rows_inside and x0 >= 0 and x0 + 2 * dw < in_w:
                    ya, yb, yc = y0, y0 + dh, y0 + 2 * dh
                    xa, xb, xc = x0, x0 + dw, x0 + 2 * dw
                    for c in range(chans):
                        acc = np.float32(0.0)
                        acc += x[n, ya, xa, c] * w[0, 0, c]
                        acc += x[n, ya, xb, c] * w[0, 1, c]
                        acc += x[n, ya, xc, c] * w[0, 2, c]
                        acc += x[n, yb, xa, c] * w[1, 0, c]
                        acc += x[n, yb, xb, c] * w[1, 1, c]
                        acc += x[n, yb, xc, c] * w[1, 2, c]
                        acc += x[n, yc, xa, c] * w[2, 0, c]
                        acc += x[n, yc, xb, c] * w[2, 1, c]
                        acc += x[n, yc, xc, c] * w[2, 2, c]
                        o[ox, c] = acc
                    continue
                for c in range(chans):
                    o[ox, c] = 0.0
                for ky in range(kh):
                    y = y0 + ky * dh
                    if y < 0 or y >= in_h:
                        continue
                    for kx in range(kw):
                        xx = x0 + kx * dw
                        if xx < 0 or xx >= in_w:
                            continue
                        for c in range(chans):
                            o[ox, c] += x[n, y, xx, c] * w[ky, kx, c]
            _finish(o, bias, code)


def _layer_norm(x, gamma, beta, epsilon, out):  # pragma: no cover (compiled)
    """Keras's LayerNormalization over the last axis of the (rows, C) `x`: the mean, the
    variance as the mean of squared deviations, inv = gamma / sqrt(variance + epsilon),
    then x * inv + (beta - mean * inv)."""
    n = x.shape[1]
    for i in range(x.shape[0]):
        total = np.float32(0.0)
        for c in range(n):
            total += x[i, c]
        mean = total / np.float32(n)
        squares = np.float32(0.0)
        for c in range(n):
            d = x[i, c] - mean
            squares += d * d
        root = np.float32(1.0) / np.sqrt(squares / np.float32(n) + epsilon)
        for c in range(n):
            inv = root * gamma[c]
            out[i, c] = x[i, c] * inv + (beta[c] - mean * inv)


def _row_max(row):  # pragma: no cover (compiled)
    m = row[0]
    for c in range(row.shape[0]):
        v = row[c]
        m = v if v > m else m
    return m


def _exp_rows(row, shift, out, scale_bits):  # pragma: no cover (compiled)
    """out * (scale_bits as float32) = exp(row - shift), split as 2**k * exp(r) with
    |r| <= ln(2)/2: r by a two-part ln 2 (so large k lose no precision), exp(r) by a degree-7
    polynomial (Cephes' expf coefficients, within 2 ulp), 2**k built from its exponent bits.
    Below -87 the result is 0 (an underflow NumPy gives as a denormal or 0); NaN stays NaN.
    Every operation is elementwise, so the loop runs 8 lanes wide (math.exp did not)."""
    for c in range(row.shape[0]):
        v = row[c] - shift
        low = v < np.float32(-87.0)
        v = np.float32(-87.0) if low else v
        k = np.floor(v * np.float32(1.4426950408889634) + np.float32(0.5))
        r = v - k * np.float32(0.693359375) - k * np.float32(-2.12194440e-4)
        p = np.float32(1.9875691500e-4)
        p = p * r + np.float32(1.3981999507e-3)
        p = p * r + np.float32(8.3334519073e-3)
        p = p * r + np.float32(4.1665795894e-2)
        p = p * r + np.float32(1.6666665459e-1)
        p = p * r + np.float32(5.0000001201e-1)
        out[c] = p * r * r + r + np.float32(1.0)
        scale_bits[c] = 0 if low else (np.int32(k) + np.int32(127)) << 23


def _scaled_sum(out, scale):  # pragma: no cover (compiled)
    total = np.float32(0.0)
    for c in range(out.shape[0]):
        e = out[c] * scale[c]
        out[c] = e
        total += e
    return total


def _softmax(x, out):  # pragma: no cover (compiled)
    """Softmax over the last axis of the (rows, C) `x`: exp(x - row max) / row sum."""
    bits = np.empty(x.shape[1], np.int32)
    scale = bits.view(np.float32)
    for i in range(x.shape[0]):
        o = out[i]
        _exp_rows(x[i], _row_max(x[i]), o, bits)
        inv = np.float32(1.0) / _scaled_sum(o, scale)
        for c in range(o.shape[0]):
            o[c] *= inv


def _get(name: str) -> Any | None:
    global _kernels
    if _kernels is None:
        with _lock:
            if _kernels is None:
                _kernels = _compile()
    return _kernels.get(name)


def available() -> bool:
    """True when the compiled kernels are usable here (Numba importable, not switched off)."""
    if os.environ.get("TFLESS_KERNELS", "").strip().lower() == "numpy":
        return False
    return _get("depthwise") is not None


def _bias(bias: np.ndarray | None, size: int) -> np.ndarray:
    """The contiguous float32 bias the kernels add; for a layer without one -0.0, since
    x + -0.0 is x for every x (+0.0 would turn a -0.0 sum into +0.0, where the NumPy path
    adds nothing)."""
    if bias is None:
        return np.full(size, -0.0, np.float32)
    return np.ascontiguousarray(bias, np.float32)


def depthwise2d(x: np.ndarray, weights: np.ndarray, bias: np.ndarray | None,
                strides: tuple[int, int], dilation: tuple[int, int], pads_before: tuple[int, int],
                out: np.ndarray, activation: str = "linear") -> np.ndarray:
    """out[n, oy, ox, c] = act(sum over taps of x[n, oy*s + k*d - pad, ..., c] * w[k..., c]
    (+ bias)), x (batch, H, W, C) and out (batch, H', W', C) contiguous float32, weights
    (kh, kw, C), `activation` one of ACTIVATION_CODES."""
    kernel = _get("depthwise")
    kernel(x, weights, _bias(bias, out.shape[-1]), strides[0], strides[1],
           dilation[0], dilation[1], pads_before[0], pads_before[1],
           ACTIVATION_CODES[activation], out)
    return out


def bias_act(y: np.ndarray, bias: np.ndarray | None, activation: str) -> np.ndarray:
    """act(y + bias) in place on the contiguous float32 `y` (last axis: channels), in one
    pass; the same float32 operations as NumPy's add then clip, so the same bits."""
    kernel = _get("bias_act")
    kernel(y.reshape(-1, y.shape[-1]), _bias(bias, y.shape[-1]), ACTIVATION_CODES[activation])
    return y


def layer_norm(x: np.ndarray, gamma: np.ndarray | None, beta: np.ndarray | None,
               epsilon: float) -> np.ndarray:
    """Keras 3's LayerNormalization over the last axis of the contiguous float32 `x`, as a
    new array (gamma 1 and beta 0 when absent)."""
    n = x.shape[-1]
    g = np.ones(n, np.float32) if gamma is None else np.ascontiguousarray(gamma, np.float32)
    b = np.zeros(n, np.float32) if beta is None else np.ascontiguousarray(beta, np.float32)
    out = np.empty(x.shape, np.float32)
    _get("layer_norm")(x.reshape(-1, n), g.reshape(-1), b.reshape(-1), np.float32(epsilon),
                       out.reshape(-1, n))
    return out


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis of the contiguous float32 `x`, as a new array."""
    out = np.empty(x.shape, np.float32)
    _get("softmax")(x.reshape(-1, x.shape[-1]), out.reshape(-1, x.shape[-1]))
    return out
