"""The real TF op list: build, with TF, the graphs issue 13 names and check that every op a
signature can reach has a tfless kernel (`tf.<Op>` in the registry), is consumed by the
graph reader itself (calls, placeholders, variables), or is on the reader's refused list.

Graphs: Keras 3 `export()` of an MLP, a CNN (a zoo of conv/pool/normalization/activation
layers), MobileNetV2 alpha 0.35, LSTM, GRU and Embedding + MultiHeadAttention models; a
tf.Module with two signatures; a tf_keras SavedModel; and a TF1-style frozen GraphDef.
Only graph building (tracing, saving) runs here, no predict.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tfless.formats.tf_graph import ALIAS_OPS, CALL_OPS, REFUSED_OPS, VARIABLE_OPS
from tfless.ops import REGISTRY
from tfless.ops.tf import tf_op_names

tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.slow

# Ops the graph reader consumes itself instead of running a kernel for them.
READER_OPS = CALL_OPS | VARIABLE_OPS | ALIAS_OPS | {"Placeholder", "ReadVariableOp"}
FUNC_ATTRS = ("f", "body", "cond", "then_branch", "else_branch")


def _functions_called(node_defs: Any) -> list[str]:
    names = []
    for nd in node_defs:
        for key in FUNC_ATTRS:
            if key in nd.attr and nd.attr[key].func.name:
                names.append(nd.attr[key].func.name)
    return names


def _count_function_ops(library: dict[str, Any], roots: list[str], counts: Counter) -> None:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name not in library:
            continue
        seen.add(name)
        fdef = library[name]
        counts.update(nd.op for nd in fdef.node_def)
        todo.extend(_functions_called(fdef.node_def))


def _reachable_ops(graph_def: Any, outputs: list[str]) -> Counter:
    """Ops reached from `outputs` over data inputs in the main graph, plus every op of the
    functions those nodes call (recursively): what running the outputs executes."""
    by_name = {nd.name: nd for nd in graph_def.node}
    library = {f.signature.name: f for f in graph_def.library.function}
    counts: Counter = Counter()
    seen: set[str] = set()
    todo = [o.split(":")[0].lstrip("^") for o in outputs]
    called: list[str] = []
    while todo:
        name = todo.pop()
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        nd = by_name[name]
        counts[nd.op] += 1
        called.extend(_functions_called([nd]))
        todo.extend(i.split(":")[0] for i in nd.input if not i.startswith("^"))
    _count_function_ops(library, called, counts)
    return counts


def _saved_model_ops(path: Path) -> Counter:
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((path / "saved_model.pb").read_bytes())
    counts: Counter = Counter()
    for mg in sm.meta_graphs:
        outputs = [t.name for sig in mg.signature_def.values() for t in sig.outputs.values()]
        assert outputs, f"{path}: no signature outputs"
        counts += _reachable_ops(mg.graph_def, outputs)
    return counts


# ----- the graphs ---------------------------------------------------------------------------
def _keras3_models() -> dict[str, Any]:
    import keras
    from keras import layers

    def functional(inputs: Any, outputs: Any) -> Any:
        return keras.Model(inputs, outputs)

    mlp_in = keras.Input((8,))
    h = layers.Dense(16, activation="relu")(mlp_in)
    h = layers.Dense(16, activation="tanh")(h)
    mlp = functional(mlp_in, layers.Dense(3, activation="softmax")(h))

    img = keras.Input((16, 16, 3))
    c = layers.Conv2D(8, 3, padding="same", activation="relu")(img)
    c = layers.BatchNormalization()(c)
    c = layers.DepthwiseConv2D(3, padding="same", activation="relu6")(c)
    c = layers.SeparableConv2D(8, 3, activation="elu")(c)
    c = layers.MaxPooling2D()(c)
    c = layers.Conv2DTranspose(6, 3, strides=2, padding="same", activation="selu")(c)
    c = layers.ZeroPadding2D(1)(c)
    c = layers.Cropping2D(1)(c)
    c = layers.AveragePooling2D(2)(c)
    c = layers.UpSampling2D(2)(c)
    c = layers.Conv2D(4, 3, strides=2, dilation_rate=1, activation="gelu")(c)
    c = layers.LayerNormalization()(c)
    pooled = layers.GlobalAveragePooling2D()(c)
    peak = layers.GlobalMaxPooling2D()(c)
    d = layers.Concatenate()([pooled, peak])
    d = layers.Dense(8, activation="swish")(d)
    d = layers.Dense(8, activation="softplus")(d)
    d = layers.LeakyReLU(0.1)(d)
    d = layers.Dense(8, activation="hard_sigmoid")(d)
    d = layers.Dropout(0.5)(d)
    cnn = functional(img, layers.Dense(4, activation="sigmoid")(d))

    seq = keras.Input((12, 5))
    s = layers.Conv1D(6, 3, padding="causal", activation="relu")(seq)
    s = layers.MaxPooling1D(2)(s)
    conv1d = functional(seq, layers.GlobalAveragePooling1D()(s))

    mobilenet = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35,
                                               weights=None, classes=10)

    rnn_in = keras.Input((7, 4))
    lstm = functional(rnn_in, layers.LSTM(6)(rnn_in))
    gru_in = keras.Input((7, 4))
    gru = functional(gru_in, layers.GRU(6, return_sequences=True)(gru_in))

    tokens = keras.Input((10,), dtype="int32")
    e = layers.Embedding(50, 16)(tokens)
    e = layers.MultiHeadAttention(num_heads=2, key_dim=8)(e, e)
    e = layers.LayerNormalization()(e)
    text = functional(tokens, layers.Dense(2, activation="softmax")(
        layers.GlobalAveragePooling1D()(e)))
    zoo = keras.Input((12, 12, 3))  # preprocessing, dilation, rarer normalizations
    z = layers.Resizing(16, 16)(zoo)
    z = layers.Rescaling(1 / 255.0)(z)
    z = layers.Normalization(mean=[0.1, 0.2, 0.3], variance=[1.0, 2.0, 3.0])(z)
    z = layers.Resizing(10, 10, interpolation="nearest")(z)
    z = layers.Resizing(12, 12, interpolation="bicubic")(z)
    z = layers.DepthwiseConv2D(3, dilation_rate=2, padding="same")(z)
    z = layers.SeparableConv2D(4, 3, dilation_rate=2, padding="same")(z)
    z = layers.Conv2D(4, 3, dilation_rate=2, padding="same", activation="mish")(z)
    z = layers.GroupNormalization(2)(z)
    z = layers.PReLU()(z)
    z = layers.ReLU(max_value=3.0, negative_slope=0.1, threshold=0.5)(z)
    z = layers.Activation("hard_swish")(z)
    z = layers.UnitNormalization()(z)
    z = layers.UpSampling2D(2, interpolation="bilinear")(z)
    image_zoo = functional(zoo, layers.Dense(4, activation="log_softmax")(layers.Flatten()(z)))

    vol = keras.Input((6, 6, 6, 2))
    v = layers.Conv3D(3, 3, padding="same")(vol)
    v = layers.MaxPooling3D()(v)
    v = layers.Conv3DTranspose(2, 2, strides=2)(v)
    v = layers.AveragePooling3D(2)(v)
    volume = functional(vol, layers.GlobalMaxPooling3D()(v))

    steps = keras.Input((8, 3))
    t = layers.Conv1DTranspose(4, 3, strides=2)(steps)
    t = layers.Bidirectional(layers.LSTM(4, return_sequences=True))(t)
    t = layers.SimpleRNN(3, return_sequences=True)(t)
    t = layers.Permute((2, 1))(t)
    sequence = functional(steps, layers.RepeatVector(2)(layers.Flatten()(t)))

    masked_in = keras.Input((6,), dtype="int32")
    k = layers.Embedding(20, 8, mask_zero=True)(masked_in)
    k = layers.Attention()([k, k])
    masked = functional(masked_in, layers.LSTM(4)(k))

    causal_in = keras.Input((6,), dtype="int32")
    q = layers.Embedding(20, 8)(causal_in)
    q = layers.MultiHeadAttention(2, 4)(q, q, use_causal_mask=True)
    causal = functional(causal_in, layers.GlobalMaxPooling1D()(q))
    return {"mlp": mlp, "cnn": cnn, "conv1d": conv1d, "mobilenet_v2": mobilenet,
            "lstm": lstm, "gru": gru, "text_mha": text, "image_zoo": image_zoo,
            "volume": volume, "sequence": sequence, "masked": masked, "causal": causal}


def _tf_module(path: Path) -> None:
    class Scaler(tf.Module):
        def __init__(self) -> None:
            self.w = tf.Variable(np.ones((4, 3), np.float32))
            self.b = tf.Variable(np.zeros(3, np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def predict(self, x: Any) -> Any:
            return {"y": tf.nn.relu(tf.matmul(x, self.w) + self.b)}

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32),
                                      tf.TensorSpec([], tf.int32)])
        def top(self, x: Any, k: Any) -> Any:
            scores = tf.nn.softmax(tf.matmul(x, self.w))
            values, indices = tf.math.top_k(scores, k=k)
            return {"values": values, "indices": indices,
                    "mean": tf.reduce_mean(x[:, 1:3], axis=-1)}

    module = Scaler()
    tf.saved_model.save(module, str(path), signatures={
        "serving_default": module.predict, "top": module.top})


def _tf_functions(x: Any, img: Any) -> dict[str, Any]:
    """~30 common tf.* calls, each lowering to raw ops the Keras exports do not hold (sorts
    via TopKV2, Roll, ReverseSequence, bounds, histograms, bincounts, diagonals, ...)."""
    batch = tf.shape(x)[0]
    seq = x[:, :, None]
    return {
        "sort": tf.sort(x, axis=-1, direction="DESCENDING"), "argsort": tf.argsort(x),
        "lse": tf.math.reduce_logsumexp(x, axis=1), "l2": tf.nn.l2_normalize(x, axis=-1),
        "flip": tf.image.flip_left_right(img), "gray": tf.image.rgb_to_grayscale(img),
        "std": tf.image.per_image_standardization(img), "clipn": tf.clip_by_norm(x, 1.0),
        "roll": tf.roll(x, shift=2, axis=1), "var": tf.math.reduce_variance(x, axis=0),
        "logsig": tf.math.log_sigmoid(x), "ss": tf.searchsorted(tf.sort(x), x * 0.5),
        "rs": tf.reverse_sequence(seq, tf.fill([batch], 3), seq_axis=1, batch_axis=0),
        "td": tf.tensordot(x, tf.ones([6, 2]), axes=1),
        "trace": tf.linalg.trace(tf.reshape(x[:, :4], [-1, 2, 2])),
        "eye": tf.eye(3) + tf.linalg.diag(x[:, :3]), "lin": tf.linspace(0.0, 1.0, 5),
        "crop": tf.image.central_crop(img, 0.5), "xor": tf.math.logical_xor(x > 0, x > 0.5),
        "mom": tf.nn.moments(img, axes=[1, 2])[1],
        "hist": tf.histogram_fixed_width(x, [-1.0, 1.0], nbins=4),
        "bincount": tf.math.bincount(tf.cast(tf.abs(x) * 3, tf.int32), minlength=8),
        "gnd": tf.gather_nd(tf.reshape(x, [-1, 3, 2]), tf.zeros([batch, 2, 1], tf.int32),
                            batch_dims=1),
        "cumlse": tf.math.cumulative_logsumexp(x, axis=1),
        "floor": tf.math.floordiv(x, 0.3),
        "pool1d": tf.squeeze(tf.nn.avg_pool1d(seq, 2, 2, "VALID"), -1),
        "c1t": tf.nn.conv1d_transpose(seq, tf.ones([3, 2, 1]), [batch, 12, 2], 2),
        "d2s": tf.nn.depth_to_space(tf.tile(img, [1, 1, 1, 4]), 2),
        "pad": tf.pad(img, [[0, 0], [1, 1], [2, 2], [0, 0]], mode="REFLECT"),
        "minmax": tf.math.reduce_min(img, axis=[1, 2, 3]) + tf.math.reduce_max(img),
    }

def test_tf_module_of_tf_functions_matches_tf(tmp_path: Path) -> None:
    import tfless

    module = tf.Module()
    module.f = tf.function(_tf_functions, input_signature=[
        tf.TensorSpec([None, 6], tf.float32), tf.TensorSpec([None, 8, 8, 3], tf.float32)])
    tf.saved_model.save(module, str(tmp_path), signatures=module.f)
    counts = _saved_model_ops(tmp_path)
    unknown = sorted(set(counts) - set(tf_op_names()) - READER_OPS)
    assert not unknown, f"ops without a kernel: {unknown}"
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 6)).astype(np.float32)
    img = rng.uniform(0, 1, (3, 8, 8, 3)).astype(np.float32)
    want = {k: v.numpy() for k, v in module.f(x, img).items()}
    got = tfless.load(str(tmp_path)).predict({"x": x, "img": img})
    assert sorted(got) == sorted(want)
    for key, w in want.items():
        g = np.asarray(got[key])
        assert g.dtype == w.dtype and g.shape == w.shape, (key, g.dtype, g.shape, w.shape)
        if w.dtype.kind == "f":
            np.testing.assert_allclose(g, w, atol=1e-5, rtol=1e-4, err_msg=key)
        else:
            np.testing.assert_array_equal(g, w, err_msg=key)


def _tf_keras_model(path: Path) -> None:
    import tf_keras

    inp = tf_keras.Input((10, 10, 2))
    x = tf_keras.layers.Conv2D(4, 3, activation="relu")(inp)
    x = tf_keras.layers.BatchNormalization()(x)
    x = tf_keras.layers.MaxPooling2D()(x)
    x = tf_keras.layers.Flatten()(x)
    x = tf_keras.layers.Dense(5, activation="softmax")(x)
    tf_keras.Model(inp, x).save(str(path / "cnn"), save_format="tf")
    # tf_keras RNN layers save a different While graph from Keras 3's (cuDNN-selectable
    # functions, masks as inputs)
    tokens = tf_keras.Input((6,), dtype="int32")
    e = tf_keras.layers.Embedding(20, 8, mask_zero=True)(tokens)
    e = tf_keras.layers.Bidirectional(tf_keras.layers.LSTM(4, return_sequences=True))(e)
    tf_keras.Model(tokens, tf_keras.layers.GRU(3)(e)).save(str(path / "rnn"), save_format="tf")


def _frozen_graph() -> Any:
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    w = tf.Variable(np.ones((6, 4), np.float32))
    k = tf.Variable(np.ones((3, 3, 2, 4), np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32),
                                  tf.TensorSpec([None, 8, 8, 2], tf.float32)])
    def fn(x: Any, img: Any) -> Any:
        conv = tf.nn.conv2d(img, k, 1, "SAME")
        pooled = tf.reduce_mean(tf.nn.relu(conv), axis=[1, 2])
        return tf.nn.softmax(tf.matmul(x, w) + pooled)

    frozen = convert_variables_to_constants_v2(fn.get_concrete_function())
    return frozen.graph.as_graph_def()


def _randomize(model: Any, rng: np.random.Generator) -> None:
    """Trained-like weights: at Keras's initial values many layers are near-identities."""
    for w in model.weights:
        v = w.numpy()
        if v.dtype.kind != "f":
            continue
        if "variance" in w.path:
            w.assign(rng.uniform(0.5, 1.5, v.shape).astype(v.dtype))
        else:
            w.assign((rng.standard_normal(v.shape) * 0.3).astype(v.dtype))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, Path]]:
    root = tmp_path_factory.mktemp("tf_graphs")
    rng = np.random.default_rng(13)
    out = {}
    for name, model in _keras3_models().items():
        _randomize(model, rng)
        model.export(str(root / name), verbose=False)
        out[name] = (model, root / name)
    return out


