"""TF graph models (SavedModel signatures, frozen GraphDefs) loaded by tfless match TensorFlow.

Each model is built and saved with TensorFlow/Keras in the test (one save per module), then
loaded by tfless and compared with TF's own outputs on fixed random inputs (float32, 1e-5
abs + 1e-4 rel). Errors are checked for naming the node/op/signature and what works."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tfless
from tests.parity import assert_close, randomize_weights
from tests.test_no_tensorflow import BLOCKER
from tests.test_zoo import perturb_batchnorm

RNG = np.random.default_rng(7)
SMALL = {
    "mlp": ((6,), "float32"),
    "cnn": ((10, 10, 3), "float32"),
    "lstm": ((7, 3), "float32"),
    "gru": ((7, 3), "float32"),
    "text": ((9,), "int32"),
}


def _keras3(name: str) -> Any:
    import keras

    L = keras.layers
    shape, dtype = SMALL[name]
    inp = keras.Input(shape, dtype=dtype, name="x")
    if name == "mlp":
        h = L.Dense(16, activation="gelu")(inp)
        out = L.Dense(3, activation="softmax")(L.Dropout(0.2)(h))
    elif name == "cnn":
        h = L.Conv2D(6, 3, padding="same", activation="relu")(inp)
        h = L.BatchNormalization()(h)
        h = L.MaxPooling2D()(h)
        h = L.DepthwiseConv2D(3, activation="relu6")(h)
        h = L.AveragePooling2D(2, padding="same")(h)
        h = L.Conv2D(4, 1, strides=2)(L.ZeroPadding2D(1)(h))
        out = L.Dense(2)(L.Concatenate()([L.GlobalAveragePooling2D()(h), L.Flatten()(h)]))
    elif name == "lstm":
        h = L.LSTM(5, return_sequences=True)(inp)
        out = L.Dense(2)(L.LSTM(4)(h))
    elif name == "gru":
        out = L.GRU(4, return_sequences=True, go_backwards=True)(inp)
    else:
        h = L.Embedding(40, 8)(inp)
        h = L.LayerNormalization()(h + L.MultiHeadAttention(2, 4)(h, h))
        out = L.Dense(3)(L.GlobalAveragePooling1D()(h))
    model = keras.Model(inp, out)
    randomize_weights(model)
    return model


def _sample(shape: tuple, dtype: str, batch: int = 4) -> np.ndarray:
    if dtype.startswith("int"):
        return RNG.integers(0, 40, (batch, *shape)).astype(dtype)
    return RNG.standard_normal((batch, *shape)).astype(np.float32)


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, np.ndarray, Any]]:
    """Keras 3 `model.export()` directories with an input and Keras's output for each."""
    out = {}
    base = tmp_path_factory.mktemp("export")
    for name, (shape, dtype) in SMALL.items():
        model = _keras3(name)
        model.export(base / name, verbose=False)
        x = _sample(shape, dtype)
        out[name] = (base / name, x, model.predict(x, verbose=0))
    return out


@pytest.mark.parametrize("name", list(SMALL))
def test_keras3_export_matches_keras(exports: dict, name: str) -> None:
    path, x, want = exports[name]
    model = tfless.load(path)
    assert [s.name for s in model.inputs] == ["x"]
    got = model.predict({"x": x})
    assert list(got) == ["output_0"]
    assert_close([got["output_0"]], [want], f"{name} export")
    assert_close([model.predict(x)["output_0"]], [want], f"{name} export, array in")
    assert model.meta["signature"] == "serving_default"
    assert set(model.meta["signatures"]) == {"serve", "serving_default"}


