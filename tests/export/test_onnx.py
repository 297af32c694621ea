"""ONNX export: Keras-built models exported by tfless run in ONNX Runtime with Keras's outputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import tfless
from tests.parity import assert_close, keras_module, keras_predict, rand, randomize_weights
from tfless.export import onnx_ops  # noqa: F401  (fills CONVERTERS)
from tfless.export.onnx import CONVERTERS, DEFAULT_OPSET, verify_onnx
from tfless.ops import REGISTRY, supported_ops

ORT_MAX_OPSET = 26 if tuple(int(p) for p in ort.__version__.split(".")[:2]) >= (1, 23) else 21


def export_and_compare(build: Any, inputs: Any, tmp_path: Path, api: str = "keras3",
                       opset: int = DEFAULT_OPSET, atol: float = 1e-5, rtol: float = 1e-4,
                       **export_kwargs: Any) -> onnx.ModelProto:
    """Build with Keras, save, load with tfless, export, run in ONNX Runtime and through
    backend="onnxruntime", and compare both with Keras."""
    K = keras_module(api)
    model = build(K)
    randomize_weights(model)
    want = keras_predict(model, inputs)
    path = tmp_path / ("model.keras" if api == "keras3" else "model.h5")
    model.save(path)
    out = tmp_path / "model.onnx"
    report = tfless.export_onnx(tfless.load(path), out, opset=opset, **export_kwargs)
    assert report.checked == "onnxruntime"
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    arrays = inputs if isinstance(inputs, list) else [inputs]
    feed = {i.name: a for i, a in zip(session.get_inputs(), arrays)}
    got = session.run(None, feed)
    assert_close(list(got), want, f"onnx {api} opset {opset}", atol, rtol)
    backend = tfless.load(path, backend="onnxruntime")
    assert_close(backend.predict(inputs), want, f"backend {api}", atol, rtol)
    assert verify_onnx(out).ok
    return proto


# ----- core and activations ------------------------------------------------------------
ACTIVATIONS = [
    "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "hard_sigmoid",
    "hard_silu", "sigmoid", "tanh", "softmax", "log_softmax", "softplus", "softsign",
    "exponential", "linear", "mish",
]


@pytest.mark.parametrize("activation", ACTIVATIONS + [
    "swish", "hard_swish", "log_sigmoid", "hard_tanh", "tanh_shrink", "squareplus",
    "sparse_plus", "soft_shrink", "hard_shrink", "glu", "sparse_sigmoid", "sparsemax"])
def test_dense_activations(activation: str, tmp_path: Path) -> None:
    def build(K):
        inp = K.Input((6,))
        return K.Model(inp, K.layers.Dense(6, activation=activation)(inp))

    export_and_compare(build, rand(4, 6) * 2, tmp_path)


def test_every_runtime_activation_has_a_converter() -> None:
    from tfless.export.onnx_ops.activations import ACTIVATIONS as ONNX_ACTIVATIONS
    from tfless.ops.activations import ACTIVATIONS as RUNTIME_ACTIVATIONS

    assert set(RUNTIME_ACTIVATIONS) <= set(ONNX_ACTIVATIONS)


@pytest.mark.parametrize("activation", ["hard_sigmoid", "gelu", "selu"])
def test_tf_keras_activations(activation: str, tmp_path: Path) -> None:
    def build(K):
        return K.Sequential([K.layers.Dense(5, activation=activation, input_shape=(6,))])

    export_and_compare(build, rand(4, 6) * 4, tmp_path, api="tf_keras")


@pytest.mark.parametrize("opset", [13, 17, 18, ORT_MAX_OPSET])
def test_opsets(opset: int, tmp_path: Path) -> None:
    def build(K):
        inp = K.Input((3, 4))
        x = K.layers.Dense(5, activation="gelu")(inp)
        x = K.layers.Softmax(axis=[1, 2])(x)
        return K.Model(inp, K.layers.Masking(0.0)(x))

    export_and_compare(build, rand(2, 3, 4), tmp_path, opset=opset)


@pytest.mark.parametrize(
    "layer",
    [
        ("ReLU", {}), ("ReLU", {"max_value": 6.0}), ("ReLU", {"negative_slope": 0.1}),
        ("ReLU", {"threshold": 0.3, "negative_slope": 0.2, "max_value": 0.8}),
        ("LeakyReLU", {}), ("ELU", {"alpha": 0.7}), ("Softmax", {"axis": 1}),
        ("PReLU", {"shared_axes": [1]}),
    ],
    ids=lambda p: f"{p[0]}{p[1]}",
)
def test_activation_layers(layer: tuple, tmp_path: Path) -> None:
    cls, kwargs = layer

    def build(K):
        inp = K.Input((3, 4))
        return K.Model(inp, getattr(K.layers, cls)(**kwargs)(inp))

    export_and_compare(build, rand(2, 3, 4) * 3, tmp_path)


def test_thresholded_relu_and_noops_tf_keras(tmp_path: Path) -> None:
    def build(K):
        inp = K.Input((4, 5))
        x = K.layers.Dropout(0.5)(inp)
        x = K.layers.GaussianNoise(0.2)(x)
        return K.Model(inp, K.layers.ThresholdedReLU(theta=0.2)(x))

    export_and_compare(build, rand(3, 4, 5), tmp_path, api="tf_keras")


def test_embedding_and_einsum_dense(tmp_path: Path) -> None:
    def build(K):
        ids = K.Input((6,), dtype="int32", name="ids")
        x = K.layers.Embedding(10, 6, mask_zero=True)(ids)
        x = K.layers.Dense(4, activation="relu")(x)
        x = K.layers.EinsumDense("abc,cd->abd", output_shape=(None, 5), bias_axes="d")(x)
        return K.Model(ids, x)

    tokens = np.array([[1, 2, 3, 0, 0, 0], [4, 5, 6, 7, 8, 0]], dtype="int32")
    proto = export_and_compare(build, tokens, tmp_path)
    assert proto.graph.input[0].name == "ids"
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT32


def test_multiple_inputs_and_outputs_keep_keras_names(tmp_path: Path) -> None:
    def build(K):
        a = K.Input((4,), name="a")
        b = K.Input((4,), name="b")
        shared = K.layers.Dense(3, activation="tanh", name="shared")
        return K.Model([a, b], [shared(a), K.layers.Dense(2, name="head")(shared(b))])

    proto = export_and_compare(build, [rand(2, 4, seed=1), rand(2, 4, seed=2)], tmp_path)
    assert [i.name for i in proto.graph.input] == ["a", "b"]
    model = tfless.load(tmp_path / "model.keras")
    assert [o.name for o in proto.graph.output] == [s.name for s in model.outputs]


# ----- convolution, pooling, reshaping -------------------------------------------------
CONV_CASES = {
    "conv2d_same_s2": lambda K: K.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu"),
    "conv2d_valid_dil": lambda K: K.layers.Conv2D(3, 2, dilation_rate=2, use_bias=False),
    "conv2d_groups": lambda K: K.layers.Conv2D(4, (3, 2), padding="same", groups=2),
    "depthwise2d": lambda K: K.layers.DepthwiseConv2D(3, strides=2, padding="same",
                                                      depth_multiplier=2),
    "separable2d": lambda K: K.layers.SeparableConv2D(5, 3, padding="same", depth_multiplier=2,
                                                      activation="tanh"),
    "conv2d_transpose_same": lambda K: K.layers.Conv2DTranspose(3, 3, strides=2, padding="same"),
    "conv2d_transpose_valid": lambda K: K.layers.Conv2DTranspose(2, 2, strides=3),
    "conv2d_transpose_outpad": lambda K: K.layers.Conv2DTranspose(2, 3, strides=2, padding="same",
                                                                  output_padding=1),
    "maxpool_same": lambda K: K.layers.MaxPooling2D(3, strides=2, padding="same"),
    "avgpool_same": lambda K: K.layers.AveragePooling2D(3, strides=2, padding="same"),
    "avgpool_valid": lambda K: K.layers.AveragePooling2D(2),
    "global_avg_keepdims": lambda K: K.layers.GlobalAveragePooling2D(keepdims=True),
    "global_max": lambda K: K.layers.GlobalMaxPooling2D(),
    "zero_padding": lambda K: K.layers.ZeroPadding2D(((1, 2), (0, 1))),
    "cropping": lambda K: K.layers.Cropping2D(((1, 0), (2, 1))),
    "upsampling_nearest": lambda K: K.layers.UpSampling2D((2, 3)),
    "upsampling_bilinear": lambda K: K.layers.UpSampling2D(2, interpolation="bilinear"),
    "permute": lambda K: K.layers.Permute((3, 1, 2)),
    "flatten": lambda K: K.layers.Flatten(),
    "reshape": lambda K: K.layers.Reshape((-1, 3)),
}


@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_conv_pool_reshape_2d(case: str, tmp_path: Path) -> None:
    def build(K):
        inp = K.Input((7, 6, 4))
        return K.Model(inp, CONV_CASES[case](K)(inp))

    export_and_compare(build, rand(2, 7, 6, 4), tmp_path)


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
def test_conv1d_family(api: str, tmp_path: Path) -> None:
    def build(K):
        inp = K.Input((9, 3))
        x = K.layers.AveragePooling1D(2, strides=1, padding="same")(inp)
        x = K.layers.Conv1D(4, 3, padding="causal", dilation_rate=2)(x)
        x = K.layers.SeparableConv1D(4, 2, padding="same")(x)
        x = K.layers.MaxPooling1D(2)(x)
        x = K.layers.UpSampling1D(2)(x)
        x = K.layers.Cropping1D((0, 1))(K.layers.ZeroPadding1D(1)(x))
        x = K.layers.Conv1DTranspose(2, 3, strides=2)(x) if api == "keras3" else x
        return K.Model(inp, [K.layers.GlobalAveragePooling1D()(x), K.layers.GlobalMaxPooling1D()(x)])

    export_and_compare(build, rand(2, 9, 3), tmp_path, api=api)


def test_conv3d_family(tmp_path: Path) -> None:
    def build(K):
        inp = K.Input((5, 4, 6, 2))
        x = K.layers.Conv3D(3, 2, padding="same", strides=(1, 2, 2))(inp)
        x = K.layers.Conv3DTranspose(2, 2, strides=2)(x)
        x = K.layers.MaxPooling3D(2)(x)
        x = K.layers.UpSampling3D(2)(x)
        x = K.layers.Cropping3D(1)(K.layers.ZeroPadding3D(1)(x))
        return K.Model(inp, K.layers.GlobalMaxPooling3D()(x))

    export_and_compare(build, rand(2, 5, 4, 6, 2), tmp_path)


def test_free_spatial_size_uses_same_upper(tmp_path: Path) -> None:
    def build(K):
        inp = K.Input((None, None, 3))
        x = K.layers.Conv2D(4, 3, strides=2, padding="same")(inp)
        x = K.layers.MaxPooling2D(2, padding="same")(x)
        x = K.layers.Conv2DTranspose(2, 3, strides=2, padding="same")(x)
        return K.Model(inp, K.layers.GlobalAveragePooling2D()(x))

    export_and_compare(build, rand(2, 9, 7, 3), tmp_path)
    export_and_compare(build, rand(1, 8, 10, 3), tmp_path)


def test_dense_head_with_repeat_vector_tf_keras(tmp_path: Path) -> None:
    def build(K):
        inp = K.Input((6, 6, 2))
        x = K.layers.Conv2D(3, 3, activation="relu")(inp)
        x = K.layers.Flatten()(x)
        x = K.layers.RepeatVector(3)(K.layers.Dense(4)(x))
        return K.Model(inp, K.layers.Reshape((4, 3))(K.layers.Permute((2, 1))(x)))

    export_and_compare(build, rand(2, 6, 6, 2), tmp_path, api="tf_keras")


# ----- normalization -------------------------------------------------------------------
NORM_CASES = {
    "batch_norm": lambda K: K.layers.BatchNormalization(),
    "batch_norm_axis1": lambda K: K.layers.BatchNormalization(axis=1, center=False),
    "layer_norm": lambda K: K.layers.LayerNormalization(),
    "layer_norm_axes": lambda K: K.layers.LayerNormalization(axis=[1, 2], scale=False),
    "group_norm": lambda K: K.layers.GroupNormalization(groups=2),
    "unit_norm": lambda K: K.layers.UnitNormalization(),
}


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
@pytest.mark.parametrize("case", sorted(NORM_CASES))
def test_normalization(api: str, case: str, tmp_path: Path) -> None:
    def build(K):
        inp = K.Input((3, 5, 4))
        return K.Model(inp, NORM_CASES[case](K)(inp))

    export_and_compare(build, rand(2, 3, 5, 4) * 2, tmp_path, api=api)


def test_rms_normalization(tmp_path: Path) -> None:
    def build(K):
        inp = K.Input((5, 4))
        return K.Model(inp, K.layers.RMSNormalization()(inp))

    export_and_compare(build, rand(2, 5, 4), tmp_path)


# ----- merging -------------------------------------------------------------------------
@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
@pytest.mark.parametrize("op", ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"])
def test_elementwise_merges(api: str, op: str, tmp_path: Path) -> None:
    def build(K):
        a, c = K.Input((3, 4)), K.Input((3, 4))
        merged = getattr(K.layers, op)()([a, K.layers.Dense(4)(c)])
        return K.Model([a, c], merged)

    export_and_compare(build, [rand(2, 3, 4, seed=1), rand(2, 3, 4, seed=2)], tmp_path, api=api)


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
def test_concatenate_and_dot(api: str, tmp_path: Path) -> None:
    def build(K):
        a, c = K.Input((3, 4)), K.Input((3, 2))
        cat = K.layers.Concatenate(axis=-1)([a, c])
        dot = K.layers.Dot(axes=(2, 2))([cat, K.layers.Dense(6)(a)])
        cos = K.layers.Dot(axes=1, normalize=True)([K.layers.Flatten()(a), K.layers.Flatten()(a)])
        return K.Model([a, c], [cat, dot, cos])

    export_and_compare(build, [rand(2, 3, 4, seed=1), rand(2, 3, 2, seed=2)], tmp_path, api=api)


@pytest.mark.parametrize("op", ["Multiply", "Maximum", "Concatenate"])
def test_masked_merges(op: str, tmp_path: Path) -> None:
    def build(K):
        inp = K.Input((5, 4))
        x = K.layers.Masking(0.0)(inp)
        y = K.layers.Dense(4)(x)
        merged = getattr(K.layers, op)()([x, y])
        return K.Model(inp, K.layers.GlobalAveragePooling1D()(merged))

    x = rand(2, 5, 4)
    x[0, 3:] = 0
    x[1, 1] = 0
    export_and_compare(build, x, tmp_path, api="tf_keras")


# ----- recurrent -----------------------------------------------------------------------
RNN_CASES = {
    "lstm": lambda K: K.layers.LSTM(5),
    "lstm_seq_backwards": lambda K: K.layers.LSTM(4, return_sequences=True, go_backwards=True),
    "gru": lambda K: K.layers.GRU(5, return_sequences=True),
    "gru_reset_before": lambda K: K.layers.GRU(4, reset_after=False),
    "simple_rnn": lambda K: K.layers.SimpleRNN(3, activation="relu", return_sequences=True),
    "lstm_hard_sigmoid": lambda K: K.layers.LSTM(3, recurrent_activation="hard_sigmoid"),
    "bidirectional_concat": lambda K: K.layers.Bidirectional(K.layers.LSTM(3, return_sequences=True)),
    "bidirectional_sum": lambda K: K.layers.Bidirectional(K.layers.GRU(3), merge_mode="sum"),
    "stacked_cells": lambda K: K.layers.RNN([K.layers.LSTMCell(3), K.layers.GRUCell(2)]),
    "time_distributed": lambda K: K.layers.TimeDistributed(K.layers.Dense(3, activation="tanh")),
}


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
@pytest.mark.parametrize("case", sorted(RNN_CASES))
def test_recurrent(api: str, case: str, tmp_path: Path) -> None:
    def build(K):
        inp = K.Input((6, 4))
        return K.Model(inp, RNN_CASES[case](K)(inp))

    export_and_compare(build, rand(2, 6, 4), tmp_path, api=api)


@pytest.mark.parametrize("case", ["lstm_seq_backwards", "gru", "bidirectional_concat",
                                  "bidirectional_sum"])
def test_recurrent_with_mask(case: str, tmp_path: Path) -> None:
    def build(K):
        inp = K.Input((6, 4))
        x = K.layers.Masking(0.0)(inp)
        return K.Model(inp, RNN_CASES[case](K)(x))

    x = rand(2, 6, 4)
    x[0, 4:] = 0
    x[1, 2] = 0
    export_and_compare(build, x, tmp_path, api="tf_keras")


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
def test_time_distributed_nested_model(api: str, tmp_path: Path) -> None:
    def build(K):
        frame = K.Input((6, 6, 2))
        x = K.layers.Flatten()(K.layers.Conv2D(3, 3, activation="relu")(frame))
        inner = K.Model(frame, K.layers.Dense(4)(x), name="frame_encoder")
        frames = K.Input((3, 6, 6, 2))
        return K.Model(frames, K.layers.GRU(2)(K.layers.TimeDistributed(inner)(frames)))

    export_and_compare(build, rand(2, 3, 6, 6, 2), tmp_path, api=api)


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
def test_time_distributed_nested_model_with_mask(api: str, tmp_path: Path) -> None:
    def build(K):
        step = K.Sequential([K.Input((3,)), K.layers.Dense(4, activation="tanh"),
                             K.layers.Dense(3)], name="step")
        return K.Sequential([K.Input((6, 3)), K.layers.Masking(0.0),
                             K.layers.TimeDistributed(step), K.layers.TimeDistributed(step),
                             K.layers.LSTM(2, return_sequences=True)])

    x = rand(2, 6, 3)
    x[0, 4:] = 0
    x[1, 2] = 0
    export_and_compare(build, x, tmp_path, api=api)


@pytest.mark.parametrize("return_sequences", [False, True])
def test_conv_lstm(return_sequences: bool, tmp_path: Path) -> None:
    def build(K):
        inp = K.Input((3, 6, 5, 2))
        return K.Model(inp, K.layers.ConvLSTM2D(3, 3, padding="same", strides=1,
                                                return_sequences=return_sequences)(inp))

    export_and_compare(build, rand(2, 3, 6, 5, 2), tmp_path)


def test_conv_lstm1d_valid_strided(tmp_path: Path) -> None:
    def build(K):
        inp = K.Input((4, 9, 2))
        return K.Model(inp, K.layers.ConvLSTM1D(2, 3, strides=2)(inp))

    export_and_compare(build, rand(2, 4, 9, 2), tmp_path)


def test_recurrent_states_and_free_length(tmp_path: Path) -> None:
    def build(K):
        inp = K.Input((None, 3))
        h0, c0 = K.Input((4,)), K.Input((4,))
        seq, h, c = K.layers.LSTM(4, return_sequences=True, return_state=True)(
            inp, initial_state=[h0, c0])
        return K.Model([inp, h0, c0], [seq, h, c])

    export_and_compare(build, [rand(2, 7, 3), rand(2, 4, seed=3), rand(2, 4, seed=4)], tmp_path)


# ----- preprocessing -------------------------------------------------------------------
PREPROCESSING_CASES = {
    "rescaling": lambda K: K.layers.Rescaling(1 / 127.5, offset=-1),
    "normalization": lambda K: K.layers.Normalization(mean=[0.1, 0.2, 0.3], variance=[1, 2, 3]),
    "normalization_invert": lambda K: K.layers.Normalization(mean=0.5, variance=2.0, invert=True),
    "resize_bilinear": lambda K: K.layers.Resizing(5, 11),
    "resize_nearest": lambda K: K.layers.Resizing(9, 4, interpolation="nearest"),
    "resize_bicubic": lambda K: K.layers.Resizing(4, 6, interpolation="bicubic"),
    "resize_crop": lambda K: K.layers.Resizing(5, 5, crop_to_aspect_ratio=True),
    "resize_pad": lambda K: K.layers.Resizing(4, 8, pad_to_aspect_ratio=True, fill_value=0.5),
    "center_crop": lambda K: K.layers.CenterCrop(4, 5),
    "center_crop_up": lambda K: K.layers.CenterCrop(9, 3),
    "random_crop": lambda K: K.layers.RandomCrop(4, 4),
}


@pytest.mark.parametrize(("api", "case"), [
    (api, case) for case in sorted(PREPROCESSING_CASES) for api in ("keras3", "tf_keras")
    if not (api == "tf_keras" and case == "resize_pad")  # tf_keras has no pad_to_aspect_ratio
])
def test_preprocessing(api: str, case: str, tmp_path: Path) -> None:
    def build(K):
        inp = K.Input((7, 6, 3))
        return K.Model(inp, PREPROCESSING_CASES[case](K)(inp))

    export_and_compare(build, rand(2, 7, 6, 3, low=0, high=2), tmp_path, api=api)


# ----- attention -----------------------------------------------------------------------
# ----- masks reaching every mask-reading layer -------------------------------------------
# (batch, time) tokens / steps: post-padding, holes, pre-padding; no row fully masked.
MASK_TOKENS = np.array([[3, 5, 1, 7, 0, 0], [2, 0, 4, 0, 6, 8], [0, 0, 5, 2, 9, 1]], np.int32)
# (batch, time, items): per-step item masks for TimeDistributed over a sequence of sets
MASK_TOKENS_4D = np.random.default_rng(4).integers(1, 9, (3, 4, 5)).astype(np.int32)
MASK_TOKENS_4D[0, :, 3:] = 0
MASK_TOKENS_4D[1, 2, 1:] = 0
MASK_TOKENS_4D[2, 1, 2] = 0


def _masked_source(K: Any, source: str, items: bool) -> tuple[Any, Any, np.ndarray]:
    """(input, masked tensor, data): Embedding(mask_zero=True) on tokens, or Masking(0)
    on floats zeroed where the tokens are 0."""
    tokens = MASK_TOKENS_4D if items else MASK_TOKENS
    if source == "embedding":
        inp = K.Input(tokens.shape[1:], dtype="int32")
        return inp, K.layers.Embedding(10, 4, mask_zero=True)(inp), tokens
    data = rand(*tokens.shape, 2 if items else 4, seed=6)
    data[tokens == 0] = 0.0
    inp = K.Input(data.shape[1:])
    return inp, K.layers.Masking(0.0)(inp), data


MASK_TARGETS = {
    "global_average_pooling": lambda K, x: K.layers.GlobalAveragePooling1D()(x),
    "global_max_pooling": lambda K, x: K.layers.GlobalMaxPooling1D()(x),
    "lstm": lambda K, x: K.layers.LSTM(3)(x),
    "lstm_sequences_backwards": lambda K, x: K.layers.LSTM(3, return_sequences=True,
                                                           go_backwards=True)(x),
    "gru": lambda K, x: K.layers.GRU(3, return_sequences=True)(x),
    "bidirectional": lambda K, x: K.layers.Bidirectional(
        K.layers.LSTM(3, return_sequences=True))(x),
    "multi_head_attention": lambda K, x: K.layers.MultiHeadAttention(2, 3)(x, x),
    "attention": lambda K, x: K.layers.Attention()([x, x]),
    "add_then_lstm": lambda K, x: K.layers.LSTM(3, return_sequences=True)(
        K.layers.Add()([x, K.layers.Dense(4)(x)])),
    "concatenate_then_lstm": lambda K, x: K.layers.LSTM(3)(
        K.layers.Concatenate()([x, K.layers.Dense(2)(x)])),
    "time_distributed_dense_then_lstm": lambda K, x: K.layers.LSTM(3)(
        K.layers.TimeDistributed(K.layers.Dense(3))(x)),
    "dense_then_lstm": lambda K, x: K.layers.LSTM(3)(K.layers.Dense(3)(x)),
}
# TimeDistributed over (batch, time, items, features) with per-item masks
MASK_TD_TARGETS = {
    "time_distributed_global_average_pooling": lambda K: K.layers.GlobalAveragePooling1D(),
    "time_distributed_lstm": lambda K: K.layers.LSTM(3),
    "time_distributed_bidirectional": lambda K: K.layers.Bidirectional(K.layers.GRU(2)),
}


def _mask_parity(api: str, model: Any, data: np.ndarray, tmp_path: Path) -> None:
    """Keras vs backend="onnxruntime" from both the .keras and the .h5 file."""
    randomize_weights(model)
    want = keras_predict(model, data)
    for fmt in ("keras", "h5"):
        path = tmp_path / f"model.{fmt}"
        model.save(path)
        backend = tfless.load(path, backend="onnxruntime")
        assert_close(backend.predict(data, structured=False), want, f"{api} {fmt} onnxruntime")


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
@pytest.mark.parametrize("source", ["embedding", "masking"])
@pytest.mark.parametrize("target", sorted(MASK_TARGETS))
def test_masks_reach_exported_layers(api: str, source: str, target: str,
                                     tmp_path: Path) -> None:
    K = keras_module(api)
    inp, x, data = _masked_source(K, source, items=False)
    _mask_parity(api, K.Model(inp, MASK_TARGETS[target](K, x)), data, tmp_path)


@pytest.mark.parametrize("source", ["embedding", "masking"])
@pytest.mark.parametrize("target", sorted(MASK_TD_TARGETS) + ["time_distributed_global_max"])
def test_time_distributed_hands_its_mask_to_the_inner_layer_keras3(source: str, target: str,
                                                                   tmp_path: Path) -> None:
    """Keras 3 records the mask of a functional TimeDistributed call as `mask=`; each step's
    slice reaches an inner layer that reads masks (the export used to drop it)."""
    K = keras_module("keras3")
    inp, x, data = _masked_source(K, source, items=True)
    inner = (K.layers.GlobalMaxPooling1D() if target == "time_distributed_global_max"
             else MASK_TD_TARGETS[target](K))
    _mask_parity("keras3", K.Model(inp, K.layers.TimeDistributed(inner)(x)), data, tmp_path)


def _both_backends(api: str, model: Any, data: np.ndarray, tmp_path: Path) -> None:
    """Keras vs the NumPy runtime and backend="onnxruntime", from the .h5 file."""
    randomize_weights(model)
    want = keras_predict(model, data)
    path = tmp_path / "model.h5"
    model.save(path)
    for backend in ("numpy", "onnxruntime"):
        got = tfless.load(path, backend=backend).predict(data, structured=False)
        assert_close(got, want, f"{api} {backend}")


@pytest.mark.parametrize(("api", "sequential"), [("tf_keras", False), ("tf_keras", True),
                                                 ("keras3", True)])
@pytest.mark.parametrize("target", sorted(MASK_TD_TARGETS))
def test_time_distributed_hands_the_incoming_mask_to_the_inner_layer(
        api: str, sequential: bool, target: str, tmp_path: Path) -> None:
    """Without a recorded `mask=` (tf_keras, Keras 3 Sequential), Keras still folds the mask
    arriving with the input and masks inside the inner layer: both backends do too (the
    NumPy runtime used to ignore it and answer as if nothing were masked)."""
    K = keras_module(api)
    if sequential:
        model = K.Sequential([K.Input((4, 5), dtype="int32"),
                              K.layers.Embedding(10, 4, mask_zero=True),
                              K.layers.TimeDistributed(MASK_TD_TARGETS[target](K))])
        data = MASK_TOKENS_4D
    else:
        inp, x, data = _masked_source(K, "masking", items=True)
        model = K.Model(inp, K.layers.TimeDistributed(MASK_TD_TARGETS[target](K))(x))
    _both_backends(api, model, data, tmp_path)


# Two TimeDistributed layers in a row over (batch, time, items) tokens: the mask the first
# passes on (Keras 3: its input mask as it is; tf_keras: the inner layer's, or the input mask
# reduced to (batch, time)) is what the second one applies.
TD_CHAINS = {
    "lstm_sequences_then_average": lambda K: [
        K.layers.TimeDistributed(K.layers.LSTM(3, return_sequences=True)),
        K.layers.TimeDistributed(K.layers.GlobalAveragePooling1D())],
    "dense_then_average": lambda K: [
        K.layers.TimeDistributed(K.layers.Dense(3)),
        K.layers.TimeDistributed(K.layers.GlobalAveragePooling1D())],
    "nested_model_then_average": lambda K: [
        K.layers.TimeDistributed(K.Sequential([K.Input((5, 4)), K.layers.Dense(3)])),
        K.layers.TimeDistributed(K.layers.GlobalAveragePooling1D())],
    # Keras 3 refuses these: an LSTM over time given a per-item mask
    "average_then_lstm": lambda K: [
        K.layers.TimeDistributed(K.layers.GlobalAveragePooling1D()),
        K.layers.LSTM(3, return_sequences=True)],
    "lstm_then_lstm": lambda K: [K.layers.TimeDistributed(K.layers.LSTM(3)), K.layers.LSTM(2)],
}


@pytest.mark.parametrize(("api", "chain"), [("keras3", c) for c in list(TD_CHAINS)[:3]]
                         + [("tf_keras", c) for c in TD_CHAINS])
@pytest.mark.parametrize("sequential", [True, False])
def test_time_distributed_passes_masks_on_as_keras_does(api: str, chain: str, sequential: bool,
                                                       tmp_path: Path) -> None:
    K = keras_module(api)
    if sequential:
        model = K.Sequential([K.Input((4, 5), dtype="int32"),
                              K.layers.Embedding(10, 4, mask_zero=True), *TD_CHAINS[chain](K)])
    else:
        inp = K.Input((4, 5), dtype="int32")
        x = K.layers.Embedding(10, 4, mask_zero=True)(inp)
        for layer in TD_CHAINS[chain](K):
            x = layer(x)
        model = K.Model(inp, x)
    _both_backends(api, model, MASK_TOKENS_4D, tmp_path)


def _flat(y: Any) -> Any:
    return list(y) if isinstance(y, (list, tuple)) else y


def _padded_tokens(batch: int = 3, steps: int = 6, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).integers(1, 20, (batch, steps)).astype(np.int32)
    x[0, 3:] = 0
    x[1, 5:] = 0
    return x


DENSE_ATTENTION_CASES = {
    "dot": {"use_scale": False, "score_mode": "dot"},
    "dot_scale_causal": {"use_scale": True, "score_mode": "dot", "causal": True},
    "concat_scale_scores": {"use_scale": True, "score_mode": "concat", "scores": True},
    "concat_key": {"use_scale": False, "score_mode": "concat", "key": True},
}


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
@pytest.mark.parametrize("case", sorted(DENSE_ATTENTION_CASES))
def test_dense_attention(api: str, case: str, tmp_path: Path) -> None:
    opts = DENSE_ATTENTION_CASES[case]

    def build(K):
        q_in, v_in = K.Input((4, 3)), K.Input((5, 3))
        inputs = [q_in, v_in] + ([K.layers.Dense(3)(v_in)] if opts.get("key") else [])
        layer = K.layers.Attention(use_scale=opts["use_scale"], score_mode=opts["score_mode"])
        out = layer(inputs, use_causal_mask=opts.get("causal", False),
                    return_attention_scores=opts.get("scores", False))
        return K.Model([q_in, v_in], _flat(out))

    export_and_compare(build, [rand(2, 4, 3), rand(2, 5, 3, seed=2)], tmp_path, api=api)


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
@pytest.mark.parametrize("use_scale", [True, False])
def test_additive_attention(api: str, use_scale: bool, tmp_path: Path) -> None:
    def build(K):
        q_in, v_in = K.Input((4, 3)), K.Input((5, 3))
        out = K.layers.AdditiveAttention(use_scale=use_scale)([q_in, v_in, v_in],
                                                              return_attention_scores=True)
        return K.Model([q_in, v_in], _flat(out))

    export_and_compare(build, [rand(2, 4, 3), rand(2, 5, 3, seed=2)], tmp_path, api=api)


@pytest.mark.parametrize("cls", ["Attention", "AdditiveAttention"])
def test_dense_attention_with_embedding_masks_tf_keras(cls: str, tmp_path: Path) -> None:
    def build(K):
        q_in, v_in = K.Input((6,), dtype="int32"), K.Input((6,), dtype="int32")
        q = K.layers.Embedding(20, 4, mask_zero=True)(q_in)
        v = K.layers.Embedding(20, 4, mask_zero=True)(v_in)
        att = getattr(K.layers, cls)()([q, v])
        return K.Model([q_in, v_in], K.layers.LSTM(3)(att))  # the query mask reaches the LSTM

    export_and_compare(build, [_padded_tokens(), _padded_tokens(seed=1)], tmp_path,
                       api="tf_keras")


MHA_CASES = {
    "plain": {},
    "value_dim_no_bias_output_shape": {"value_dim": 3, "use_bias": False, "output_shape": 7},
    "output_shape_2d": {"output_shape": (2, 3)},
    "causal": {"causal": True},
    "scores": {"scores": True},
    "key_dropout": {"key": True, "dropout": 0.3},
    "attention_mask": {"attention_mask": True},
    "attention_mask_dropout": {"attention_mask": True, "dropout": 0.1},
    "causal_scores": {"causal": True, "scores": True},
}


def _mha_model(K, case: dict) -> Any:
    options = {k: case[k] for k in ("value_dim", "use_bias", "output_shape", "dropout") if k in case}
    q_in, v_in = K.Input((4, 6)), K.Input((5, 6))
    mask_in = K.Input((4, 5))
    layer = K.layers.MultiHeadAttention(num_heads=2, key_dim=3, **options)
    kwargs = {}
    if case.get("key"):
        kwargs["key"] = K.layers.Dense(6)(v_in)
    if case.get("attention_mask"):
        kwargs["attention_mask"] = mask_in
    out = layer(q_in, v_in, use_causal_mask=case.get("causal", False),
                return_attention_scores=case.get("scores", False), **kwargs)
    inputs = [q_in, v_in] + ([mask_in] if case.get("attention_mask") else [])
    return K.Model(inputs, _flat(out))


def _mha_inputs(case: dict) -> list[np.ndarray]:
    x = [rand(2, 4, 6), rand(2, 5, 6, seed=2)]
    if case.get("attention_mask"):
        m = np.random.default_rng(4).random((2, 4, 5)) > 0.3
        m[:, :, 0] = True
        m[1, 2] = False  # one fully masked row
        x.append(m.astype(np.float32))
    return x


@pytest.mark.parametrize(("api", "case"), [
    (api, case) for case in sorted(MHA_CASES) for api in ("keras3", "tf_keras")
    if not (api == "tf_keras" and case == "output_shape_2d")  # Keras 3 only
])
def test_multi_head_attention(api: str, case: str, tmp_path: Path) -> None:
    export_and_compare(lambda K: _mha_model(K, MHA_CASES[case]), _mha_inputs(MHA_CASES[case]),
                       tmp_path, api=api)


@pytest.mark.parametrize("opset", [13, ORT_MAX_OPSET])
@pytest.mark.parametrize("case", ["attention_mask", "causal_scores"])
def test_multi_head_attention_opsets(opset: int, case: str, tmp_path: Path) -> None:
    export_and_compare(lambda K: _mha_model(K, MHA_CASES[case]), _mha_inputs(MHA_CASES[case]),
                       tmp_path, opset=opset)


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
@pytest.mark.parametrize("scores", [False, True])
def test_multi_head_self_attention_with_padding_masks(api: str, scores: bool,
                                                      tmp_path: Path) -> None:
    """Fully masked query rows: Keras 3's fused route leaves them uniform, its Softmax route
    zeroes them, tf_keras adds -1e9; the query mask then reaches the pooling."""
    def build(K):
        inp = K.Input((6,), dtype="int32")
        x = K.layers.Embedding(20, 8, mask_zero=True)(inp)
        out = K.layers.MultiHeadAttention(2, 4)(x, x, return_attention_scores=scores)
        if scores:
            return K.Model(inp, _flat(out))
        return K.Model(inp, [out, K.layers.GlobalAveragePooling1D()(out)])

    export_and_compare(build, _padded_tokens(), tmp_path, api=api)


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
@pytest.mark.parametrize("axes", [None, (2,), (1, 2)], ids=str)
def test_multi_head_attention_over_image_axes(api: str, axes: Any, tmp_path: Path) -> None:
    def build(K):
        inp = K.Input((3, 4, 5))
        return K.Model(inp, K.layers.MultiHeadAttention(2, 3, attention_axes=axes)(inp, inp))

    export_and_compare(build, rand(2, 3, 4, 5), tmp_path, api=api)


def test_multi_head_attention_gate_and_sliding_window(tmp_path: Path) -> None:
    def build(K):
        inp = K.Input((6, 4))
        out = K.layers.MultiHeadAttention(2, 3, use_gate=True, sliding_window=2)(
            inp, inp, use_causal_mask=True)
        return K.Model(inp, out)

    export_and_compare(build, rand(2, 6, 4), tmp_path)


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
def test_multi_head_attention_free_length(api: str, tmp_path: Path) -> None:
    """A free time axis: the causal mask is built from the runtime length."""
    def build(K):
        inp = K.Input((None, 4))
        return K.Model(inp, K.layers.MultiHeadAttention(2, 3)(inp, inp, use_causal_mask=True))

    export_and_compare(build, rand(2, 7, 4), tmp_path, api=api)
    export_and_compare(build, rand(3, 2, 4, seed=5), tmp_path, api=api)


GQA_CASES = {
    "plain": {},
    "causal": {"causal": True},
    "scores_no_bias": {"scores": True, "use_bias": False},
    "dropout_mask": {"dropout": 0.2, "mask": True},
    "mask": {"mask": True},
}


@pytest.mark.parametrize("case", sorted(GQA_CASES))
def test_grouped_query_attention(case: str, tmp_path: Path) -> None:
    opts = GQA_CASES[case]
    options = {k: opts[k] for k in ("use_bias", "dropout") if k in opts}

    def build(K):
        if opts.get("mask"):
            inp = K.Input((6,), dtype="int32")
            x = K.layers.Embedding(20, 8, mask_zero=True)(inp)
        else:
            inp = x = K.Input((6, 8))
        layer = K.layers.GroupQueryAttention(head_dim=3, num_query_heads=4,
                                             num_key_value_heads=2, **options)
        out = layer(x, x, use_causal_mask=opts.get("causal", False),
                    return_attention_scores=opts.get("scores", False))
        return K.Model(inp, _flat(out))

    export_and_compare(build, _padded_tokens() if opts.get("mask") else rand(2, 6, 8), tmp_path)


def _transformer_block(K, x: Any, heads: int, dim: int, ff: int) -> Any:
    """The encoder block of tests/test_sequence_zoo.py."""
    att = K.layers.MultiHeadAttention(heads, dim // heads, dropout=0.1)(x, x)
    x = K.layers.LayerNormalization(epsilon=1e-6)(K.layers.Add()([x, K.layers.Dropout(0.1)(att)]))
    h = K.layers.Dense(ff, activation="relu")(x)
    h = K.layers.Dense(dim)(h)
    return K.layers.LayerNormalization(epsilon=1e-6)(K.layers.Add()([x, h]))


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
def test_zoo_transformer_text_classifier(api: str, tmp_path: Path) -> None:
    def build(K):
        tokens = K.Input((12,), dtype="int32")
        positions = K.Input((12,), dtype="int32")
        x = K.layers.Add()([K.layers.Embedding(50, 16)(tokens),
                            K.layers.Embedding(12, 16)(positions)])
        x = _transformer_block(K, x, heads=2, dim=16, ff=32)
        x = K.layers.GlobalAveragePooling1D()(x)
        return K.Model([tokens, positions], K.layers.Dense(2, activation="softmax")(x))

    tokens = np.random.default_rng(0).integers(1, 50, (4, 12)).astype(np.int32)
    for row, length in enumerate((12, 9, 4, 1)):
        tokens[row, length:] = 0
    positions = np.tile(np.arange(12, dtype=np.int32), (4, 1))
    export_and_compare(build, [tokens, positions], tmp_path, api=api, atol=2e-5)


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
def test_zoo_vit_style_classifier(api: str, tmp_path: Path) -> None:
    def build(K):
        inp = K.Input((16, 16, 3))
        x = K.layers.Reshape((16, 24))(K.layers.Conv2D(24, 4, strides=4)(inp))
        for _ in range(2):
            x = _transformer_block(K, x, heads=3, dim=24, ff=48)
        x = K.layers.GlobalAveragePooling1D()(x)
        return K.Model(inp, K.layers.Dense(5, activation="softmax")(x))

    export_and_compare(build, rand(2, 16, 16, 3), tmp_path, api=api, atol=2e-5)


# ----- TF ops (tf_keras TFOpLambda / SlicingOpLambda, Keras 3 keras.ops nodes) ----------
# (label, function of (tf, a, b)); a, b have shape (batch, 4, 6). Every function the runtime
# whitelists appears at least once (test_every_tf_function_is_exercised).
TF_OP_CASES = [
    ("multiply_const", lambda tf, a, b: a * 2.0),
    ("radd_rsub_rdiv", lambda tf, a, b: 1.5 + a + (3.0 - b) + 2.0 / (tf.abs(a) + 1.0)),
    ("math_fns", lambda tf, a, b: tf.math.add(a, b) - tf.math.subtract(b, 0.5)
     + tf.math.multiply(a, b) + tf.math.truediv(a, 4) + tf.math.divide(a, 2.0)),
    ("pow_neg", lambda tf, a, b: -(a ** 2) + tf.math.pow(tf.abs(a), 1.5) + tf.math.negative(b)),
    ("floordiv_mod", lambda tf, a, b: a // 0.3 + a % 0.7 + tf.math.floormod(b, -0.4)
     + tf.compat.v1.floor_div(b, 0.25)),
    ("int_floordiv_mod_mean", lambda tf, a, b: tf.cast(
        tf.cast(a * 20.0, tf.int32) // 3 + tf.cast(b * 20.0, tf.int32) % 7
        # negative sums too: TF truncates integer means toward zero
        + tf.reduce_mean(tf.cast(a * 20.0, tf.int32), axis=1, keepdims=True), tf.float32)),
    ("int_truediv", lambda tf, a, b: tf.cast(tf.cast(a * 9.0, tf.int32) / 4, tf.float32)),
    ("const_vector", lambda tf, a, b: a * tf.constant([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])),
    ("reshape", lambda tf, a, b: tf.reshape(a, (-1, 24))),
    ("reshape_dynamic", lambda tf, a, b: tf.reshape(a, [tf.shape(a)[0], 6, 4])),
    ("reshape_shape_tensor", lambda tf, a, b: tf.reshape(b, tf.shape(a))),
    ("slice_basic", lambda tf, a, b: a[:, 1:3]),
    ("slice_ellipsis_newaxis_stride", lambda tf, a, b: a[:, 1:4, ..., tf.newaxis, ::2]),
    ("slice_int", lambda tf, a, b: a[:, 0]),
    ("slice_negative", lambda tf, a, b: a[..., -1:] + a[:, ::-1, -2:]),
    ("slice_negative_step_bounds", lambda tf, a, b: a[:, 3:0:-2, -1]),
    ("slice_mixed", lambda tf, a, b: a[:, -1, 2:5:2]),
    ("slice_dynamic", lambda tf, a, b: a[:, : tf.shape(a)[1] - 1, 1:]),
    ("concat", lambda tf, a, b: tf.concat([a, b, a], axis=-1)),
    ("concat_axis1", lambda tf, a, b: tf.concat([a, b], 1)),
    ("stack", lambda tf, a, b: tf.stack([a, b], axis=1)[:, 1] + tf.stack([a, b], axis=-1)[..., 0]),
    ("reduce_sum", lambda tf, a, b: tf.reduce_sum(a, axis=1)),
    ("reduce_mean_keepdims", lambda tf, a, b: tf.reduce_mean(a, axis=[1, 2], keepdims=True)),
    ("reduce_max", lambda tf, a, b: tf.reduce_max(a, -1)),
    ("reduce_min_all", lambda tf, a, b: tf.reduce_min(a) + b),
    ("reduce_prod", lambda tf, a, b: tf.reduce_prod(a + 1.0, axis=-1, keepdims=True)),
    ("reduce_v1_keep_dims", lambda tf, a, b: tf.compat.v1.reduce_sum(a, 1, keep_dims=True)),
    ("matmul", lambda tf, a, b: tf.matmul(a, b, transpose_b=True)),
    ("matmul_transpose_a", lambda tf, a, b: tf.linalg.matmul(a, b, transpose_a=True)),
    ("matmul_operator", lambda tf, a, b: a @ tf.transpose(b, [0, 2, 1])),
    ("matmul_adjoint", lambda tf, a, b: tf.matmul(a, b, adjoint_b=True)),
    ("matrix_transpose", lambda tf, a, b: tf.linalg.matrix_transpose(a)),
    ("transpose", lambda tf, a, b: tf.transpose(a, perm=[0, 2, 1])),
    ("transpose_v1", lambda tf, a, b: tf.compat.v1.transpose(a, perm=[2, 0, 1])),
    ("expand_squeeze", lambda tf, a, b: tf.squeeze(tf.expand_dims(a, 1), axis=[1])),
    ("expand_dims_last", lambda tf, a, b: tf.expand_dims(a, -1)),
    ("squeeze_all_v1", lambda tf, a, b: tf.compat.v1.squeeze(tf.compat.v1.expand_dims(a[:, :1], 3))),
    ("activations", lambda tf, a, b: tf.nn.relu(a) + tf.nn.sigmoid(b) + tf.math.sigmoid(a)
     + tf.nn.tanh(a) + tf.math.tanh(b) + tf.nn.relu6(a * 8.0)),
    ("softmax", lambda tf, a, b: tf.nn.softmax(a) + tf.nn.softmax(b, axis=1)
     + tf.math.softmax(a, axis=-1)),
    ("more_activations", lambda tf, a, b: tf.nn.elu(a) + tf.nn.selu(b) + tf.nn.softplus(a)
     + tf.math.softplus(b) + tf.nn.leaky_relu(b) + tf.nn.leaky_relu(a, alpha=0.05)
     + tf.nn.gelu(a) + tf.nn.gelu(b, approximate=True) + tf.nn.silu(b) + tf.nn.swish(a)
     + tf.nn.log_softmax(a) + tf.math.log_softmax(b, axis=1)),
    ("math_unary", lambda tf, a, b: tf.math.sqrt(tf.abs(a)) + tf.exp(a) + tf.math.log(tf.abs(b) + 0.1)
     + tf.square(a) + tf.math.rsqrt(tf.abs(a) + 0.5)),
    ("max_min_clip", lambda tf, a, b: tf.maximum(a, 0.1) + tf.minimum(a, b)
     + tf.clip_by_value(b, -0.4, 0.3)),
    ("cast", lambda tf, a, b: tf.cast(tf.cast(a * 4.0, tf.int32), "float32")
     + tf.dtypes.cast(tf.cast(b * 3.0, tf.int64), tf.float32)),
    ("add_n", lambda tf, a, b: tf.add_n([a, b, a])),
    ("shape_v1", lambda tf, a, b: a * tf.cast(tf.compat.v1.shape(a)[2], tf.float32)),
]
TF_OP_NO_KERAS_FORMAT = {"slice_ellipsis_newaxis_stride", "slice_negative"}


def _tf_op_model(fn: Any) -> Any:
    def build(K):
        import tensorflow as tf

        a, b = K.Input((4, 6)), K.Input((4, 6))
        x = K.layers.Dense(6)(a)  # tensors that come out of a real layer too
        return K.Model([a, b], fn(tf, x, b))

    return build


@pytest.mark.parametrize("case", TF_OP_CASES, ids=[c[0] for c in TF_OP_CASES])
def test_tf_op_lambda(case: tuple, tmp_path: Path) -> None:
    export_and_compare(_tf_op_model(case[1]), [rand(3, 4, 6, seed=1), rand(3, 4, 6, seed=2)],
                       tmp_path, api="tf_keras")


@pytest.mark.parametrize("opset", [13, ORT_MAX_OPSET])
def test_tf_op_lambda_opsets(opset: int, tmp_path: Path) -> None:
    def fn(tf, a, b):
        return tf.reduce_mean(a[:, 1:, ::2], axis=[1, 2], keepdims=True) + tf.reduce_max(b, 1)[:, None]

    export_and_compare(_tf_op_model(fn), [rand(3, 4, 6, seed=1), rand(3, 4, 6, seed=2)], tmp_path,
                       api="tf_keras", opset=opset)


def test_every_tf_function_is_exercised() -> None:
    """Each function tfless runs for a TFOpLambda has a converter and a parity case above."""
    import inspect

    from tfless.export.onnx_ops import tfop as onnx_tfop
    from tfless.export.onnx_ops import tfop_keras as onnx_keras_ops
    from tfless.ops import tfop as runtime_tfop
    from tfless.ops import tfop_keras as runtime_keras_ops

    assert set(runtime_tfop.TF_FUNCTIONS) == set(onnx_tfop.TF_FUNCTIONS)
    # tfop.py's keras.ops kernels all convert; converters added for keras.ops kernels in other
    # runtime modules (ops/keras_numpy.py, ops/keras_nn.py) each have a runtime op too.
    assert set(runtime_keras_ops.KERAS_OPS) <= set(onnx_keras_ops.KERAS_OPS)
    assert all(f"keras.ops.{op}" in REGISTRY for op in onnx_keras_ops.KERAS_OPS)
    source = inspect.getsource(sys.modules[__name__])
    spelled = {f: "tf." + f.replace("__operators__.", "") for f in runtime_tfop.TF_FUNCTIONS}
    spelled.update({"__operators__.add": " + ", "__operators__.getitem": "a[:",
                    "math.add": "tf.math.add", "math.subtract": " - ", "math.truediv": " / ",
                    "compat.v1.floor_div": "floor_div", "math.floordiv": " // ",
                    "math.floormod": " % ", "math.pow": " ** ", "math.negative": "-(",
                    "math.multiply": " * ", "linalg.matmul": "tf.matmul", "math.abs": "tf.abs",
                    "math.exp": "tf.exp", "math.square": "tf.square",
                    "math.maximum": "tf.maximum", "math.minimum": "tf.minimum",
                    "math.reduce_sum": "tf.reduce_sum", "math.reduce_mean": "tf.reduce_mean",
                    "math.reduce_max": "tf.reduce_max", "math.reduce_min": "tf.reduce_min",
                    "math.reduce_prod": "tf.reduce_prod", "math.add_n": "tf.add_n",
                    "shape": "tf.shape"})
    missing = [f for f, text in spelled.items() if text not in source]
    assert not missing, f"TF functions without an ONNX parity case: {missing}"


K3_OP_CASES = [
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
    ("int_mean_divide", lambda ops, a, b: ops.mean(ops.cast(a * 9.0, "int32"), axis=1)[:, None]
     + ops.divide(ops.cast(a * 9.0, "int32"), 4)),
    ("matmul_transpose", lambda ops, a, b: ops.matmul(a, ops.transpose(b, (0, 2, 1)))
     + a @ ops.transpose(b, (0, 2, 1))),
    ("expand_squeeze", lambda ops, a, b: ops.squeeze(ops.expand_dims(a, 1), axis=1)),
    ("unary", lambda ops, a, b: ops.sqrt(ops.abs(a)) + ops.exp(a) + ops.log(ops.abs(b) + 0.1)
     + ops.square(a) + ops.rsqrt(ops.abs(a) + 0.5) + ops.absolute(b)),
    ("activations", lambda ops, a, b: ops.relu(a) + ops.sigmoid(b) + ops.tanh(a) + ops.softmax(a, axis=1)
     + ops.relu6(a * 8.0) + ops.softplus(b) + ops.silu(a)),
    ("cast", lambda ops, a, b: ops.cast(ops.cast(a * 4.0, "int32"), "float32")
     + ops.convert_to_tensor(b) + ops.convert_to_tensor(ops.cast(a * 4.0, "int32"), "float32")),
    ("compare_where", lambda ops, a, b: ops.where(a > b, a, b) + ops.cast(ops.not_equal(a, 0.0), "float32")
     + ops.cast(ops.logical_and(a >= b, ops.logical_or(a < 0.1, ops.logical_not(b <= 0.2))), "float32")
     + ops.cast(ops.equal(a, b), "float32")),
    ("max_min_clip", lambda ops, a, b: ops.maximum(a, 0.1) + ops.minimum(a, b) + ops.clip(b, -0.4, 0.3)),
    ("einsum", lambda ops, a, b: ops.einsum("bij,bkj->bik", a, b)),
    ("activation_ops", lambda ops, a, b: ops.log_softmax(a, axis=1) + ops.gelu(a)
     + ops.gelu(b, approximate=False) + ops.elu(a, alpha=0.5) + ops.celu(b, alpha=2.0)
     + ops.selu(a) + ops.leaky_relu(a, negative_slope=0.1) + ops.hard_sigmoid(a * 4)
     + ops.hard_silu(b * 4) + ops.log_sigmoid(a) + ops.softsign(b) + ops.sparse_plus(a * 2)
     + ops.sparse_sigmoid(b * 2) + ops.squareplus(a, b=2) + ops.tanh_shrink(b)
     + ops.hard_tanh(a * 2) + ops.soft_shrink(a, threshold=0.3) + ops.hard_shrink(b)
     + ops.threshold(a, 0.1, -2.0)),
    ("glu_sparsemax", lambda ops, a, b: ops.concatenate([
        ops.glu(a), ops.glu(b, axis=1)[:, :, :3], ops.sparsemax(a * 3)[:, :2, :3],
        ops.sparsemax(b * 3, axis=1)[:, :2, :3]], axis=1)),
    ("math_more", lambda ops, a, b: ops.floor(a * 3) + ops.ceil(b * 3) + ops.round(a * 4)
     + ops.sign(b) + ops.log1p(ops.abs(a)) + ops.expm1(b) + ops.sin(a) + ops.cos(b)
     + ops.ones_like(a) - ops.zeros_like(b) + ops.cast(ops.ones_like(a, dtype="bool"), "float32")
     + ops.floor(ops.cast(b * 5, "int32")) + ops.cast(ops.sign(ops.cast(a * 5, "int32")), "float32")),
    ("any_all", lambda ops, a, b: ops.cast(ops.any(a > 0.5, axis=-1), "float32")
     + ops.cast(ops.all(b < 0.5, axis=1, keepdims=True), "float32")[:, 0, :4]),
]


@pytest.mark.parametrize("case", K3_OP_CASES, ids=[c[0] for c in K3_OP_CASES])
def test_keras3_raw_ops(case: tuple, tmp_path: Path) -> None:
    def build(K):
        a, b = K.Input((4, 6)), K.Input((4, 6))
        x = K.layers.Dense(6)(a)
        return K.Model([a, b], case[1](K.ops, x, b))

    export_and_compare(build, [rand(3, 4, 6, seed=1), rand(3, 4, 6, seed=2)], tmp_path)


def test_keras3_mask_computation_node(tmp_path: Path) -> None:
    """Keras 3 records the mask passed to a layer's `mask` argument as a NotEqual op node."""
    def build(K):
        ids = K.Input((5,), dtype="int32")
        x = K.layers.Embedding(10, 4, mask_zero=True)(ids)
        x = K.layers.BatchNormalization()(x)
        return K.Model(ids, K.layers.Multiply()([x, x]))

    ids = np.array([[1, 2, 0, 0, 3], [4, 0, 5, 6, 0]], dtype="int32")
    export_and_compare(build, ids, tmp_path)