@pytest.fixture(scope="module")
def graph_ops(exported: dict[str, tuple[Any, Path]],
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, Counter]:
    root = tmp_path_factory.mktemp("tf_other_graphs")
    found: dict[str, Counter] = {}
    for name, (_, path) in exported.items():
        found[f"keras3 export {name}"] = _saved_model_ops(path)
    _tf_module(root / "module")
    found["tf.Module"] = _saved_model_ops(root / "module")
    _tf_keras_model(root)
    found["tf_keras SavedModel cnn"] = _saved_model_ops(root / "cnn")
    found["tf_keras SavedModel rnn"] = _saved_model_ops(root / "rnn")
    gd = _frozen_graph()
    found["frozen GraphDef"] = Counter(nd.op for nd in gd.node)
    return found


def test_every_op_in_real_graphs_is_supported_or_refused(graph_ops: dict[str, Counter]
                                                         ) -> None:
    registered = set(tf_op_names())
    missing = {}
    for source, counts in graph_ops.items():
        unknown = sorted(op for op in counts
                         if op not in registered | READER_OPS | REFUSED_OPS)
        if unknown:
            missing[source] = unknown
    assert not missing, f"ops without a kernel: {missing}"


def test_real_graphs_hold_no_refused_ops(graph_ops: dict[str, Counter]) -> None:
    # what signatures reach must run: a refused op there would make the model unloadable
    held = {src: sorted(set(c) & REFUSED_OPS) for src, c in graph_ops.items()}
    assert not any(held.values()), held


