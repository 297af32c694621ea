"""Which TF graph plans (tf.* ops) may run a batch as shards: the data-flow check of
runtime/tf_separable.py on hand-built graphs, and a Keras 3 export() SavedModel end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.parity import randomize_weights
from tfless.graph import Graph, Node, TensorSpec
from tfless.runtime import plan as plan_module
from tfless.runtime import threads
from tfless.runtime.tf_separable import tf_batch_separable


def _const(name: str, value) -> Node:
    value = np.asarray(value)
    return Node(name, "tf.Const", {"dtype": str(value.dtype)}, {"value": value}, [], [name])


def _graph(*nodes: Node, out: str = "y", rank: int = 4) -> Graph:
    shape = (None, 6, 6, 3)[:rank]
    return Graph([TensorSpec("x", shape, "float32")], list(nodes), [out], [out])


def _conv_bn_relu() -> list[Node]:
    return [
        _const("k", np.ones((3, 3, 3, 4), np.float32)),
        Node("conv", "tf.Conv2D", {"padding": "SAME", "strides": [1, 1, 1, 1]}, {},
             ["x", "k"], ["c"]),
        _const("var", np.ones(4, np.float32)), _const("eps", np.float32(1e-3)),
        Node("add", "tf.AddV2", {}, {}, ["var", "eps"], ["ve"]),
        Node("rs", "tf.Rsqrt", {}, {}, ["ve"], ["scale"]),
        Node("mul", "tf.Mul", {}, {}, ["c", "scale"], ["cs"]),
        Node("relu", "tf.Relu6", {}, {}, ["cs"], ["r"]),
        _const("pads", [[0, 0], [1, 1], [1, 1], [0, 0]]),
        Node("pad", "tf.Pad", {}, {}, ["r", "pads"], ["p"]),
        Node("res", "tf.AddV2", {}, {}, ["p", "p"], ["q"]),
        _const("axes", [1, 2]),
        Node("mean", "tf.Mean", {"keep_dims": False}, {}, ["q", "axes"], ["m"]),
        _const("w", np.ones((4, 2), np.float32)),
        Node("mm", "tf.MatMul", {}, {}, ["m", "w"], ["y"]),
    ]


def test_a_conv_network_graph_is_separable() -> None:
    assert tf_batch_separable(_graph(*_conv_bn_relu()))


@pytest.mark.parametrize("swap", [
    # a reduction over the batch axis
    ("axes", _const("axes", [0, 1, 2])),
    # padding the batch axis
    ("pads", _const("pads", [[1, 0], [1, 1], [1, 1], [0, 0]])),
    # a constant as long as the batch on axis 0 (would broadcast along the batch)
    ("var", _const("var", np.ones((2, 1, 1, 4), np.float32))),
    # an op the check does not know
    ("res", Node("res", "tf.Reshape", {}, {}, ["p", "axes"], ["q"])),
    # a batch-normalisation that computes batch statistics
    ("relu", Node("relu", "tf.FusedBatchNormV3", {"is_training": True}, {},
                  ["cs", "var", "var", "var", "var"], ["r", "r1", "r2"])),
])
def test_ops_that_may_mix_the_batch_make_the_graph_whole(swap: tuple[str, Node]) -> None:
    nodes = [swap[1] if n.name == swap[0] else n for n in _conv_bn_relu()]
    assert not tf_batch_separable(_graph(*nodes))


def test_batch_tensors_of_different_ranks_are_not_mixed() -> None:
    # (B, C) + (B, H, W, C) would align the batch of one with the width of the other
    nodes = [n for n in _conv_bn_relu() if n.name != "mm"]
    nodes.append(Node("mix", "tf.AddV2", {}, {}, ["m", "q"], ["y"]))
    assert not tf_batch_separable(_graph(*nodes))


def test_matmul_by_a_batch_tensor_is_not_separable() -> None:
    nodes = [Node("mm", "tf.MatMul", {}, {}, ["x", "x"], ["y"])]
    assert not tf_batch_separable(_graph(*nodes, rank=2))


@pytest.mark.slow
def test_exported_keras_cnn_shards_and_matches(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import keras

    import tfless

    L = keras.layers
    x = keras.Input((12, 12, 3))
    h = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(4, 3, padding="same")(x)))
    h = L.Add()([h, L.DepthwiseConv2D(3, padding="same")(h)])
    h = L.GlobalAveragePooling2D()(L.ZeroPadding2D(1)(h))
    model = keras.Model(x, L.Dense(3, activation="softmax")(h))
    randomize_weights(model, seed=5)
    model.export(str(tmp_path / "saved"), verbose=False)
    loaded = tfless.load(tmp_path / "saved")
    assert any(n.op.startswith("tf.") for n in loaded.plan.graph.nodes)
    assert loaded.plan.separable
    monkeypatch.setattr(threads, "worker_count", lambda: 2)
    monkeypatch.setattr(threads, "blas_threads", lambda: 1)
    monkeypatch.setattr(plan_module, "SHARD_MIN_SECONDS", 0.0)
    monkeypatch.setattr(plan_module, "SHARD_MIN_WORK", 0.0)
    calls = []
    original = loaded.plan._run
    monkeypatch.setattr(loaded.plan, "_run", lambda xs, keep_all=False: calls.append(len(xs[0]))
                        or original(xs, keep_all))
    batch = np.random.default_rng(6).random((9, 12, 12, 3), dtype=np.float32)
    got = [loaded.predict(batch) for _ in range(3)]  # warm-up, whole, then sharded
    assert calls == [9, 9, 4, 4, 1]
    want = model.predict(batch, verbose=0)
    for g in got:
        g = next(iter(g.values())) if isinstance(g, dict) else g  # a signature's outputs
        np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-5)