def test_keras3_export_dict_inputs_outputs_masks_bidirectional(tmp_path: Path) -> None:
    import keras

    L = keras.layers
    a, ids = keras.Input((5,), name="a"), keras.Input((6,), dtype="int32", name="ids")
    seq = L.Embedding(10, 4, mask_zero=True)(ids)  # the mask reaches the GRU's loop
    h = L.Concatenate()([L.Dense(4)(a), L.GRU(3)(seq),
                         L.GlobalAveragePooling1D()(L.Bidirectional(L.LSTM(2, return_sequences=True))(seq))])
    model = keras.Model({"a": a, "ids": ids},
                        {"p": L.Dense(2, activation="softmax")(h), "q": L.Dense(1)(h)})
    randomize_weights(model)
    model.export(tmp_path / "multi", verbose=False)
    x = {"a": RNG.standard_normal((3, 5)).astype(np.float32),
         "ids": np.array([[1, 2, 3, 0, 0, 0], [4, 5, 6, 7, 8, 9], [3, 0, 0, 0, 0, 0]], np.int32)}
    want = model.predict(x, verbose=0)
    loaded = tfless.load(tmp_path / "multi")
    assert [s.name for s in loaded.inputs] == ["a", "ids"]
    got = loaded.predict(x)
    assert sorted(got) == ["p", "q"]
    assert_close([got["p"], got["q"]], [want["p"], want["q"]], "dict in/out export")


def test_keras3_export_matches_tf_signature(exports: dict) -> None:
    import tensorflow as tf

    path, x, _ = exports["lstm"]
    want = tf.saved_model.load(str(path)).signatures["serve"](x=tf.constant(x))
    got = tfless.load(path, signature="serve").predict({"x": x})
    assert_close([got["output_0"]], [want["output_0"].numpy()], "lstm signature serve")


def test_batches_and_free_lengths(exports: dict) -> None:
    path, x, want = exports["gru"]
    model = tfless.load(path)
    assert_close([model.predict(x, batch_size=3)["output_0"]], [want], "gru batched")
    assert model.predict(x[:0])["output_0"].shape == (0, 7, 4)


@pytest.mark.slow
def test_mobilenet_v2_export(tmp_path: Path) -> None:
    import keras

    # logits (no softmax): a saturated softmax would hide or exaggerate differences
    model = keras.applications.MobileNetV2(input_shape=(64, 64, 3), alpha=0.35, weights=None,
                                           classes=7, classifier_activation=None)
    perturb_batchnorm(model)
    model.export(tmp_path / "mnv2", verbose=False)
    x = RNG.uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    got = tfless.load(tmp_path / "mnv2").predict(x)
    assert_close([got["output_0"]], [model.predict(x, verbose=0)], "MobileNetV2 export")


# ----- tf.Module with two signatures, loops and branches ----------------------------------
@pytest.fixture(scope="module")
def module_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import tensorflow as tf

    class Scorer(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(RNG.standard_normal((3, 2)).astype(np.float32))
            self.b = tf.Variable(np.array([0.5, -0.25], np.float32))
            self.steps = tf.constant(3)

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="features")])
        def score(self, features: Any) -> Any:
            logits = tf.matmul(features, self.w) + self.b
            return {"logits": logits, "best": tf.argmax(logits, axis=1, output_type=tf.int32)}

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="a"),
                                      tf.TensorSpec([None, 3], tf.float32, name="b")])
        def iterate(self, a: Any, b: Any) -> Any:
            def body(i: Any, acc: Any) -> Any:
                return i + 1, tf.tanh(tf.matmul(acc, self.w) @ tf.transpose(self.w) + b)

            _, acc = tf.while_loop(lambda i, acc: i < self.steps, body, (tf.constant(0), a))
            total = tf.reduce_sum(acc)
            picked = tf.cond(total > 0, lambda: acc * 2.0, lambda: acc - self.b[0])
            return {"picked": picked, "total": tf.reshape(total, [1])}

    module = Scorer()
    path = tmp_path_factory.mktemp("module") / "scorer"
    tf.saved_model.save(module, str(path), signatures={
        "serving_default": module.score.get_concrete_function(),
        "iterate": module.iterate.get_concrete_function()})
    return path


