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
from .common import Compute, TfNode, arr, tf_kernel

F32 = np.float32


def _float_unary(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[TfNode], Compute]:
    def make(node: TfNode) -> Compute:
        def compute(x: np.ndarray) -> np.ndarray:
            if x.dtype.kind != "f":
                raise node.bad_input(f"input of type {x.dtype} is not supported (float only)")
            return arr(fn(x)).astype(x.dtype, copy=False)

        return compute

    return make


tf_kernel("Relu")(_float_unary(lambda x: relu_plain(x) if x.dtype == F32 else
                               np.maximum(x, x.dtype.type(0))))
tf_kernel("Relu6")(_float_unary(lambda x: np.clip(x, x.dtype.type(0), x.dtype.type(6))))
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
