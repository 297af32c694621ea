"""Parity of reshaping layers with Keras 3 and tf_keras, and the real-world autoencoder (file 21)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tfless
from tests.ops.test_convolutional import APIS, FORMATS, branches
from tests.parity import assert_close, check_parity, rand


@pytest.mark.parametrize("api", APIS)
def test_flatten_reshape_permute_repeat(api: str) -> None:
    def build(K):
        L = K.layers
        inp = K.Input((3, 4, 2))
        flat = L.Flatten()(inp)
        return K.Model(inp, [
            flat,
            L.Flatten(data_format="channels_first")(inp),
            L.Reshape((4, -1))(inp),
            L.Reshape((24,))(inp),
            L.Permute((3, 1, 2))(inp),
            L.Permute((2, 1, 3))(inp),
            L.RepeatVector(3)(flat),
            L.Dense(2)(L.Flatten()(L.Permute((2, 3, 1))(inp))),
        ])

    check_parity(build, rand(2, 3, 4, 2), api=api)


@pytest.mark.parametrize("api", APIS)
def test_flatten_channels_first_rank3(api: str) -> None:
    def build(K):
        inp = K.Input((3, 5))
        return K.Model(inp, [K.layers.Flatten(data_format="channels_first")(inp)])

    check_parity(build, rand(2, 3, 5), api=api)


PADDINGS = {
    1: [1, (2, 0), (0, 3)],
    2: [1, (2, 1), ((1, 0), (0, 2)), ((3, 1), (2, 2))],
    3: [1, (1, 0, 2), ((1, 0), (0, 2), (2, 1))],
}
CROPPINGS = {
    1: [1, (2, 0), (0, 3)],
    2: [1, (2, 1), ((1, 0), (0, 2)), ((3, 1), (2, 2))],
    3: [1, (1, 0, 2), ((1, 0), (0, 2), (2, 1))],
}
SHAPES = {1: (9, 3), 2: (7, 8, 3), 3: (5, 6, 7, 2)}


def cf_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[-1], *shape[:-1])


# The 1D layers have no data_format.
LAYOUTS = [(1, "channels_last")] + [(rank, fmt) for rank in (2, 3) for fmt in FORMATS]


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("rank,data_format", LAYOUTS)
def test_padding_cropping_upsampling(api: str, rank: int, data_format: str) -> None:
    shape = SHAPES[rank] if data_format == "channels_last" else cf_shape(SHAPES[rank])
    fmt = {} if rank == 1 else {"data_format": data_format}

    def build(K):
        L = K.layers
        layers = [getattr(L, f"ZeroPadding{rank}D")(padding=p, **fmt) for p in PADDINGS[rank]]
        layers += [getattr(L, f"Cropping{rank}D")(cropping=c, **fmt) for c in CROPPINGS[rank]]
        up = getattr(L, f"UpSampling{rank}D")
        layers += [up(size=2, **fmt), up(size=(3, 1, 2)[:rank] if rank > 1 else 3, **fmt)]
        if rank == 2:
            layers += [up(size=(2, 3), interpolation="bilinear", **fmt),
                       up(size=4, interpolation="bilinear", **fmt),
                       up(size=(1, 5), interpolation="bilinear", **fmt)]
        return branches(K, shape, layers)

    check_parity(build, rand(2, *shape), api=api, label=f"rank {rank} {data_format}")


@pytest.mark.parametrize("api", APIS)
def test_bilinear_upsampling_of_large_values(api: str) -> None:
    """Half-pixel weights and lerps computed in float32 in TensorFlow's order: bit-exact."""

    def build(K):
        inp = K.Input((5, 6, 2))
        return K.Model(inp, [K.layers.UpSampling2D((3, 7), interpolation="bilinear")(inp)])

    check_parity(build, rand(2, 5, 6, 2, low=-1000, high=1000), api=api, atol=0.0, rtol=0.0)


def test_unsupported_interpolation_is_a_clear_error() -> None:
    from tfless.errors import UnsupportedLayer
    from tfless.registry import get_op

    with pytest.raises(UnsupportedLayer, match="'up'.*interpolation.*bicubic"):
        get_op("UpSampling2D").build({"name": "up", "size": [2, 2], "interpolation": "bicubic"}, {})


def test_keras1_padding_spellings() -> None:
    """Keras 1 ZeroPadding2D took (rows, cols), (top, bottom, left, right) or a dict."""
    from tfless.registry import get_op

    x = rand(1, 2, 3, 1)
    build = get_op("ZeroPadding2D").build
    four = build({"name": "p", "padding": [1, 0, 2, 3]}, {})(x)
    as_dict = build({"name": "p", "padding": {"top_pad": 1, "bottom_pad": 0, "left_pad": 2,
                                              "right_pad": 3}}, {})(x)
    want = np.pad(x, [(0, 0), (1, 0), (2, 3), (0, 0)])
    np.testing.assert_array_equal(four, want)
    np.testing.assert_array_equal(as_dict, want)
    up = get_op("UpSampling1D").build({"name": "u", "length": 3}, {})(rand(1, 2, 1))
    assert up.shape == (1, 6, 1)


def test_realworld_conv_autoencoder(realworld_dir: Path) -> None:
    """File 21: a Keras 2.2.4 Conv2D/MaxPooling2D/UpSampling2D autoencoder, against its
    reference outputs computed by tf_keras."""
    path = next((realworld_dir / "files").glob("21_*.hdf5"))
    ref = np.load(realworld_dir / "ref" / "21.npz")
    inputs = [ref[k] for k in sorted(k for k in ref.files if k.startswith("x"))]
    want = [ref[k] for k in sorted(k for k in ref.files if k.startswith("y"))]
    model = tfless.load(path)
    got = model.predict(inputs[0] if len(inputs) == 1 else inputs)
    assert_close(got, want, "realworld 21")
