"""Graph passes, one at a time: the graph they return has the expected shape and computes
what Keras computes (within 1e-5 absolute + 1e-4 relative)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

import tfless
from tests.parity import assert_close, check_parity, keras_module, keras_predict, rand, randomize_weights
from tfless.formats import read_graph
from tfless.graph import Graph
from tfless.optimize import (
    PASSES,
    drop_noops,
    fold_batchnorm,
    fuse_activations,
    optimize_graph,
    pack_weights,
)
from tfless.runtime.plan import Plan


def graph_and_keras(build, x: np.ndarray, api: str = "keras3") -> tuple[Graph, list[np.ndarray]]:
    """The unoptimized tfless Graph of a Keras-built model, and Keras's outputs on x."""
    model = build(keras_module(api))
    randomize_weights(model, seed=4)
    want = keras_predict(model, x)
    with tempfile.TemporaryDirectory(prefix="tfless-opt-") as tmp:
        path = Path(tmp) / ("model.keras" if api == "keras3" else "model.h5")
        model.save(path)
        return read_graph(path), want


def check_pass(rewrite, graph: Graph, x: np.ndarray, want: list[np.ndarray]) -> Graph:
    out = rewrite(graph)
    assert_close(Plan(out).run([x]), want, rewrite.__name__)
    assert_close(Plan(graph).run([x]), want, "input graph after the pass")  # not mutated
    return out


def ops(graph: Graph) -> list[str]:
    return [n.op for n in graph.nodes]


# ----- drop_noops --------------------------------------------------------------------------
def test_drop_noops_removes_dropout_and_noise() -> None:
    def build(K):
        inp = K.Input((6,))
        h = K.layers.Dense(8)(inp)
        h = K.layers.Dropout(0.5)(h)
        h = K.layers.GaussianNoise(0.3)(h)
        return K.Model(inp, K.layers.Dense(3)(h))

    x = rand(4, 6)
    graph, want = graph_and_keras(build, x)
    out = check_pass(drop_noops, graph, x, want)
    assert ops(out) == ["Dense", "Dense"]
    assert out.nodes[1].inputs == graph.nodes[0].outputs


# ----- fold_batchnorm ----------------------------------------------------------------------
CONV_LAYERS = {
    "Dense": (lambda K, b: K.layers.Dense(7, use_bias=b), (5, 6)),
    "Conv1D": (lambda K, b: K.layers.Conv1D(5, 3, padding="same", use_bias=b), (9, 4)),
    "Conv2D": (lambda K, b: K.layers.Conv2D(5, 3, strides=2, use_bias=b), (9, 9, 3)),
    "Conv3D": (lambda K, b: K.layers.Conv3D(4, 2, use_bias=b), (5, 5, 5, 2)),
    "DepthwiseConv2D": (lambda K, b: K.layers.DepthwiseConv2D(3, depth_multiplier=2, use_bias=b),
                        (8, 8, 3)),
    "SeparableConv2D": (lambda K, b: K.layers.SeparableConv2D(6, 3, use_bias=b), (8, 8, 3)),
}


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("layer", sorted(CONV_LAYERS))
def test_fold_batchnorm(layer: str, use_bias: bool) -> None:
    make, shape = CONV_LAYERS[layer]

    def build(K):
        inp = K.Input(shape)
        h = K.layers.BatchNormalization(epsilon=1e-3)(make(K, use_bias)(inp))
        return K.Model(inp, K.layers.Activation("relu")(h))

    x = rand(2, *shape)
    graph, want = graph_and_keras(build, x)
    out = check_pass(fold_batchnorm, graph, x, want)
    assert ops(out) == [layer, "Activation"]
    assert "bias" in out.nodes[0].weights and out.nodes[0].config["use_bias"] is True


