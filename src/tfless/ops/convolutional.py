"""Convolution layers: Conv1D/2D/3D, transposed, depthwise and separable convolutions.

Every rank shares one implementation; the Keras class names only fix the rank. Inputs are
computed channels-last (a channels_first input is transposed in and out, as Keras's own
TensorFlow backend does on CPU). Kernels are rearranged once at build time into the
matrices the kernels below multiply with:

- regular convolution: im2col into one contiguous float32 buffer (copied from a strided
  window view of the padded input, ops/conv_im2col.py) and one BLAS sgemm per call (in
  bounded-memory chunks for large inputs); a 1x1 stride-1 convolution is a plain matmul on
  the input, no copy;
- depthwise convolution: one einsum of a strided window view of the input with the kernel
  per cache-sized block of output rows (all taps in one pass);
- transposed convolution: one matmul of the input with all kernel taps, then a strided
  add per tap into the output (the scatter form of the convolution's gradient).

Bias and activation run in place on cache-sized blocks of the freshly computed output
(`ops/conv_epilogue.py`: one pass over memory instead of one per elementwise step).

Padding follows TensorFlow: 'same' puts the odd extra cell after, 'causal' pads
`dilation * (kernel - 1)` cells before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..errors import InputError, ModelFormatError, UnsupportedLayer
from ..registry import register
from . import compiled
from .activations import activation_name, get_activation
from .conv_epilogue import (
    COMPILED_CODES,
    EPILOGUE_BLOCK,
    INPLACE_ACTIVATIONS,
    INPLACE_SET,
    epilogue,
)
from .conv_im2col import GATHER_MAX, IM2COL_BUDGET, chunks, gather_index, im2col, windows
from .core import check_no_quantization

F32 = np.float32
# Output elements a depthwise convolution computes at once (its epilogue then runs on them
# while they are in cache): about one core's L2 (1 MB of float32). Smaller
# blocks measured slower (MobileNetV2 batch 32 on 2 threads: 83/s at 128 KB, 110/s at
# 1 MB): every NumPy call holds the GIL for its dispatch, which the shard threads share.
DEPTHWISE_BLOCK = 1 << 18

Pads = list[tuple[int, int]]
# The config key under which the runtime hands a layer the padding of a ZeroPadding layer it
# folded into it (runtime/absorb.py); never in a saved config, never seen by the exporters.
ABSORBED_PADDING = "_absorbed_padding"


def int_tuple(value: Any, rank: int, field: str, layer: str) -> tuple[int, ...]:
    """A Keras int-or-tuple argument as a tuple of `rank` ints."""
    if isinstance(value, (int, np.integer)):
        return (int(value),) * rank
    if isinstance(value, (list, tuple)) and len(value) == 1 and rank > 1:
        return (int(value[0]),) * rank
    if isinstance(value, (list, tuple)) and len(value) == rank:
        return tuple(int(v) for v in value)
    raise ModelFormatError(
        f"layer '{layer}': {field} must be an int or {rank} ints. Received: {field}={value!r}"
    )


def channels_first(config: dict, layer: str) -> bool:
    fmt = config.get("data_format") or "channels_last"
    if fmt not in ("channels_last", "channels_first"):
        raise UnsupportedLayer(
            f"layer '{layer}': data_format must be 'channels_last' or 'channels_first'. "
            f"Received: data_format={fmt!r}"
        )
    return fmt == "channels_first"


def to_channels_last(x: np.ndarray, first: bool) -> np.ndarray:
    return np.moveaxis(x, 1, -1) if first else x


def from_channels_last(y: np.ndarray, first: bool) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(y, -1, 1)) if first else y


@dataclass(frozen=True)
class Geometry:
    """Window geometry of one convolution or pooling layer (per spatial axis)."""

    layer: str
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: str
    # (before, after) zeros of a ZeroPadding layer the runtime folded into this layer
    # (runtime/absorb.py), added ahead of `padding` (which then applies to the padded size)
    absorbed: tuple[tuple[int, int], ...] = ()

    @property
    def rank(self) -> int:
        return len(self.kernel)

    @property
    def span(self) -> tuple[int, ...]:
        """The dilated kernel extent."""
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel, self.dilation))

    def pads(self, sizes: Sequence[int]) -> Pads:
        """(before, after) zero padding of each spatial axis, as TensorFlow computes it, plus
        any absorbed ZeroPadding."""
        if self.absorbed:
            padded = [n + b + a for n, (b, a) in zip(sizes, self.absorbed)]
            return [(b + eb, a + ea) for (b, a), (eb, ea)
                    in zip(replace(self, absorbed=()).pads(padded), self.absorbed)]
        if self.padding == "valid":
            return [(0, 0)] * self.rank
        if self.padding == "causal":
            return [(span - 1, 0) for span in self.span]
        out = []
        for n, s, span in zip(sizes, self.strides, self.span):
            total = max((-(-n // s) - 1) * s + span - n, 0)
            out.append((total // 2, total - total // 2))
        return out

    def padded_out(self, sizes: Sequence[int]) -> tuple[Pads, tuple[int, ...]]:
        """The padding of unpadded spatial `sizes` and the output sizes it leads to."""
        pads = self.pads(sizes)
        return pads, self.out_sizes([n + b + a for n, (b, a) in zip(sizes, pads)])

    def out_sizes(self, padded: Sequence[int]) -> tuple[int, ...]:
        sizes = tuple((n - span) // s + 1 for n, span, s in zip(padded, self.span, self.strides))
        if min(sizes) < 1:
            raise InputError(
                f"layer '{self.layer}': input of spatial size {tuple(padded)} (after padding) is "
                f"smaller than the kernel extent {self.span}"
            )
        return sizes

    def tap_slices(self, tap: Sequence[int], out: Sequence[int]) -> tuple[slice, ...]:
        """The strided input slice that kernel tap `tap` reads for every output position."""
        return tuple(
            slice(t * d, t * d + (o - 1) * s + 1, s)
            for t, d, s, o in zip(tap, self.dilation, self.strides, out)
        )


def geometry(config: dict, rank: int, allow_causal: bool, size_field: str = "kernel_size",
             default_size: Any = None, pooling: bool = False) -> Geometry:
    """The window geometry in a layer config; pooling strides default to the pool size."""
    layer = config.get("name", "")
    size = config.get(size_field, default_size)
    if size is None:
        raise ModelFormatError(f"layer '{layer}': config has no {size_field}")
    kernel = int_tuple(size, rank, size_field, layer)
    strides = config.get("strides")
    if strides is None:
        strides = kernel if pooling else 1
    strides = int_tuple(strides, rank, "strides", layer)
    dilation = int_tuple(config.get("dilation_rate", 1), rank, "dilation_rate", layer)
    padding = str(config.get("padding", "valid")).lower()
    allowed = ("valid", "same", "causal") if allow_causal else ("valid", "same")
    if padding not in allowed:
        raise UnsupportedLayer(
            f"layer '{layer}': padding must be one of {', '.join(allowed)}. Received: padding={padding!r}"
        )
    if min(kernel + strides + dilation) < 1:
        raise ModelFormatError(
            f"layer '{layer}': kernel_size, strides and dilation_rate must be positive. Received: "
            f"kernel_size={kernel}, strides={strides}, dilation_rate={dilation}"
        )
    absorbed = tuple((int(b), int(a)) for b, a in config.get(ABSORBED_PADDING, ()))
    return Geometry(layer, kernel, strides, dilation, padding, absorbed)


def pad_spatial(x: np.ndarray, pads: Pads, value: float = 0.0) -> np.ndarray:
    """Pad the spatial axes of a channels-last (batch, *spatial, channels) array."""
    if not any(b or a for b, a in pads):
        return x
    sizes = [n + b + a for n, (b, a) in zip(x.shape[1:-1], pads)]
    out = np.empty((x.shape[0], *sizes, x.shape[-1]), dtype=x.dtype)
    out[(slice(None), *(slice(b, b + n) for n, (b, _) in zip(x.shape[1:-1], pads)))] = x
    for axis, ((before, after), size) in enumerate(zip(pads, sizes), start=1):
        lead = (slice(None),) * axis
        if before:
            out[(*lead, slice(0, before))] = value
        if after:
            out[(*lead, slice(size - after, size))] = value
    return out


def flatten_batch(x: np.ndarray, rank: int, layer: str) -> tuple[np.ndarray, tuple[int, ...]]:
    """Fold extra leading axes into the batch (TF convolutions accept them)."""
    if x.ndim < rank + 2:
        raise InputError(
            f"layer '{layer}' expects inputs of rank {rank + 2} (batch, {rank} spatial axes, "
            f"channels), got shape {x.shape}"
        )
    lead = x.shape[: x.ndim - rank - 1]
    if len(lead) == 1:
        return x, lead
    return x.reshape((-1, *x.shape[len(lead):])), lead


def _check_channels(layer: str, x: np.ndarray, expected: int) -> None:
    if x.shape[-1] != expected:
        raise InputError(
            f"layer '{layer}' expects {expected} input channels, got input of shape {x.shape} "
            "(channels-last view)"
        )


# ----- regular convolution ---------------------------------------------------------------
# From this many output elements (16 MB, half this machine's L3) a 1x1 convolution runs its
# GEMM in blocks of rows, each followed by its epilogue while the block is in cache, instead
# of one GEMM and then a pass over memory: MobileNetV2's first expansion (16 x 112x112 rows,
# 16 -> 96 channels) took 32 ms one-threaded as one GEMM + epilogue and 21 ms in blocks;
# below, the outputs stay in cache anyway and blocks measured the same or slower.
GEMM_BLOCKS_FROM = 1 << 22


def conv_channels_last(x: np.ndarray, geo: Geometry, wmat: np.ndarray, groups: int,
                       bias: np.ndarray | None = None,
                       act: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Convolution of (batch, *spatial, C) with `wmat` of shape (groups, K*C/groups, F/groups),
    rows ordered (kernel taps..., input channel), plus optional bias and activation (applied
    in place if `act` is one of INPLACE_ACTIVATIONS). Returns (batch, *out, F) float32."""
    n_in = x.shape[-1]
    x = np.ascontiguousarray(x, dtype=F32)
    wmat = np.asarray(wmat, dtype=F32)
    filters = wmat.shape[0] * wmat.shape[2]
    gather = gather_index(x.shape, geo, GATHER_MAX) if groups == 1 else None
    if gather is not None:
        y = np.empty((*gather[0], filters), dtype=F32)
        flat = np.concatenate((x.reshape(-1), np.zeros(1, F32)))
        np.matmul(flat[gather[1]], wmat[0], out=y.reshape(-1, filters))
        return epilogue(y, bias, act)
    pads, out = geo.padded_out(x.shape[1:-1])
    y = np.empty((x.shape[0], *out, filters), dtype=F32)
    taps = math.prod(geo.kernel)
    xp = pad_spatial(x, pads)
    # bias and activation on each block of rows just computed, while it is in cache (not
    # when the activation makes a new array)
    in_place = act is None or act in INPLACE_SET
    if groups == 1 and taps == 1:
        if all(s == 1 for s in geo.strides):
            cols = xp.reshape(-1, n_in)  # a view: 1x1 stride 1 reads the input as it is
        else:
            cols = xp[(slice(None), *(slice(None, (o - 1) * s + 1, s)
                                      for o, s in zip(out, geo.strides)))].reshape(-1, n_in)
        flat = y.reshape(-1, filters)
        if y.size < GEMM_BLOCKS_FROM or not in_place:
            np.matmul(cols, wmat[0], out=flat)
            return epilogue(y, bias, act)
        step = max(1, EPILOGUE_BLOCK // filters)
        for start in range(0, flat.shape[0], step):  # each block's epilogue while in cache
            np.matmul(cols[start:start + step], wmat[0], out=flat[start:start + step])
            epilogue(flat[start:start + step], bias, act)
        return y
    blocks = chunks(x.shape[0], out, taps * n_in, IM2COL_BUDGET)
    in_place = in_place and len(blocks) > 1  # else once, on the whole output
    first_block = y[blocks[0]]
    buffer = np.empty(first_block.size // filters * taps * n_in, dtype=F32)
    for block in blocks:
        dst = y[block]
        cols = buffer[: dst.size // filters * taps * n_in].reshape(
            (*dst.shape[:-1], taps, n_in))
        im2col(xp, geo, out, block, cols)
        flat = dst.reshape(-1, filters)  # a view: blocks split only the leading axes
        if groups == 1:
            np.matmul(cols.reshape(-1, taps * n_in), wmat[0], out=flat)
        else:
            per_group = n_in // groups
            grouped = cols.reshape(-1, taps, groups, per_group).transpose(2, 0, 1, 3)
            res = np.matmul(grouped.reshape(groups, -1, taps * per_group), wmat)
            flat[...] = res.transpose(1, 0, 2).reshape(-1, filters)
        if in_place:
            epilogue(dst, bias, act)
    return y if in_place else epilogue(y, bias, act)


def conv_matrix(kernel: np.ndarray, groups: int) -> np.ndarray:
    """Keras kernel (*k, C/groups, F) -> (groups, K*C/groups, F/groups)."""
    per_group_in, filters = kernel.shape[-2], kernel.shape[-1]
    mat = kernel.reshape(-1, per_group_in, groups, filters // groups)
    return np.ascontiguousarray(mat.transpose(2, 0, 1, 3).reshape(groups, -1, filters // groups))


def _keras1_kernel(op: str, config: dict, kernel: np.ndarray, rank: int) -> np.ndarray:
    """Keras 1 stored some kernels in other layouts; rearrange them as tf_keras's loader does.

    Keras 1 ran a 1D convolution as a 2D one: (k, 1, in, filters), or in Keras <= 1.1
    (filters, in, k, 1). With dim_ordering 'th' 2D/3D kernels were (filters, in, *k) and
    transposed kernels (filters, in, *k) / (*k, in, filters) for 'tf'. Theano-backend kernels
    are flipped as well, but Keras 1 files do not record their backend, so like tf_keras we
    cannot (and do not) undo that.
    """
    if config.get("keras_major") != 1:
        return kernel
    first = config.get("data_format") == "channels_first"
    if op == "conv" and rank == 1 and kernel.ndim == 4:
        size = int_tuple(config.get("kernel_size"), 1, "kernel_size", config.get("name", ""))[0]
        if kernel.shape[:2] != (size, 1) or kernel.shape[3] != config.get("filters"):
            kernel = kernel.transpose(2, 3, 1, 0)
        return kernel[:, 0]
    if op in ("conv", "separable") and first and kernel.ndim == rank + 2:
        return kernel.transpose(*range(2, rank + 2), 1, 0)
    if op == "transpose" and rank == 2:
        return kernel.transpose(2, 3, 0, 1) if first else kernel.transpose(0, 1, 3, 2)
    return kernel


def _check_kernel(layer: str, name: str, kernel: np.ndarray, rank: int,
                  size: tuple[int, ...], last: int | None, where: str) -> None:
    if kernel.ndim != rank + 2 or kernel.shape[:rank] != size or \
            (last is not None and kernel.shape[-1] != last):
        raise ModelFormatError(
            f"layer '{layer}': {name} has shape {kernel.shape}, expected "
            f"{size + ('in', where)} (kernel_size={size})"
        )


def _bias_weights(*kernels: str) -> Callable[[dict], list[str]]:
    def names(config: dict) -> list[str]:
        bias = config.get("use_bias", True)
        return [*kernels, "bias"] if bias else list(kernels)

    return names


def _finish(config: dict, weights: dict) -> tuple[np.ndarray | None, Callable]:
    bias = weights.get("bias")
    name = activation_name(config.get("activation"))
    act = INPLACE_ACTIVATIONS.get(name) or get_activation(config.get("activation"),
                                                          config.get("name", ""))
    return None if bias is None else np.asarray(bias, F32).reshape(-1), act


def _unfold(y: np.ndarray, lead: tuple[int, ...], first: bool) -> np.ndarray:
    if len(lead) != 1:
        y = y.reshape((*lead, *y.shape[1:]))
        if first:
            return np.ascontiguousarray(np.moveaxis(y, -1, len(lead)))
        return y
    return from_channels_last(y, first)


def _batched_input(x: np.ndarray, rank: int, first: bool, layer: str
                   ) -> tuple[np.ndarray, tuple[int, ...]]:
    x = np.asarray(x)
    if x.dtype != F32:  # Keras casts inputs to the layer's float32 compute dtype
        x = x.astype(F32)
    flat, lead = flatten_batch(x, rank, layer)
    return to_channels_last(flat, first), lead


def make_conv(rank: int) -> Callable[[dict, dict], Callable]:
    def build(config: dict, weights: dict) -> Callable:
        check_no_quantization(config)
        name = config.get("name", "")
        if config.get("lora_rank"):
            raise UnsupportedLayer(f"layer '{name}': LoRA-enabled convolutions are not supported")
        geo = geometry(config, rank, allow_causal=rank == 1)
        first = channels_first(config, name)
        groups = int(config.get("groups", 1) or 1)
        kernel = _keras1_kernel("conv", config, np.asarray(weights["kernel"], F32), rank)
        _check_kernel(name, "kernel", kernel, rank, geo.kernel, config.get("filters"), "filters")
        if kernel.shape[-1] % groups:
            raise ModelFormatError(
                f"layer '{name}': filters ({kernel.shape[-1]}) must be divisible by groups. "
                f"Received: groups={groups}"
            )
        wmat = conv_matrix(kernel, groups)
        n_in = kernel.shape[-2] * groups
        bias, act = _finish(config, weights)

        def run(x: np.ndarray) -> np.ndarray:
            xc, lead = _batched_input(x, rank, first, name)
            _check_channels(name, xc, n_in)
            return _unfold(conv_channels_last(xc, geo, wmat, groups, bias, act), lead, first)

        return run

    return build


for _rank in (1, 2, 3):
    register(f"Conv{_rank}D", weights=_bias_weights("kernel"))(make_conv(_rank))


# ----- depthwise and separable convolution -------------------------------------------------
def depthwise_channels_last(x: np.ndarray, geo: Geometry, kernel: np.ndarray,
                            bias: np.ndarray | None = None,
                            act: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Depthwise convolution of (batch, *spatial, C) with kernel (*k, C, M) -> (batch, *out, C*M),
    plus optional bias and activation.

    Output channel c*M + m reads input channel c, so with M > 1 the input channels are
    repeated M times first. The padded input is viewed (no copy) as windows of shape
    (batch, out rows, out cols, kh, kw, C*M) (conv_im2col.windows, as im2col reads it), and
    one einsum per cache-sized block of output rows sums each window against the kernel:
    NumPy's sum-of-products loop does every tap in one pass (1.2-2.8x faster than a
    multiply and an add per tap), adding the taps in the same row-major order. Bias and an
    in-place activation run on each block while it is in cache. A 1D convolution runs as a
    2D one over a height-1 image. With the `fast` extra (ops/compiled.py) a compiled loop
    that skips the padding runs instead, with the same sums in the same order.
    """
    if geo.rank == 1:
        geo2 = Geometry(geo.layer, (1, *geo.kernel), (1, *geo.strides), (1, *geo.dilation),
                        geo.padding, ((0, 0), *geo.absorbed) if geo.absorbed else ())
        return depthwise_channels_last(x[:, None], geo2, kernel[None], bias, act)[:, 0]
    n_in, mult = kernel.shape[-2], kernel.shape[-1]
    width = n_in * mult
    x = np.ascontiguousarray(x, dtype=F32)
    if mult > 1:
        x = np.repeat(x, mult, axis=-1)
    pads, out = geo.padded_out(x.shape[1:-1])
    weights = np.ascontiguousarray(np.asarray(kernel, F32).reshape(*geo.kernel, width))
    if compiled.available():
        y = np.empty((x.shape[0], *out, width), dtype=F32)
        coded = COMPILED_CODES.get(act)
        compiled.depthwise2d(x, weights, bias, geo.strides, geo.dilation,
                             (pads[0][0], pads[1][0]), y, coded or "linear")
        return y if coded else epilogue(y, None, act)
    view = windows(pad_spatial(x, pads), geo, out)
    height, cols = out
    acc = np.empty((x.shape[0], height, cols, width), dtype=F32)
    blockwise = act is None or act in INPLACE_SET
    rows = max(1, min(height, DEPTHWISE_BLOCK // (cols * width)))
    for b in range(x.shape[0]):
        for top in range(0, height, rows):
            dst = acc[b, top:top + rows]
            np.einsum("hwijc,ijc->hwc", view[b, top:top + rows], weights, out=dst)
            if blockwise:
                epilogue(dst, bias, act)
    return acc if blockwise else epilogue(acc, bias, act)


def _depthwise_kernel(config: dict, weights: dict, rank: int, geo: Geometry, key: str,
                      name: str) -> np.ndarray:
    kernel = _keras1_kernel("separable", config, np.asarray(weights[key], F32), rank)
    _check_kernel(name, key, kernel, rank, geo.kernel, int(config.get("depth_multiplier", 1)),
                  "depth_multiplier")
    return kernel


def make_depthwise(rank: int) -> Callable[[dict, dict], Callable]:
    def build(config: dict, weights: dict) -> Callable:
        check_no_quantization(config)
        name = config.get("name", "")
        geo = geometry(config, rank, allow_causal=rank == 1)
        first = channels_first(config, name)
        kernel = _depthwise_kernel(config, weights, rank, geo, "depthwise_kernel", name)
        bias, act = _finish(config, weights)

        def run(x: np.ndarray) -> np.ndarray:
            xc, lead = _batched_input(x, rank, first, name)
            _check_channels(name, xc, kernel.shape[-2])
            return _unfold(depthwise_channels_last(xc, geo, kernel, bias, act), lead, first)

        return run

    return build


def make_separable(rank: int) -> Callable[[dict, dict], Callable]:
    def build(config: dict, weights: dict) -> Callable:
        check_no_quantization(config)
        name = config.get("name", "")
        geo = geometry(config, rank, allow_causal=rank == 1)
        first = channels_first(config, name)
        kernel = _depthwise_kernel(config, weights, rank, geo, "depthwise_kernel", name)
        pointwise = _keras1_kernel("separable", config, np.asarray(weights["pointwise_kernel"], F32),
                                   rank)
        width = kernel.shape[-2] * kernel.shape[-1]
        if pointwise.shape[:-1] != (1,) * rank + (width,):
            raise ModelFormatError(
                f"layer '{name}': pointwise_kernel has shape {pointwise.shape}, expected "
                f"{(1,) * rank + (width, 'filters')}"
            )
        pmat = np.ascontiguousarray(pointwise.reshape(width, -1))
        bias, act = _finish(config, weights)

        def run(x: np.ndarray) -> np.ndarray:
            xc, lead = _batched_input(x, rank, first, name)
            _check_channels(name, xc, kernel.shape[-2])
            depth = depthwise_channels_last(xc, geo, kernel)
            y = np.matmul(depth.reshape(-1, width), pmat).reshape((*depth.shape[:-1], -1))
            return _unfold(epilogue(y, bias, act), lead, first)

        return run

    return build


for _rank in (1, 2):
    register(f"DepthwiseConv{_rank}D", weights=_bias_weights("depthwise_kernel"))(
        make_depthwise(_rank))
    register(f"SeparableConv{_rank}D", weights=_bias_weights("depthwise_kernel", "pointwise_kernel"))(
        make_separable(_rank))


# ----- transposed convolution --------------------------------------------------------------
def transpose_out_size(size: int, kernel: int, stride: int, dilation: int, padding: str,
                       output_padding: int | None) -> int:
    """Keras's output length of a transposed convolution (same in Keras 2 and 3)."""
    span = (kernel - 1) * dilation + 1
    if output_padding is None:
        return size * stride if padding == "same" else (size - 1) * stride + max(span, stride)
    if padding == "same":
        return (size - 1) * stride + span % 2 + output_padding
    return (size - 1) * stride + span + output_padding


def conv_transpose_channels_last(x: np.ndarray, geo: Geometry, wmat: np.ndarray,
                                 out: Sequence[int]) -> np.ndarray:
    """Transposed convolution of (batch, *in, C) with `wmat` (C, K*F) -> (batch, *out, F).

    Input cell i and tap k add into output cell i*stride + k*dilation - pad_before, where
    pad_before is the 'same' padding TensorFlow's forward convolution of `out` would use.
    """
    rank = geo.rank
    batch, sizes = x.shape[0], x.shape[1:-1]
    filters = wmat.shape[1] // math.prod(geo.kernel)
    cols = np.matmul(x.reshape(-1, x.shape[-1]), wmat)
    cols = cols.reshape((batch, *sizes, *geo.kernel, filters))
    before = [p for p, _ in geo.pads(out)] if geo.padding == "same" else [0] * rank
    full = [max((n - 1) * s + span, b + o)
            for n, s, span, b, o in zip(sizes, geo.strides, geo.span, before, out)]
    y = np.zeros((batch, *full, filters), dtype=cols.dtype)
    for tap in np.ndindex(*geo.kernel):
        y[(slice(None), *geo.tap_slices(tap, sizes))] += cols[(slice(None),) * (rank + 1) + tap]
    crop = y[(slice(None), *(slice(b, b + o) for b, o in zip(before, out)))]
    return crop if crop.shape == y.shape else np.ascontiguousarray(crop)


def make_conv_transpose(rank: int) -> Callable[[dict, dict], Callable]:
    def build(config: dict, weights: dict) -> Callable:
        check_no_quantization(config)
        name = config.get("name", "")
        geo = geometry(config, rank, allow_causal=False)
        first = channels_first(config, name)
        kernel = _keras1_kernel("transpose", config, np.asarray(weights["kernel"], F32), rank)
        if kernel.ndim != rank + 2 or kernel.shape[:rank] != geo.kernel or (
                config.get("filters") is not None and kernel.shape[-2] != config["filters"]):
            raise ModelFormatError(
                f"layer '{name}': kernel has shape {kernel.shape}, expected "
                f"{geo.kernel + ('filters', 'in')} (kernel_size={geo.kernel})"
            )
        n_in = kernel.shape[-1]
        # (*k, F, C) -> (C, *k, F) -> (C, K*F)
        wmat = np.ascontiguousarray(np.moveaxis(kernel, -1, 0).reshape(n_in, -1))
        out_pad = config.get("output_padding")
        out_pad = None if out_pad is None else int_tuple(out_pad, rank, "output_padding", name)
        fixed = _keras1_output_shape(config, rank, first)
        bias, act = _finish(config, weights)

        def run(x: np.ndarray) -> np.ndarray:
            xc, lead = _batched_input(x, rank, first, name)
            _check_channels(name, xc, n_in)
            out = fixed or tuple(
                transpose_out_size(n, k, s, d, geo.padding, None if out_pad is None else p)
                for n, k, s, d, p in zip(xc.shape[1:-1], geo.kernel, geo.strides, geo.dilation,
                                         out_pad or (0,) * rank))
            y = conv_transpose_channels_last(xc, geo, wmat, out)
            if bias is not None:
                y += bias
            return _unfold(act(y), lead, first)

        return run

    return build


def _keras1_output_shape(config: dict, rank: int, first: bool) -> tuple[int, ...] | None:
    """Keras 1 Deconvolution2D stored the output shape it was built with."""
    shape = config.get("output_shape") if config.get("keras_major") == 1 else None
    if not isinstance(shape, (list, tuple)) or len(shape) != rank + 2:
        return None
    spatial = shape[2:] if first else shape[1:-1]
    if any(d is None for d in spatial):
        return None
    return tuple(int(d) for d in spatial)


for _rank in (1, 2, 3):
    register(f"Conv{_rank}DTranspose", weights=_bias_weights("kernel"))(make_conv_transpose(_rank))

__all__ = ["INPLACE_ACTIVATIONS", "epilogue"]  # imported from here by other kernels
