"""Parity of the merging layers (values, broadcasting and masks) with Keras 3 and tf_keras."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

import tfless
from tests.parity import check_parity, rand

APIS = ["keras3", "tf_keras"]
ELEMENTWISE = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"]


# Subtract takes exactly two inputs
ARITIES = [(cls, n) for cls in ELEMENTWISE for n in (2, 3) if cls != "Subtract" or n == 2]


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("cls,n_inputs", ARITIES)
def test_elementwise(api: str, cls: str, n_inputs: int) -> None:
    def build(K):
        inputs = [K.Input((3, 4)) for _ in range(n_inputs)]
        return K.Model(inputs, getattr(K.layers, cls)()(inputs))

    xs = [rand(2, 3, 4, seed=i) for i in range(n_inputs)]
    check_parity(build, xs, api=api, label=cls)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("cls", ELEMENTWISE)
@pytest.mark.parametrize("shapes", [((4,), (3, 4)), ((3, 1), (3, 4)), ((1, 4), (5, 3, 4))], ids=str)
def test_elementwise_broadcasting(api: str, cls: str, shapes: tuple) -> None:
    def build(K):
        inputs = [K.Input(s) for s in shapes]
        return K.Model(inputs, getattr(K.layers, cls)()(inputs))

    xs = [rand(2, *s, seed=i) for i, s in enumerate(shapes)]
    check_parity(build, xs, api=api, label=cls)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("axis", [-1, 1, 2, -2])
def test_concatenate(api: str, axis: int) -> None:
    def build(K):
        a, b = K.Input((3, 4)), K.Input((3, 4))
        return K.Model([a, b], K.layers.Concatenate(axis=axis)([a, b, a]))

    check_parity(build, [rand(2, 3, 4, seed=1), rand(2, 3, 4, seed=2)], api=api)


DOT_CASES = [
    ((5,), (5,), -1), ((5,), (5,), 1), ((3, 5), (4, 5), (2, 2)), ((3, 5), (3, 4), 1),
    ((3, 5), (5, 4), (2, 1)), ((5,), (4, 5), (1, 2)), ((3, 5), (5,), (2, 1)),
    ((2, 3, 5), (5, 4), (3, 1)), ((3, 5), (4, 3), (1, -1)),
]


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("case", DOT_CASES, ids=str)
def test_dot(api: str, normalize: bool, case: tuple) -> None:
    shape_a, shape_b, axes = case

    def build(K):
        a, b = K.Input(shape_a), K.Input(shape_b)
        return K.Model([a, b], K.layers.Dot(axes=axes, normalize=normalize)([a, b]))

    xa, xb = rand(2, *shape_a, seed=1), rand(2, *shape_b, seed=2)
    if normalize:
        xa[0] = 0.0  # a zero vector takes the epsilon branch of each version's l2 normalize
    check_parity(build, [xa, xb], api=api)


IDS = [
    np.array([[1, 2, 0, 0, 3], [4, 0, 5, 6, 0]], dtype="int32"),
    np.array([[0, 2, 7, 0, 3], [4, 1, 0, 6, 0]], dtype="int32"),
]


@pytest.mark.parametrize("cls", ELEMENTWISE)
def test_masks_keras3(cls: str) -> None:
    """Keras 3 ORs masks and rewrites masked values; the trailing Multiply makes both visible."""

    def build(K):
        a, b = K.Input((5,), dtype="int32"), K.Input((5,), dtype="int32")
        free = K.Input((5, 4))
        ea = K.layers.Embedding(10, 4, mask_zero=True)(a)
        eb = K.layers.Embedding(10, 4, mask_zero=True)(b)
        merged = getattr(K.layers, cls)()([ea, eb])
        both = K.layers.Multiply()([merged, ea])
        half = K.layers.Multiply()([merged, free])  # one unmasked input: no output mask
        return K.Model([a, b, free], [both, half])

    check_parity(build, [IDS[0], IDS[1], rand(2, 5, 4)], label=cls)


@pytest.mark.parametrize("cls", ELEMENTWISE)
def test_masks_tf_keras(cls: str) -> None:
    """tf_keras ANDs the masks of element-wise merges (unmasked inputs are left out)."""

    def build(K):
        a, b = K.Input((5,), dtype="int32"), K.Input((5,), dtype="int32")
        free = K.Input((5, 4))
        ea = K.layers.Embedding(10, 4, mask_zero=True)(a)
        eb = K.layers.Embedding(10, 4, mask_zero=True)(b)
        both = K.layers.GlobalAveragePooling1D()(getattr(K.layers, cls)()([ea, eb]))
        half = K.layers.GlobalAveragePooling1D()(getattr(K.layers, cls)()([ea, free]))
        return K.Model([a, b, free], [both, half])

    check_parity(build, [IDS[0], IDS[1], rand(2, 5, 4)], api="tf_keras", label=cls)


def test_concatenate_masks_keras3() -> None:
    def build(K):
        a, b = K.Input((5,), dtype="int32"), K.Input((5,), dtype="int32")
        free = K.Input((5, 4))
        ea = K.layers.Embedding(10, 4, mask_zero=True)(a)
        eb = K.layers.Embedding(10, 4, mask_zero=True)(b)
        masked = K.layers.Concatenate()([ea, eb])
        mixed = K.layers.Concatenate()([ea, free])  # an unmasked input counts as all-True
        other = K.layers.Concatenate()([eb, ea])
        return K.Model([a, b, free], [K.layers.Multiply()([masked, other]),
                                      K.layers.Multiply()([mixed, K.layers.Concatenate()([eb, eb])])])

    check_parity(build, [IDS[0], IDS[1], rand(2, 5, 4)])


@pytest.mark.parametrize("axis", [1, -1])
def test_concatenate_mask_into_masked_layers_keras3(axis: int) -> None:
    """A masked consumer makes Keras 3 record Concatenate's mask computation as op nodes
    (ones_like for an unmasked input, zeros_like/logical_or/any on the feature axis)."""
    def build(K):
        a, free = K.Input((5,), dtype="int32"), K.Input((5, 4))
        ea = K.layers.Embedding(10, 4, mask_zero=True)(a)
        mixed = K.layers.Concatenate(axis=axis)([ea, free])
        return K.Model([a, free], [K.layers.GlobalAveragePooling1D()(mixed),
                                   K.layers.LSTM(2)(mixed)])

    check_parity(build, [IDS[0], rand(2, 5, 4)])


@pytest.mark.parametrize("axis", [1, -1])
def test_concatenate_masks_tf_keras(axis: int) -> None:
    def build(K):
        a, b = K.Input((5,), dtype="int32"), K.Input((5,), dtype="int32")
        ea = K.layers.Embedding(10, 4, mask_zero=True)(a)
        eb = K.layers.Embedding(10, 4, mask_zero=True)(b)
        joined = K.layers.Concatenate(axis=axis)([ea, eb])
        return K.Model([a, b], K.layers.GlobalAveragePooling1D()(joined))

    check_parity(build, IDS, api="tf_keras")


def test_dot_drops_mask_tf_keras() -> None:
    def build(K):
        a = K.Input((5,), dtype="int32")
        ea = K.layers.Embedding(10, 4, mask_zero=True)(a)
        sim = K.layers.Dot(axes=2)([ea, ea])
        return K.Model(a, K.layers.GlobalAveragePooling1D()(sim))

    check_parity(build, IDS[0], api="tf_keras")


KERAS1_MODES = {
    "sum": lambda a, b: a + b,
    "mul": lambda a, b: a * b,
    "ave": lambda a, b: (a + b) / 2,
    "max": np.maximum,
    "concat": lambda a, b: np.concatenate([a, b], axis=-1),
    "dot": lambda a, b: np.sum(a * b, axis=-1, keepdims=True),
}


def _keras1_merge_file(path, mode: str) -> None:
    """A Keras 1.2 functional model merging two inputs with a `Merge` layer."""
    def input_layer(name: str) -> dict:
        return {"class_name": "InputLayer", "name": name, "inbound_nodes": [],
                "config": {"batch_input_shape": [None, 4], "input_dtype": "float32",
                           "sparse": False, "name": name}}

    merge = {"class_name": "Merge", "name": "merge_1",
             "config": {"name": "merge_1", "mode": mode, "concat_axis": -1, "dot_axes": [1, 1],
                        "output_shape": None, "output_mask": None, "arguments": {},
                        "mode_type": "raw", "output_shape_type": "raw"},
             "inbound_nodes": [[["input_1", 0, 0], ["input_2", 0, 0]]]}
    config = {"class_name": "Model", "config": {
        "name": "model_1", "layers": [input_layer("input_1"), input_layer("input_2"), merge],
        "input_layers": [["input_1", 0, 0], ["input_2", 0, 0]],
        "output_layers": [["merge_1", 0, 0]]}}
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"1.2.2"
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps(config).encode()
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = [b"input_1", b"input_2", b"merge_1"]
        for name in ("input_1", "input_2", "merge_1"):
            g.create_group(name).attrs["weight_names"] = []


@pytest.mark.parametrize("mode", sorted(KERAS1_MODES))
def test_keras1_merge_modes(tmp_path, mode: str) -> None:
    path = tmp_path / "k1.h5"
    _keras1_merge_file(path, mode)
    a, b = rand(3, 4, seed=1), rand(3, 4, seed=2)
    got = tfless.load(path).predict([a, b])
    np.testing.assert_allclose(got, KERAS1_MODES[mode](a, b), rtol=1e-6, atol=1e-6)