def test_the_expected_families_are_exercised(graph_ops: dict[str, Counter]) -> None:
    # guards against the walk silently finding nothing (e.g. a changed SavedModel layout)
    everything = sum(graph_ops.values(), Counter())
    for op in ("MatMul", "BiasAdd", "Conv2D", "DepthwiseConv2dNative", "While", "Softmax",
               "Mean", "Reshape", "StridedSlice", "Einsum", "ConcatV2", "Const",
               "ResizeBilinear", "SpaceToBatchND", "MatrixBandPart", "Conv3D"):
        assert everything[op], f"no graph holds {op}: {dict(everything)}"
    assert everything["ReadVariableOp"], "variables were expected in the SavedModels"


# MLP/CNN/MobileNetV2/LSTM/GRU/text exports are compared in tests/formats/test_tf_graph.py;
# these hold the ops only the zoo models reach (resizes, space-to-batch, band parts, 3-D).
NUMERIC = ("image_zoo", "volume", "sequence", "masked", "causal", "cnn", "conv1d")


@pytest.mark.parametrize("name", NUMERIC)
def test_zoo_exports_match_keras(exported: dict[str, tuple[Any, Path]], name: str) -> None:
    import tfless
    from tests.parity import assert_close

    model, path = exported[name]
    rng = np.random.default_rng(len(name))
    spec = model.inputs[0]
    shape = [3 if d is None else d for d in spec.shape]
    if "int" in str(spec.dtype):
        x = rng.integers(0, 20, shape).astype("int32")
        x[:, -2:] = 0  # padding for the masked model
    else:
        x = rng.uniform(0, 1, shape).astype("float32")
    want = np.asarray(model(x, training=False))
    got = tfless.load(str(path)).predict(x)
    got = list(got.values()) if isinstance(got, dict) else got
    assert_close(got, [want], f"keras3 export {name}")


def test_refused_ops_have_no_kernels() -> None:
    assert not {f"tf.{op}" for op in REFUSED_OPS} & set(REGISTRY)


def test_op_names_listing_is_the_registry() -> None:
    names = tf_op_names()
    assert names == sorted(names) and "MatMul" in names and "While" in names
    assert {f"tf.{n}" for n in names} == {k for k in REGISTRY if k.startswith("tf.")}
