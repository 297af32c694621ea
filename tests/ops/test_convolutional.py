"""Parity of convolution layers (regular, transposed, depthwise, separable) with Keras 3 and tf_keras.

Each test builds one model whose outputs are several branches over the same input, one
per option combination, so an option grid costs one Keras round trip per parameter set.
TensorFlow 2.21 runs every channels_first configuration tested here on CPU, but Keras 3's
predict returns wrong numbers for some of them: dilated channels_first 2D convolutions on
small inputs, dilated DepthwiseConv1D with depth_multiplier > 1, and channels_first 3D
convolutions, which Keras 3 always compiles with XLA (e.g. 1x1x1 kernels, or groups with
filters == input channels, come out wrong). Eager `tf.nn.convolution` and tf_keras both
agree with the channels_last result, so those branches are compared with the
channels_last model holding the same weights, on transposed inputs
(`check_channels_first_via_last`). Transposed convolutions are all compared directly.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest

import tfless
from tests.parity import (
    FORMATS as SAVE_FORMATS,
)
from tests.parity import (
    assert_close,
    check_parity,
    keras_module,
    keras_predict,
    rand,
    randomize_weights,
    save_all,
)
from tfless.errors import ModelFormatError

APIS = ["keras3", "tf_keras"]
SPATIAL = {1: (9,), 2: (9, 8), 3: (7, 6, 5)}
FORMATS = ["channels_last", "channels_first"]


def input_shape(rank: int, channels: int, data_format: str) -> tuple[int, ...]:
    spatial = SPATIAL[rank]
    return (channels, *spatial) if data_format == "channels_first" else (*spatial, channels)


def branches(K, shape: tuple[int, ...], layers: list) -> object:
    inp = K.Input(shape)
    return K.Model(inp, [layer(inp) for layer in layers])


def check_channels_first_via_last(build, x: np.ndarray, api: str, label: str) -> None:
    """Parity of the channels_first model `build(K, "channels_first")` with Keras's
    channels_last model `build(K, "channels_last")` given the same weights, on transposed
    inputs and outputs (for configurations Keras cannot compute channels_first)."""
    K = keras_module(api)
    model = build(K, "channels_first")
    randomize_weights(model)
    twin = build(K, "channels_last")
    twin.set_weights(model.get_weights())
    want = [np.moveaxis(y, -1, 1) for y in keras_predict(twin, np.moveaxis(x, 1, -1))]
    with tempfile.TemporaryDirectory(prefix="tfless-parity-") as tmp:
        for fmt, (path, weights) in save_all(model, api, SAVE_FORMATS[api], Path(tmp)).items():
            got = tfless.load(path, weights=weights).predict(x)
            assert_close(got, want, f"{label} [{api} {fmt}, via channels_last]")


def keras3_miscomputes(opts: dict, rank: int) -> bool:
    """Channels_first configurations Keras 3 computes wrongly on CPU (see module docstring)."""
    rate = opts.get("dilation_rate", 1)
    dilated = max(rate if isinstance(rate, tuple) else (rate,)) > 1
    return dilated or rank == 3


def run_grid(api: str, layer: str, rank: int, channels: int, data_format: str,
             options: list[dict], miscomputed=keras3_miscomputes, **common) -> None:
    """One multi-branch model per option list: `getattr(K.layers, layer)(**common, **opts)`
    for each `opts`, compared with Keras; with Keras 3 channels_first, the branches Keras 3
    miscomputes are compared with their channels_last twin instead."""
    via_last = [o for o in options if api == "keras3" and data_format == "channels_first"
                and miscomputed(o, rank)]
    direct = [o for o in options if o not in via_last]
    label = f"{layer} {common} {data_format}"

    def build(K, fmt=data_format, opts=direct):
        cls = getattr(K.layers, layer)
        return branches(K, input_shape(rank, channels, fmt),
                        [cls(data_format=fmt, **common, **o) for o in opts])

    x = rand(2, *input_shape(rank, channels, data_format))
    if direct:
        check_parity(build, x, api=api, label=label)
    if via_last:
        check_channels_first_via_last(lambda K, fmt: build(K, fmt, via_last), x, api, label)


def per_axis(values: tuple[int, ...], rank: int) -> tuple[int, ...]:
    return values[:rank]


def conv_options(rank: int) -> list[dict]:
    """Strides x dilation x groups x use_bias x activation combinations (Keras forbids
    strides > 1 together with dilation > 1)."""
    return [
        dict(filters=4, kernel_size=3),
        dict(filters=6, kernel_size=per_axis((3, 2, 2), rank), strides=2, use_bias=False,
             activation="relu"),
        dict(filters=4, kernel_size=3, dilation_rate=2),
        dict(filters=3, kernel_size=2, dilation_rate=per_axis((2, 1, 3), rank), activation="tanh"),
        dict(filters=4, kernel_size=2, groups=2),
        dict(filters=8, kernel_size=3, groups=4, strides=per_axis((2, 1, 3), rank), use_bias=False),
        dict(filters=6, kernel_size=2, groups=2, dilation_rate=2),
        dict(filters=5, kernel_size=1),
        dict(filters=5, kernel_size=1, strides=2),
        dict(filters=2, kernel_size=per_axis((4, 3, 1), rank), strides=3),
    ]


CONV_GRID = [(rank, padding) for rank in (1, 2, 3) for padding in ("valid", "same")] + [(1, "causal")]


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("rank,padding", CONV_GRID)
def test_conv_grid(api: str, rank: int, padding: str, data_format: str) -> None:
    run_grid(api, f"Conv{rank}D", rank, 4, data_format, conv_options(rank), padding=padding)


def transpose_options(rank: int, api: str) -> list[dict]:
    options = [
        dict(filters=3, kernel_size=3),
        dict(filters=3, kernel_size=3, strides=2, activation="relu"),
        dict(filters=2, kernel_size=4, strides=2, output_padding=1, use_bias=False),
        dict(filters=2, kernel_size=3, strides=2, output_padding=0),
        dict(filters=2, kernel_size=3, strides=3, output_padding=2),
        dict(filters=2, kernel_size=2, strides=3),
        dict(filters=3, kernel_size=per_axis((3, 2, 2), rank), strides=per_axis((2, 1, 2), rank)),
    ]
    # tf_keras's Conv3DTranspose neither supports nor saves dilation_rate, and its
    # Conv2DTranspose needs equal rates on both axes.
    if not (api == "tf_keras" and rank == 3):
        uneven = per_axis((3, 1, 2), rank) if api == "keras3" else 3
        options += [
            dict(filters=3, kernel_size=3, dilation_rate=2),
            dict(filters=2, kernel_size=2, dilation_rate=uneven, use_bias=False),
        ]
    return options


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_conv_transpose_grid(api: str, rank: int, padding: str, data_format: str) -> None:
    run_grid(api, f"Conv{rank}DTranspose", rank, 3, data_format, transpose_options(rank, api),
             miscomputed=lambda opts, rank: False, padding=padding)


def depthwise_options(api: str, rank: int) -> list[dict]:
    options = [
        dict(kernel_size=3),
        dict(kernel_size=per_axis((3, 2), rank), depth_multiplier=2, strides=2, use_bias=False),
        dict(kernel_size=2, dilation_rate=2, activation="relu"),
        dict(kernel_size=3, depth_multiplier=3, dilation_rate=per_axis((2, 1), rank)),
        dict(kernel_size=1, depth_multiplier=2),
    ]
    if api == "keras3":  # Keras 3 (not tf_keras) allows strides > 1 with dilation > 1 here
        options.append(dict(kernel_size=2, strides=2, dilation_rate=2, depth_multiplier=2))
    return options


DEPTHWISE_GRID = [(rank, padding) for rank in (1, 2) for padding in ("valid", "same")]


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("rank,padding", DEPTHWISE_GRID)
def test_depthwise_grid(api: str, rank: int, padding: str, data_format: str) -> None:
    run_grid(api, f"DepthwiseConv{rank}D", rank, 3, data_format, depthwise_options(api, rank),
             padding=padding)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("rank,padding", DEPTHWISE_GRID)
def test_separable_grid(api: str, rank: int, padding: str, data_format: str) -> None:
    run_grid(api, f"SeparableConv{rank}D", rank, 3, data_format, depthwise_options(api, rank),
             padding=padding, filters=4)


def test_causal_separable_tf_keras() -> None:
    """tf_keras (not Keras 3) allows causal padding in SeparableConv1D."""

    def build(K):
        return branches(K, (9, 3), [
            K.layers.SeparableConv1D(4, 3, padding="causal", depth_multiplier=2),
            K.layers.SeparableConv1D(2, 2, padding="causal", dilation_rate=3),
            K.layers.SeparableConv1D(4, 3, padding="causal", strides=2),
        ])

    check_parity(build, rand(2, 9, 3), api="tf_keras")


@pytest.mark.parametrize("api", APIS)
def test_conv_stack_with_pooling(api: str) -> None:
    """A small CNN: the ops feeding each other, including non-contiguous intermediate arrays."""

    def build(K):
        L = K.layers
        inp = K.Input((16, 16, 3))
        x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
        x = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
        x = L.Conv2D(6, 1)(x)
        x = L.SeparableConv2D(5, 3, padding="same", data_format="channels_last")(x)
        x = L.MaxPooling2D(2)(x)
        x = L.Conv2DTranspose(4, 3, strides=2, padding="same")(x)
        x = L.Flatten()(x)
        return K.Model(inp, L.Dense(3, activation="softmax")(x))

    check_parity(build, rand(3, 16, 16, 3), api=api)


def test_conv_on_extra_batch_axes_tf_keras() -> None:
    """tf_keras convolutions accept extra leading batch axes."""

    def build(K):
        inp = K.Input((2, 8, 8, 3))
        return K.Model(inp, K.layers.Conv2D(4, 3, padding="same")(inp))

    check_parity(build, rand(2, 2, 8, 8, 3), api="tf_keras", formats=("h5",))


def test_large_input_runs_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The im2col buffer and the depthwise accumulator are split over batch items and output
    rows when they exceed their budgets, large 1x1 outputs run their GEMM in row blocks,
    and each block gets its bias and activation (in place, or a new array for tanh)."""
    from tfless.ops import convolutional

    def build(K):
        L = K.layers
        inp = K.Input((12, 10, 3))
        return K.Model(inp, [L.Conv2D(4, 3, padding="same")(inp),
                             L.Conv2D(5, 3, activation="relu6")(inp),
                             L.Conv2D(3, 3, activation="tanh")(inp),
                             L.Conv2D(7, 1, activation="relu")(inp),
                             L.Conv2D(2, 1, strides=2, activation="elu")(inp),
                             L.Conv2D(6, 3, groups=3, strides=2)(inp),
                             L.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(inp),
                             L.DepthwiseConv2D(2, strides=(2, 3), activation="tanh")(inp),
                             L.DepthwiseConv2D(3, dilation_rate=2, padding="same")(inp),
                             L.SeparableConv2D(5, 3, strides=2, padding="same")(inp)])

    # Less than one item: splits output rows (the small-input gather off, to reach it).
    monkeypatch.setattr(convolutional, "GATHER_MAX", 0)
    monkeypatch.setattr(convolutional, "IM2COL_BUDGET", 400)
    monkeypatch.setattr(convolutional, "DEPTHWISE_BLOCK", 50)
    monkeypatch.setattr(convolutional, "GEMM_BLOCKS_FROM", 1)
    monkeypatch.setattr(convolutional, "EPILOGUE_BLOCK", 7 * 9)  # 9 rows of 7 channels
    check_parity(build, rand(3, 12, 10, 3), formats=("keras",))
    # Two items per chunk.
    monkeypatch.setattr(convolutional, "IM2COL_BUDGET", 12 * 10 * 27 * 2)
    monkeypatch.setattr(convolutional, "DEPTHWISE_BLOCK", 12 * 10 * 6 * 2)
    check_parity(build, rand(3, 12, 10, 3), formats=("keras",))


