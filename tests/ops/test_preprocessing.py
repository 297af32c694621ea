"""Parity of the stateful preprocessing layers (rescaling, normalization, crops, resizing)."""

from __future__ import annotations

import numpy as np
import pytest

import tfless
from tests.parity import check_parity, keras_module, rand
from tfless.errors import UnsupportedLayer

APIS = ["keras3", "tf_keras"]


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(
    "kwargs", [{"scale": 1 / 255.0}, {"scale": 2.0, "offset": -1.0},
               {"scale": [0.5, 1.0, 2.0], "offset": [0.1, 0.0, -0.1]}], ids=str)
def test_rescaling(api: str, kwargs: dict) -> None:
    def build(K):
        inp = K.Input((4, 4, 3))
        return K.Model(inp, K.layers.Rescaling(**kwargs)(inp))

    check_parity(build, rand(2, 4, 4, 3, low=0, high=255), api=api)


def test_rescaling_numpy_scale_keras3() -> None:
    def build(K):
        inp = K.Input((4, 3))
        scale = np.array([0.5, 1.0, 2.0], dtype="float32")
        return K.Model(inp, K.layers.Rescaling(scale, offset=np.float32(0.25))(inp))

    check_parity(build, rand(2, 4, 3), formats=("keras",))


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("invert", [False, True])
@pytest.mark.parametrize("axis", [-1, 1, None, (1, 2)], ids=str)
def test_normalization_adapted(api: str, invert: bool, axis) -> None:
    data = rand(20, 3, 4, seed=5, low=-3, high=7)
    if axis is not None:
        data[:, :, 0] = 0.0  # a zero-variance feature takes the epsilon floor

    def build(K):
        inp = K.Input((3, 4))
        layer = K.layers.Normalization(axis=axis, invert=invert)
        layer.adapt(data)
        return K.Model(inp, layer(inp))

    check_parity(build, rand(2, 3, 4), api=api, randomize=False)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(
    "stats", [(2.0, 4.0), ([1.0, 2.0, 3.0, 4.0], [1.0, 0.5, 2.0, 0.0])], ids=["scalar", "vector"])
@pytest.mark.parametrize("invert", [False, True])
def test_normalization_from_config(api: str, stats: tuple, invert: bool) -> None:
    mean, variance = stats

    def build(K):
        inp = K.Input((3, 4))
        return K.Model(inp, K.layers.Normalization(mean=mean, variance=variance, invert=invert)(inp))

    check_parity(build, rand(2, 3, 4), api=api)


def test_normalization_from_config_two_axes_keras3() -> None:
    def build(K):
        inp = K.Input((3, 4))
        layer = K.layers.Normalization(axis=(1, 2), mean=[1.0, 2.0, 3.0, 4.0],
                                       variance=[1.0, 4.0, 9.0, 16.0])
        return K.Model(inp, layer(inp))

    check_parity(build, rand(2, 3, 4))


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("size", [(4, 6), (5, 5), (6, 8), (7, 3), (8, 8)], ids=str)
def test_center_crop(api: str, size: tuple) -> None:
    def build(K):
        inp = K.Input((6, 7, 2))
        return K.Model(inp, K.layers.CenterCrop(*size)(inp))

    check_parity(build, rand(2, 6, 7, 2), api=api)


def test_center_crop_channels_first_keras3() -> None:
    def build(K):
        inp = K.Input((2, 6, 7))
        return K.Model(inp, K.layers.CenterCrop(4, 9, data_format="channels_first")(inp))

    check_parity(build, rand(2, 2, 6, 7))


RESIZE_SIZES = [(3, 4), (8, 11), (12, 2)]  # down, up, mixed


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest", "bicubic"])
@pytest.mark.parametrize("crop", [False, True])
@pytest.mark.parametrize("size", RESIZE_SIZES, ids=str)
def test_resizing(api: str, interpolation: str, crop: bool, size: tuple) -> None:
    def build(K):
        inp = K.Input((6, 7, 2))
        layer = K.layers.Resizing(*size, interpolation=interpolation, crop_to_aspect_ratio=crop)
        return K.Model(inp, layer(inp))

    check_parity(build, rand(2, 6, 7, 2), api=api)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("size", [(3, 9), (9, 3), (6, 7)], ids=str)
