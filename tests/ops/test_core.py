"""Parity of core layers and activations with Keras 3 and tf_keras."""

from __future__ import annotations

import numpy as np
import pytest

from tests.parity import check_parity, rand

KERAS3_ACTIVATIONS = [
    "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "swish",
    "hard_sigmoid", "hard_silu", "hard_swish", "sigmoid", "tanh", "softmax", "log_softmax",
    "softplus", "softsign", "exponential", "linear", "mish",
]
# Keras 3 activations beyond the list, through the Activation layer on a 3D input
# (glu halves the last axis; sparsemax and softmax normalize over it)
MORE_KERAS3_ACTIVATIONS = [
    "glu", "sparse_sigmoid", "sparsemax", "squareplus", "sparse_plus", "hard_tanh",
    "tanh_shrink", "soft_shrink", "hard_shrink", "log_sigmoid",
]
KERAS2_ACTIVATIONS = [
    "relu", "elu", "selu", "gelu", "swish", "hard_sigmoid", "sigmoid", "tanh", "softmax",
    "softplus", "softsign", "exponential", "linear",
]


@pytest.mark.parametrize("activation", KERAS3_ACTIVATIONS)
def test_dense_activation_keras3(activation: str) -> None:
    def build(K):
        inp = K.Input((6,))
        return K.Model(inp, K.layers.Dense(5, activation=activation)(inp))

    check_parity(build, rand(4, 6), label=activation)


@pytest.mark.parametrize("activation", KERAS3_ACTIVATIONS + MORE_KERAS3_ACTIVATIONS)
def test_activation_layer_keras3(activation: str) -> None:
    def build(K):
        inp = K.Input((3, 6))
        return K.Model(inp, K.layers.Activation(activation)(inp))

    check_parity(build, rand(2, 3, 6) * 3, formats=("keras", "h5"), label=activation)


@pytest.mark.parametrize("activation", KERAS2_ACTIVATIONS)
def test_dense_activation_tf_keras(activation: str) -> None:
    def build(K):
        return K.Sequential([K.layers.Dense(5, activation=activation, input_shape=(6,))])

    check_parity(build, rand(4, 6), api="tf_keras", label=activation)


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
@pytest.mark.parametrize("use_bias", [True, False])
def test_dense_on_3d_input(api: str, use_bias: bool) -> None:
    def build(K):
        inp = K.Input((3, 4))
        return K.Model(inp, K.layers.Dense(2, use_bias=use_bias)(inp))

    check_parity(build, rand(2, 3, 4), api=api)


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
@pytest.mark.parametrize(
    "layer",
    [
        ("ReLU", {}), ("ReLU", {"max_value": 6.0}), ("ReLU", {"negative_slope": 0.1}),
        ("ReLU", {"threshold": 0.3, "negative_slope": 0.2, "max_value": 0.8}),
        ("LeakyReLU", {}), ("ELU", {"alpha": 0.7}), ("Softmax", {"axis": 1}),
        ("PReLU", {}), ("PReLU", {"shared_axes": [1]}),
    ],
    ids=lambda p: f"{p[0]}{p[1]}",
)
def test_activation_layers(api: str, layer: tuple) -> None:
    cls, kwargs = layer

    def build(K):
        inp = K.Input((3, 4))
        return K.Model(inp, getattr(K.layers, cls)(**kwargs)(inp))

    check_parity(build, rand(2, 3, 4) * 3, api=api)


def test_thresholded_relu_tf_keras() -> None:
    def build(K):
        inp = K.Input((5,))
        return K.Model(inp, K.layers.ThresholdedReLU(theta=0.2)(inp))

    check_parity(build, rand(3, 5), api="tf_keras")


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
def test_inference_noops(api: str) -> None:
    def build(K):
        inp = K.Input((4, 4, 3))
        x = K.layers.Dropout(0.5)(inp)
        x = K.layers.GaussianNoise(0.3)(x)
        x = K.layers.GaussianDropout(0.3)(x)
        x = K.layers.AlphaDropout(0.3)(x)
        x = K.layers.SpatialDropout2D(0.3)(x)
        x = K.layers.ActivityRegularization(0.1)(x)
        return K.Model(inp, K.layers.Dense(2)(x))

    check_parity(build, rand(2, 4, 4, 3), api=api)


def test_random_augmentation_is_identity_keras3() -> None:
    def build(K):
        inp = K.Input((8, 8, 3))
        x = K.layers.RandomFlip()(inp)
        x = K.layers.RandomRotation(0.2)(x)
        x = K.layers.RandomZoom(0.1)(x)
        x = K.layers.RandomContrast(0.2)(x)
        return K.Model(inp, K.layers.Dense(2)(x))

    check_parity(build, rand(2, 8, 8, 3, low=0, high=1))


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
def test_embedding(api: str) -> None:
    def build(K):
        inp = K.Input((7,), dtype="int32")
        return K.Model(inp, K.layers.Embedding(20, 4)(inp))

    ids = np.random.default_rng(0).integers(0, 20, (3, 7)).astype("int32")
    check_parity(build, ids, api=api)