def test_fold_batchnorm_tf_keras_h5() -> None:
    def build(K):
        return K.Sequential([K.layers.Conv2D(4, 3, input_shape=(7, 7, 2)),
                             K.layers.BatchNormalization(center=False, scale=False),
                             K.layers.Flatten()])

    x = rand(3, 7, 7, 2)
    graph, want = graph_and_keras(build, x, api="tf_keras")
    out = check_pass(fold_batchnorm, graph, x, want)
    assert ops(out) == ["Conv2D", "Flatten"]


def test_fold_batchnorm_keeps_bn_when_it_cannot_fold() -> None:
    def build(K):
        inp = K.Input((8, 8, 3))
        branch = K.layers.Conv2D(4, 3)(inp)  # read by BN and by Add: cannot fold
        a = K.layers.BatchNormalization()(branch)
        act = K.layers.Conv2D(4, 3, activation="relu")(inp)  # non-linear: cannot fold
        b = K.layers.BatchNormalization()(act)
        wrong_axis = K.layers.Conv2D(4, 3)(inp)
        c = K.layers.BatchNormalization(axis=1)(wrong_axis)
        return K.Model(inp, [K.layers.Concatenate()([a, branch]), b, c])

    x = rand(2, 8, 8, 3)
    graph, want = graph_and_keras(build, x)
    out = fold_batchnorm(graph)
    assert ops(out).count("BatchNormalization") == 3
    assert_close(Plan(out).run([x]), want, "unfolded")


# ----- fuse_activations --------------------------------------------------------------------
@pytest.mark.parametrize("act", ["relu6_layer", "relu_layer", "swish", "softmax", "tanh"])
def test_fuse_activations_dense(act: str) -> None:
    def build(K):
        inp = K.Input((6,))
        h = K.layers.Dense(8)(inp)
        if act == "relu6_layer":
            h = K.layers.ReLU(max_value=6.0)(h)
        elif act == "relu_layer":
            h = K.layers.ReLU()(h)
        else:
            h = K.layers.Activation(act)(h)
        return K.Model(inp, K.layers.Dense(2)(h))

    x = rand(4, 6, low=-8, high=8)
    graph, want = graph_and_keras(build, x)
    out = check_pass(fuse_activations, graph, x, want)
    assert ops(out) == ["Dense", "Dense"]


def test_fuse_activations_conv_and_limits() -> None:
    def build(K):
        inp = K.Input((8, 8, 3))
        h = K.layers.ReLU(max_value=6.0)(K.layers.Conv2D(4, 3)(inp))
        leaky = K.layers.ReLU(negative_slope=0.1)(K.layers.Conv2D(4, 3)(inp))  # no such activation
        soft = K.layers.Activation("softmax")(K.layers.Conv2D(4, 3)(inp))  # axis-dependent
        return K.Model(inp, [h, leaky, soft])

    x = rand(2, 8, 8, 3, low=-4, high=4)
    graph, want = graph_and_keras(build, x)
    out = check_pass(fuse_activations, graph, x, want)
    assert ops(out).count("ReLU") == 1 and ops(out).count("Activation") == 1
    assert ops(out).count("Conv2D") == 3


# ----- pack_weights ------------------------------------------------------------------------
def test_pack_weights_contiguous_float32_and_shared() -> None:
    def build(K):
        inp = K.Input((5,))
        shared = K.layers.Dense(5)
        return K.Model(inp, shared(shared(inp)))

    x = rand(3, 5)
    graph, want = graph_and_keras(build, x)
    kernel = graph.nodes[0].weights["kernel"]
    graph.nodes[0].weights["kernel"] = graph.nodes[1].weights["kernel"] = \
        np.asfortranarray(kernel.astype(np.float64))
    out = check_pass(pack_weights, graph, x, want)
    packed = [n.weights["kernel"] for n in out.nodes]
    assert packed[0] is packed[1]
    assert packed[0].dtype == np.float32 and packed[0].flags.c_contiguous


