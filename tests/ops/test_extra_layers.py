"""Parity of the layers outside the main families: ReversibleEmbedding and AutoContrast
(Keras 3), and the tf_keras-only layers Keras 3 dropped."""

from __future__ import annotations

import numpy as np
import pytest

from tests.parity import check_parity, rand


@pytest.mark.parametrize("kwargs", [{}, {"tie_weights": False}, {"logit_soft_cap": 2.0},
                                    {"mask_zero": True}], ids=str)
def test_reversible_embedding_keras3(kwargs: dict) -> None:
    def build(K):
        ids = K.Input((5,), dtype="int32")
        layer = K.layers.ReversibleEmbedding(11, 4, **kwargs)
        hidden = layer(ids)
        pooled = K.layers.GlobalAveragePooling1D()(hidden)
        return K.Model(ids, [hidden, layer(pooled, reverse=True)])

    check_parity(build, np.array([[1, 4, 0, 7, 10], [3, 0, 0, 2, 9]], np.int32))


@pytest.mark.parametrize("value_range", [(0, 255), (0, 1), (-1, 1)], ids=str)
def test_auto_contrast_keras3(value_range: tuple) -> None:
    low, high = value_range
    x = rand(2, 5, 4, 3, seed=2, low=low, high=high) * 0.5

    def build(K):
        inp = K.Input((5, 4, 3))
        return K.Model(inp, K.layers.AutoContrast(value_range=value_range)(inp))

    check_parity(build, x, randomize=False)


def test_sync_batch_normalization_tf_keras() -> None:
    def build(K):
        inp = K.Input((4, 3))
        return K.Model(inp, K.layers.experimental.SyncBatchNormalization()(inp))

    check_parity(build, rand(2, 4, 3), api="tf_keras")


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_locally_connected_1d_tf_keras(data_format: str) -> None:
    def build(K):
        inp = K.Input((7, 3) if data_format == "channels_last" else (3, 7))
        layer = K.layers.LocallyConnected1D(4, 3, strides=2, data_format=data_format,
                                            activation="tanh")
        return K.Model(inp, layer(inp))

    check_parity(build, rand(2, 7, 3) if data_format == "channels_last" else rand(2, 3, 7),
                 api="tf_keras")


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_locally_connected_2d_tf_keras(data_format: str) -> None:
    shape = (5, 6, 2) if data_format == "channels_last" else (2, 5, 6)

    def build(K):
        inp = K.Input(shape)
        layer = K.layers.LocallyConnected2D(3, (2, 3), strides=(1, 2), data_format=data_format)
        return K.Model(inp, layer(inp))

    check_parity(build, rand(2, *shape), api="tf_keras")


def test_random_fourier_features_tf_keras() -> None:
    def build(K):
        inp = K.Input((5,))
        layer = K.layers.experimental.RandomFourierFeatures(8, scale=3.0)
        return K.Model(inp, layer(inp))

    check_parity(build, rand(3, 5), api="tf_keras", randomize=False)


def test_max_num_bounding_boxes_passes_images_keras3() -> None:
    def build(K):
        inp = K.Input((5, 4, 3))
        hidden = K.layers.Rescaling(2.0)(inp)
        return K.Model(inp, K.layers.MaxNumBoundingBoxes(3)(hidden))

    check_parity(build, rand(2, 5, 4, 3), randomize=False)
