"""Parity of the normalization layers with Keras 3 and tf_keras, plus Keras 1 files."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

import tfless
from tests.conftest import REALWORLD
from tests.parity import assert_close, check_parity, rand
from tfless.errors import UnsupportedLayer

APIS = ["keras3", "tf_keras"]


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(
    "kwargs",
    [
        {}, {"center": False}, {"scale": False}, {"center": False, "scale": False},
        {"epsilon": 1e-6}, {"axis": 1}, {"axis": -2, "epsilon": 0.1},
    ],
    ids=str,
)
def test_batch_normalization(api: str, kwargs: dict) -> None:
    def build(K):
        inp = K.Input((3, 4, 5))
        return K.Model(inp, K.layers.BatchNormalization(**kwargs)(inp))

    check_parity(build, rand(2, 3, 4, 5) * 3, api=api)


@pytest.mark.parametrize("api", APIS)
def test_batch_normalization_dense_and_renorm(api: str) -> None:
    def build(K):
        inp = K.Input((6,))
        x = K.layers.BatchNormalization(renorm=True)(inp)
        x = K.layers.Dense(4)(x)
        return K.Model(inp, K.layers.BatchNormalization(momentum=0.5)(x))

    check_parity(build, rand(3, 6), api=api)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("shape", [(4, 4, 3), (5, 3), (2, 2, 2, 3)], ids=str)
@pytest.mark.parametrize("epsilon", [1e-8, 1e-3])
def test_batch_normalization_large_mean_tiny_variance(api: str, shape: tuple, epsilon: float) -> None:
    """Far-off means and tiny variances expose the order of operations (tf_keras's fused
    4D/5D kernel subtracts the mean first) and any clamping of epsilon."""
    mean = np.float32([100.0, -50.0, 20.0])

    def build(K):
        inp = K.Input(shape)
        model = K.Model(inp, K.layers.BatchNormalization(epsilon=epsilon)(inp))
        model.set_weights([np.float32([1.5, 0.7, 1.2]), np.float32([0.1, -0.2, 0.3]), mean,
                           np.float32([1e-6, 2e-6, 1e-7])])
        return model

    x = mean + np.random.default_rng(0).normal(0, 1e-3, (2, *shape)).astype("float32")
    check_parity(build, x.astype("float32"), api=api, randomize=False)


@pytest.mark.parametrize("axis", [[1, 3], [2, 3], [-1, 1]])
def test_batch_normalization_multi_axis_tf_keras(axis: list) -> None:
    def build(K):
        inp = K.Input((3, 4, 5))
        return K.Model(inp, K.layers.BatchNormalization(axis=axis)(inp))

    check_parity(build, rand(2, 3, 4, 5), api="tf_keras")


def test_batch_normalization_virtual_batch_tf_keras() -> None:
    def build(K):
        inp = K.Input((4, 5))
        return K.Model(inp, K.layers.BatchNormalization(virtual_batch_size=2)(inp))

    check_parity(build, rand(4, 4, 5), api="tf_keras")


LAYER_NORM_CASES = [
    {}, {"center": False}, {"scale": False}, {"epsilon": 1e-6}, {"epsilon": 0.5},
    {"axis": 1}, {"axis": [1, 2]}, {"axis": [2, 3]}, {"axis": [1, 3]}, {"axis": -2, "center": False},
]


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("kwargs", LAYER_NORM_CASES, ids=str)
def test_layer_normalization(api: str, kwargs: dict) -> None:
    def build(K):
        inp = K.Input((3, 4, 5))
        return K.Model(inp, K.layers.LayerNormalization(**kwargs)(inp))

    # an offset mean makes the fused/unfused formula order matter
    check_parity(build, rand(2, 3, 4, 5) * 4 + 3, api=api)


@pytest.mark.parametrize("kwargs", [{}, {"axis": [1, 2]}, {"center": False}])
def test_layer_normalization_rms_scaling_keras3(kwargs: dict) -> None:
    def build(K):
        inp = K.Input((3, 4))
        return K.Model(inp, K.layers.LayerNormalization(rms_scaling=True, **kwargs)(inp))

    check_parity(build, rand(2, 3, 4) + 1)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(
    "kwargs",
    [{"groups": 2}, {"groups": 1}, {"groups": -1}, {"groups": 3, "center": False},
     {"groups": 2, "scale": False, "epsilon": 1e-5}, {"groups": 2, "axis": 1}, {"groups": 2, "axis": 2}],
    ids=str,
)
def test_group_normalization(api: str, kwargs: dict) -> None:
    def build(K):
        inp = K.Input((4, 6, 6))
        return K.Model(inp, K.layers.GroupNormalization(**kwargs)(inp))

    check_parity(build, rand(2, 4, 6, 6) * 2 + 1, api=api)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("axis", [-1, 1, [1, 2]], ids=str)
def test_unit_normalization(api: str, axis) -> None:
    def build(K):
        inp = K.Input((3, 4))
        return K.Model(inp, K.layers.UnitNormalization(axis=axis)(inp))

    x = rand(3, 3, 4)
    x[0] = 0.0  # zero vectors take the epsilon branch, which differs between versions
    x[1, 0] = 1e-8
    check_parity(build, x, api=api)


@pytest.mark.parametrize("kwargs", [{}, {"axis": [1, 2]}, {"epsilon": 0.1}], ids=str)
def test_rms_normalization_keras3(kwargs: dict) -> None:
    def build(K):
        inp = K.Input((3, 4))
        return K.Model(inp, K.layers.RMSNormalization(**kwargs)(inp))

    check_parity(build, rand(2, 3, 4))


@pytest.mark.parametrize("api", APIS)
def test_normalization_passes_mask(api: str) -> None:
    """The mask of an Embedding reaches a mask-reading layer through every normalization.

    Keras 3 Multiply zeroes masked steps; tf_keras GlobalAveragePooling1D skips them.
    """

    def build(K):
        inp = K.Input((5,), dtype="int32")
        emb = K.layers.Embedding(10, 4, mask_zero=True)(inp)
        x = K.layers.BatchNormalization()(emb)
        x = K.layers.LayerNormalization()(x)
        x = K.layers.UnitNormalization()(x)
        if api == "keras3":  # (tf_keras's GroupNormalization fails on a sequence mask)
            x = K.layers.GroupNormalization(groups=2)(x)
            return K.Model(inp, K.layers.Multiply()([x, emb]))
        return K.Model(inp, K.layers.GlobalAveragePooling1D()(x))

    ids = np.array([[1, 2, 0, 0, 3], [4, 0, 5, 6, 0]], dtype="int32")
    # Keras 3 records the mask it feeds BatchNormalization as a NotEqual op node, which
    # only the .keras format can store
    check_parity(build, ids, api=api, formats=("keras",) if api == "keras3" else None)


def _keras1_bn_file(path, mode: int) -> None:
    """A Keras 1.2 Sequential file with one Dense and one BatchNormalization."""
    config = {
        "class_name": "Sequential",
        "config": [
            {"class_name": "Dense", "config": {
                "name": "dense_1", "output_dim": 3, "input_dim": 4, "activation": "linear",
                "bias": True, "batch_input_shape": [None, 4], "input_dtype": "float32",
                "trainable": True, "init": "glorot_uniform"}},
            {"class_name": "BatchNormalization", "config": {
                "name": "batchnormalization_1", "epsilon": 0.01, "mode": mode, "axis": -1,
                "momentum": 0.99, "gamma_regularizer": None, "beta_regularizer": None,
                "trainable": True}},
        ],
    }
    rng = np.random.default_rng(3)
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"1.2.2"
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps(config).encode()
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = [b"dense_1", b"batchnormalization_1"]
        d = g.create_group("dense_1")
        d.attrs["weight_names"] = [b"dense_1_W", b"dense_1_b"]
        d["dense_1_W"] = rng.normal(size=(4, 3)).astype("float32")
        d["dense_1_b"] = rng.normal(size=3).astype("float32")
        b = g.create_group("batchnormalization_1")
        names = ["gamma", "beta", "running_mean", "running_std"]
        b.attrs["weight_names"] = [f"batchnormalization_1_{n}".encode() for n in names]
        for n in names:
            low = 0.5 if n in ("gamma", "running_std") else -1.0
            b[f"batchnormalization_1_{n}"] = rng.uniform(low, 1.5, 3).astype("float32")


def test_keras1_batch_normalization_running_std_is_variance(tmp_path) -> None:
    path = tmp_path / "k1.h5"
    _keras1_bn_file(path, mode=0)
    x = rand(5, 4)
    with h5py.File(path) as f:
        w = f["model_weights/dense_1/dense_1_W"][()]
        b = f["model_weights/dense_1/dense_1_b"][()]
        bn = f["model_weights/batchnormalization_1"]
        gamma, beta, mean, var = (bn[f"batchnormalization_1_{n}"][()]
                                  for n in ("gamma", "beta", "running_mean", "running_std"))
    h = x @ w + b
    want = (h - mean) / np.sqrt(var + np.float32(0.01)) * gamma + beta
    got = tfless.load(path).predict(x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", [1, 2])
def test_keras1_batch_normalization_other_modes_are_refused(tmp_path, mode: int) -> None:
    path = tmp_path / "k1.h5"
    _keras1_bn_file(path, mode=mode)
    with pytest.raises(UnsupportedLayer, match=f"batchnormalization_1.*mode={mode}"):
        tfless.load(path).predict(rand(2, 4))


def test_realworld_batchnorm_leaky_relu_cnn() -> None:
    """A CIFAR-10 classifier (Keras 2.4 .h5: Conv2D, BatchNormalization, LeakyReLU,
    MaxPooling2D, Dense) against the outputs Keras computed for it."""
    path = next((REALWORLD / "files").glob("23_*.h5"))
    with np.load(REALWORLD / "ref" / "23.npz") as ref:
        x, want = ref["x0"], ref["y0"]
    assert_close([tfless.load(path).predict(x)], [want], "realworld 23")