def test_tf_module_signatures(module_dir: Path) -> None:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(module_dir))
    x = RNG.standard_normal((5, 3)).astype(np.float32)
    model = tfless.load(module_dir)
    got = model.predict({"features": x})
    want = loaded.signatures["serving_default"](features=tf.constant(x))
    assert sorted(got) == ["best", "logits"]
    assert_close([got["logits"]], [want["logits"].numpy()], "score logits")
    np.testing.assert_array_equal(got["best"], want["best"].numpy())
    assert got["best"].dtype == np.int32
    assert {s.name: s.dtype for s in model.outputs} == {"best": "int32", "logits": "float32"}

    looped = tfless.load(module_dir, signature="iterate")
    assert [s.name for s in looped.inputs] == ["a", "b"]
    for sign in (1.0, -1.0):  # both branches of the tf.cond
        a, b = x * sign, np.full_like(x, 0.3 * sign)
        got = looped.predict({"a": a, "b": b})
        want = loaded.signatures["iterate"](a=tf.constant(a), b=tf.constant(b))
        assert_close([got["picked"], got["total"]],
                     [want["picked"].numpy(), want["total"].numpy()], f"iterate {sign}")


def test_signature_meta_and_unknown_signature(module_dir: Path) -> None:
    model = tfless.load(module_dir)
    sigs = model.meta["signatures"]
    assert set(sigs) == {"serving_default", "iterate"}
    assert sigs["iterate"]["inputs"][0] == {"name": "a", "dtype": "float32", "shape": [None, 3],
                                            "tensor": "iterate_a:0"}
    with pytest.raises(tfless.ModelFormatError, match=r"no signature 'nope'.*iterate, serving_default"):
        tfless.load(module_dir, signature="nope")


