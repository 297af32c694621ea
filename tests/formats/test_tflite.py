"""`.tflite` files: tfless matches the TFLite interpreter and Keras, and refuses what it cannot run.

Models are built with Keras in the test, given random weights, converted with TensorFlow's
converter (from the Keras model, or via `model.export` + from_saved_model), optionally with
float16 weights, then compared with `tf.lite.Interpreter` and with Keras (1e-5 abs + 1e-4 rel).
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tfless
from tests.parity import assert_close, rand, randomize_weights

ROUTES = ["keras", "export"]


# ----- helpers ---------------------------------------------------------------------------
def convert(model: Any, route: str = "keras", fp16: bool = False, tmp: Path | None = None,
            configure: Callable[[Any], None] | None = None) -> bytes:
    import tensorflow as tf

    if route == "keras":
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
    else:
        assert tmp is not None
        exported = tmp / "exported"
        model.export(str(exported), verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(exported))
    if fp16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    if configure is not None:
        configure(converter)
    return converter.convert()


def interpreter_outputs(content: bytes, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """A fresh interpreter per call: recurrent state in variable tensors starts at zero."""
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interp = tf.lite.Interpreter(model_content=content)
    details = interp.get_input_details()
    for d, x in zip(details, inputs):
        if tuple(d["shape"]) != x.shape:
            interp.resize_tensor_input(d["index"], x.shape)
    interp.allocate_tensors()
    for d, x in zip(details, inputs):
        interp.set_tensor(d["index"], x)
    interp.invoke()
    return [interp.get_tensor(d["index"]) for d in interp.get_output_details()]


def tflite_ops(content: bytes) -> set[str]:
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(content, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    return {names[codes[op.opcodeIndex]] for op in model.subgraphs[0].operators}


def write(tmp: Path, content: bytes, name: str = "model.tflite") -> Path:
    path = tmp / name
    path.write_bytes(content)
    return path


def check_model(model: Any, content: bytes, tmp: Path, inputs: list[np.ndarray],
                keras_atol: float | None = 1e-5, label: str = "") -> tfless.Model:
    """tfless == interpreter (tight) and, unless keras_atol is None, == Keras. `inputs` are in
    Keras's order; the converter may order a model's inputs differently (by name)."""
    loaded = tfless.load(write(tmp, content))
    by_kind = {(x.shape[1:], x.dtype.kind): x for x in inputs}
    ordered = [by_kind[(tuple(s.shape[1:]), np.dtype(s.dtype).kind)] for s in loaded.inputs]
    got = loaded.predict(ordered if len(ordered) > 1 else ordered[0])
    assert_close(got, interpreter_outputs(content, ordered), f"{label} vs interpreter")
    if keras_atol is not None:
        want = model.predict(inputs if len(inputs) > 1 else inputs[0], verbose=0)
        assert_close(got, [np.asarray(want)], f"{label} vs Keras", atol=keras_atol)
    return loaded


def round_to_float16(model: Any) -> None:
    """Weights exactly representable in float16, so a float16 conversion loses nothing."""
    model.set_weights([np.asarray(w).astype(np.float16).astype(w.dtype) for w in model.get_weights()])


# ----- models ----------------------------------------------------------------------------
def mlp() -> Any:
    import keras

    L = keras.layers
    model = keras.Sequential([keras.Input((8,)), L.Dense(16, activation="relu"),
                              L.Dense(12, activation="tanh"), L.Dense(4)])
    randomize_weights(model)
    return model


def cnn() -> Any:
    import keras

    L = keras.layers
    model = keras.Sequential([
        keras.Input((16, 16, 3)),
        L.ZeroPadding2D(1),
        L.Conv2D(8, 3, strides=2, padding="same"),
        L.BatchNormalization(),
        L.ReLU(6.0),
        L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu"),
        L.Conv2D(6, 3, dilation_rate=2, padding="valid", activation="sigmoid"),
        L.MaxPooling2D(),
        L.AveragePooling2D(2, strides=1, padding="same"),
        L.Conv2DTranspose(4, 3, strides=2, padding="same"),
        L.Conv2DTranspose(3, 2, strides=2, padding="valid", activation="relu"),
        L.GlobalAveragePooling2D(),
        L.Dense(5),
    ])
    randomize_weights(model)
    return model


def misc_ops() -> Any:
    """A functional model whose conversion covers many builtin ops (see the test)."""
    import keras

    L, ops = keras.layers, keras.ops
    x = keras.Input((6, 4))
    tokens = keras.Input((6,), dtype="int32")
    h = L.Add()([x, L.Embedding(10, 4)(tokens)])
    h = L.Dense(8)(h)
    h = L.ELU()(L.PReLU()(L.LeakyReLU(0.1)(h)))
    h = L.Activation("relu6")(L.Activation("hard_swish")(L.Activation("gelu")(h)))
    h = L.LayerNormalization()(h)
    attention = ops.softmax(ops.matmul(h, ops.transpose(h, (0, 2, 1))), axis=-1)
    h = ops.concatenate([
        ops.matmul(attention, h), ops.sqrt(ops.abs(h) + 1.0), ops.power(ops.abs(h) + 1.0, 1.5),
        ops.maximum(h, 0.1), ops.minimum(h, 0.3), ops.exp(-h * h), ops.log(ops.abs(h) + 1.0),
    ], axis=-1)
    h = L.Conv1D(5, 3, dilation_rate=2, padding="same")(h)
    h = ops.squeeze(ops.expand_dims(h, 1), 1)
    m = ops.max(h, axis=1) + ops.sum(h[:, 1:5:2, :], axis=1) - ops.mean(h, axis=1)
    m = m * ops.rsqrt(ops.square(m) + 1.0)
    out = L.Dense(3)(ops.concatenate([ops.tanh(m), ops.sigmoid(m), ops.relu(m)], -1))
    model = keras.Model([x, tokens], out)
    randomize_weights(model)
    return model


def misc_inputs(batch: int) -> list[np.ndarray]:
    tokens = np.random.default_rng(5).integers(0, 10, (batch, 6)).astype(np.int32)
    return [rand(batch, 6, 4, seed=4), tokens]


# ----- parity ----------------------------------------------------------------------------
@pytest.mark.parametrize("fp16", [False, True], ids=["float32", "float16"])
@pytest.mark.parametrize("route", ROUTES)
def test_mlp(route: str, fp16: bool, tmp_path: Path) -> None:
    model = mlp()
    if fp16:
        round_to_float16(model)
    content = convert(model, route, fp16, tmp_path)
    assert ("DEQUANTIZE" in tflite_ops(content)) == fp16
    loaded = check_model(model, content, tmp_path, [rand(3, 8)], label=f"mlp {route}")
    assert loaded.inputs[0].shape == (None, 8)
    assert loaded.outputs[0].shape == (None, 4)


@pytest.mark.parametrize("route", ROUTES)
def test_cnn(route: str, tmp_path: Path) -> None:
    model = cnn()
    content = convert(model, route, tmp=tmp_path)
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "MAX_POOL_2D", "AVERAGE_POOL_2D",
            "PAD", "MEAN", "FULLY_CONNECTED"} <= tflite_ops(content)
    check_model(model, content, tmp_path, [rand(2, 16, 16, 3)], label=f"cnn {route}")


def test_cnn_float16_weights(tmp_path: Path) -> None:
    """BatchNormalization is folded before the weights are rounded, so Keras is only close;
    the interpreter is matched exactly."""
    model = cnn()
    content = convert(model, "keras", fp16=True)
    assert "DEQUANTIZE" in tflite_ops(content)
    check_model(model, content, tmp_path, [rand(2, 16, 16, 3)], keras_atol=5e-2, label="cnn fp16")


@pytest.mark.parametrize("route", ROUTES)
def test_many_builtin_ops(route: str, tmp_path: Path) -> None:
    model = misc_ops()
    content = convert(model, route, tmp=tmp_path)
    assert {"GATHER", "LESS", "SELECT_V2", "LEAKY_RELU", "PRELU", "ELU", "GELU", "BATCH_MATMUL",
            "SQUARED_DIFFERENCE", "RSQRT", "SQRT", "POW", "MAXIMUM", "MINIMUM", "EXP", "LOG",
            "SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND", "EXPAND_DIMS", "STRIDED_SLICE", "SUM",
            "REDUCE_MAX", "CONCATENATION", "SOFTMAX", "TANH", "LOGISTIC", "SHAPE", "PACK",
            "RESHAPE"} <= tflite_ops(content)
    check_model(model, content, tmp_path, misc_inputs(3), label=f"misc {route}")


def test_tf_function_ops(tmp_path: Path) -> None:
    """Builtins Keras layers rarely emit, from a converted tf.function (interpreter only)."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 4, 6], tf.float32)])
    def f(x: Any) -> list[Any]:
        a = tf.squeeze(tf.slice(x, [0, 1, 0], [-1, 1, 4]), axis=1)
        padded = tf.pad(x, [[0, 0], [1, 2], [0, 1]], constant_values=0.5)
        mirrored = tf.pad(x, [[0, 0], [1, 1], [2, 0]], mode="REFLECT")
        s1, s2 = tf.split(x, [2, -1], axis=2)
        args = tf.cast(tf.argmax(x, axis=-1), tf.float32) + tf.cast(tf.argmin(x, axis=-1), tf.float32)
        swish = x * tf.nn.relu6(x + 3.0) / 6.0
        relus = tf.nn.relu(x) - tf.nn.relu6(x) + tf.clip_by_value(x, -1.0, 1.0)
        divs = tf.math.floordiv(x, 0.3) + tf.math.floormod(x, 0.3) + x / (tf.abs(x) + 1.0)
        misc = tf.nn.log_softmax(x) + tf.floor(x) + tf.math.ceil(x) + tf.square(x) - tf.exp(x)
        chosen = tf.where(x > 0.2, x, tf.zeros_like(x) - 1.0) + \
            tf.cast(tf.logical_and(x > 0.0, x < 0.5), tf.float32)
        reduced = tf.reduce_min(x, axis=[1, 2]) + tf.reduce_prod(x, axis=1)[:, 0]
        total = (tf.reduce_sum(a, -1) + tf.reduce_sum(padded, [1, 2]) + tf.reduce_sum(mirrored, [1, 2])
                 + tf.reduce_sum(s2, [1, 2]) + tf.reduce_sum(tf.tile(s1, [1, 2, 1]), [1, 2])
                 + tf.reduce_sum(args, -1) + reduced)
        return [total, swish + relus + divs + misc + chosen, tf.transpose(x, [0, 2, 1]),
                tf.nn.softmax(x, axis=-1)]

    converter = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    content = converter.convert()
    assert {"SLICE", "PADV2", "MIRROR_PAD", "SPLIT_V", "TILE", "ARG_MAX", "ARG_MIN", "CAST",
            "HARD_SWISH", "RELU", "RELU6", "RELU_N1_TO_1", "FLOOR_DIV", "FLOOR_MOD", "DIV",
            "LOG_SOFTMAX", "FLOOR", "CEIL", "SQUARE", "GREATER", "LOGICAL_AND", "ZEROS_LIKE",
            "REDUCE_MIN", "REDUCE_PROD", "TRANSPOSE"} <= tflite_ops(content)
    loaded = tfless.load(write(tmp_path, content))
    x = rand(3, 4, 6, seed=9)
    assert_close(loaded.predict(x), interpreter_outputs(content, [x]), "tf.function ops")


