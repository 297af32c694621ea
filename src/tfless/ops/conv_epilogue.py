"""The epilogue of a convolution: bias and activation in place on its fresh output.

Split out of ops/convolutional.py. The conv kernels (regular, depthwise, separable, TFLite
and tf.* graph convolutions) write their result into a new float32 buffer; `epilogue` adds
the bias and applies the activation on cache-sized blocks of that buffer while it is in
cache, instead of one full pass over memory per elementwise step.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from . import compiled
from .activations import SMALL_ARRAY, relu_plain

F32 = np.float32
# Output elements bias + activation process at once while they are in cache: about one
# core's L2 (1 MB of float32), as for the depthwise blocks of ops/convolutional.py.
EPILOGUE_BLOCK = 1 << 18
# From this many output elements, bias + relu/relu6 run as one compiled pass when the `fast`
# extra is there (ops/compiled.py): MobileNetV2's 112x112x96 output took 0.10 ms against
# 0.46 ms for NumPy's add and clip on blocks. Smaller outputs keep NumPy (a compiled call
# costs about as much as the two ufunc calls there), so small models never import Numba.
COMPILED_MIN = 1 << 15


def epilogue(y: np.ndarray, bias: np.ndarray | None,
             act: Callable[[np.ndarray], np.ndarray] | None) -> np.ndarray:
    """y + bias, then the activation, on the contiguous float32 output `y`; in place and in
    cache-sized blocks when the activation is one of INPLACE_ACTIVATIONS."""
    if act is not None and act not in INPLACE_SET:
        if bias is not None:
            y += bias
        return act(y)
    if act is INPLACE_ACTIVATIONS["linear"]:
        act = None
    if bias is None and act is None:
        return y
    coded = COMPILED_CODES.get(act)
    if coded is not None and y.size >= COMPILED_MIN and y.flags.c_contiguous \
            and compiled.available():
        return compiled.bias_act(y, bias, coded)
    if y.size <= EPILOGUE_BLOCK:
        if bias is not None:
            y += bias
        return y if act is None else act(y)
    flat = y.reshape(-1, y.shape[-1])
    rows = max(1, EPILOGUE_BLOCK // max(1, y.shape[-1]))
    for start in range(0, flat.shape[0], rows):
        part = flat[start:start + rows]
        if bias is not None:
            part += bias
        if act is not None:
            act(part)
    return y


def relu6_inplace(y: np.ndarray) -> np.ndarray:
    if y.size > SMALL_ARRAY:
        return np.clip(y, F32(0), F32(6), out=y)
    np.maximum(y, F32(0), out=y)
    return np.minimum(y, F32(6), out=y)


def _sigmoid_by_exp(y: np.ndarray) -> np.ndarray:
    # 1 / (1 + exp(-y)); exp overflows to inf below -88, which gives the exact limit 0
    np.negative(y, out=y)
    with np.errstate(over="ignore", under="ignore"):
        np.exp(y, out=y)
        y += F32(1)
        return np.reciprocal(y, out=y)


def _sigmoid_by_tanh(y: np.ndarray) -> np.ndarray:
    # 0.5 + 0.5 * tanh(y / 2); below -17 the result is within 3e-8 of 0 instead of exact
    np.multiply(y, F32(0.5), out=y)
    np.tanh(y, out=y)
    np.multiply(y, F32(0.5), out=y)
    return np.add(y, F32(0.5), out=y)


def _swish_by_exp(y: np.ndarray) -> np.ndarray:
    # y / (1 + exp(-y)); the scratch holds one block
    scratch = np.negative(y)
    with np.errstate(over="ignore", under="ignore"):
        np.exp(scratch, out=scratch)
        scratch += F32(1)
        return np.divide(y, scratch, out=y)


def _swish_by_tanh(y: np.ndarray) -> np.ndarray:
    # h * (1 + tanh(h)) with h = y / 2; the scratch holds one block
    np.multiply(y, F32(0.5), out=y)
    scratch = np.tanh(y)
    scratch += F32(1)
    return np.multiply(y, scratch, out=y)


# NumPy's float32 exp and tanh run at very different speeds from one CPU to another (their
# SIMD paths): on a 2-core AVX2 EPYC the exp forms took half the time of the tanh forms,
# while an earlier machine measured the tanh form of swish 2.4x faster. The first call times
# both on one block and keeps the exp form unless tanh is clearly faster (both agree with
# Keras to float32 rounding).
_TANH_CLEARLY_FASTER = 0.75
_chosen: dict[str, Callable[[np.ndarray], np.ndarray]] = {}


def _fastest(name: str, by_exp: Callable, by_tanh: Callable) -> Callable:
    """The form chosen for `name`, timed on one block at its first use."""
    if name in _chosen:
        return _chosen[name]
    sample = np.linspace(-12, 12, EPILOGUE_BLOCK // 4, dtype=F32)
    best: dict[Callable, float] = {}
    for _ in range(3):
        for form in (by_exp, by_tanh):
            y = sample.copy()
            start = time.perf_counter()
            form(y)
            seconds = time.perf_counter() - start
            best[form] = min(best.get(form, seconds), seconds)
    faster = by_tanh if best[by_tanh] < _TANH_CLEARLY_FASTER * best[by_exp] else by_exp
    return _chosen.setdefault(name, faster)


def _sigmoid_inplace(y: np.ndarray) -> np.ndarray:
    return _fastest("sigmoid", _sigmoid_by_exp, _sigmoid_by_tanh)(y)


def _swish_inplace(y: np.ndarray) -> np.ndarray:
    return _fastest("swish", _swish_by_exp, _swish_by_tanh)(y)


# Activations applied in place on the layer's own freshly computed output (saves a pass
# and an output-sized allocation on the most common conv activations).
INPLACE_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda y: y,
    "relu": lambda y: relu_plain(y, out=y),
    "relu6": relu6_inplace,
    "sigmoid": _sigmoid_inplace,
    "swish": _swish_inplace,
    "silu": _swish_inplace,
    "tanh": lambda y: np.tanh(y, out=y),
}
INPLACE_SET = frozenset(INPLACE_ACTIVATIONS.values())
# The activations the compiled pass applies itself (None or linear: the bias alone).
COMPILED_CODES: dict[Callable[[np.ndarray], np.ndarray] | None, str] = {
    None: "linear", INPLACE_ACTIVATIONS["linear"]: "linear",
    INPLACE_ACTIVATIONS["relu"]: "relu", INPLACE_ACTIVATIONS["relu6"]: "relu6"}
