"""Layers the plan folds into a neighbour (runtime/absorb.py), against Keras.

ZeroPadding into the convolution it feeds (as MobileNet and ResNet pad), and a relu into
the Add before it (ResNet's residual blocks). The plan must fold them (no such step left in
what a call runs), still trace every tensor exactly, and give Keras's outputs (the parity
harness also runs the exported ONNX file, whose graph keeps both layers).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

import tfless
from tests.parity import check_parity, keras_predict, randomize_weights

CASES = {
    # MobileNetV2's pattern: pad bottom/right by one, then a strided 'valid' depthwise + relu6
    "depthwise_stride2": ((2, 9, 9, 6), lambda L, x: L.ReLU(6.0)(L.DepthwiseConv2D(
        3, strides=2, padding="valid")(L.ZeroPadding2D(((0, 1), (0, 1)))(x)))),
    # uneven padding on every side, a strided conv (the im2col gather path)
    "conv_uneven": ((2, 10, 9, 3), lambda L, x: L.Conv2D(4, 3, strides=2, activation="relu")(
        L.ZeroPadding2D(((2, 1), (0, 3)))(x))),
    # a large input takes the per-tap im2col copies instead of the gather
    "conv_large": ((1, 44, 44, 64), lambda L, x: L.Conv2D(8, 3)(L.ZeroPadding2D(1)(x))),
    # 'same' padding after an explicit one applies to the padded size
    "conv_same_dilated": ((2, 8, 8, 3), lambda L, x: L.Conv2D(5, 3, padding="same",
                                                              dilation_rate=2)(
        L.ZeroPadding2D((1, 2))(x))),
    # ResNet's stem: pad 3, 7x7 stride 2
    "resnet_stem": ((1, 32, 32, 3), lambda L, x: L.Conv2D(8, 7, strides=2)(
        L.ZeroPadding2D(3)(x))),
    "conv1d_causal": ((2, 12, 3), lambda L, x: L.Conv1D(4, 3, padding="causal")(
        L.ZeroPadding1D((2, 1))(x))),
    "depthwise1d": ((2, 12, 3), lambda L, x: L.DepthwiseConv1D(3, strides=2)(
        L.ZeroPadding1D(1)(x))),
}


def _builder(shape: tuple[int, ...], body):
    def build(K):
        x = K.Input(shape[1:])
        return K.Model(x, body(K.layers, x))
    return build


@pytest.mark.parametrize("case", sorted(CASES))
def test_folded_padding_matches_keras(case: str) -> None:
    shape, body = CASES[case]
    x = np.random.default_rng(len(case)).standard_normal(shape).astype(np.float32)
    check_parity(_builder(shape, body), x, formats=("keras",), label=case)

    import keras

    model = _builder(shape, body)(keras)
    randomize_weights(model, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / "m.keras")
        loaded = tfless.load(Path(tmp) / "m.keras")
    plan = loaded.plan
    assert [s.node.op for s in plan.steps if s.trace_only] == [
        next(n.op for n in loaded.graph.nodes if n.op.startswith("ZeroPadding"))]
    assert not any(s.node.op.startswith("ZeroPadding") for s in plan.plain_steps)
    np.testing.assert_allclose(loaded.predict(x), keras_predict(model, x)[0],
                               rtol=1e-4, atol=1e-5)
    # the trace still holds the padded tensor, exactly as the layer computes it
    pad = next(n for n in loaded.graph.nodes if n.op.startswith("ZeroPadding"))
    traced = plan.trace([x])
    np.testing.assert_array_equal(traced[pad.outputs[0]], np.asarray(
        keras.Model(model.input, model.get_layer(pad.name).output)(x)))


def test_padding_read_twice_or_returned_is_not_folded() -> None:
    import keras

    L = keras.layers
    x = keras.Input((8, 8, 3))
    padded = L.ZeroPadding2D(1)(x)
    twice = keras.Model(x, L.Add()([L.Conv2D(2, 3)(padded), L.Conv2D(2, 3)(padded)]))
    returned = keras.Model(x, [L.Conv2D(2, 3)(padded), padded])
    data = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype(np.float32)
    for model in (twice, returned):
        randomize_weights(model, seed=2)
        with tempfile.TemporaryDirectory() as tmp:
            model.save(Path(tmp) / "m.keras")
            loaded = tfless.load(Path(tmp) / "m.keras")
        assert not any(s.trace_only for s in loaded.plan.steps)
        got = loaded.predict(data, structured=False)
        got = got if isinstance(got, list) else [got]
        for g, w in zip(got, keras_predict(model, data)):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def _saved(model, tmp: str):
    model.save(Path(tmp) / "m.keras")
    return tfless.load(Path(tmp) / "m.keras")


def test_relu_after_add_runs_in_place_and_traces_both() -> None:
    import keras

    L = keras.layers
    x = keras.Input((6, 6, 4))
    a = L.Conv2D(4, 3, padding="same")(x)
    block = L.Activation("relu", name="act")(L.Add(name="sum")([a, x]))
    block = L.ReLU(name="plain_relu")(L.Add(name="sum2")([L.Conv2D(4, 1)(block), block]))
    # a sum also read elsewhere keeps its own relu step
    shared = L.Add(name="shared")([block, x])
    out = L.Concatenate()([L.Activation("relu")(shared), shared])
    model = keras.Model(x, out)
    randomize_weights(model, seed=3)
    data = np.random.default_rng(3).standard_normal((2, 6, 6, 4)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        loaded = _saved(model, tmp)
    plan = loaded.plan
    assert not plan.has_masks  # Add only passes masks on: the plain loop runs
    ran = [s.node.name for s in plan.plain_steps]
    assert "act" not in ran and "plain_relu" not in ran and "shared" in ran
    assert sum(s.node.op == "Activation" for s in plan.plain_steps) == 1
    np.testing.assert_allclose(loaded.predict(data), keras_predict(model, data)[0],
                               rtol=1e-4, atol=1e-5)
    traced = plan.trace([data])
    tensor = {n.name: n.outputs[0] for n in loaded.graph.nodes}
    for name in ("sum", "act", "sum2", "plain_relu"):
        want = keras.Model(model.input, model.get_layer(name).output)(data)
        np.testing.assert_allclose(traced[tensor[name]], np.asarray(want), rtol=1e-4, atol=1e-5)
    assert np.min(traced[tensor["sum"]]) < 0  # the traced sum is the one before its relu


def test_masked_plans_keep_their_relu_steps() -> None:
    import keras

    L = keras.layers
    tokens = keras.Input((5,), dtype="int32")
    h = L.Embedding(20, 4, mask_zero=True)(tokens)
    h = L.Activation("relu", name="act")(L.Add()([h, L.Dense(4)(h)]))
    model = keras.Model(tokens, L.GlobalAveragePooling1D()(h))
    randomize_weights(model, seed=4)
    data = np.array([[3, 4, 0, 0, 0], [1, 2, 3, 4, 5]], np.int32)
    with tempfile.TemporaryDirectory() as tmp:
        loaded = _saved(model, tmp)
    assert loaded.plan.has_masks
    np.testing.assert_allclose(loaded.predict(data), keras_predict(model, data)[0],
                               rtol=1e-4, atol=1e-5)