def test_inspect_lists_signatures(module_dir: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "tfless.cli", "inspect", str(module_dir), "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["format"] == "savedmodel-graph"
    assert [t["name"] for t in info["signatures"]["iterate"]["outputs"]] == ["picked", "total"]
    text = subprocess.run([sys.executable, "-m", "tfless.cli", "inspect", str(module_dir)],
                          capture_output=True, text=True, timeout=120)
    assert "serving_default (loaded)" in text.stdout
    assert "input  b: shape (None, 3) float32 [iterate_b:0]" in text.stdout


# ----- tf_keras SavedModel through its signature -------------------------------------------
def test_tf_keras_savedmodel_signature(tmp_path: Path) -> None:
    import tf_keras

    K = tf_keras
    inp = K.Input((6, 2), name="seq")
    h = K.layers.Conv1D(4, 3, padding="same", activation="relu")(inp)
    h = K.layers.LSTM(3)(h)
    model = K.Model(inp, K.layers.Dense(2, activation="sigmoid", name="prob")(h))
    randomize_weights(model)
    model.save(tmp_path / "sm", save_format="tf")
    x = RNG.standard_normal((3, 6, 2)).astype(np.float32)
    want = model.predict(x, verbose=0)
    keras_path = tfless.load(tmp_path / "sm")  # keras_metadata.pb: the Keras layers
    assert keras_path.meta["format"] == "savedmodel"
    graph = tfless.load(tmp_path / "sm", signature="serving_default")
    assert graph.meta["format"] == "savedmodel-graph"
    assert_close([graph.predict({"seq": x})["prob"]], [want], "tf_keras signature graph")
    assert_close([keras_path.predict(x)], [want], "tf_keras keras path")


def test_tf1_savedmodel_with_variables(tmp_path: Path) -> None:
    """A TF1 SavedModel (simple_save): variable nodes read from the checkpoint by name."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, (None, 4), name="x")
        w = v1.get_variable("w", initializer=RNG.standard_normal((4, 2)).astype(np.float32),
                            use_resource=False)
        r = v1.get_variable("r", initializer=np.full((2,), 0.5, np.float32), use_resource=True)
        y = tf.nn.relu(tf.matmul(x, w) + r, name="y")
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            xs = RNG.standard_normal((3, 4)).astype(np.float32)
            want = sess.run(y, {x: xs})
            v1.saved_model.simple_save(sess, str(tmp_path / "tf1"), {"x": x}, {"y": y})
    got = tfless.load(tmp_path / "tf1").predict({"x": xs})
    assert_close([got["y"]], [want], "TF1 SavedModel")


# ----- frozen GraphDefs --------------------------------------------------------------------
def _freeze(model: Any, spec: Any, path: Path, lower_control_flow: bool = False) -> None:
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    frozen = convert_variables_to_constants_v2(tf.function(model).get_concrete_function(spec),
                                               lower_control_flow=lower_control_flow)
    path.write_bytes(frozen.graph.as_graph_def().SerializeToString())


@pytest.mark.parametrize("name", ["cnn", "lstm"])
def test_frozen_graphdef(tmp_path: Path, name: str) -> None:
    import tensorflow as tf

    model = _keras3(name)
    shape, dtype = SMALL[name]
    pb = tmp_path / "frozen.pb"
    _freeze(model, tf.TensorSpec((None, *shape), dtype, name="x"), pb)
    x = _sample(shape, dtype)
    want = model.predict(x, verbose=0)
    loaded = tfless.load(pb)
    assert loaded.meta["format"] == "graphdef"
    assert [s.name for s in loaded.inputs] == ["x"]
    assert_close([loaded.predict(x)], [want], f"{name} frozen")
    named = tfless.load(pb, inputs=["x"], outputs=[loaded.outputs[0].name + ":0"])
    assert_close([named.predict(x)], [want], f"{name} frozen, named ends")


def test_tf1_style_frozen_graph(tmp_path: Path) -> None:
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    w = RNG.standard_normal((4, 3)).astype(np.float32)
    with graph.as_default():
        x = v1.placeholder(tf.float32, (None, 4), name="input")
        var = v1.Variable(w, name="w")
        y = tf.nn.softmax(tf.nn.relu(tf.matmul(x, var)) * 2.0, name="probs")
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            frozen = v1.graph_util.convert_variables_to_constants(
                sess, graph.as_graph_def(), ["probs"])
            xs = RNG.standard_normal((3, 4)).astype(np.float32)
            want = sess.run(y, {x: xs})
    pb = tmp_path / "tf1.pb"
    pb.write_bytes(frozen.SerializeToString())
    model = tfless.load(pb, outputs=["probs"])
    assert_close([model.predict(xs)], [want], "TF1 frozen graph")


def test_frozen_graph_errors(tmp_path: Path) -> None:
    import tensorflow as tf

    pb = tmp_path / "m.pb"
    _freeze(_keras3("mlp"), tf.TensorSpec((None, 6), tf.float32, name="x"), pb)
    with pytest.raises(tfless.ModelFormatError, match="no input node 'nope'; placeholders: x"):
        tfless.load(pb, inputs=["nope"])
    with pytest.raises(tfless.ModelFormatError, match="no node 'missing'"):
        tfless.load(pb, outputs=["missing"])
    with pytest.raises(tfless.ModelFormatError, match="signature= applies to SavedModel"):
        tfless.load(pb, signature="serving_default")


def test_lowered_tf1_loops_are_refused_clearly(tmp_path: Path) -> None:
    import tensorflow as tf

    pb = tmp_path / "lowered.pb"
    _freeze(_keras3("gru"), tf.TensorSpec((None, 7, 3), tf.float32, name="x"), pb,
            lower_control_flow=True)
    with pytest.raises(tfless.UnsupportedLayer, match=r"TF1 dataflow control flow \(.*Enter.*"
                                                      r"lower_control_flow=False"):
        tfless.load(pb)


# ----- refusals ------------------------------------------------------------------------------
def _module_with(fn: Callable[[Any], Any], path: Path) -> Path:
    import tensorflow as tf

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
        def f(self, x: Any) -> Any:
            return {"y": fn(x)}

    m = M()
    tf.saved_model.save(m, str(path), signatures=m.f.get_concrete_function())
    return path


def test_python_function_is_refused(tmp_path: Path) -> None:
    import tensorflow as tf

    path = _module_with(lambda x: tf.numpy_function(lambda a: a * 2, [x], tf.float32), tmp_path / "py")
    with pytest.raises(tfless.UnsafeModelError, match=r"node '.*' is a '\w*PyFunc\w*' op.*never runs"):
        tfless.load(path)


def test_unknown_op_is_refused_naming_op_and_node(tmp_path: Path) -> None:
    import tensorflow as tf

    path = _module_with(lambda x: tf.math.igamma(x, x + 1.0), tmp_path / "igamma")
    with pytest.raises(tfless.UnsupportedLayer, match=r"layer '.*Igamma.*' has type 'tf.Igamma'.*"
                                                      r"Supported tf operations: .*MatMul"):
        tfless.load(path)


def test_missing_variables_are_reported(exports: dict, tmp_path: Path) -> None:
    import shutil

    path, _, _ = exports["mlp"]
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    shutil.rmtree(copy / "variables")
    with pytest.raises(tfless.ModelFormatError, match="no variables/ checkpoint"):
        tfless.load(copy)


def test_truncated_saved_model_pb(exports: dict, tmp_path: Path) -> None:
    import shutil

    path, _, _ = exports["mlp"]
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    data = (copy / "saved_model.pb").read_bytes()
    (copy / "saved_model.pb").write_bytes(data[: len(data) // 2])
    with pytest.raises(tfless.ModelFormatError, match="saved_model.pb: not a valid SavedModel"):
        tfless.load(copy)


# ----- no TensorFlow at run time -------------------------------------------------------------
def test_graph_model_runs_without_tensorflow(exports: dict, tmp_path: Path) -> None:
    path, x, want = exports["lstm"]
    np.save(tmp_path / "x.npy", x)
    script = BLOCKER + textwrap.dedent(f"""
        import json, numpy as np, tfless
        y = tfless.load({str(path)!r}).predict(np.load({str(tmp_path / 'x.npy')!r}))
        np.save({str(tmp_path / 'y.npy')!r}, y["output_0"])
        print(json.dumps(ATTEMPTS))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
    assert_close([np.load(tmp_path / "y.npy")], [want], "lstm export without TF")


def test_docs_list_only_registered_tf_ops() -> None:
    from tfless.ops import REGISTRY

    text = (Path(__file__).parents[2] / "docs" / "formats.md").read_text()
    section = text.split("<!-- tf-ops:start -->")[1].split("<!-- tf-ops:end -->")[0]
    listed = re.findall(r"`(\w+)`", section)
    assert {"While", "TensorListSetItem", "MatMul", "Conv2D"} <= set(listed)
    assert [op for op in listed if f"tf.{op}" not in REGISTRY] == []


# ----- hostile GraphDefs ---------------------------------------------------------------------
def _graphdef(path: Path, nodes: list[dict[str, Any]]) -> Path:
    from tensorflow.core.framework import graph_pb2, tensor_pb2, types_pb2

    graph = graph_pb2.GraphDef()
    for spec in nodes:
        node = graph.node.add(name=spec["name"], op=spec["op"])
        node.input.extend(spec.get("inputs", []))
        if spec["op"] == "Placeholder":
            node.attr["dtype"].type = types_pb2.DT_FLOAT
            node.attr["shape"].shape.dim.add(size=-1)
            node.attr["shape"].shape.dim.add(size=3)
        else:
            node.attr["T"].type = types_pb2.DT_FLOAT
        if "const" in spec:
            shape, values = spec["const"]
            tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=values)
            for d in shape:
                tensor.tensor_shape.dim.add(size=d)
            node.attr["value"].tensor.CopyFrom(tensor)
            node.attr["dtype"].type = types_pb2.DT_FLOAT
    path.write_bytes(graph.SerializeToString())
    return path


