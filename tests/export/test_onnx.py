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

ORT_MAX_OPSET = 26 if ort.__version__ >= "1.23" else 21


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


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_activations(activation: str, tmp_path: Path) -> None:
    def build(K):
        inp = K.Input((6,))
        return K.Model(inp, K.layers.Dense(5, activation=activation)(inp))

    export_and_compare(build, rand(4, 6), tmp_path)


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


def test_newest_opset_exports_and_checks(small_model: Path, tmp_path: Path) -> None:
    top = onnx.defs.onnx_opset_version()
    report = tfless.export_onnx(small_model, tmp_path / "top.onnx", opset=top)
    onnx.checker.check_model(onnx.load(str(tmp_path / "top.onnx")), full_check=True)
    assert report.opset == top


# Families whose every runtime op exports; a family joins once its converters are written.
CONVERTED_FAMILIES = ("activations", "convolutional", "core", "merging", "normalization",
                      "pooling", "preprocessing", "recurrent", "reshaping")


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