def test_keras3_masking_layer_into_lstm(tmp_path: Path) -> None:
    """Keras 3 records a Masking layer's mask as NotEqual + Any op nodes."""
    def build(K):
        x = K.Input((5, 3))
        return K.Model(x, K.layers.LSTM(4)(K.layers.Masking(0.0)(x)))

    x = rand(2, 5, 3)
    x[0, 3:] = 0.0
    export_and_compare(build, x, tmp_path)


def test_tf_op_without_converter_fails_naming_the_layer(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from tfless.export.onnx_ops import tfop as onnx_tfop

    K = keras_module("tf_keras")
    a = K.Input((4, 6))
    model = K.Model(a, K.layers.Dense(3)(a) * 2.0)
    path = tmp_path / "m.h5"
    model.save(path)
    loaded = tfless.load(path)
    monkeypatch.delitem(onnx_tfop.TF_FUNCTIONS, "math.multiply")
    out = tmp_path / "never.onnx"
    with pytest.raises(tfless.UnsupportedLayer,
                       match=r"layer 'tf.math.multiply(_\d+)?' calls tf.math.multiply"):
        tfless.export_onnx(loaded, out)
    assert not out.exists() and not list(tmp_path.glob("*.onnx*"))


# ----- shapes, batch, metadata ---------------------------------------------------------
def _dims(value_info: Any) -> list[Any]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import keras

    inp = keras.Input((None, 4), name="seq")
    out = keras.layers.Dense(3, activation="relu", name="out")(inp)
    model = keras.Model(inp, out)
    randomize_weights(model)
    path = tmp_path_factory.mktemp("small") / "small.keras"
    model.save(path)
    return path


def test_batch_dynamic_and_fixed(small_model: Path, tmp_path: Path) -> None:
    tfless.export_onnx(small_model, tmp_path / "dyn.onnx")
    proto = onnx.load(str(tmp_path / "dyn.onnx"))
    assert _dims(proto.graph.input[0]) == ["batch", "seq_dim1", 4]
    assert _dims(proto.graph.output[0])[0] == "batch"
    assert _dims(proto.graph.output[0])[2] == 3
    tfless.export_onnx(small_model, tmp_path / "fixed.onnx", batch=3)
    fixed = onnx.load(str(tmp_path / "fixed.onnx"))
    assert _dims(fixed.graph.input[0])[0] == 3
    assert verify_onnx(tmp_path / "fixed.onnx").ok
    x = rand(5, 7, 4)
    session = ort.InferenceSession(str(tmp_path / "dyn.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"seq": x})[0], tfless.load(small_model).predict(x),
                               atol=1e-6)


def test_metadata_and_test_vector(small_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    tfless.export_onnx(small_model, out)
    proto = onnx.load(str(out))
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["tfless.source"] == str(small_model)
    assert props["tfless.keras_version"].startswith("3.")
    assert props["tfless.tfless_version"] == tfless.__version__
    assert "tfless.test_vector" in props
    report = verify_onnx(out)
    assert report.ok and "OK" in str(report)


def test_verify_detects_tampered_weights(small_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    tfless.export_onnx(small_model, out)
    proto = onnx.load(str(out))
    init = proto.graph.initializer[0]
    arr = onnx.numpy_helper.to_array(init) + 0.5
    init.CopyFrom(onnx.numpy_helper.from_array(arr.astype(np.float32), init.name))
    onnx.save(proto, str(out))
    report = verify_onnx(out)
    assert not report.ok
    assert "MISMATCH" in str(report)


def test_float16_report(tmp_path: Path) -> None:
    import keras

    inp = keras.Input((32,))
    x = keras.layers.Dense(64, activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Dense(8)(x))
    randomize_weights(model)
    path = tmp_path / "m.keras"
    model.save(path)
    report = tfless.export_onnx(path, tmp_path / "m16.onnx", float16=True)
    assert report.float16 and report.weights_converted == 4
    assert report.weight_bytes_float16 * 2 == report.weight_bytes_float32
    assert 0 < report.max_abs_error < 0.05
    assert "50% smaller" in str(report) and "accuracy cost" in str(report)
    proto = onnx.load(str(tmp_path / "m16.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    assert {i.data_type for i in proto.graph.initializer if i.name.endswith("/float16")} == {
        onnx.TensorProto.FLOAT16}
    full = tfless.export_onnx(path, tmp_path / "m32.onnx")
    assert report.bytes < full.bytes
    assert verify_onnx(tmp_path / "m16.onnx").ok


def test_unsupported_layer_fails_before_writing(small_model: Path, tmp_path: Path) -> None:
    model = tfless.load(small_model)
    saved = CONVERTERS.pop("Dense")
    try:
        out = tmp_path / "never.onnx"
        with pytest.raises(tfless.UnsupportedLayer, match=r"'out' \(Dense\)"):
            tfless.export_onnx(model, out)
        assert not out.exists() and not list(tmp_path.iterdir())
    finally:
        CONVERTERS["Dense"] = saved


def test_bad_opset_and_batch(small_model: Path, tmp_path: Path) -> None:
    with pytest.raises(tfless.InputError, match="opset 12"):
        tfless.export_onnx(small_model, tmp_path / "x.onnx", opset=12)
    with pytest.raises(tfless.InputError, match="batch"):
        tfless.export_onnx(small_model, tmp_path / "x.onnx", batch="many")
    assert not (tmp_path / "x.onnx").exists()


def test_missing_extra_is_one_clear_error(small_model: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(tfless.MissingExtra, match=r"pip install 'tfless\[onnx\]'"):
        tfless.load(small_model, backend="onnxruntime")
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(tfless.MissingExtra, match=r"pip install 'tfless\[onnx\]'"):
        tfless.export_onnx(small_model, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def _op_families_model(K: Any) -> Any:
    """Ops whose ONNX spelling changed across opsets 13..newest (Reduce* axes, Split, Pad,
    Resize, Scan, Softmax, Slice, TopK/CumSum, Shrink) in one small model."""
    inp = K.Input((6, 6, 2))
    x = K.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = K.layers.ZeroPadding2D(1)(K.layers.MaxPooling2D(2)(x))
    x = K.layers.UpSampling2D(2, interpolation="bilinear")(x)
    x = K.layers.LayerNormalization()(K.layers.Resizing(4, 4)(x))
    seq = K.layers.Reshape((16, 4))(x)
    seq = K.layers.LSTM(4, return_sequences=True)(K.layers.Masking(0.0)(seq))
    seq = K.layers.MultiHeadAttention(2, 2)(seq, seq, use_causal_mask=True)
    seq = K.layers.Dense(6, activation="glu")(seq)
    head = K.layers.GlobalAveragePooling1D()(K.layers.Activation("sparsemax")(seq))
    return K.Model(inp, [head, K.layers.Activation("soft_shrink")(K.ops.max(seq[:, 2:], axis=1))])


def test_every_opset_exports_checks_and_matches(tmp_path: Path) -> None:
    """Each opset from 13 to the newest the installed onnx has: the export passes the full
    checker, and matches Keras in ONNX Runtime wherever the installed ONNX Runtime runs it."""
    import keras

    model = _op_families_model(keras)
    randomize_weights(model)
    x = rand(2, 6, 6, 2)
    want = keras_predict(model, x)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = tfless.load(path)
    ran = []
    for opset in range(13, onnx.defs.onnx_opset_version() + 1):
        out = tmp_path / f"m{opset}.onnx"
        report = tfless.export_onnx(loaded, out, opset=opset)
        proto = onnx.load(str(out))
        assert proto.opset_import[0].version == opset
        onnx.checker.check_model(proto, full_check=True)
        if report.checked != "onnxruntime":
            assert "does not run opset" in report.checked
            continue
        ran.append(opset)
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        assert_close(session.run(None, {session.get_inputs()[0].name: x}), want, f"opset {opset}")
        assert verify_onnx(out).ok
    assert ran[:6] == list(range(13, 19)), ran


def test_newest_opset_exports_and_checks(small_model: Path, tmp_path: Path) -> None:
    top = onnx.defs.onnx_opset_version()
    report = tfless.export_onnx(small_model, tmp_path / "top.onnx", opset=top)
    onnx.checker.check_model(onnx.load(str(tmp_path / "top.onnx")), full_check=True)
    assert report.opset == top


# Families whose every runtime op exports; a family joins once its converters are written.
CONVERTED_FAMILIES = ("activations", "attention", "convolutional", "core", "merging",
                      "normalization", "pooling", "preprocessing", "recurrent", "reshaping",
                      "tflite", "tfop")


def test_every_op_of_converted_families_has_a_converter() -> None:
    families = supported_ops()
    missing = sorted(op for fam in CONVERTED_FAMILIES for op in families.get(fam, [])
                     if op not in CONVERTERS)
    assert not missing, f"ops without an ONNX converter: {missing}"
    assert set(CONVERTERS) <= set(REGISTRY)


# ----- CLI -----------------------------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tfless.cli", *args], capture_output=True,
                          text=True, timeout=300)


def test_cli_export_verify_predict(small_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.onnx"
    r = _cli("export", str(small_model), "-f", "onnx", "-o", str(out), "--opset", "18",
             "--batch", "2", "--float16")
    assert r.returncode == 0, r.stderr
    assert "opset 18" in r.stdout and "float16 weights" in r.stdout and out.exists()
    r = _cli("verify", str(out))
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout
    x = rand(2, 5, 4)
    np.save(tmp_path / "x.npy", x)
    r = _cli("predict", str(small_model), "-i", str(tmp_path / "x.npy"), "-o",
             str(tmp_path / "y.npy"), "--backend", "onnxruntime")
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), tfless.load(small_model).predict(x),
                               atol=1e-5)
    r = _cli("export", str(small_model), "-f", "onnx", "-o", str(tmp_path / "bad.onnx"),
             "--opset", "5")
    assert r.returncode == 2 and "opset 5" in r.stderr and "Traceback" not in r.stderr


# ----- TensorFlow Lite files (tflite.* operators) -----------------------------------------
def tflite_export_and_compare(content: bytes, tmp_path: Path, inputs: list[np.ndarray],
                              opset: int = DEFAULT_OPSET, keras_model: Any = None,
                              **export_kwargs: Any) -> onnx.ModelProto:
    """Load a .tflite file, export it, and compare ONNX Runtime (file and backend) with the
    TFLite interpreter (and Keras, when given). `inputs` are in the file's input order."""
    from tests.formats.test_tflite import interpreter_outputs

    path = tmp_path / "model.tflite"
    path.write_bytes(content)
    out = tmp_path / "model.onnx"
    report = tfless.export_onnx(tfless.load(path), out, opset=opset, **export_kwargs)
    assert report.checked == "onnxruntime"
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    want = interpreter_outputs(content, inputs)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {i.name: a for i, a in zip(session.get_inputs(), inputs)})
    assert_close(list(got), want, f"tflite onnx opset {opset}")
    backend = tfless.load(path, backend="onnxruntime")
    assert_close(backend.predict(inputs if len(inputs) > 1 else inputs[0], structured=False)
                 if len(want) > 1 else [backend.predict(inputs if len(inputs) > 1 else inputs[0])],
                 want, "tflite backend")
    if keras_model is not None:
        assert_close(list(got), [np.asarray(keras_model.predict(
            inputs if len(inputs) > 1 else inputs[0], verbose=0))], "tflite onnx vs Keras")
    assert verify_onnx(out).ok
    return proto


@pytest.mark.parametrize("route", ["keras", "export"])
def test_tflite_cnn(route: str, tmp_path: Path) -> None:
    from tests.formats.test_tflite import cnn, convert, tflite_ops

    model = cnn()
    content = convert(model, route, tmp=tmp_path)
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "MAX_POOL_2D", "AVERAGE_POOL_2D",
            "PAD", "MEAN", "FULLY_CONNECTED"} <= tflite_ops(content)
    tflite_export_and_compare(content, tmp_path, [rand(2, 16, 16, 3)], keras_model=model)


@pytest.mark.parametrize("route", ["keras", "export"])
def test_tflite_many_builtin_ops(route: str, tmp_path: Path) -> None:
    from tests.formats.test_tflite import convert, misc_inputs, misc_ops, tflite_ops

    model = misc_ops()
    content = convert(model, route, tmp=tmp_path)
    assert {"GATHER", "LESS", "SELECT_V2", "LEAKY_RELU", "PRELU", "ELU", "GELU", "BATCH_MATMUL",
            "SQUARED_DIFFERENCE", "RSQRT", "SQRT", "POW", "MAXIMUM", "MINIMUM", "EXP", "LOG",
            "SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND", "EXPAND_DIMS", "STRIDED_SLICE", "SUM",
            "REDUCE_MAX", "CONCATENATION", "SOFTMAX", "TANH", "LOGISTIC", "SHAPE", "PACK",
            "RESHAPE"} <= tflite_ops(content)
    loaded = tfless.load(_write(tmp_path, content))
    x, tokens = misc_inputs(3)
    ordered = [x if np.dtype(s.dtype).kind == "f" else tokens for s in loaded.inputs]
    tflite_export_and_compare(content, tmp_path, ordered)


def _write(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "probe.tflite"
    path.write_bytes(content)
    return path


def _tf_function_tflite() -> bytes:
    """Builtins Keras layers rarely emit, from a converted tf.function."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 4, 6], tf.float32),
                                  tf.TensorSpec([None, 4], tf.int32)])
    def f(x: Any, ids: Any) -> list[Any]:
        a = tf.squeeze(tf.slice(x, [0, 1, 0], [-1, 1, 4]), axis=1)
        padded = tf.pad(x, [[0, 0], [1, 2], [0, 1]], constant_values=0.5)
        reflect = tf.pad(x, [[0, 0], [1, 1], [2, 0]], mode="REFLECT")
        symmetric = tf.pad(x, [[0, 0], [2, 1], [0, 3]], mode="SYMMETRIC")
        s1, s2 = tf.split(x, [2, -1], axis=2)
        e1, e2 = tf.split(x, 2, axis=1)
        rows = tf.unstack(x, axis=1)
        args = tf.cast(tf.argmax(x, axis=-1), tf.float32) + tf.cast(tf.argmin(x, axis=-1), tf.float32)
        swish = x * tf.nn.relu6(x + 3.0) / 6.0
        relus = tf.nn.relu(x) - tf.nn.relu6(x) + tf.clip_by_value(x, -1.0, 1.0) \
            + tf.clip_by_value(x, 0.0, 1.0) + tf.nn.leaky_relu(x, 0.3)
        divs = tf.math.floordiv(x, 0.3) + tf.math.floormod(x, 0.3) + x / (tf.abs(x) + 1.0)
        misc = tf.nn.log_softmax(x) + tf.floor(x) + tf.math.ceil(x) + tf.square(x) - tf.exp(x) \
            + tf.math.squared_difference(x, 0.2) + tf.pow(tf.abs(x) + 1.0, 0.7) - tf.negative(x)
        chosen = tf.where(x > 0.2, x, tf.zeros_like(x) - 1.0) + \
            tf.cast(tf.logical_and(x > 0.0, x < 0.5), tf.float32) + \
            tf.cast(tf.logical_or(x >= 0.3, tf.logical_not(x <= -0.3)), tf.float32) + \
            tf.cast(tf.equal(x, e1[:, :1]), tf.float32) + tf.cast(tf.not_equal(x, 0.0), tf.float32)
        reduced = tf.reduce_min(x, axis=[1, 2]) + tf.reduce_prod(x, axis=1)[:, 0] \
            + tf.reduce_max(x, axis=2)[:, 1] + tf.reduce_mean(x, axis=[1])[:, 2]
        strided = tf.reduce_sum(x[:, ::-1, 1::2], [1, 2]) + tf.reduce_sum(x[:, -3:, None, 0], [1, 2]) \
            + tf.reduce_sum(x[..., -2:-1], [1, 2]) + tf.reduce_sum(x[:, 3:0:-2, 2], -1)
        q = ids // 3 + ids % 4 + tf.cast(tf.cast(ids, tf.float32) * 0.5, tf.int32)
        idiv = tf.truncatediv(ids - 5, 3)
        gathered = tf.gather(x, tf.clip_by_value(ids, 0, 3), axis=1, batch_dims=0)
        total = (tf.reduce_sum(a, -1) + tf.reduce_sum(padded, [1, 2]) + tf.reduce_sum(reflect, [1, 2])
                 + tf.reduce_sum(symmetric, [1, 2]) + tf.reduce_sum(s2, [1, 2])
                 + tf.reduce_sum(tf.tile(s1, [1, 2, 1]), [1, 2]) + tf.reduce_sum(e2, [1, 2])
                 + tf.reduce_sum(args, -1) + reduced + tf.reduce_sum(rows[1] * rows[3], -1)
                 + tf.cast(tf.reduce_sum(q + idiv, -1), tf.float32)
                 + tf.reduce_sum(gathered, [1, 2, 3]) + strided)
        grid = tf.broadcast_to(x[:, :1], tf.shape(x)) + tf.fill(tf.shape(x), 0.25)
        return [total, swish + relus + divs + misc + chosen + grid, tf.transpose(x, [0, 2, 1]),
                tf.nn.softmax(x * 2.0, axis=-1)]

    converter = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    return converter.convert()


TF_FUNCTION_TFLITE_OPS = {
    "SLICE", "PADV2", "MIRROR_PAD", "SPLIT_V", "SPLIT", "UNPACK", "TILE", "ARG_MAX", "ARG_MIN",
    "CAST", "HARD_SWISH", "RELU", "RELU6", "RELU_N1_TO_1", "LEAKY_RELU", "FLOOR_DIV",
    "FLOOR_MOD", "DIV", "LOG_SOFTMAX", "FLOOR", "CEIL", "SQUARE", "GREATER", "GREATER_EQUAL",
    "EQUAL", "NOT_EQUAL", "LOGICAL_AND", "LOGICAL_OR", "ZEROS_LIKE", "REDUCE_MIN",
    "REDUCE_PROD", "REDUCE_MAX", "MEAN", "TRANSPOSE", "SQUARED_DIFFERENCE", "POW",
    "STRIDED_SLICE", "GATHER", "BROADCAST_TO", "FILL", "SELECT_V2", "SOFTMAX", "ABS", "EXP",
    "MAXIMUM", "MINIMUM", "LESS", "SHAPE", "RESHAPE", "SUM", "ADD", "SUB", "MUL",
}


@pytest.mark.parametrize("opset", [13, DEFAULT_OPSET, ORT_MAX_OPSET])
def test_tflite_tf_function_ops(opset: int, tmp_path: Path) -> None:
    from tests.formats.test_tflite import tflite_ops

    content = _tf_function_tflite()
    assert TF_FUNCTION_TFLITE_OPS <= tflite_ops(content)
    ids = np.random.default_rng(3).integers(-6, 9, (3, 4)).astype(np.int32)
    tflite_export_and_compare(content, tmp_path, [rand(3, 4, 6, seed=9), ids], opset=opset)


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
def test_fixed_model_batch_is_kept(api: str, tmp_path: Path) -> None:
    """A model that fixes its batch (stateful RNNs need batch_shape) exports with that
    batch, and its test vector uses it."""
    def build(K):
        return K.Sequential([K.Input(batch_shape=(2, 5, 3)) if api == "keras3"
                             else K.layers.InputLayer(batch_input_shape=(2, 5, 3)),
                             K.layers.LSTM(4, stateful=True, return_sequences=True),
                             K.layers.GRU(3, stateful=True)])

    proto = export_and_compare(build, rand(2, 5, 3), tmp_path, api=api)
    assert _dims(proto.graph.input[0]) == [2, 5, 3]
    assert _dims(proto.graph.output[0])[0] == 2


def test_tflite_recurrent_and_float16(tmp_path: Path) -> None:
    """tf_keras LSTMs with a fixed batch convert to UNIDIRECTIONAL_SEQUENCE_LSTM (exported
    as one Scan); Keras 3 unrolled GRUs to SPLIT/UNPACK/FILL; float16 weights are folded
    DEQUANTIZE constants."""
    import keras
    import tf_keras

    from tests.formats.test_tflite import convert, round_to_float16, tflite_ops

    fused = tf_keras.Sequential([tf_keras.Input((5, 4), batch_size=2),
                                 tf_keras.layers.LSTM(6, return_sequences=True),
                                 tf_keras.layers.LSTM(3)])
    randomize_weights(fused)
    content = convert(fused)
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in tflite_ops(content)
    proto = tflite_export_and_compare(content, tmp_path, [rand(2, 5, 4)], keras_model=fused)
    assert "Scan" in {n.op_type for n in proto.graph.node}
    assert _dims(proto.graph.input[0])[0] == 2

    unrolled = keras.Sequential([keras.Input((5, 4)), keras.layers.GRU(6, unroll=True,
                                                                        return_sequences=True),
                                 keras.layers.LSTM(3, unroll=True)])
    randomize_weights(unrolled)
    round_to_float16(unrolled)
    content = convert(unrolled, fp16=True)
    assert {"SPLIT", "UNPACK", "FILL", "FULLY_CONNECTED", "DEQUANTIZE"} <= tflite_ops(content)
    tflite_export_and_compare(content, tmp_path, [rand(2, 5, 4)], keras_model=unrolled)


# TFLite operators (and option values) that converted Keras models and tf.functions do not
# emit: one-operator files written with TensorFlow's flatbuffer schema, checked against the
# TFLite interpreter.
TFLITE_TYPES = {"float32": 0, "float16": 1, "int32": 2, "int64": 4, "bool": 6}


def single_op_tflite(code: str, operands: list[Any], outputs: list[tuple], options: Any = None,
                     options_name: str = "") -> bytes:
    """`operands`: ("input", shape, dtype) for a model input, an array for a constant, or
    None for an omitted optional operand; `outputs`: (shape, dtype) each."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    tensors, buffers, inputs, op_inputs = [], [schema.BufferT()], [], []

    def tensor(shape: Any, dtype: str, data: np.ndarray | None = None) -> int:
        t = schema.TensorT()
        t.shape, t.type, t.name = list(shape), TFLITE_TYPES[dtype], f"t{len(tensors)}"
        t.buffer = 0
        if data is not None:
            buf = schema.BufferT()
            buf.data = np.ascontiguousarray(data).tobytes()
            buffers.append(buf)
            t.buffer = len(buffers) - 1
        tensors.append(t)
        return len(tensors) - 1

    for item in operands:
        if item is None:
            op_inputs.append(-1)
        elif isinstance(item, tuple):
            op_inputs.append(tensor(item[1], item[2]))
            inputs.append(op_inputs[-1])
        else:
            arr = np.asarray(item)
            op_inputs.append(tensor(arr.shape, str(arr.dtype), arr))
    outs = [tensor(shape, dtype) for shape, dtype in outputs]
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, op_inputs, outs
    if options is not None:
        op.builtinOptionsType = getattr(schema.BuiltinOptions, options_name)
        op.builtinOptions = options
    opcode = schema.OperatorCodeT()
    opcode.builtinCode = getattr(schema.BuiltinOperator, code)
    opcode.deprecatedBuiltinCode = min(opcode.builtinCode, 127)
    opcode.version = 1
    sub = schema.SubGraphT()
    sub.tensors, sub.inputs, sub.outputs, sub.operators = tensors, inputs, outs, [op]
    model = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, [opcode], [sub], buffers
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _options(name: str, **fields: Any) -> Any:
    from tensorflow.lite.python import schema_py_generated as schema

    options = getattr(schema, name + "T")()
    for key, value in fields.items():
        setattr(options, key, value)
    return options


def _x(*shape: int, dtype: str = "float32") -> tuple:
    return ("input", shape, dtype)


SINGLE_OP_CASES: dict[str, tuple] = {
    # label: (code, operands, outputs, options name, options fields, inputs)
    "squeeze_dims": ("SQUEEZE", [_x(2, 1, 3, 1)], [((2, 3), "float32")], "SqueezeOptions",
                     {"squeezeDims": [1, -1]}, [rand(2, 1, 3, 1)]),
    "relu_0_to_1": ("RELU_0_TO_1", [_x(2, 5)], [((2, 5), "float32")], "", {}, [rand(2, 5) * 2]),
    "neg": ("NEG", [_x(2, 5)], [((2, 5), "float32")], "NegOptions", {}, [rand(2, 5)]),
    "less_equal_not": ("LESS_EQUAL", [_x(2, 5), np.float32([0.1])], [((2, 5), "bool")],
                       "LessEqualOptions", {}, [rand(2, 5)]),
    "logical_not": ("LOGICAL_NOT", [_x(2, 5, dtype="bool")], [((2, 5), "bool")],
                    "LogicalNotOptions", {}, [rand(2, 5) > 0]),
    "select": ("SELECT", [_x(2, 5, dtype="bool"), _x(2, 5), _x(2, 5)], [((2, 5), "float32")],
               "SelectOptions", {}, [rand(2, 5) > 0, rand(2, 5, seed=2), rand(2, 5, seed=3)]),
    "quantize_fp16": ("QUANTIZE", [_x(2, 5)], [((2, 5), "float16")], "QuantizeOptions", {},
                      [rand(2, 5)]),
    "softmax_beta": ("SOFTMAX", [_x(2, 5)], [((2, 5), "float32")], "SoftmaxOptions",
                     {"beta": 0.5}, [rand(2, 5) * 3]),
    "add_relu_n1": ("ADD", [_x(2, 5), np.float32([0.5, -0.2, 0.1, 0.9, -1.5])],
                    [((2, 5), "float32")], "AddOptions", {"fusedActivationFunction": 2},
                    [rand(2, 5) * 2]),
    "strided_masks": ("STRIDED_SLICE", [_x(2, 4, 6), np.int32([0, 1, 0, 5]),
                                        np.int32([0, 4, 0, 1]), np.int32([1, 2, 1, -2])],
                      [((2, 1, 2, 2), "float32")], "StridedSliceOptions",
                      {"ellipsisMask": 1, "newAxisMask": 4, "endMask": 0}, [rand(2, 4, 6)]),
    "strided_shrink": ("STRIDED_SLICE", [_x(2, 4, 6), np.int32([0, -1, 1]),
                                         np.int32([0, 0, 4]), np.int32([1, 1, 1])],
                       [((2, 3), "float32")], "StridedSliceOptions",
                       {"beginMask": 1, "endMask": 1, "shrinkAxisMask": 2}, [rand(2, 4, 6)]),
    "strided_offset": ("STRIDED_SLICE", [_x(2, 4, 6), np.int32([0, 1, 1]),
                                         np.int32([0, 2, 3]), np.int32([1, 1, 1])],
                       [((2, 2, 3), "float32")], "StridedSliceOptions",
                       {"beginMask": 1, "endMask": 1, "offset": True}, [rand(2, 4, 6)]),
    "mirror_symmetric": ("MIRROR_PAD", [_x(2, 4, 3), np.int32([[0, 0], [2, 3], [1, 0]])],
                         [((2, 9, 4), "float32")], "MirrorPadOptions", {"mode": 1},
                         [rand(2, 4, 3)]),
    "int_div_relu": ("DIV", [_x(2, 5, dtype="int32"), np.int32([3, -2, 4, -3, 7])],
                     [((2, 5), "int32")], "DivOptions", {"fusedActivationFunction": 1},
                     [np.int32([[7, -7, 9, 5, -1], [-8, 6, 0, -9, 20]])]),
    "mean_int": ("MEAN", [_x(2, 3, dtype="int32"), np.int32([1])], [((2,), "int32")],
                 "ReducerOptions", {"keepDims": False}, [np.int32([[1, 2, 2], [-3, -3, -1]])]),
    "fully_connected_keep_dims": (
        "FULLY_CONNECTED", [_x(2, 3, 4), rand(5, 4), rand(5, seed=2)], [((2, 3, 5), "float32")],
        "FullyConnectedOptions", {"keepNumDims": True, "fusedActivationFunction": 3},
        [rand(2, 3, 4) * 4]),
    "batch_matmul_adjoint": ("BATCH_MATMUL", [_x(2, 4, 3), _x(2, 5, 4)], [((2, 3, 5), "float32")],
                             "BatchMatMulOptions", {"adjX": True, "adjY": True},
                             [rand(2, 4, 3), rand(2, 5, 4, seed=2)]),
    "pack_negative_axis": ("PACK", [_x(2, 3), _x(2, 3)], [((2, 3, 2), "float32")],
                           "PackOptions", {"valuesCount": 2, "axis": -1},
                           [rand(2, 3), rand(2, 3, seed=2)]),
    "reshape_option": ("RESHAPE", [_x(2, 6)], [((2, 3, 2), "float32")], "ReshapeOptions",
                       {"newShape": [2, 3, 2]}, [rand(2, 6)]),
}


@pytest.mark.parametrize("case", sorted(SINGLE_OP_CASES))
def test_tflite_single_operator(case: str, tmp_path: Path) -> None:
    code, operands, outputs, options_name, fields, inputs = SINGLE_OP_CASES[case]
    options = _options(options_name, **fields) if options_name else None
    content = single_op_tflite(code, operands, outputs, options, options_name)
    if code == "QUANTIZE":
        # the interpreter only quantizes to integers; tfless's runtime (float16 conversions
        # only) is the reference, checked by the export itself and compared again here
        path = _write(tmp_path, content)
        report = tfless.export_onnx(path, tmp_path / "q.onnx")
        assert report.checked == "onnxruntime" and report.max_abs_error == 0
        got = tfless.load(path, backend="onnxruntime").predict(inputs[0])
        assert got.dtype == np.float16
        np.testing.assert_array_equal(got, inputs[0].astype(np.float16))
        return
    tflite_export_and_compare(content, tmp_path, inputs)


def test_every_tflite_operator_is_exercised() -> None:
    """Each tflite.* operator the runtime runs appears in a test above (asserted present in
    the converted file, or built as a single-operator file)."""
    import inspect

    source = inspect.getsource(sys.modules[__name__])
    runtime = {op.removeprefix("tflite.") for op in supported_ops().get("tflite", [])}
    missing = sorted(code for code in runtime if f'"{code}"' not in source)
    assert not missing, f"TFLite operators without an ONNX test: {missing}"


# ----- real-world model files (../shared/realworld) -------------------------------------
def _realworld_rows() -> list[dict[str, str]]:
    from tests.test_realworld import WITH_REF

    return WITH_REF


@pytest.mark.parametrize("row", _realworld_rows(), ids=lambda r: r["id"])
def test_realworld_files_export_and_match_keras(row: dict[str, str], tmp_path: Path) -> None:
    """Every real-world file with a Keras reference exports, passes the checker, and runs in
    ONNX Runtime with Keras's outputs (file and backend="onnxruntime")."""
    from tests.test_realworld import _file, _reference

    xs, ys = _reference(row)
    backend = tfless.load(_file(row), backend="onnxruntime")
    out = tmp_path / "model.onnx"
    report = tfless.export_onnx(backend, out)  # the test vector still comes from NumPy
    assert report.checked == "onnxruntime"
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    # the file declares Keras's input dtypes (token ids into a float input stay float)
    feed = {i.name: x.astype(spec.dtype) for i, x, spec in
            zip(session.get_inputs(), xs, backend.inputs)}
    got = session.run(None, feed)
    assert_close(list(got), ys, f"realworld {row['id']} onnx")
    flat = backend.predict(xs if len(xs) > 1 else xs[0], structured=False)
    assert_close(flat if isinstance(flat, list) else [flat], ys, f"realworld {row['id']} backend")
    assert verify_onnx(out).ok


def test_backend_has_the_numpy_model_api(tmp_path: Path) -> None:
    """backend="onnxruntime": same inputs/outputs, dict and list inputs, Keras's output
    structure, batch_size, and the NumPy Model's errors for bad inputs."""
    import keras

    a, c = keras.Input((3,), name="a"), keras.Input((2,), name="c")
    h = keras.layers.Dense(4, activation="tanh")(keras.layers.Concatenate()([a, c]))
    model = keras.Model({"a": a, "c": c}, {"score": keras.layers.Dense(1, name="score")(h),
                                           "probs": keras.layers.Dense(3, activation="softmax",
                                                                       name="probs")(h)})
    randomize_weights(model)
    path = tmp_path / "m.keras"
    model.save(path)
    feed = {"a": rand(5, 3), "c": rand(5, 2, seed=2)}
    want = model.predict(feed, verbose=0)
    reference = tfless.load(path)
    backend = tfless.load(path, backend="onnxruntime")
    assert backend.inputs == reference.inputs and backend.outputs == reference.outputs
    assert "onnxruntime" in repr(backend)
    got = backend.predict(feed, batch_size=2)
    assert isinstance(got, dict) and set(got) == set(want)
    for key in want:
        assert_close([got[key]], [np.asarray(want[key])], f"backend dict output {key}")
    flat = backend.predict([feed["a"], feed["c"]], structured=False)
    for g, w in zip(flat, reference.predict([feed["a"], feed["c"]], structured=False)):
        assert_close([g], [w], "backend list input")
    with pytest.raises(tfless.InputError):
        backend.predict({"a": rand(5, 4), "c": feed["c"]})
    with pytest.raises(tfless.InputError):
        backend.predict({"a": feed["a"]})
    assert backend.summary() == reference.summary()