def test_graphdef_runs_and_hostile_graphdefs_fail_cleanly(tmp_path: Path) -> None:
    ok = _graphdef(tmp_path / "ok.pb", [
        {"name": "x", "op": "Placeholder"},
        {"name": "two", "op": "Const", "const": ([3], [2.0])},  # short form: repeated value
        {"name": "y", "op": "Mul", "inputs": ["x", "two"]},
    ])
    np.testing.assert_array_equal(tfless.load(ok).predict(np.ones((2, 3), np.float32)),
                                  np.full((2, 3), 2.0, np.float32))
    huge = _graphdef(tmp_path / "huge.pb", [
        {"name": "x", "op": "Placeholder"},
        {"name": "c", "op": "Const", "const": ([100_000, 100_000, 100], [1.0])},
        {"name": "y", "op": "Mul", "inputs": ["x", "c"]},
    ])
    with pytest.raises(tfless.UnsafeModelError, match="GiB"):
        tfless.load(huge)
    cycle = _graphdef(tmp_path / "cycle.pb", [
        {"name": "x", "op": "Placeholder"},
        {"name": "a", "op": "AddV2", "inputs": ["x", "b"]},
        {"name": "b", "op": "AddV2", "inputs": ["x", "a"]},
    ])
    with pytest.raises(tfless.ModelFormatError, match="cycle through node"):
        tfless.load(cycle, outputs=["a"])
    reads = _graphdef(tmp_path / "reads.pb", [
        {"name": "x", "op": "Placeholder"},
        {"name": "f", "op": "ReadFile", "inputs": ["x"]},
    ])
    with pytest.raises(tfless.UnsafeModelError, match="node 'f' is a 'ReadFile' op"):
        tfless.load(reads)
    dangling = _graphdef(tmp_path / "dangling.pb", [
        {"name": "x", "op": "Placeholder"},
        {"name": "y", "op": "Relu", "inputs": ["ghost:0"]},
    ])
    with pytest.raises(tfless.ModelFormatError, match="node 'y' reads 'ghost:0', which no node"):
        tfless.load(dangling, inputs=["x"])


