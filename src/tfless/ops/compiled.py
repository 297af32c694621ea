"""Optional Numba-compiled kernels (the `fast` extra), for the loops NumPy cannot vectorise.

Only where pure NumPy measured far behind (bench/latency.py --profile): the depthwise
convolution, whose best NumPy form (one einsum over strided windows) reads each tap through
a generic sum-of-products loop. The compiled loop keeps one output row of channels in
registers and adds the taps in the same row-major order as the NumPy path, so the results
are bit-identical (no fastmath: the order of the additions is never changed), and it
skips taps that fall on the padding instead of copying a padded input. On MobileNetV2's
depthwise shapes it ran 2-4x faster than the einsum (docs/benchmarks.md).

Numba is imported on the first call of `depthwise2d`, never at `import tfless`, and the
kernel is compiled once per process (cached on disk by Numba where it may write). Without
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


def _depthwise_signature() -> Any:
    """The one signature compiled (eagerly, so a failure shows at once and falls back to
    NumPy): contiguous float32 input (N, H, W, C), weights (kh, kw, C) and bias (C), which
    may be read-only (weights of a frozen graph, a caller's input), output (N, H', W', C)."""
    from numba import types

    def array(ndim: int, readonly: bool) -> Any:
        return types.Array(types.float32, ndim, "C", readonly=readonly)

    return types.void(array(4, True), array(3, True), array(1, True), *[types.int64] * 6,
                      array(4, False))


def _compile() -> dict[str, Any]:
    try:
        from numba import njit
    except ImportError:  # not installed, or a Numba built for another NumPy
        return {}
    try:
        signature = _depthwise_signature()
        return {"depthwise": njit(signature, cache=True, nogil=True)(_depthwise)}
    except Exception:  # noqa: BLE001 (no writable cache anywhere: compile without caching)
        pass
    try:
        return {"depthwise": njit(_depthwise_signature(), nogil=True)(_depthwise)}
    except Exception as exc:  # noqa: BLE001 (a broken Numba install must not break predict)
        warnings.warn(f"tfless: the Numba kernels failed to compile ({type(exc).__name__}: "
                      f"{exc}); using the NumPy ones", RuntimeWarning, stacklevel=3)
        return {}


def _depthwise(x, w, bias, sh, sw, dh, dw, top, left, out):  # pragma: no cover (compiled)
    n_items, height, width, chans = out.shape
    in_h, in_w = x.shape[1], x.shape[2]
    kh, kw = w.shape[0], w.shape[1]
    for n in range(n_items):
        for oy in range(height):
            for ox in range(width):
                o = out[n, oy, ox]
                for c in range(chans):
                    o[c] = 0.0
                for ky in range(kh):
                    y = oy * sh + ky * dh - top
                    if y < 0 or y >= in_h:
                        continue
                    for kx in range(kw):
                        xx = ox * sw + kx * dw - left
                        if xx < 0 or xx >= in_w:
                            continue
                        row = x[n, y, xx]
                        wk = w[ky, kx]
                        for c in range(chans):
                            o[c] += row[c] * wk[c]
                for c in range(chans):
                    o[c] += bias[c]


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


def depthwise2d(x: np.ndarray, weights: np.ndarray, bias: np.ndarray | None,
                strides: tuple[int, int], dilation: tuple[int, int], pads_before: tuple[int, int],
                out: np.ndarray) -> np.ndarray:
    """out[n, oy, ox, c] = sum over taps of x[n, oy*s + k*d - pad, ..., c] * w[k..., c] (+ bias),
    x (batch, H, W, C) and out (batch, H', W', C) contiguous float32, weights (kh, kw, C)."""
    kernel = _get("depthwise")
    zeros = np.zeros(out.shape[-1], np.float32) if bias is None else bias
    kernel(x, weights, np.ascontiguousarray(zeros, np.float32), strides[0], strides[1],
           dilation[0], dilation[1], pads_before[0], pads_before[1], out)
    return out
