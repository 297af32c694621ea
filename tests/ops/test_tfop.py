"""Parity of TF-op layers (tf_keras TFOpLambda / SlicingOpLambda) and Keras 3 raw-op nodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tfless
from tests.parity import check_parity, keras_module, rand
from tfless.errors import TflessError, UnsupportedLayer

# Each case: (label, function of (tf, a, b) -> output), inputs a, b of shape (batch, 4, 6).
TF_CASES = [
    ("multiply_const", lambda tf, a, b: a * 2.0),
    ("radd_const", lambda tf, a, b: 1.5 + a),
    ("rsub_const", lambda tf, a, b: 3.0 - a),
    ("rdiv_const", lambda tf, a, b: 2.0 / (tf.abs(a) + 1.0)),
    ("add_sub_mul_div", lambda tf, a, b: (a + b) * (a - b) / (tf.abs(b) + 1.0)),
    ("math_fns", lambda tf, a, b: tf.math.add(a, b) - tf.math.subtract(b, 0.5)
     + tf.math.multiply(a, b) + tf.math.truediv(a, 4) + tf.math.divide(a, 2.0)),
    ("pow_neg", lambda tf, a, b: -(a ** 2) + tf.math.pow(tf.abs(a), 1.5) + tf.math.negative(b)),
    ("floordiv_mod", lambda tf, a, b: a // 0.3 + a % 0.7),
    ("const_vector", lambda tf, a, b: a * tf.constant([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])),
    ("reshape", lambda tf, a, b: tf.reshape(a, (-1, 24))),
    ("reshape_dynamic", lambda tf, a, b: tf.reshape(a, [tf.shape(a)[0], 6, 4])),
    ("slice_basic", lambda tf, a, b: a[:, 1:3]),
    ("slice_ellipsis_newaxis_stride", lambda tf, a, b: a[:, 1:4, ..., tf.newaxis, ::2]),
    ("slice_int", lambda tf, a, b: a[:, 0]),
    ("slice_negative", lambda tf, a, b: a[..., -1:] + a[:, ::-1, -2:]),
    ("slice_mixed", lambda tf, a, b: a[:, -1, 2:5:2]),
    ("slice_dynamic", lambda tf, a, b: a[:, : tf.shape(a)[1] - 1, 1:]),
    ("concat", lambda tf, a, b: tf.concat([a, b, a], axis=-1)),
    ("concat_axis1", lambda tf, a, b: tf.concat([a, b], 1)),
    ("stack", lambda tf, a, b: tf.stack([a, b], axis=1)),
    ("reduce_sum", lambda tf, a, b: tf.reduce_sum(a, axis=1)),
    ("reduce_mean_keepdims", lambda tf, a, b: tf.reduce_mean(a, axis=[1, 2], keepdims=True)),
    ("reduce_mean_int_negative", lambda tf, a, b: tf.cast(tf.reduce_mean(
        tf.cast(a * 20.0 - 7.0, tf.int32), axis=1), tf.float32)),
    ("reduce_max", lambda tf, a, b: tf.reduce_max(a, -1)),
    ("reduce_min_all", lambda tf, a, b: tf.reduce_min(a) + b),
    ("reduce_prod", lambda tf, a, b: tf.reduce_prod(a + 1.0, axis=-1, keepdims=True)),
    ("reduce_v1_keep_dims", lambda tf, a, b: tf.compat.v1.reduce_sum(a, 1, keep_dims=True)),
    ("matmul", lambda tf, a, b: tf.matmul(a, b, transpose_b=True)),
    ("matmul_transpose_a", lambda tf, a, b: tf.linalg.matmul(a, b, transpose_a=True)),
    ("matmul_operator", lambda tf, a, b: a @ tf.transpose(b, [0, 2, 1])),
    ("matmul_adjoint", lambda tf, a, b: tf.matmul(a, b, adjoint_b=True)),
    ("transpose", lambda tf, a, b: tf.transpose(a, perm=[0, 2, 1])),
    ("transpose_v1", lambda tf, a, b: tf.compat.v1.transpose(a, perm=[2, 0, 1])),
    ("expand_squeeze", lambda tf, a, b: tf.squeeze(tf.expand_dims(a, 1), axis=[1])),
    ("expand_dims_last", lambda tf, a, b: tf.expand_dims(a, -1)),
    ("activations", lambda tf, a, b: tf.nn.relu(a) + tf.nn.sigmoid(b) + tf.math.sigmoid(a)
     + tf.nn.tanh(a) + tf.math.tanh(b) + tf.nn.relu6(a * 8.0)),
    ("softmax", lambda tf, a, b: tf.nn.softmax(a) + tf.nn.softmax(b, axis=1)),
    ("more_activations", lambda tf, a, b: tf.nn.elu(a) + tf.nn.selu(b) + tf.nn.softplus(a)
     + tf.nn.leaky_relu(b) + tf.nn.gelu(a) + tf.nn.silu(b) + tf.nn.log_softmax(a)),
    ("activation_options", lambda tf, a, b: tf.nn.gelu(a, approximate=True) + tf.nn.leaky_relu(b, 0.3)
     + tf.nn.log_softmax(a, axis=1) + tf.nn.softmax(b, axis=-2)),
    ("math_unary", lambda tf, a, b: tf.math.sqrt(tf.abs(a)) + tf.exp(a) + tf.math.log(tf.abs(b) + 0.1)
     + tf.square(a) + tf.math.rsqrt(tf.abs(a) + 0.5)),
    ("max_min_clip", lambda tf, a, b: tf.maximum(a, 0.1) + tf.minimum(a, b)
     + tf.clip_by_value(b, -0.4, 0.3)),
    ("cast", lambda tf, a, b: tf.cast(tf.cast(a * 4.0, tf.int32), "float32")),
    ("add_n", lambda tf, a, b: tf.add_n([a, b, a])),
]


# tf_keras's .keras writer cannot serialize an Ellipsis in a slice
NO_KERAS_FORMAT = {"slice_ellipsis_newaxis_stride", "slice_negative"}


@pytest.mark.parametrize("case", TF_CASES, ids=[c[0] for c in TF_CASES])
def test_tf_op_lambda(case: tuple) -> None:
    label, fn = case
    formats = ("h5", "json") if label in NO_KERAS_FORMAT else None

    def build(K):
        import tensorflow as tf

        a, b = K.Input((4, 6)), K.Input((4, 6))
        x = K.layers.Dense(6)(a)  # tensors that come out of a real layer too
        return K.Model([a, b], fn(tf, x, b))

    check_parity(build, [rand(3, 4, 6, seed=1), rand(3, 4, 6, seed=2)], api="tf_keras",
                 formats=formats, label=label)


def test_tf_op_unsupported_function_is_named(tmp_path: Path) -> None:
    import tensorflow as tf

    K = keras_module("tf_keras")
    a = K.Input((4,))
    model = K.Model(a, tf.math.cumsum(a, axis=1))
    path = tmp_path / "cumsum.h5"
    model.save(path)
    with pytest.raises(UnsupportedLayer) as err:
        tfless.load(path)
    message = str(err.value)
    assert "tf.math.cumsum" in message and "layer 'tf.math.cumsum'" in message
    assert "tf.reshape" in message and "tf.__operators__.getitem" in message


def test_tf_op_unsupported_argument_is_named(tmp_path: Path) -> None:
    import tensorflow as tf

    K = keras_module("tf_keras")
    a = K.Input((4, 6))
    model = K.Model(a, tf.reduce_sum(a, axis=1, keepdims=False, name="s") + 0)
    config = model.to_json().replace('"keepdims": false', '"keepdims": false, "bogus": 1')
    arch = tmp_path / "m.json"
    arch.write_text(config)
    weights = tmp_path / "w.h5"
    model.save_weights(weights)
    with pytest.raises(UnsupportedLayer, match="bogus"):
        tfless.load(arch, weights=weights)


# Keras 3 records raw keras.ops calls as operation nodes (only the .keras format keeps
# their module, so only it can be read).
K3_CASES = [
    ("arith", lambda ops, a, b: (a * 2.0 + b) / (ops.abs(b) + 1.0) - 1.0 + (2.0 - a) ** 2),
    ("math", lambda ops, a, b: ops.add(a, b) - ops.subtract(a, 1) + ops.multiply(a, b)
     + ops.divide(a, 2.0) + ops.true_divide(a, b + 3.0) + ops.power(a, 2) + ops.negative(b)),
    ("getitem", lambda ops, a, b: a[:, 1:3] + b[:, :2, ...]),
    ("getitem_newaxis_int", lambda ops, a, b: a[..., None, ::2] + a[:, 0][:, None, None, ::2]),
    ("reshape", lambda ops, a, b: ops.reshape(a, (-1, 24))),
    ("concat_stack", lambda ops, a, b: ops.concatenate([a, ops.stack([a, b], axis=1)[:, 0]], axis=-1)),
    ("reductions", lambda ops, a, b: ops.sum(a, axis=(1, 2)) + ops.mean(a, axis=1)[:, 0]
     + ops.max(a, axis=-1)[:, 1] + ops.min(a, axis=1, keepdims=True)[:, 0, 2] + ops.prod(a, axis=1)[:, 3]),
    ("mean_all", lambda ops, a, b: ops.mean(a) + b),
    ("matmul_transpose", lambda ops, a, b: ops.matmul(a, ops.transpose(b, (0, 2, 1)))
     + a @ ops.transpose(b, (0, 2, 1))),
    ("expand_squeeze", lambda ops, a, b: ops.squeeze(ops.expand_dims(a, 1), axis=1)),
    ("unary", lambda ops, a, b: ops.sqrt(ops.abs(a)) + ops.exp(a) + ops.log(ops.abs(b) + 0.1)
     + ops.square(a) + ops.rsqrt(ops.abs(a) + 0.5) + ops.absolute(b)),
    ("activations", lambda ops, a, b: ops.relu(a) + ops.sigmoid(b) + ops.tanh(a) + ops.softmax(a, axis=1)
     + ops.relu6(a * 8.0) + ops.softplus(b) + ops.silu(a)),
    ("nn_activations", lambda ops, a, b: ops.gelu(a) + ops.gelu(b, approximate=False)
     + ops.log_softmax(a, axis=1) + ops.elu(a, alpha=0.5) + ops.celu(b, alpha=2.0) + ops.selu(a)
     + ops.leaky_relu(b, negative_slope=0.1) + ops.hard_sigmoid(a * 4.0) + ops.hard_silu(b * 4.0)
     + ops.log_sigmoid(a) + ops.softsign(b) + ops.sparse_plus(a) + ops.sparse_sigmoid(b * 2.0)
     + ops.squareplus(a, b=2) + ops.tanh_shrink(b) + ops.hard_tanh(a * 2.0)
     + ops.soft_shrink(a, threshold=0.3) + ops.hard_shrink(b, threshold=0.4)
     + ops.threshold(a, 0.2, -1.0) + ops.sparsemax(a * 3.0, axis=-1)),
    ("glu", lambda ops, a, b: ops.concatenate([ops.glu(a), ops.glu(b, axis=1)[:, :, :3]], axis=1)),
    ("more_math", lambda ops, a, b: ops.floor(a * 3.0) + ops.ceil(b * 3.0) + ops.round(a * 5.0)
     + ops.sign(b) + ops.log1p(ops.abs(a)) + ops.expm1(b) + ops.sin(a) + ops.cos(b)
     + ops.ones_like(a) * 2.0 + ops.zeros_like(b) + ops.floor(ops.cast(a * 4.0, "int32"))),
    ("cast", lambda ops, a, b: ops.cast(ops.cast(a * 4.0, "int32"), "float32")),
    ("compare_where", lambda ops, a, b: ops.where(a > b, a, b) + ops.cast(ops.not_equal(a, 0.0), "float32")),
    ("max_min_clip", lambda ops, a, b: ops.maximum(a, 0.1) + ops.minimum(a, b) + ops.clip(b, -0.4, 0.3)),
    ("einsum", lambda ops, a, b: ops.einsum("bij,bkj->bik", a, b)),
]


@pytest.mark.parametrize("case", K3_CASES, ids=[c[0] for c in K3_CASES])
def test_keras3_raw_ops(case: tuple) -> None:
    label, fn = case

    def build(K):
        a, b = K.Input((4, 6)), K.Input((4, 6))
        x = K.layers.Dense(6)(a)
        return K.Model([a, b], fn(K.ops, x, b))

    check_parity(build, [rand(3, 4, 6, seed=1), rand(3, 4, 6, seed=2)], formats=("keras",),
                 label=label)


def test_keras3_raw_ops_in_h5_are_refused_clearly(tmp_path: Path) -> None:
    K = keras_module("keras3")
    a = K.Input((4, 6))
    model = K.Model(a, K.ops.reshape(a[:, 1:3], (-1, 12)))
    path = tmp_path / "ops.h5"
    model.save(path)
    # Keras 3's .h5 drops the marker that `reshape` here is an op, not a Reshape layer:
    # the error names the layer and the field it lacks instead of guessing.
    with pytest.raises(TflessError, match=r"layer 'reshape(_\d+)?'.*target_shape"):
        tfless.load(path)


def test_keras3_mask_computation_node_is_supported() -> None:
    """Keras 3 records the mask passed to a layer's `mask` argument as a NotEqual op node."""

    def build(K):
        ids = K.Input((5,), dtype="int32")
        x = K.layers.Embedding(10, 4, mask_zero=True)(ids)
        x = K.layers.BatchNormalization()(x)
        return K.Model(ids, K.layers.Multiply()([x, x]))

    ids = np.array([[1, 2, 0, 0, 3], [4, 0, 5, 6, 0]], dtype="int32")
    check_parity(build, ids, formats=("keras",))