# ----- Keras 1 kernel layouts ----------------------------------------------------------------
def write_keras1_h5(path: Path, layers: list[dict], weights: dict[str, list[np.ndarray]]) -> None:
    """A Keras 1.2-style HDF5 model: Sequential config list, one weight group per layer."""
    import json

    config = {"class_name": "Sequential", "config": layers}
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"1.2.2"
        f.attrs["model_config"] = json.dumps(config).encode()
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = [layer["config"]["name"].encode() for layer in layers]
        for layer in layers:
            name = layer["config"]["name"]
            lg = g.create_group(name)
            arrays = weights.get(name, [])
            names = [f"{name}_W".encode(), f"{name}_b".encode()][: len(arrays)]
            lg.attrs["weight_names"] = names
            for n, a in zip(names, arrays):
                lg.create_dataset(n.decode(), data=a)


def test_keras1_theano_ordered_kernels(tmp_path: Path) -> None:
    """Keras 1 'th' kernels (filters, in, rows, cols) and (k, 1, in, filters) 1D kernels are
    rearranged like tf_keras's loader does; compared with tf_keras on the rearranged weights."""
    K = keras_module("tf_keras")
    rng = np.random.default_rng(0)
    w2 = rng.normal(0, 0.5, (5, 3, 3, 2)).astype(np.float32)  # (filters, in, rows, cols)
    b2 = rng.normal(0, 0.5, (5,)).astype(np.float32)
    layers = [{
        "class_name": "Convolution2D",
        "config": {"name": "conv", "nb_filter": 5, "nb_row": 3, "nb_col": 2, "border_mode": "same",
                   "subsample": [2, 1], "dim_ordering": "th", "activation": "relu", "bias": True,
                   "batch_input_shape": [None, 3, 7, 6], "input_dtype": "float32"},
    }, {"class_name": "MaxPooling2D",
        "config": {"name": "pool", "pool_size": [2, 2], "strides": None, "border_mode": "valid",
                   "dim_ordering": "th"}},
        {"class_name": "Flatten", "config": {"name": "flat"}}]
    path = tmp_path / "keras1_th.h5"
    write_keras1_h5(path, layers, {"conv": [w2, b2]})
    x = rand(2, 3, 7, 6)

    inp = K.Input((7, 6, 3))
    y = K.layers.Conv2D(5, (3, 2), strides=(2, 1), padding="same", activation="relu")(inp)
    y = K.layers.MaxPooling2D(2)(y)
    y = K.layers.Permute((3, 1, 2))(y)  # Keras 1 flattened channels-first maps as they were
    ref = K.Model(inp, K.layers.Flatten()(y))
    ref.set_weights([w2.transpose(2, 3, 1, 0), b2])
    want = ref.predict(np.moveaxis(x, 1, -1), verbose=0)
    assert_close(tfless.load(path).predict(x), [want], "Keras 1 th Convolution2D")

    w1 = rng.normal(0, 0.5, (3, 1, 4, 6)).astype(np.float32)  # (k, 1, in, filters)
    layers1 = [{"class_name": "Convolution1D",
                "config": {"name": "c1", "nb_filter": 6, "filter_length": 3, "border_mode": "valid",
                           "subsample_length": 1, "activation": "linear", "bias": False,
                           "batch_input_shape": [None, 8, 4]}}]
    path1 = tmp_path / "keras1_1d.h5"
    write_keras1_h5(path1, layers1, {"c1": [w1]})
    inp = K.Input((8, 4))
    ref1 = K.Model(inp, K.layers.Conv1D(6, 3, use_bias=False)(inp))
    ref1.set_weights([w1[:, 0]])
    x1 = rand(2, 8, 4)
    assert_close(tfless.load(path1).predict(x1), [ref1.predict(x1, verbose=0)], "Keras 1 Conv1D")