def test_einsum_dense_keras3() -> None:
    def build(K):
        inp = K.Input((5, 6))
        x = K.layers.EinsumDense("abc,cde->abde", output_shape=(None, 3, 2), bias_axes="de",
                                 activation="relu")(inp)
        return K.Model(inp, x)

    check_parity(build, rand(2, 5, 6))


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
def test_shared_layer_and_multiple_io(api: str) -> None:
    def build(K):
        a = K.Input((4,), name="a")
        b = K.Input((4,), name="b")
        shared = K.layers.Dense(3, activation="tanh")
        return K.Model([a, b], [shared(a), shared(b)])

    check_parity(build, [rand(2, 4, seed=1), rand(2, 4, seed=2)], api=api)


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
def test_nested_model(api: str) -> None:
    def build(K):
        inner_in = K.Input((4,))
        inner = K.Model(inner_in, K.layers.Dense(3, activation="relu")(inner_in), name="inner")
        seq = K.Sequential([K.Input((4,)), inner, K.layers.Dense(2)], name="outer")
        x = K.Input((4,))
        y = seq(x)
        z = inner(x)
        return K.Model(x, [y, z])

    check_parity(build, rand(3, 4), api=api)


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
@pytest.mark.parametrize("tower_kind", ["functional", "sequential", "two_levels"])
def test_nested_model_called_twice(api: str, tower_kind: str) -> None:
    """A siamese network: one tower (a nested model) applied to two inputs. Each call's
    copy of the tower's layers must produce its own tensors, with shared weights."""
    def build(K):
        if tower_kind == "sequential":
            tower = K.Sequential([K.Input((5, 3)), K.layers.Dense(4, activation="tanh"),
                                  K.layers.GlobalMaxPooling1D()], name="tower")
        else:
            i = K.Input((5, 3))
            h = K.layers.Dense(4, activation="tanh")(i)
            if tower_kind == "two_levels":
                j = K.Input((5, 4))
                inner = K.Model(j, K.layers.Dense(4)(j), name="inner")
                h = inner(inner(h))
            tower = K.Model(i, K.layers.GlobalMaxPooling1D()(h), name="tower")
        a = K.Input((5, 3), name="a")
        b = K.Input((5, 3), name="b")
        ta, tb = tower(a), tower(b)
        return K.Model([a, b], [K.layers.subtract([ta, tb]), tb])

    check_parity(build, [rand(2, 5, 3, seed=1), rand(2, 5, 3, seed=2)], api=api)


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
def test_masking_layer_into_lstm(api: str) -> None:
    """Keras 3 saves the Masking layer's mask as NotEqual + Any op nodes; tf_keras
    propagates it implicitly. Both must skip the padded steps."""
    def build(K):
        x = K.Input((5, 3))
        return K.Model(x, K.layers.LSTM(4)(K.layers.Masking(0.0)(x)))

    x = rand(3, 5, 3)
    x[0, 3:] = 0.0
    x[1, :2] = 0.0
    check_parity(build, x, api=api)


def softmax_masks(shape: tuple, dtype: str) -> np.ndarray:
    """Random keep/drop mask with one fully masked row and one fully kept row."""
    keep = np.random.default_rng(5).random(shape) > 0.4
    keep[0, 0] = False
    keep[1, -1] = True
    return keep if dtype == "bool" else keep.astype(dtype)


SOFTMAX_MASK_CASES = [
    {"axis": -1, "mask_shape": (4, 5), "dtype": "float32"},
    {"axis": -1, "mask_shape": (1, 5), "dtype": "bool"},
    {"axis": [1, 2], "mask_shape": (4, 5), "dtype": "float32"},
    {"axis": [2], "mask_shape": (4, 5), "dtype": "bool"},
]


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
@pytest.mark.parametrize("case", SOFTMAX_MASK_CASES, ids=lambda c: f"{c['axis']}-{c['dtype']}-"
                         f"{'x'.join(map(str, c['mask_shape']))}")
def test_softmax_with_explicit_mask(api: str, case: dict) -> None:
    """Keras 3 replaces masked logits by -1e9 and zeroes masked outputs (a fully masked row
    is all zeros); tf_keras adds -1e9 * (1 - mask) and leaves such a row uniform."""
    def build(K):
        scores = K.Input((4, 5))
        mask = K.Input(case["mask_shape"], dtype=case["dtype"])
        return K.Model([scores, mask], K.layers.Softmax(axis=case["axis"])(scores, mask=mask))

    x = rand(2, 4, 5, seed=3) * 4
    m = softmax_masks((2, *case["mask_shape"]), case["dtype"])
    check_parity(build, [x, m], api=api)


def test_softmax_robust_masking_tf_keras() -> None:
    def build(K):
        scores = K.Input((4, 5))
        mask = K.Input((4, 5))
        return K.Model([scores, mask], K.layers.Softmax(robust_masking=True)(scores, mask=mask))

    m = softmax_masks((2, 4, 5), "float32") * 0.8
    check_parity(build, [rand(2, 4, 5, seed=3) * 4, m], api="tf_keras")


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
def test_softmax_over_masked_attention_scores(api: str) -> None:
    """Dot-product scores of an embedded, zero-padded sequence, masked by its padding."""
    def build(K):
        tokens = K.Input((6,), dtype="int32")
        keep = K.Input((1, 6))
        x = K.layers.Embedding(20, 4)(tokens)
        scores = K.layers.Dot(axes=2)([x, x])
        weights = K.layers.Softmax()(scores, mask=keep)
        return K.Model([tokens, keep], K.layers.Dot(axes=(2, 1))([weights, x]))

    ids = np.random.default_rng(0).integers(1, 20, (3, 6)).astype("int32")
    ids[0, 4:] = 0
    ids[2, :] = 0
    check_parity(build, [ids, (ids != 0).astype("float32")[:, None, :]], api=api)