# ----- the pipeline ------------------------------------------------------------------------
def mobilenet_block(K):
    inp = K.Input((12, 12, 3))
    h = K.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(inp)
    h = K.layers.BatchNormalization()(h)
    h = K.layers.ReLU(6.0)(h)
    h = K.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(h)
    h = K.layers.BatchNormalization()(h)
    h = K.layers.Activation("swish")(h)
    h = K.layers.Dropout(0.2)(h)
    h = K.layers.GlobalAveragePooling2D()(h)
    h = K.layers.Dense(4)(h)
    h = K.layers.BatchNormalization()(h)
    return K.Model(inp, K.layers.Activation("softmax")(h))


def test_pipeline_parity_and_shape() -> None:
    x = rand(3, 12, 12, 3)
    check_parity(mobilenet_block, x, formats=("keras",))
    graph, want = graph_and_keras(mobilenet_block, x)
    out = optimize_graph(graph)
    assert ops(out) == ["Conv2D", "DepthwiseConv2D", "GlobalAveragePooling2D", "Dense"]
    assert_close(Plan(out).run([x]), want, "pipeline")


def test_pass_selection() -> None:
    x = rand(2, 12, 12, 3)
    graph, want = graph_and_keras(mobilenet_block, x)
    assert ops(optimize_graph(graph, False)) == ops(graph)
    only = optimize_graph(graph, ["drop_noops"])
    assert "Dropout" not in ops(only) and "BatchNormalization" in ops(only)
    assert [p.__name__ for p in PASSES][0] == "drop_noops"
    with pytest.raises(tfless.TflessError, match="unknown optimization pass"):
        optimize_graph(graph, ["fold_everything"])


# ----- folding in place and the Model's source graph ---------------------------------------
def test_fold_in_place_overwrites_only_unshared_kernels() -> None:
    def build(K):
        inp = K.Input((8, 8, 3))
        shared = K.layers.Conv2D(3, 3, padding="same", use_bias=False)
        a = K.layers.BatchNormalization()(shared(inp))
        b = K.layers.BatchNormalization()(shared(inp))
        own = K.layers.BatchNormalization()(K.layers.Conv2D(4, 3)(inp))
        return K.Model(inp, [a, b, own])

    x = rand(2, 8, 8, 3)
    graph, want = graph_and_keras(build, x)
    kernels = {n.name: n.weights["kernel"] for n in graph.nodes if n.op == "Conv2D"}
    before = {name: k.copy() for name, k in kernels.items()}
    out = optimize_graph(graph, in_place=True)
    assert ops(out) == ["Conv2D", "Conv2D", "Conv2D"]
    assert_close(Plan(out).run([x]), want, "folded in place")
    convs = [n for n in out.nodes if n.op == "Conv2D"]
    owned = [n for n in convs if n.weights["kernel"].shape[-1] == 4][0]
    assert any(owned.weights["kernel"] is k for k in kernels.values())  # written in place
    for node in convs:
        if node is not owned:  # the shared kernel is folded into fresh arrays
            assert all(node.weights["kernel"] is not k for k in kernels.values())
    shared_name = [n for n in kernels if kernels[n].shape[-1] == 3][0]
    np.testing.assert_array_equal(kernels[shared_name], before[shared_name])


def test_loaded_model_holds_weights_once_and_rereads_the_source(tmp_path: Path) -> None:
    x = rand(3, 12, 12, 3)
    K = keras_module("keras3")
    keras_model = mobilenet_block(K)
    randomize_weights(keras_model, seed=4)
    want = keras_predict(keras_model, x)
    path = tmp_path / "block.keras"
    keras_model.save(path)
    model = tfless.load(path)
    assert_close([model.predict(x)], want, "loaded")
    assert model._source_graph is None  # the optimized graph alone holds the weights
    source = model.source_graph
    assert ops(source) == ops(read_graph(path))
    assert "BatchNormalization" in model.summary()
    assert tfless.load(path, optimize=False)._source_graph is not None  # nothing to reread
    keras_model.save(path)  # rewritten: describing the loaded model would now lie
    with pytest.raises(tfless.TflessError, match="changed since the model was loaded"):
        model.summary()