@pytest.mark.parametrize("layer", ["LSTM", "GRU"])
def test_keras3_unrolled_recurrent(layer: str, tmp_path: Path) -> None:
    import keras

    cls = getattr(keras.layers, layer)
    model = keras.Sequential([keras.Input((5, 4)), cls(6, return_sequences=True, unroll=True),
                              cls(3, unroll=True)])
    randomize_weights(model)
    content = convert(model)
    assert {"SPLIT", "UNPACK", "FILL", "FULLY_CONNECTED"} <= tflite_ops(content)
    check_model(model, content, tmp_path, [rand(2, 5, 4)], label=f"unrolled {layer}")


def test_tf_keras_fused_lstm(tmp_path: Path) -> None:
    """tf_keras LSTMs with a fixed batch convert to UNIDIRECTIONAL_SEQUENCE_LSTM; tfless
    starts each predict from zero state as Keras does (and a fresh interpreter)."""
    import tf_keras

    L = tf_keras.layers
    model = tf_keras.Sequential([tf_keras.Input((5, 4), batch_size=2),
                                 L.LSTM(6, return_sequences=True), L.LSTM(3)])
    randomize_weights(model)
    content = convert(model)
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in tflite_ops(content)
    loaded = check_model(model, content, tmp_path, [rand(2, 5, 4)], label="tf_keras lstm")
    again = loaded.predict(rand(2, 5, 4))
    assert_close(again, [np.asarray(model.predict(rand(2, 5, 4), verbose=0))], "second predict")


