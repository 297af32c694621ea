"""Quantized `.tflite` files: tfless matches LiteRT's interpreter (`ai-edge-litert`).

Keras models (an MLP, a CNN with residual adds and concatenation, an unrolled LSTM,
MobileNetV2) get random trained-like weights and are converted by TensorFlow's converter
with float16 weights, dynamic-range quantization (int8 weights, float activations: hybrid
kernels) and full-integer quantization (a representative dataset; float, int8 or uint8
model inputs/outputs). Integer outputs must equal LiteRT's or differ by one quantum;
float outputs of full-integer models by at most one output quantum; float16 and hybrid
outputs within the suite's float32 tolerance. Conversions are cached for the session.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tfless
from tests.parity import assert_close, rand, randomize_weights

MODES = ["float16", "dynamic", "int8", "int8_io", "uint8_io"]
_CONVERTED: dict[tuple[str, str], bytes] = {}


# ----- models ----------------------------------------------------------------------------
def mlp() -> Any:
    import keras

    L = keras.layers
    model = keras.Sequential([keras.Input((32,)), L.Dense(64, activation="relu"),
                              L.Dense(48, activation="tanh"), L.Dense(40, activation="sigmoid"),
                              L.Dense(10), L.Softmax()])
    randomize_weights(model, seed=1)
    return model


def cnn() -> Any:
    import keras

    L = keras.layers
    x = keras.Input((12, 12, 3))
    h = L.Conv2D(16, 3, strides=2, padding="same", activation="relu6")(x)
    h = L.BatchNormalization()(h)
    d = L.DepthwiseConv2D(3, depth_multiplier=8, padding="same", activation="relu")(h)
    d = L.Conv2D(16, 3, padding="same")(d)
    h = L.Add()([h, d])
    c = L.Conv2D(16, 3, padding="valid", activation="relu")(L.ZeroPadding2D(1)(h))
    h = L.Concatenate()([h, c])
    h = L.MaxPooling2D()(h)
    h = L.AveragePooling2D(3, strides=1, padding="same")(h)
    h = L.Multiply()([h, L.Activation("sigmoid")(h)])
    h = L.GlobalAveragePooling2D()(h)
    out = L.Dense(32, activation="relu")(h)
    model = keras.Model(x, L.Dense(10)(out))
    randomize_weights(model, seed=2)
    # Small kernels keep activations in a range quantization can represent well.
    model.set_weights([w * 0.3 if w.ndim > 1 else w for w in model.get_weights()])
    return model


def lstm() -> Any:
    import keras

    L = keras.layers
    model = keras.Sequential([keras.Input((6, 16)), L.LSTM(24, unroll=True), L.Dense(8)])
    randomize_weights(model, seed=3)
    model.set_weights([w * 0.3 for w in model.get_weights()])
    return model


def attention() -> Any:
    """Token ids -> Embedding (GATHER) -> self-attention (int8 BATCH_MATMUL, SOFTMAX)."""
    import keras

    L = keras.layers
    tokens = keras.Input((6,), dtype="int32")
    h = L.Embedding(100, 32)(tokens)
    h = L.MultiHeadAttention(2, 16)(h, h)
    h = L.EinsumDense("abc,cd->abd", output_shape=(6, 40))(h)
    model = keras.Model(tokens, L.Dense(4)(L.Flatten()(h)))
    randomize_weights(model, seed=6)
    model.set_weights([w * 0.3 for w in model.get_weights()])
    return model


MODELS: dict[str, Callable[[], Any]] = {"mlp": mlp, "cnn": cnn, "lstm": lstm,
                                        "attention": attention}
INPUTS = {"mlp": (32,), "cnn": (12, 12, 3), "lstm": (6, 16), "mobilenet": (96, 96, 3),
          "attention": (6,)}


def sample(name: str, batch: int, seed: int) -> np.ndarray:
    if name == "attention":
        return np.random.default_rng(seed).integers(0, 100, (batch, 6)).astype(np.int32)
    return rand(batch, *INPUTS[name], seed=seed)


def mobilenet() -> Any:
    import keras

    model = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None,
                                           classifier_activation=None)
    rng = np.random.default_rng(0)
    weights = []
    for w in model.weights:
        value = np.asarray(w.numpy())
        if "moving_variance" in w.path or "gamma" in w.path:
            value = rng.uniform(0.5, 1.5, value.shape)
        elif "moving_mean" in w.path or "beta" in w.path or "bias" in w.path:
            value = rng.normal(0.0, 0.1, value.shape)
        weights.append(value.astype(np.float32))
    model.set_weights(weights)
    return model


# ----- helpers ---------------------------------------------------------------------------
def converted(name: str, mode: str) -> bytes:
    """The model converted in `mode`, once per session."""
    key = (name, mode)
    if key not in _CONVERTED:
        import tensorflow as tf

        model = mobilenet() if name == "mobilenet" else MODELS[name]()
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if mode == "float16":
            converter.target_spec.supported_types = [tf.float16]
        elif mode != "dynamic":
            converter.representative_dataset = lambda: (
                [sample(name, 1, 100 + i)] for i in range(16))
        if mode.endswith("_io"):
            io_type = tf.int8 if mode == "int8_io" else tf.uint8
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = io_type
            converter.inference_output_type = io_type
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _CONVERTED[key] = converter.convert()
    return _CONVERTED[key]


def litert(content: bytes, x: np.ndarray, delegates: bool = True) -> tuple[np.ndarray, dict]:
    """LiteRT's output; `delegates=False` runs its builtin CPU kernels without the default
    XNNPACK delegate (whose float kernels differ from TFLite's by ulps)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if delegates else \
        OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interp = Interpreter(model_content=content, experimental_op_resolver_type=resolver)
    d = interp.get_input_details()[0]
    interp.resize_tensor_input(d["index"], x.shape)
    interp.allocate_tensors()
    interp.set_tensor(d["index"], x)
    interp.invoke()
    out = interp.get_output_details()[0]
    return interp.get_tensor(out["index"]), out


def operators(content: bytes) -> set[str]:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(content, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    return {names[codes[op.opcodeIndex]] for op in model.subgraphs[0].operators}


def model_input(loaded: tfless.Model, name: str, batch: int, seed: int = 0) -> np.ndarray:
    x = sample(name, batch, seed)
    dtype = loaded.inputs[0].dtype
    if dtype in ("int8", "uint8") and name != "attention":
        # The model's own input quantization, as a caller would apply it.
        x = np.clip(np.round(x * 100) + (0 if dtype == "int8" else 128), *{
            "int8": (-128, 127), "uint8": (0, 255)}[dtype]).astype(dtype)
    return x


def check(name: str, mode: str, tmp_path: Path, batch: int = 3) -> tuple[np.ndarray, np.ndarray]:
    content = converted(name, mode)
    path = tmp_path / f"{name}_{mode}.tflite"
    path.write_bytes(content)
    loaded = tfless.load(path)
    x = model_input(loaded, name, batch)
    got = loaded.predict(x)
    for delegates in (True, False):
        if delegates is False and mode not in ("float16", "dynamic"):
            # LiteRT's builtin int8 kernels (no XNNPACK) round gemmlowp-style twice outside
            # their GEMMs; tfless follows the default interpreter (XNNPACK: once).
            continue
        want, _ = litert(content, x, delegates)
        label = f"{name} {mode} vs LiteRT{'' if delegates else ' builtin kernels'}"
        assert got.dtype == want.dtype and got.shape == want.shape, label
        if want.dtype.kind in "iu":
            diff = np.abs(got.astype(np.int64) - want.astype(np.int64))
            assert diff.max() <= 1, f"{label}: {int(diff.max())} quanta apart"
            assert np.mean(diff == 0) >= 0.9, f"{label}: only {np.mean(diff == 0):.0%} equal"
        elif mode.startswith("int8"):
            quantum = _dequantized_output_scale(content)
            assert np.max(np.abs(got - want)) <= quantum * 1.001, label
        elif mode == "dynamic":
            # Float activations differ from LiteRT's by ulps (tanh, sigmoid); a hybrid
            # kernel can round such an input to the neighbouring int8 step, which moves its
            # output by one input step times the weights: compare loosely.
            assert_close(got, [want], label, atol=5e-3, rtol=1e-2)
        else:
            assert_close(got, [want], label)
    return got, want


def _dequantized_output_scale(content: bytes) -> float:
    """The scale of the int8 tensor the model's final DEQUANTIZE reads."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=content)
    out = interp.get_output_details()[0]["index"]
    for op in interp._get_ops_details():
        if op["op_name"] == "DEQUANTIZE" and out in op["outputs"]:
            return float(interp._get_tensor_details(op["inputs"][0], 0)["quantization"][0])
    raise AssertionError("no DEQUANTIZE produces the output")


# ----- parity ----------------------------------------------------------------------------
# Token ids stay int32, so the attention model has no int8/uint8-interface variant.
CASES = [(name, mode) for name in sorted(MODELS) for mode in MODES
         if not (name == "attention" and mode.endswith("_io"))]


@pytest.mark.parametrize("name,mode", CASES)
def test_quantized_models_match_litert(name: str, mode: str, tmp_path: Path) -> None:
    ops = operators(converted(name, mode))
    if mode == "dynamic" and name != "lstm":
        assert ops & {"FULLY_CONNECTED", "CONV_2D"} and "QUANTIZE" not in ops
    if mode == "int8" and name != "attention":
        assert {"QUANTIZE", "DEQUANTIZE"} <= ops
    if name == "attention" and mode == "int8":
        assert {"GATHER", "BATCH_MATMUL", "SOFTMAX", "DEQUANTIZE"} <= ops
    check(name, mode, tmp_path)


def test_cnn_int8_covers_the_kernels() -> None:
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "CONCATENATION", "MAX_POOL_2D",
            "AVERAGE_POOL_2D", "MUL", "LOGISTIC", "MEAN", "FULLY_CONNECTED"} <= \
        operators(converted("cnn", "int8"))


def test_quantized_inputs_are_typed(tmp_path: Path) -> None:
    path = tmp_path / "m.tflite"
    path.write_bytes(converted("mlp", "uint8_io"))
    loaded = tfless.load(path)
    assert loaded.inputs[0].dtype == "uint8" and loaded.outputs[0].dtype == "uint8"
    x = np.arange(64, dtype=np.uint8).reshape(2, 32)
    assert loaded.predict(x).dtype == np.uint8


def test_batches_agree(tmp_path: Path) -> None:
    """Per-batch-row input quantization of hybrid kernels: each row alone gives the same."""
    path = tmp_path / "m.tflite"
    path.write_bytes(converted("cnn", "dynamic"))
    loaded = tfless.load(path)
    x = rand(4, 12, 12, 3, seed=7)
    whole = loaded.predict(x)
    rows = np.concatenate([loaded.predict(x[i:i + 1]) for i in range(4)])
    assert_close(whole, [rows], "batch of 4 vs one by one")


def test_hybrid_fused_lstm(tmp_path: Path) -> None:
    """tf_keras LSTMs with a fixed batch convert to UNIDIRECTIONAL_SEQUENCE_LSTM; in
    dynamic-range mode its gate weights are int8 (LiteRT's hybrid LSTM step)."""
    import tensorflow as tf
    import tf_keras

    L = tf_keras.layers
    model = tf_keras.Sequential([tf_keras.Input((5, 40), batch_size=3),
                                 L.LSTM(32, return_sequences=True), L.LSTM(40)])
    randomize_weights(model, seed=7)
    model.set_weights([w * 0.3 for w in model.get_weights()])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        content = converter.convert()
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in operators(content)
    path = tmp_path / "lstm.tflite"
    path.write_bytes(content)
    loaded = tfless.load(path)
    assert any(n.op == "tflite.quantized.UNIDIRECTIONAL_SEQUENCE_LSTM"
               for n in loaded.graph.nodes)
    x = rand(3, 5, 40, seed=8)
    for delegates in (True, False):
        want, _ = litert(content, x, delegates)
        assert_close(loaded.predict(x), [want], f"hybrid LSTM (delegates={delegates})")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["dynamic", "int8"])
def test_mobilenet_v2(mode: str, tmp_path: Path) -> None:
    check("mobilenet", mode, tmp_path, batch=2)


# ----- refusals --------------------------------------------------------------------------
def test_unsupported_scheme_names_tensor_op_and_scheme(tmp_path: Path) -> None:
    """int16 activations (the 16x8 scheme) are refused with the operator and tensor named."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(mlp())
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([rand(1, 32, seed=i)] for i in range(8))
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        content = converter.convert()
    path = tmp_path / "m.tflite"
    path.write_bytes(content)
    with pytest.raises(tfless.UnsupportedLayer, match=r"operator \d+ \(\w+\).*int16.*tensor '"):
        tfless.load(path)


@pytest.mark.parametrize("scale", [0.0, float("nan"), -1.0])
def test_bad_activation_scale_is_a_format_error(scale: float, tmp_path: Path) -> None:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(converted("cnn", "int8_io"), 0)
    sub = model.subgraphs[0]
    sub.tensors[sub.operators[0].outputs[0]].quantization.scale = [scale]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path = tmp_path / "bad.tflite"
    path.write_bytes(bytes(builder.Output()))
    with pytest.raises(tfless.ModelFormatError, match="quantization scales must be positive"):
        tfless.load(path)


def test_per_tensor_hybrid_convolution_is_close_to_keras(tmp_path: Path) -> None:
    """Per-tensor int8 filters (`_experimental_disable_per_channel`) take the symmetric
    hybrid path. ai-edge-litert 2.3.0 answers ~1e32 for this file on x86 (with or without
    XNNPACK), so the reference here is the float Keras model, within int8 error."""
    import tensorflow as tf

    model = cnn()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter._experimental_disable_per_channel = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        content = converter.convert()
    path = tmp_path / "pt.tflite"
    path.write_bytes(content)
    loaded = tfless.load(path)
    convs = [n for n in loaded.graph.nodes if n.op == "tflite.quantized.CONV_2D"]
    assert convs and all(len(n.config["quant"][1]["scale"]) == 1 for n in convs)
    x = rand(3, 12, 12, 3, seed=5)
    want = np.asarray(model.predict(x, verbose=0))
    assert np.max(np.abs(loaded.predict(x) - want)) < 0.03 * np.max(np.abs(want))
