"""Parity of pooling layers (windowed, global, masked global average) with Keras 3 and tf_keras."""

from __future__ import annotations

import numpy as np
import pytest

import tfless
from tests.ops.test_convolutional import APIS, FORMATS, branches, input_shape, per_axis
from tests.parity import assert_close, check_parity, keras_module, keras_predict, rand


def pool_options(rank: int) -> list[dict]:
    return [
        dict(pool_size=2),
        dict(pool_size=3, strides=2),
        dict(pool_size=per_axis((3, 2, 2), rank), strides=per_axis((1, 2, 3), rank)),
        dict(pool_size=2, strides=1),
        dict(pool_size=per_axis((4, 1, 3), rank), strides=3),
    ]


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("kind", ["Max", "Average"])
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_pooling_grid(api: str, rank: int, kind: str, padding: str, data_format: str) -> None:
    def build(K):
        cls = getattr(K.layers, f"{kind}Pooling{rank}D")
        return branches(K, input_shape(rank, 3, data_format), [
            cls(padding=padding, data_format=data_format, **opts) for opts in pool_options(rank)
        ])

    # Shifted so that 'same' max pooling sees windows of only negative values next to the
    # padding: a zero-padded implementation would return 0 there.
    x = rand(2, *input_shape(rank, 3, data_format)) - 0.6
    check_parity(build, x, api=api, label=f"{kind}Pooling{rank}D {padding} {data_format}")


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_global_pooling(api: str, rank: int, data_format: str) -> None:
    def build(K):
        L = K.layers
        layers = []
        for kind in ("Max", "Average"):
            cls = getattr(L, f"Global{kind}Pooling{rank}D")
            layers += [cls(data_format=data_format), cls(data_format=data_format, keepdims=True)]
        return branches(K, input_shape(rank, 3, data_format), layers)

    check_parity(build, rand(2, *input_shape(rank, 3, data_format)), api=api,
                 label=f"GlobalPooling{rank}D {data_format}")


def padded_ids(seed: int = 0) -> np.ndarray:
    """Token ids with trailing and leading zero padding (every row keeps some tokens)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 20, (4, 7)).astype("int32")
    ids[0, 4:] = 0
    ids[1, :2] = 0
    ids[2, 1::2] = 0
    return ids


@pytest.mark.parametrize("api", APIS)
def test_masked_global_average_pooling1d(api: str) -> None:
    """Embedding(mask_zero) -> GlobalAveragePooling1D averages over unmasked steps only;
    GlobalMaxPooling1D ignores the mask, and layers without mask support (Conv1D,
    ZeroPadding1D, Cropping1D, UpSampling1D, MaxPooling1D) drop it, exactly as in Keras."""

    def build(K):
        L = K.layers
        inp = K.Input((7,), dtype="int32")
        emb = L.Embedding(20, 4, mask_zero=True)(inp)
        return K.Model(inp, [
            L.GlobalAveragePooling1D()(emb),
            L.GlobalAveragePooling1D(keepdims=True)(emb),
            L.GlobalMaxPooling1D()(emb),
            L.GlobalAveragePooling1D()(L.Conv1D(3, 2, padding="same")(emb)),
            L.GlobalAveragePooling1D()(L.ZeroPadding1D(1)(emb)),
            L.GlobalAveragePooling1D()(L.Cropping1D((1, 0))(emb)),
            L.GlobalAveragePooling1D()(L.UpSampling1D(2)(emb)),
            L.GlobalAveragePooling1D()(L.MaxPooling1D(2)(emb)),
            L.Dense(2)(L.GlobalAveragePooling1D()(emb)),
        ])

    check_parity(build, padded_ids(), api=api)


@pytest.mark.parametrize("api", APIS)
def test_fully_masked_row_gives_nan_like_keras(api: str, tmp_path) -> None:
    """Keras divides by the number of unmasked steps, so a row of padding only gives NaN."""
    K = keras_module(api)
    inp = K.Input((5,), dtype="int32")
    model = K.Model(inp, K.layers.GlobalAveragePooling1D()(K.layers.Embedding(9, 3, mask_zero=True)(inp)))
    ids = np.array([[1, 2, 0, 0, 0], [0, 0, 0, 0, 0]], dtype="int32")
    want = keras_predict(model, ids)[0]
    model.save(tmp_path / "model.h5")
    with np.errstate(invalid="ignore"):
        got = tfless.load(tmp_path / "model.h5").predict(ids)
    assert np.isnan(want[1]).all() and np.isnan(got[1]).all()
    assert_close(got[:1], [want[:1]], f"fully masked row [{api}]")


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("kind", ["Average", "Max"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_adaptive_pooling_keras3(rank: int, kind: str, data_format: str) -> None:
    # sizes that give windows of two lengths, exact division and output == input
    spatial = {1: (7,), 2: (7, 6), 3: (5, 4, 3)}[rank]
    out = {1: (3,), 2: (3, 6), 3: (2, 4, 2)}[rank]
    shape = (*spatial, 2) if data_format == "channels_last" else (2, *spatial)

    def build(K):
        inp = K.Input(shape)
        layer = getattr(K.layers, f"Adaptive{kind}Pooling{rank}D")(out, data_format=data_format)
        return K.Model(inp, layer(inp))

    check_parity(build, rand(2, *shape), api="keras3")


@pytest.mark.parametrize("shape,pool", [((2, 9, 7, 3), (3, 3)), ((1, 8, 8, 4), (2, 2)),
                                        ((3, 5, 6, 2), (1, 2)), ((2, 7, 3), (2,)),
                                        ((1, 4, 6, 8, 2), (2, 3, 2))])
def test_tiling_max_pool_matches_sliding_windows(shape, pool):
    """The tiling fast path (strides == pool size, no padding) against a plain window max,
    NaN included (Keras's max pooling propagates it)."""
    from numpy.lib.stride_tricks import sliding_window_view

    from tfless.ops.convolutional import Geometry
    from tfless.ops.pooling import pool_channels_last

    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    x.flat[5] = np.nan
    rank = len(pool)
    geo = Geometry("pool", pool, pool, (1,) * rank, "valid")
    got = pool_channels_last(x, geo, "max")
    windows = sliding_window_view(x, pool, axis=tuple(range(1, rank + 1)))
    windows = windows[(slice(None), *(slice(None, None, k) for k in pool))]
    want = windows.max(axis=tuple(range(-rank, 0)))
    np.testing.assert_array_equal(got, want)
    assert got.flags.c_contiguous