def test_kernel_shape_mismatch_is_a_clear_error(tmp_path: Path) -> None:
    layers = [{"class_name": "Convolution2D",
               "config": {"name": "conv", "nb_filter": 5, "nb_row": 3, "nb_col": 3,
                          "border_mode": "valid", "dim_ordering": "tf", "bias": False,
                          "batch_input_shape": [None, 7, 6, 3]}}]
    path = tmp_path / "bad.h5"
    write_keras1_h5(path, layers, {"conv": [np.zeros((5, 3, 3, 3), np.float32)]})
    with pytest.raises(ModelFormatError, match="'conv'.*kernel has shape"):
        tfless.load(path)



# ----- kernel internals: chunked im2col, row-wise depthwise, in-place epilogue --------------
def _direct_conv(x: np.ndarray, geo, kernel: np.ndarray) -> np.ndarray:
    """Float64 reference: one matmul per kernel tap over strided views."""
    from tfless.ops.convolutional import pad_spatial

    xp = pad_spatial(x.astype(np.float64), geo.pads(x.shape[1:-1]))
    out = geo.out_sizes(xp.shape[1:-1])
    y = np.zeros((x.shape[0], *out, kernel.shape[-1]))
    for tap in np.ndindex(*geo.kernel):
        y += xp[(slice(None), *geo.tap_slices(tap, out))] @ kernel[tap].astype(np.float64)
    return y


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("budget", [1 << 23, 40])
@pytest.mark.parametrize("gather", [True, False])
def test_conv_kernel_matches_direct_sum_in_any_chunking(rank: int, budget: int, gather: bool,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The strided-view copy in any chunking, and the small-input gather, against a direct sum."""
    from tfless.ops import convolutional as conv

    monkeypatch.setattr(conv, "IM2COL_BUDGET", budget)
    monkeypatch.setattr(conv, "GATHER_MAX", 1 << 18 if gather else 0)
    rng = np.random.default_rng(rank)
    x = rng.random((3, *SPATIAL[rank], 5), dtype=np.float32)
    for k, s, d, pad in [(3, 1, 1, "same"), (3, 2, 1, "valid"), (2, 1, 2, "same"), (1, 2, 1, "valid")]:
        geo = conv.Geometry("t", (k,) * rank, (s,) * rank, (d,) * rank, pad)
        kernel = rng.normal(size=(*geo.kernel, 5, 4)).astype(np.float32)
        got = conv.conv_channels_last(x, geo, conv.conv_matrix(kernel, 1), 1)
        np.testing.assert_allclose(got, _direct_conv(x, geo, kernel), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rank", [1, 2])
def test_depthwise_kernel_matches_direct_sum(rank: int) -> None:
    from tfless.ops import convolutional as conv

    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, *(SPATIAL[rank] if rank == 1 else (13, 11)), 3)).astype(np.float32)
    for k, s, d, mult, pad in [(3, 1, 1, 1, "same"), (3, 2, 1, 2, "same"), (2, 1, 2, 1, "valid"),
                               (5, 2, 1, 1, "valid")]:
        geo = conv.Geometry("t", (k,) * rank, (s,) * rank, (d,) * rank, pad)
        kernel = rng.normal(size=(*geo.kernel, 3, mult)).astype(np.float32)
        bias = rng.normal(size=3 * mult).astype(np.float32)
        act = conv.INPLACE_ACTIVATIONS["swish"]
        got = conv.depthwise_channels_last(x, geo, kernel, bias, act)
        # depthwise = a regular convolution whose kernel is block-diagonal over channels
        full = np.zeros((*geo.kernel, 3, 3 * mult), np.float32)
        for c in range(3):
            full[..., c, c * mult:(c + 1) * mult] = kernel[..., c, :]
        z = _direct_conv(x, geo, full) + bias
        np.testing.assert_allclose(got, z / (1 + np.exp(-z)), rtol=1e-5, atol=1e-5)


INPLACE = ["linear", "relu", "relu6", "sigmoid", "swish", "silu", "tanh"]


@pytest.mark.parametrize("name", INPLACE)
def test_inplace_epilogue_activations_match_float64(name: str) -> None:
    # the in-place forms (exp- or tanh-based sigmoid/swish, clip-based relu) over the whole
    # float32 range a conv output takes, including values where exp(-x) overflows, NaN kept
    from tfless.ops import convolutional as conv

    z = np.concatenate([np.linspace(-120, 120, 20001), [-1e30, 1e30, 0.0]]).astype(np.float32)
    z64 = z.astype(np.float64)
    with np.errstate(over="ignore"):
        sig = 1 / (1 + np.exp(-z64))
    want = {"linear": z64, "relu": np.maximum(z64, 0), "relu6": np.clip(z64, 0, 6),
            "sigmoid": sig, "swish": z64 * sig, "silu": z64 * sig, "tanh": np.tanh(z64)}[name]
    bias = np.zeros(z.size, np.float32)
    with np.errstate(all="raise"):
        got = conv.epilogue(z.copy().reshape(1, -1), bias, conv.INPLACE_ACTIVATIONS[name])[0]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert sorted(conv.INPLACE_ACTIVATIONS) == sorted(INPLACE)
    assert np.isnan(conv.INPLACE_ACTIVATIONS[name](np.array([np.nan], np.float32))).all()


@pytest.mark.parametrize("form", ["sigmoid_by_exp", "sigmoid_by_tanh", "swish_by_exp",
                                  "swish_by_tanh"])
def test_both_sigmoid_forms_match_float64(form: str) -> None:
    # whichever form the first call picks on this CPU, both agree with float64
    from tfless.ops import conv_epilogue as conv

    z = np.concatenate([np.linspace(-120, 120, 20001), [-1e30, 1e30, 0.0]]).astype(np.float32)
    z64 = z.astype(np.float64)
    with np.errstate(over="ignore"):
        sig = 1 / (1 + np.exp(-z64))
    want = z64 * sig if form.startswith("swish") else sig
    with np.errstate(all="raise"):
        got = getattr(conv, f"_{form}")(z.copy())
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert np.isnan(getattr(conv, f"_{form}")(np.array([np.nan], np.float32))).all()