def test_dynamic_batch(tmp_path: Path) -> None:
    """shape_signature keeps the batch free: batches other than the converted 1 run."""
    model = cnn()
    content = convert(model)
    loaded = tfless.load(write(tmp_path, content))
    assert loaded.inputs[0].shape == (None, 16, 16, 3)
    for batch in (1, 5):
        x = rand(batch, 16, 16, 3, seed=batch)
        assert_close(loaded.predict(x), interpreter_outputs(content, [x]), f"batch {batch}")
        assert_close(loaded.predict(x), [np.asarray(model.predict(x, verbose=0))], f"batch {batch}")
    x = rand(7, 16, 16, 3)
    assert_close(loaded.predict(x, batch_size=3), [np.asarray(model.predict(x, verbose=0))],
                 "batch_size=3")


def test_buffer_offset_layout(tmp_path: Path) -> None:
    """Large-model layout: weights after the flatbuffer, addressed by buffer offset/size."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = mlp()

    def use_offsets(converter: Any) -> None:
        converter._experimental_use_buffer_offset = True

    content = convert(model, configure=use_offsets)
    parsed = schema.ModelT.InitFromPackedBuf(content, 0)
    assert any(b.offset > 1 for b in parsed.buffers)
    check_model(model, content, tmp_path, [rand(3, 8)], label="offset layout")


@pytest.mark.slow
def test_mobilenet_v2(tmp_path: Path) -> None:
    import keras

    model = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None,
                                           classifier_activation=None)
    # Keras's initial kernels keep 50+ layers well scaled (N(0, 0.5) kernels make the
    # activations explode, so float rounding differences grow past any tolerance);
    # BatchNormalization statistics and biases are randomized so folding them matters.
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
    content = convert(model)
    check_model(model, content, tmp_path, [rand(2, 96, 96, 3)], label="MobileNetV2")


# ----- refusals --------------------------------------------------------------------------
# Full-integer and dynamic-range (hybrid) models run: tests/formats/test_tflite_quant.py.


def test_while_loop_refused(tmp_path: Path) -> None:
    import keras

    model = keras.Sequential([keras.Input((5, 4), batch_size=2), keras.layers.LSTM(3)])
    content = convert(model)
    assert "WHILE" in tflite_ops(content)
    path = write(tmp_path, content)
    with pytest.raises(tfless.UnsupportedLayer,
                       match=r"operator \d+ \(WHILE\): control flow.*unroll=True.*Supported TFLite "
                             r"operators: .*CONV_2D"):
        tfless.load(path)
    # inspect still describes it and lists what cannot run
    described = subprocess.run([sys.executable, "-m", "tfless.cli", "inspect", str(path)],
                               capture_output=True, text=True, timeout=120)
    assert "tflite.WHILE" in described.stdout, described.stderr


@pytest.fixture(scope="module")
def small_file(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return convert(mlp())


def test_truncated_files_refused(small_file: bytes, tmp_path: Path) -> None:
    for cut in (8, 12, 40, 100, len(small_file) // 3, len(small_file) // 2, len(small_file) - 64,
                len(small_file) - 1):
        path = write(tmp_path, small_file[:cut], f"cut{cut}.tflite")
        with pytest.raises(tfless.ModelFormatError, match=f"cut{cut}.tflite"):
            tfless.load(path)


def test_bad_offsets_refused(small_file: bytes, tmp_path: Path) -> None:
    root = int.from_bytes(small_file[:4], "little")
    bad_root = b"\xf0\xff\xff\x7f" + small_file[4:]
    bad_vtable = bytearray(small_file)
    bad_vtable[root:root + 4] = (-(1 << 30)).to_bytes(4, "little", signed=True)
    for name, data in (("root", bad_root), ("vtable", bytes(bad_vtable))):
        with pytest.raises(tfless.ModelFormatError, match="truncated or corrupt"):
            tfless.load(write(tmp_path, data, f"{name}.tflite"))


def test_corrupted_bytes_never_crash(small_file: bytes, tmp_path: Path) -> None:
    """Overwriting any 4-byte word with garbage gives a model, or a TflessError: never an
    IndexError, struct.error or a NumPy error escaping from the reader."""
    rng = np.random.default_rng(0)
    path = tmp_path / "corrupt.tflite"
    for pos in range(8, len(small_file) - 4, 4):
        data = bytearray(small_file)
        data[pos:pos + 4] = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
        path.write_bytes(bytes(data))
        try:
            with np.errstate(all="ignore"):  # garbage weights may overflow; that is fine
                tfless.load(path).predict(rand(2, 8))
        except tfless.TflessError:
            pass


# ----- command line ----------------------------------------------------------------------
def test_cli_inspect_and_predict(small_file: bytes, tmp_path: Path) -> None:
    path = write(tmp_path, small_file)
    x = rand(3, 8)
    np.save(tmp_path / "x.npy", x)
    inspected = subprocess.run([sys.executable, "-m", "tfless.cli", "inspect", str(path)],
                               capture_output=True, text=True, timeout=120)
    assert inspected.returncode == 0, inspected.stderr
    assert "format:        tflite" in inspected.stdout
    assert "(None, 8)" in inspected.stdout and "tflite.FULLY_CONNECTED" in inspected.stdout
    out = tmp_path / "y.npy"
    predicted = subprocess.run([sys.executable, "-m", "tfless.cli", "predict", str(path),
                                "-i", str(tmp_path / "x.npy"), "-o", str(out)],
                               capture_output=True, text=True, timeout=120)
    assert predicted.returncode == 0, predicted.stderr
    assert_close(np.load(out), interpreter_outputs(small_file, [x]), "cli predict")