def test_resizing_pad_to_aspect_ratio_keras3(interpolation: str, size: tuple) -> None:
    def build(K):
        inp = K.Input((6, 7, 2))
        layer = K.layers.Resizing(*size, interpolation=interpolation, pad_to_aspect_ratio=True,
                                  fill_value=0.5)
        return K.Model(inp, layer(inp))

    check_parity(build, rand(2, 6, 7, 2))


def test_resizing_channels_first_keras3() -> None:
    def build(K):
        inp = K.Input((2, 6, 7))
        layer = K.layers.Resizing(4, 9, data_format="channels_first", crop_to_aspect_ratio=True)
        return K.Model(inp, layer(inp))

    check_parity(build, rand(2, 2, 6, 7))


@pytest.mark.parametrize("api", APIS)
def test_random_crop_at_inference(api: str) -> None:
    def build(K):
        inp = K.Input((6, 7, 2))
        return K.Model(inp, K.layers.RandomCrop(4, 5)(inp))

    check_parity(build, rand(2, 6, 7, 2), api=api)


def test_resizing_unsupported_interpolation_is_named(tmp_path) -> None:
    # every Keras 3 interpolation runs; tf_keras also offers gaussian/mitchellcubic/area
    K = keras_module("tf_keras")
    inp = K.Input((6, 7, 2))
    model = K.Model(inp, K.layers.Resizing(3, 3, interpolation="gaussian", name="shrink")(inp))
    path = tmp_path / "m.h5"
    model.save(path)
    with pytest.raises(UnsupportedLayer, match="shrink.*interpolation='gaussian'.*bilinear"):
        tfless.load(path)


@pytest.mark.parametrize("api,interpolation,antialias", [
    (api, method, False) for api in APIS for method in ("lanczos3", "lanczos5")] + [
    ("keras3", method, True) for method in ("bilinear", "bicubic", "lanczos3", "lanczos5")])
def test_resizing_scale_and_translate(api: str, interpolation: str, antialias: bool) -> None:
    for size in RESIZE_SIZES:
        def build(K, size=size):
            inp = K.Input((6, 7, 2))
            extra = {"antialias": True} if antialias else {}  # tf_keras has no such option
            layer = K.layers.Resizing(*size, interpolation=interpolation, **extra)
            return K.Model(inp, layer(inp))

        check_parity(build, rand(2, 6, 7, 2), api=api, formats=("h5",))


@pytest.mark.parametrize("api", APIS)
def test_image_model_end_to_end(api: str) -> None:
    def build(K):
        inp = K.Input((10, 12, 3))
        x = K.layers.Resizing(8, 8, crop_to_aspect_ratio=True)(inp)
        x = K.layers.Rescaling(1 / 127.5, offset=-1)(x)
        x = K.layers.CenterCrop(6, 6)(x)
        x = K.layers.BatchNormalization()(x)
        x = K.layers.Flatten()(x)
        return K.Model(inp, K.layers.Dense(3)(x))

    check_parity(build, rand(2, 10, 12, 3, low=0, high=255), api=api)


@pytest.mark.parametrize("api", APIS)
def test_masks_through_rescaling_and_normalization(api: str) -> None:
    """Keras 3 passes masks through both layers; tf_keras's versions drop them."""

    def build(K):
        inp = K.Input((5,), dtype="int32")
        emb = K.layers.Embedding(10, 4, mask_zero=True)(inp)
        x = K.layers.Rescaling(2.0, offset=1.0)(emb)
        x = K.layers.Normalization(mean=0.5, variance=2.0)(x)
        if api == "keras3":
            return K.Model(inp, K.layers.Multiply()([x, emb]))
        return K.Model(inp, K.layers.GlobalAveragePooling1D()(x))

    ids = np.array([[1, 2, 0, 0, 3], [4, 0, 5, 6, 0]], dtype="int32")
    check_parity(build, ids, api=api)