def test_verify_compares_with_the_tf_signature(module_dir: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "tfless.cli", "verify", str(module_dir)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "logits" in out.stdout and "best" in out.stdout and "max abs diff" in out.stdout


def test_saved_model_pb_alone_points_at_its_directory(exports: dict) -> None:
    path, _, _ = exports["mlp"]
    with pytest.raises(tfless.ModelFormatError, match="graph file of a SavedModel; load the "
                                                      "directory"):
        tfless.load(path / "saved_model.pb")


def test_inlined_call_names_never_collide_with_graph_names(tmp_path: Path) -> None:
    """`call` inlines its body as `call/y`; the graph has its own node named `call/y`."""
    from tensorflow.core.framework import function_pb2, graph_pb2, types_pb2

    graph = graph_pb2.GraphDef()
    fdef = function_pb2.FunctionDef()
    fdef.signature.name = "double"
    fdef.signature.input_arg.add(name="a", type=types_pb2.DT_FLOAT)
    fdef.signature.output_arg.add(name="out", type=types_pb2.DT_FLOAT)
    inner = fdef.node_def.add(name="y", op="AddV2", input=["a", "a"])
    inner.attr["T"].type = types_pb2.DT_FLOAT
    fdef.ret["out"] = "y:z:0"
    graph.library.function.append(fdef)
    x = graph.node.add(name="x", op="Placeholder")
    x.attr["dtype"].type = types_pb2.DT_FLOAT
    for d in (-1, 2):
        x.attr["shape"].shape.dim.add(size=d)
    own = graph.node.add(name="call/y", op="Neg", input=["x"])
    own.attr["T"].type = types_pb2.DT_FLOAT
    call = graph.node.add(name="call", op="PartitionedCall", input=["x"])
    call.attr["f"].func.name = "double"
    total = graph.node.add(name="total", op="AddV2", input=["call/y", "call"])
    total.attr["T"].type = types_pb2.DT_FLOAT
    (tmp_path / "g.pb").write_bytes(graph.SerializeToString())
    xs = np.array([[1.0, 2.0]], np.float32)
    np.testing.assert_array_equal(tfless.load(tmp_path / "g.pb").predict(xs), -xs + 2 * xs)
