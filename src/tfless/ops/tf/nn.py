"""Raw TensorFlow neural-network ops: activations, Softmax, BiasAdd, convolutions, pooling
and fused batch normalization (TF's nn_ops vocabulary).

Convolution and pooling run on the shared channels-last kernels of `ops/convolutional.py`
and `ops/pooling.py` (the same code the Keras and TFLite ops use); only the TF attr forms
(`strides=[1, h, w, 1]`, `padding=b"SAME"`, `data_format`) are read here.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..activations import elu, log_softmax, relu_plain, selu, softmax
from ..convolutional import (
    Geometry,
    conv_channels_last,
    conv_matrix,
    conv_transpose_channels_last,
    depthwise_channels_last,
    from_channels_last,
    pad_spatial,
    to_channels_last,
)
from ..pooling import pool_channels_last
from .common import Compute, TfNode, arr, ints, tf_kernel

F32 = np.float32


def _float_unary(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[TfNode], Compute]:
    def make(node: TfNode) -> Compute:
        def compute(x: np.ndarray) -> np.ndarray:
            if x.dtype.kind != "f":
                raise node.bad_input(f"input of type {x.dtype} is not supported (float only)")
            return arr(fn(x)).astype(x.dtype, copy=False)

        return compute

    return make


def _real_unary(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[TfNode], Compute]:
    """Relu and Relu6 take every real type in TF, integers included."""
    def make(node: TfNode) -> Compute:
        def compute(x: np.ndarray) -> np.ndarray:
            if x.dtype.kind not in "fiu":
                raise node.bad_input(f"input of type {x.dtype} is not supported")
            return arr(fn(x)).astype(x.dtype, copy=False)

        return compute

    return make


tf_kernel("Relu")(_real_unary(lambda x: relu_plain(x) if x.dtype == F32 else
                              np.maximum(x, x.dtype.type(0))))
tf_kernel("Relu6")(_real_unary(lambda x: np.clip(x, x.dtype.type(0), x.dtype.type(6))))
tf_kernel("Elu")(_float_unary(lambda x: elu(x).astype(x.dtype, copy=False)))
tf_kernel("Selu")(_float_unary(lambda x: selu(x).astype(x.dtype, copy=False)))


@tf_kernel("LeakyRelu")
def leaky_relu(node: TfNode) -> Compute:
    alpha = float(node.attr("alpha", 0.2))

    def compute(x: np.ndarray) -> np.ndarray:
        if x.dtype.kind != "f":
            raise node.bad_input(f"input of type {x.dtype} is not supported (float only)")
        return np.where(x > 0, x, x * x.dtype.type(alpha))

    return compute


def _softmax(fn: Callable[..., np.ndarray]) -> Callable[[TfNode], Compute]:
    def make(node: TfNode) -> Compute:
        def compute(x: np.ndarray) -> np.ndarray:
            if x.ndim < 1 or x.dtype.kind != "f":
                raise node.bad_input(f"needs a float tensor of rank >= 1, got {x.dtype} {x.shape}")
            return arr(fn(x, axis=-1)).astype(x.dtype, copy=False)

        return compute

    return make


tf_kernel("Softmax")(_softmax(softmax))
tf_kernel("LogSoftmax")(_softmax(log_softmax))


@tf_kernel("BiasAdd", "BiasAddV1")
def bias_add(node: TfNode) -> Compute:
    first = node.choice("data_format", ("NHWC", "NCHW"), "NHWC") == "NCHW"

    def compute(x: np.ndarray, bias: np.ndarray) -> np.ndarray:
        axis = 1 if first and x.ndim > 2 else -1
        if bias.ndim != 1 or x.ndim < 2 or x.shape[axis] != bias.shape[0]:
            raise node.bad_input(f"bias of shape {bias.shape} does not fit input {x.shape}")
        if x.dtype != bias.dtype:
            raise node.bad_input(f"bias type {bias.dtype} differs from input type {x.dtype}")
        if axis == 1:
            bias = bias.reshape((-1,) + (1,) * (x.ndim - 2))
        return x + bias

    return compute


# ----- window geometry --------------------------------------------------------------------
class Window:
    """A convolution/pooling node's attrs: layout, strides, dilations and padding."""

    def __init__(self, node: TfNode, rank: int, explicit: bool, pooling: bool = False) -> None:
        self.node = node
        self.rank = rank
        last, first = ("NHWC", "NCHW") if rank == 2 else ("NDHWC", "NCDHW")
        self.first = node.choice("data_format", (last, first), last) == first
        paddings = ("SAME", "VALID", "EXPLICIT") if explicit else ("SAME", "VALID")
        self.padding = node.choice("padding", paddings)
        self.strides = self._spatial("strides", None)
        self.dilations = self._spatial("dilations", 1)
        self.ksize = self._spatial("ksize", None) if pooling and "ksize" in node.config else None
        self.explicit: list[tuple[int, int]] | None = None
        if self.padding == "EXPLICIT":
            flat = [int(p) for p in node.attr("explicit_paddings")]
            if len(flat) != 2 * (rank + 2) or min(flat, default=0) < 0:
                raise node.refuse("explicit_paddings", flat, f"{rank + 2} non-negative pairs")
            pairs = [(flat[2 * i], flat[2 * i + 1]) for i in range(rank + 2)]
            outer = (pairs[0], pairs[1]) if self.first else (pairs[0], pairs[-1])
            if any(outer[0]) or any(outer[1]):
                raise node.refuse("explicit_paddings", flat, "padding of the spatial axes only")
            self.explicit = pairs[2:] if self.first else pairs[1:-1]

    def _spatial(self, key: str, default: int | None) -> tuple[int, ...]:
        values = self.node.attr(key, None)
        if values is None:
            if default is None:
                raise self.node.bad_input(f"the NodeDef lacks its '{key}' attr")
            return (default,) * self.rank
        return self.split(key, [int(v) for v in values])

    def split(self, key: str, values: list[int]) -> tuple[int, ...]:
        """The spatial entries of a per-dimension list; batch/channel entries must be 1."""
        if len(values) != self.rank + 2:
            raise self.node.refuse(key, values, f"{self.rank + 2} entries")
        outer = (values[0], values[1]) if self.first else (values[0], values[-1])
        spatial = values[2:] if self.first else values[1:-1]
        if outer != (1, 1) or min(spatial) < 1:
            raise self.node.refuse(key, values, "1 on the batch and channel axes, positive "
                                   "spatial entries")
        return tuple(spatial)

    def geometry(self, kernel: tuple[int, ...], strides: tuple[int, ...] | None = None
                 ) -> Geometry:
        padding = "same" if self.padding == "SAME" else "valid"
        return Geometry(self.node.name, tuple(kernel), strides or self.strides, self.dilations,
                        padding)

    def to_last(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != self.rank + 2:
            raise self.node.bad_input(f"expects a rank-{self.rank + 2} input, got {x.shape}")
        if x.dtype != F32:
            raise self.node.bad_input(f"input of type {x.dtype} is not supported (float32)")
        x = to_channels_last(x, self.first)
        if self.explicit is not None:  # pre-pad, then run the window as VALID
            x = pad_spatial(np.ascontiguousarray(x), self.explicit,
                            -np.inf if self.node.op.startswith("MaxPool") else 0.0)
        return x

    def from_last(self, y: np.ndarray) -> np.ndarray:
        return from_channels_last(y, self.first)


class FilterCache:
    """Re-arranges a filter once per distinct array: in a graph it comes from a Const node,
    which hands the same array to every run. One (key, source, value) tuple is swapped in
    whole, so concurrent predicts never pair a key with another filter's layout."""

    def __init__(self, arrange: Callable[..., np.ndarray]) -> None:
        self.arrange = arrange
        self.entry: tuple[tuple, np.ndarray, np.ndarray] | None = None

    def get(self, filt: np.ndarray, *extra: int) -> np.ndarray:
        key = (id(filt), *extra)
        entry = self.entry
        if entry is not None and entry[0] == key and entry[1] is filt:
            return entry[2]
        value = self.arrange(np.asarray(filt, F32), *extra)
        self.entry = (key, filt, value)
        return value


def _check_filter(node: TfNode, filt: np.ndarray, rank: int) -> None:
    if filt.ndim != rank + 2:
        raise node.bad_input(f"filter of shape {filt.shape} is not rank {rank + 2}")


def _conv(rank: int) -> Callable[[TfNode], Compute]:
    def make(node: TfNode) -> Compute:
        win = Window(node, rank, explicit=rank == 2)
        cache = FilterCache(conv_matrix)

        def compute(x: np.ndarray, filt: np.ndarray) -> np.ndarray:
            _check_filter(node, filt, rank)
            xl = win.to_last(x)
            channels, per_group = xl.shape[-1], filt.shape[-2]
            if channels % per_group or filt.shape[-1] % (channels // per_group):
                raise node.bad_input(f"input of {channels} channels does not fit a filter of "
                                     f"shape {filt.shape}")
            groups = channels // per_group
            geo = win.geometry(filt.shape[:rank])
            return win.from_last(conv_channels_last(xl, geo, cache.get(filt, groups), groups))

        return compute

    return make


tf_kernel("Conv2D")(_conv(2))
tf_kernel("Conv3D")(_conv(3))


@tf_kernel("DepthwiseConv2dNative")
def depthwise_conv(node: TfNode) -> Compute:
    win = Window(node, 2, explicit=True)

    def compute(x: np.ndarray, filt: np.ndarray) -> np.ndarray:
        _check_filter(node, filt, 2)
        xl = win.to_last(x)
        if xl.shape[-1] != filt.shape[2]:
            raise node.bad_input(f"input of {xl.shape[-1]} channels does not fit a depthwise "
                                 f"filter of shape {filt.shape}")
        geo = win.geometry(filt.shape[:2])
        return win.from_last(depthwise_channels_last(xl, geo, np.asarray(filt, F32)))

    return compute


def _transpose_matrix(filt: np.ndarray) -> np.ndarray:
    # (*k, in of the forward conv, out of it) -> (out, *k, in) -> (out, K*in)
    return np.ascontiguousarray(np.moveaxis(filt, -1, 0).reshape(filt.shape[-1], -1))


def _conv_backprop_input(rank: int) -> Callable[[TfNode], Compute]:
    def make(node: TfNode) -> Compute:
        win = Window(node, rank, explicit=False)
        cache = FilterCache(_transpose_matrix)

        def compute(sizes: np.ndarray, filt: np.ndarray, x: np.ndarray) -> np.ndarray:
            _check_filter(node, filt, rank)
            dims = ints(sizes)
            if len(dims) != rank + 2:
                raise node.bad_input(f"input_sizes {dims} is not of length {rank + 2}")
            xl = win.to_last(x)
            out_last = dims[2:] if win.first else dims[1:-1]
            n_out = dims[1] if win.first else dims[-1]
            if xl.shape[-1] != filt.shape[-1] or n_out != filt.shape[-2] or \
                    (dims[0] != xl.shape[0]):
                raise node.bad_input(f"out_backprop {x.shape} / input_sizes {dims} do not fit a "
                                     f"filter of shape {filt.shape}")
            geo = win.geometry(filt.shape[:rank])
            padded = [n + b + a for n, (b, a) in zip(out_last, geo.pads(out_last))]
            expected = geo.out_sizes(padded)
            if tuple(expected) != xl.shape[1:-1]:
                raise node.bad_input(f"out_backprop spatial size {xl.shape[1:-1]} does not "
                                     f"match input_sizes {dims} (expected {expected})")
            y = conv_transpose_channels_last(xl, geo, cache.get(filt), out_last)
            return win.from_last(np.ascontiguousarray(y))

        return compute

    return make


tf_kernel("Conv2DBackpropInput")(_conv_backprop_input(2))
tf_kernel("Conv3DBackpropInputV2")(_conv_backprop_input(3))


# ----- pooling ------------------------------------------------------------------------------
def _pool(rank: int, kind: str, dynamic: bool) -> Callable[[TfNode], Compute]:
    def make(node: TfNode) -> Compute:
        win = Window(node, rank, explicit=kind == "max" and rank == 2 and not dynamic,
                     pooling=not dynamic)
        if win.dilations != (1,) * rank:
            raise node.refuse("dilations", node.attr("dilations"), "1")

        def run(x: np.ndarray, ksize: tuple[int, ...], strides: tuple[int, ...]) -> np.ndarray:
            xl = win.to_last(x)
            geo = win.geometry(ksize, strides)
            return win.from_last(pool_channels_last(xl, geo, kind))

        if dynamic:  # MaxPoolV2: window and strides are inputs
            return lambda x, k, s: run(x, win.split("ksize", ints(k)),
                                       win.split("strides", ints(s)))
        if win.ksize is None:
            raise node.bad_input("the NodeDef lacks its 'ksize' attr")
        ksize = win.ksize
        return lambda x: run(x, ksize, win.strides)

    return make


def _no_strides_attr(make: Callable[[TfNode], Compute]) -> Callable[[TfNode], Compute]:
    def wrapped(node: TfNode) -> Compute:
        config = dict(node.config, strides=[1] * 4)
        return make(TfNode(node.op, config, node.weights))

    return wrapped


tf_kernel("MaxPool")(_pool(2, "max", False))
tf_kernel("AvgPool")(_pool(2, "avg", False))
tf_kernel("MaxPool3D")(_pool(3, "max", False))
tf_kernel("AvgPool3D")(_pool(3, "avg", False))
tf_kernel("MaxPoolV2")(_no_strides_attr(_pool(2, "max", True)))


# ----- batch normalization -------------------------------------------------------------------
@tf_kernel("FusedBatchNorm", "FusedBatchNormV2", num_outputs=lambda config: 5)
def fused_batch_norm_v1(node: TfNode) -> Compute:
    return _fused_batch_norm(node, 5)


@tf_kernel("FusedBatchNormV3", num_outputs=lambda config: 6)
def fused_batch_norm_v3(node: TfNode) -> Compute:
    return _fused_batch_norm(node, 6)


def _fused_batch_norm(node: TfNode, n_out: int) -> Compute:
    formats = ("NHWC", "NCHW", "NDHWC", "NCDHW")
    first = node.choice("data_format", formats, "NHWC") in ("NCHW", "NCDHW")
    eps = F32(node.attr("epsilon", 1e-4))
    training = bool(node.attr("is_training", True))
    factor = F32(node.attr("exponential_avg_factor", 1.0))

    def compute(x: np.ndarray, scale: np.ndarray, offset: np.ndarray, mean: np.ndarray,
                var: np.ndarray) -> tuple:
        if x.ndim not in (4, 5) or x.dtype.kind != "f":
            raise node.bad_input(f"expects a rank-4/5 float input, got {x.dtype} {x.shape}")
        axis = 1 if first else x.ndim - 1
        c = x.shape[axis]
        params = [np.asarray(p, F32) for p in (scale, offset, mean, var)]
        if any(p.shape != (c,) for p in params[:2]) or (not training and any(
                p.shape != (c,) for p in params[2:])):
            raise node.bad_input(f"scale/offset/mean/variance do not have {c} entries")
        shape = [1] * x.ndim
        shape[axis] = c
        xf = x.astype(F32, copy=False)
        if training:
            axes = tuple(a for a in range(x.ndim) if a != axis)
            m = xf.mean(axis=axes, dtype=F32)
            v = np.square(xf - m.reshape(shape)).mean(axis=axes, dtype=F32)
            n = x.size // c
            corrected = v * F32(n / max(n - 1, 1))
            if factor != 1 and params[2].size:
                out_m = (F32(1) - factor) * params[2] + factor * m
                out_v = (F32(1) - factor) * params[3] + factor * corrected
            else:
                out_m, out_v = m, corrected
        else:
            m, v = params[2], params[3]
            out_m, out_v = m, v
        mult = (F32(1) / np.sqrt(v + eps)) * params[0]
        y = (xf - m.reshape(shape)) * mult.reshape(shape) + params[1].reshape(shape)
        outs = (y.astype(x.dtype, copy=False), out_m, out_v, m, v)
        return outs + (np.zeros(0, F32),) if n_out == 6 else outs

    return compute


@tf_kernel("LRN")
def local_response_normalization(node: TfNode) -> Compute:
    radius = int(node.attr("depth_radius", 5))
    bias, alpha, beta = (F32(node.attr(k, d)) for k, d in (("bias", 1.0), ("alpha", 1.0),
                                                            ("beta", 0.5)))
    if radius < 0:
        raise node.refuse("depth_radius", radius, "a non-negative integer")

    def compute(x: np.ndarray) -> np.ndarray:
        if x.ndim != 4 or x.dtype != F32:
            raise node.bad_input(f"expects a rank-4 float32 NHWC input, got {x.dtype} {x.shape}")
        sq = np.square(x)
        padded = np.pad(sq, [(0, 0)] * 3 + [(radius, radius)])
        total = np.zeros_like(x)
        for k in range(2 * radius + 1):  # the window's taps along the depth axis
            total += padded[..., k:k + x.shape[-1]]
        return x / (bias + alpha * total) ** beta

    return compute
