"""Parity of recurrent layers (SimpleRNN/LSTM/GRU, RNN cells, Bidirectional, TimeDistributed,
ConvLSTM, CuDNN and Keras 1 weight layouts) with Keras 3 and tf_keras."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

import tfless
from tests.parity import (
    FORMATS,
    assert_close,
    check_parity,
    keras_module,
    keras_predict,
    rand,
    randomize_weights,
    save_all,
)

APIS = ["keras3", "tf_keras"]
LAYERS = ["SimpleRNN", "LSTM", "GRU"]


def padded_batch(batch: int = 4, steps: int = 6, features: int = 3) -> np.ndarray:
    """Sequences with post-padding, pre-padding, a hole, no padding and all padding."""
    x = rand(batch, steps, features, seed=3)
    x[0, 4:] = 0.0
    x[1, :2] = 0.0
    if batch > 2:
        x[2, 2] = 0.0
    if batch > 3:
        x[3, :] = 0.0
    return x


def masked_input(K, api: str, shape: tuple):
    """(input, masked tensor). Keras 3 records a functional model's mask computation as
    `NotEqual`/`Any` op nodes, tf_keras propagates it implicitly; both are masked here."""
    inp = K.Input(shape)
    return inp, K.layers.Masking(0.0)(inp)


def outputs(y):
    """Keras 3 layers return (nested) tuples for several outputs; models take flat lists."""
    if not isinstance(y, (list, tuple)):
        return y
    flat = []
    for item in y:
        flat.extend(outputs(item) if isinstance(item, (list, tuple)) else [item])
    return flat


OPTION_GRID = [
    {"return_sequences": False},
    {"return_sequences": True},
    {"return_sequences": True, "go_backwards": True},
    {"return_state": True},
    {"return_sequences": True, "return_state": True, "go_backwards": True},
]


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("options", OPTION_GRID, ids=lambda o: "-".join(o))
def test_rnn_options_with_masking(api: str, cls: str, options: dict) -> None:
    def build(K):
        layer = getattr(K.layers, cls)(5, **options)
        if api == "keras3" and not options.get("return_state"):
            return K.Sequential([K.Input((6, 3)), K.layers.Masking(0.0), layer])
        inp, masked = masked_input(K, api, (6, 3))
        return K.Model(inp, outputs(layer(masked)))

    check_parity(build, padded_batch(), api=api, label=f"{cls}{options}")


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("cls", LAYERS)
def test_rnn_without_mask_unroll_and_no_bias(api: str, cls: str) -> None:
    def build(K):
        inp = K.Input((5, 4))
        a = getattr(K.layers, cls)(3, unroll=True, return_sequences=True)(inp)
        b = getattr(K.layers, cls)(2, use_bias=False, activation="relu")(a)
        return K.Model(inp, b)

    check_parity(build, rand(3, 5, 4), api=api)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_reset_after(api: str, reset_after: bool) -> None:
    def build(K):
        return K.Sequential([K.Input((None, 3)), K.layers.Masking(0.0),
                             K.layers.GRU(4, reset_after=reset_after, return_sequences=True)])

    check_parity(build, padded_batch(), api=api)


@pytest.mark.parametrize("api", APIS)
def test_activations_and_hard_sigmoid(api: str) -> None:
    """Keras 2 files keep hard_sigmoid = 0.2x+0.5; Keras 3 uses relu6(x+3)/6."""
    def build(K):
        inp = K.Input((5, 3))
        a = K.layers.LSTM(4, recurrent_activation="hard_sigmoid", activation="softsign",
                          return_sequences=True)(inp)
        return K.Model(inp, K.layers.GRU(3, recurrent_activation="hard_sigmoid")(a))

    check_parity(build, rand(2, 5, 3) * 3, api=api)


@pytest.mark.parametrize("api", APIS)
def test_embedding_mask_zero_propagates_through_sequences(api: str) -> None:
    def build(K):
        return K.Sequential([
            K.Input((7,), dtype="int32"),
            K.layers.Embedding(20, 4, mask_zero=True),
            K.layers.LSTM(5, return_sequences=True),
            K.layers.Dense(3),  # the mask passes through Dense
            K.layers.GRU(2),
        ])

    x = np.array([[3, 4, 5, 0, 0, 0, 0], [0, 0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6, 7],
                  [9, 0, 8, 0, 7, 0, 0]], np.int32)
    check_parity(build, x, api=api)


@pytest.mark.parametrize("api", APIS)
def test_initial_states_from_encoder(api: str) -> None:
    def build(K):
        enc_in = K.Input((5, 3))
        dec_in = K.Input((4, 2))
        _, h, c = K.layers.LSTM(6, return_state=True)(enc_in)
        dec = K.layers.LSTM(6, return_sequences=True)(dec_in, initial_state=[h, c])
        _, g = K.layers.GRU(3, return_state=True)(enc_in)
        dec2 = K.layers.GRU(3)(dec, initial_state=g)
        return K.Model([enc_in, dec_in], [dec, dec2])

    check_parity(build, [rand(2, 5, 3), rand(2, 4, 2, seed=2)], api=api)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("stacked", [False, True])
def test_generic_rnn_with_cells(api: str, stacked: bool) -> None:
    def build(K):
        inp, masked = masked_input(K, api, (6, 3))
        if stacked:
            cell = [K.layers.LSTMCell(4), K.layers.GRUCell(3), K.layers.SimpleRNNCell(2)]
        else:
            cell = K.layers.GRUCell(4)
        outs = K.layers.RNN(cell, return_sequences=True, return_state=True)(masked)
        return K.Model(inp, outputs(outs))

    check_parity(build, padded_batch(), api=api)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
def test_bidirectional_merge_modes_with_masks(api: str, merge_mode: str | None) -> None:
    def build(K):
        if api == "keras3" and merge_mode is not None:
            return K.Sequential([
                K.Input((6, 3)), K.layers.Masking(0.0),
                K.layers.Bidirectional(K.layers.LSTM(4, return_sequences=True), merge_mode=merge_mode),
                K.layers.Bidirectional(K.layers.GRU(3), merge_mode=merge_mode),
            ])
        inp, masked = masked_input(K, api, (6, 3))
        seq = K.layers.Bidirectional(K.layers.LSTM(4, return_sequences=True),
                                     merge_mode=merge_mode)(masked)
        last = K.layers.Bidirectional(K.layers.GRU(3), merge_mode=merge_mode)(masked)
        outs = [*(seq if isinstance(seq, (list, tuple)) else [seq]),
                *(last if isinstance(last, (list, tuple)) else [last])]
        return K.Model(inp, outs)

    check_parity(build, padded_batch(), api=api, label=f"bidirectional {merge_mode}")


@pytest.mark.parametrize("api", APIS)
def test_bidirectional_return_state_backward_layer_and_stack(api: str) -> None:
    def build(K):
        inp, masked = masked_input(K, api, (6, 3))
        outs = K.layers.Bidirectional(
            K.layers.LSTM(4, return_sequences=True, return_state=True),
            backward_layer=K.layers.LSTM(4, return_sequences=True, return_state=True,
                                         go_backwards=True, activation="relu"),
        )(masked)
        seq = K.layers.Bidirectional(K.layers.SimpleRNN(2, return_sequences=True))(outs[0])
        return K.Model(inp, [*outs, seq])

    check_parity(build, padded_batch(), api=api)


@pytest.mark.parametrize("api", APIS)
def test_time_distributed_dense_and_conv(api: str) -> None:
    def build(K):
        frames = K.Input((3, 6, 6, 2))
        conv = K.layers.TimeDistributed(K.layers.Conv2D(4, 3, activation="relu"))(frames)
        flat = K.layers.TimeDistributed(K.layers.Flatten())(conv)
        dense = K.layers.TimeDistributed(K.layers.Dense(5))(flat)
        return K.Model(frames, K.layers.LSTM(3)(dense))

    check_parity(build, rand(2, 3, 6, 6, 2), api=api)


@pytest.mark.parametrize("api", APIS)
def test_time_distributed_keeps_mask(api: str) -> None:
    def build(K):
        return K.Sequential([K.Input((6, 3)), K.layers.Masking(0.0),
                             K.layers.TimeDistributed(K.layers.Dense(4)),
                             K.layers.LSTM(3, return_sequences=True)])

    check_parity(build, padded_batch(), api=api)


CONV_LSTM_CASES = [
    ("ConvLSTM1D", (4, 7, 2), {"filters": 3, "kernel_size": 3}),
    ("ConvLSTM2D", (3, 6, 5, 2), {"filters": 3, "kernel_size": 3, "padding": "same",
                                  "return_sequences": True}),
    ("ConvLSTM2D", (3, 7, 7, 2), {"filters": 2, "kernel_size": (3, 2), "strides": 2,
                                  "return_state": True, "go_backwards": True}),
    ("ConvLSTM2D", (3, 7, 7, 2), {"filters": 2, "kernel_size": 3, "dilation_rate": 2,
                                  "use_bias": False}),
    ("ConvLSTM3D", (2, 4, 4, 4, 1), {"filters": 2, "kernel_size": 2, "padding": "same"}),
]


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("case", CONV_LSTM_CASES, ids=lambda c: f"{c[0]}-{'-'.join(c[2])}")
def test_conv_lstm(api: str, case: tuple) -> None:
    cls, shape, options = case

    def build(K):
        inp = K.Input(shape)
        out = getattr(K.layers, cls)(**options)(inp)
        return K.Model(inp, outputs(out))

    check_parity(build, rand(2, *shape), api=api)


def test_conv_lstm_channels_first_keras3() -> None:
    def build(K):
        inp = K.Input((3, 2, 6, 5))
        out = K.layers.ConvLSTM2D(3, 3, padding="same", data_format="channels_first",
                                  return_sequences=True)(inp)
        return K.Model(inp, out)

    check_parity(build, rand(2, 3, 2, 6, 5))


def test_time_major_tf_keras() -> None:
    def build(K):
        inp = K.Input((5, 3), batch_size=None)
        seq = K.layers.Permute((1, 2))(inp)
        out = K.layers.LSTM(4, time_major=True, return_sequences=True)(seq)
        return K.Model(inp, K.layers.GRU(2, time_major=True)(out))

    check_parity(build, rand(4, 5, 3), api="tf_keras")


@pytest.mark.parametrize("api", APIS)
def test_stateful_runs_from_zero_states(api: str) -> None:
    def build(K):
        return K.Sequential([K.Input(batch_shape=(2, 5, 3)) if api == "keras3"
                             else K.layers.InputLayer(batch_input_shape=(2, 5, 3)),
                             K.layers.LSTM(4, stateful=True, return_sequences=True),
                             K.layers.GRU(3, stateful=True)])

    check_parity(build, rand(2, 5, 3), api=api)


@pytest.mark.parametrize("api", APIS)
def test_stateful_with_a_different_batch_fails_clearly(api: str, tmp_path: Path) -> None:
    """Keras refuses (Keras 3) or carries states across batches: tfless refuses, and
    accepts exactly the fixed batch size, wherever the file records it on the layer
    (tf_keras: layer config; Keras 3 `.keras`: build config; Keras 3 `.h5` keeps it only
    on the InputLayer, see docs/sequence.md)."""
    K = keras_module(api)
    if api == "keras3":
        model = K.Sequential([K.Input(batch_shape=(2, 5, 3)), K.layers.LSTM(4, stateful=True)])
        files = [tmp_path / "stateful.keras"]
    else:
        model = K.Sequential([K.layers.LSTM(4, stateful=True, batch_input_shape=(2, 5, 3))])
        files = [tmp_path / "stateful.h5", tmp_path / "stateful.keras"]
    randomize_weights(model)
    want = model.predict(rand(2, 5, 3), verbose=0)
    for path in files:
        model.save(path)
        loaded = tfless.load(path)
        assert_close(loaded.predict(rand(2, 5, 3)), [want], path.name)
        with pytest.raises(tfless.InputError, match="stateful with batch size 2"):
            loaded.predict(rand(3, 5, 3))


# ----- weight layouts Keras 3 cannot write ------------------------------------------------
def _to_cudnn(kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray, gates: int
              ) -> list[np.ndarray]:
    """Inverse of Keras 2's CuDNN -> Keras conversion (`_convert_rnn_weights`)."""
    k = np.hstack([g.T.reshape(g.shape, order="C") for g in np.hsplit(kernel, gates)])
    r = np.hstack([g.T for g in np.hsplit(recurrent, gates)])
    return [k, r, bias]


@pytest.mark.parametrize("cls", ["CuDNNLSTM", "CuDNNGRU"])
def test_cudnn_layers_tf_keras_h5(cls: str, tmp_path: Path) -> None:
    """Keras 2 CuDNN layers store CuDNN's layout; they compute LSTM / GRU(reset_after)."""
    import tf_keras
    from tf_keras.src.layers.rnn import cudnn_gru, cudnn_lstm

    inp = tf_keras.Input((6, 3))
    if cls == "CuDNNLSTM":
        ref_layer = tf_keras.layers.LSTM(5, return_sequences=True, return_state=True)
        cudnn = cudnn_lstm.CuDNNLSTM(5, return_sequences=True, return_state=True)
    else:
        ref_layer = tf_keras.layers.GRU(5, reset_after=True, return_sequences=True,
                                        return_state=True)
        cudnn = cudnn_gru.CuDNNGRU(5, return_sequences=True, return_state=True)
    reference = tf_keras.Model(inp, ref_layer(inp))
    randomize_weights(reference)
    kernel, recurrent, bias = ref_layer.get_weights()
    x = rand(2, 6, 3)
    want = [np.asarray(y) for y in reference.predict(x, verbose=0)]

    stored = tf_keras.Model(inp, cudnn(inp))
    if cls == "CuDNNLSTM":
        half = bias / 2
        cudnn.set_weights(_to_cudnn(kernel, recurrent, np.concatenate([half, half]), 4))
    else:
        cudnn.set_weights(_to_cudnn(kernel, recurrent, bias.reshape(-1), 3))
    path = tmp_path / "cudnn.h5"
    stored.save(path)
    assert_close(tfless.load(path).predict(x), want, cls)


KERAS1_LSTM_ORDER = ("i", "c", "f", "o")


def _keras1_file(path: Path, cls: str, layer, units: int, steps: int, features: int) -> None:
    """A Keras 1.2 Sequential .h5 as Keras 1 wrote it: per-gate W/U/b arrays."""
    kernel, recurrent, bias = layer.get_weights()
    gates = ("i", "f", "c", "o") if cls == "LSTM" else ("z", "r", "h")
    split = {g: (k, r, b) for g, k, r, b in zip(gates, np.hsplit(kernel, len(gates)),
                                                np.hsplit(recurrent, len(gates)),
                                                np.split(bias, len(gates)))}
    stored = KERAS1_LSTM_ORDER if cls == "LSTM" else gates
    name = f"{cls.lower()}_1"
    config = {"class_name": "Sequential", "config": [{"class_name": cls, "config": {
        "name": name, "trainable": True, "batch_input_shape": [None, steps, features],
        "input_dtype": "float32", "output_dim": units, "return_sequences": False,
        "go_backwards": False, "stateful": False, "unroll": False, "consume_less": "cpu",
        "input_dim": features, "input_length": None, "activation": "tanh",
        "inner_activation": "hard_sigmoid", "init": "glorot_uniform",
        "inner_init": "orthogonal", "W_regularizer": None, "U_regularizer": None,
        "b_regularizer": None, "dropout_W": 0.0, "dropout_U": 0.0}}]}
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"1.2.2"
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps(config).encode()
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = [name.encode()]
        lg = g.create_group(name)
        names = []
        for gate in stored:
            for kind, arr in zip(("W", "U", "b"), split[gate]):
                names.append(f"{name}_{kind}_{gate}")
                lg.create_dataset(names[-1], data=arr)
        lg.attrs["weight_names"] = [n.encode() for n in names]


@pytest.mark.parametrize("cls", ["LSTM", "GRU"])
def test_keras1_per_gate_weights(cls: str, tmp_path: Path) -> None:
    import tf_keras

    inp = tf_keras.Input((5, 3))
    kwargs = {"reset_after": False} if cls == "GRU" else {}
    layer = getattr(tf_keras.layers, cls)(4, recurrent_activation="hard_sigmoid", **kwargs)
    model = tf_keras.Model(inp, layer(inp))
    randomize_weights(model)
    x = rand(2, 5, 3) * 3
    path = tmp_path / "keras1.h5"
    _keras1_file(path, cls, layer, 4, 5, 3)
    assert_close(tfless.load(path).predict(x), [model.predict(x, verbose=0)], f"Keras 1 {cls}")


def test_unsupported_rnn_cell_is_named(tmp_path: Path) -> None:
    K = keras_module("tf_keras")
    inp = K.Input((4, 3))
    model = K.Model(inp, K.layers.RNN(K.layers.LSTMCell(2))(inp))
    config = json.loads(model.to_json())
    for layer in config["config"]["layers"]:
        if layer["class_name"] == "RNN":
            layer["config"]["cell"]["class_name"] = "PeepholeLSTMCell"
    (tmp_path / "m.json").write_text(json.dumps(config))
    model.save_weights(tmp_path / "w.h5")
    with pytest.raises(tfless.UnsupportedLayer, match="PeepholeLSTMCell"):
        tfless.load(tmp_path / "m.json", weights=tmp_path / "w.h5")


TD_INNER_MODELS = ["sequential", "functional", "batchnorm"]


def _td_inner_model(K, kind: str):
    """A per-frame model: Conv2D -> Flatten -> Dense, as Sequential or Functional."""
    if kind == "functional":
        frame = K.Input((6, 6, 2))
        a = K.layers.Conv2D(3, 3, activation="relu")(frame)
        b = K.layers.Conv2D(3, 3, activation="tanh")(frame)
        x = K.layers.Flatten()(K.layers.Add()([a, b]))
        return K.Model(frame, K.layers.Dense(4)(x), name="frame_encoder")
    layers = [K.layers.Conv2D(3, 3)]
    if kind == "batchnorm":  # non-trainable weights: .h5 stores them after all trainable ones
        layers.append(K.layers.BatchNormalization())
    layers += [K.layers.Flatten(), K.layers.Dense(4, activation="relu")]
    return K.Sequential([K.Input((6, 6, 2)), *layers])


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("kind", TD_INNER_MODELS)
def test_time_distributed_nested_model(api: str, kind: str) -> None:
    def build(K):
        frames = K.Input((3, 6, 6, 2))
        per_frame = K.layers.TimeDistributed(_td_inner_model(K, kind))(frames)
        return K.Model(frames, K.layers.GRU(2)(per_frame))

    check_parity(build, rand(2, 3, 6, 6, 2), api=api, label=f"TimeDistributed({kind})")


@pytest.mark.parametrize("api", APIS)
def test_time_distributed_nested_model_twice_with_mask(api: str) -> None:
    """One per-step model shared by two TimeDistributed wrappers, after a Masking layer."""
    def build(K):
        step = K.Sequential([K.Input((3,)), K.layers.Dense(4, activation="tanh"),
                             K.layers.Dense(3)], name="step")
        return K.Sequential([K.Input((6, 3)), K.layers.Masking(0.0),
                             K.layers.TimeDistributed(step), K.layers.TimeDistributed(step),
                             K.layers.LSTM(2, return_sequences=True)])

    check_parity(build, padded_batch(), api=api)


def test_time_distributed_model_with_two_outputs_is_refused(tmp_path: Path) -> None:
    """Keras cannot build this, but a config can say it: the error names the layer."""
    import tf_keras

    inp = tf_keras.Input((4,))
    hidden = tf_keras.layers.Dense(3, name="hidden")(inp)
    inner = tf_keras.Model(inp, tf_keras.layers.Dense(2, name="head")(hidden), name="inner")
    outer_in = tf_keras.Input((5, 4))
    model = tf_keras.Model(outer_in, tf_keras.layers.TimeDistributed(inner, name="td")(outer_in))
    config = json.loads(model.to_json())
    td = next(layer for layer in config["config"]["layers"] if layer["name"] == "td")
    td["config"]["layer"]["config"]["output_layers"].append(["hidden", 0, 0])
    (tmp_path / "m.json").write_text(json.dumps(config))
    model.save_weights(tmp_path / "w.h5")
    with pytest.raises(tfless.UnsupportedLayer, match="'td' is a TimeDistributed around model "
                       "'inner' with 2 outputs"):
        tfless.load(tmp_path / "m.json", weights=tmp_path / "w.h5")


# ----- wrappers inside wrappers -----------------------------------------------------------
@pytest.mark.parametrize("api", APIS)
def test_time_distributed_bidirectional(api: str) -> None:
    """`.keras` keeps the inner wrapper's sides under layer/forward_layer, layer/backward_layer:
    they must be read in that order, not alphabetically."""
    def build(K):
        inp = K.Input((3, 5, 2))
        words = K.layers.TimeDistributed(K.layers.Bidirectional(
            K.layers.LSTM(4), backward_layer=K.layers.LSTM(3, go_backwards=True)))(inp)
        seq = K.layers.TimeDistributed(K.layers.Bidirectional(
            K.layers.GRU(2, return_sequences=True), merge_mode="sum"))(inp)
        pages = K.Input((2, 3, 5, 2))
        lines = K.layers.TimeDistributed(K.layers.TimeDistributed(K.layers.Bidirectional(
            K.layers.SimpleRNN(2), backward_layer=K.layers.SimpleRNN(3, go_backwards=True))))(pages)
        return K.Model([inp, pages], [words, seq, lines])

    check_parity(build, [rand(2, 3, 5, 2), rand(2, 2, 3, 5, 2, seed=2)], api=api)


@pytest.mark.parametrize("api", APIS)
def test_bidirectional_stacked_cells(api: str) -> None:
    def build(K):
        inp, masked = masked_input(K, api, (6, 3))
        cells = [K.layers.LSTMCell(4), K.layers.GRUCell(3), K.layers.SimpleRNNCell(2)]
        stacked = K.layers.RNN(K.layers.StackedRNNCells(cells), return_sequences=True)
        out = K.layers.Bidirectional(stacked)(masked)
        return K.Model(inp, K.layers.TimeDistributed(K.layers.Dense(2))(out))

    check_parity(build, padded_batch(), api=api)


@pytest.mark.parametrize("api", APIS)
def test_time_distributed_of_time_distributed(api: str) -> None:
    def build(K):
        inp = K.Input((2, 3, 4))
        inner = K.layers.TimeDistributed(K.layers.Dense(3, activation="relu"))
        x = K.layers.TimeDistributed(inner)(inp)
        return K.Model(inp, K.layers.TimeDistributed(K.layers.TimeDistributed(
            K.layers.Dense(2)))(x))

    check_parity(build, rand(2, 2, 3, 4), api=api)


# ----- option combinations -----------------------------------------------------------------
@pytest.mark.parametrize("api", APIS)
def test_bidirectional_return_state_in_every_merge_mode(api: str) -> None:
    def build(K):
        inp = K.Input((6, 3))
        x = K.layers.Masking(0.0)(inp)
        outs = []
        for mode in ("sum", None, "mul"):
            outs += outputs(K.layers.Bidirectional(
                K.layers.GRU(3, return_state=True, reset_after=False), merge_mode=mode)(x))
        outs += outputs(K.layers.Bidirectional(
            K.layers.SimpleRNN(2, return_sequences=True, return_state=True), merge_mode="ave")(x))
        return K.Model(inp, outs)

    check_parity(build, padded_batch(), api=api)


@pytest.mark.parametrize("api", APIS)
def test_stacked_cells_backwards_and_unrolled_masked_lstm(api: str) -> None:
    def build(K):
        inp = K.Input((6, 3))  # unroll needs a fixed length
        x = K.layers.Masking(0.0)(inp)
        cells = [K.layers.LSTMCell(3), K.layers.GRUCell(2, reset_after=False)]
        stacked = outputs(K.layers.RNN(cells, go_backwards=True, return_state=True)(x))
        unrolled = K.layers.LSTM(3, unroll=True, return_sequences=True)(x)
        return K.Model(inp, [*stacked, unrolled])

    check_parity(build, padded_batch(), api=api)


@pytest.mark.parametrize("api", APIS)
def test_initial_states_as_model_inputs(api: str) -> None:
    """States given as model inputs (a decoder step), also to both sides of a Bidirectional."""
    def build(K):
        enc, dec = K.Input((5, 3)), K.Input((4, 2))
        h0, c0 = K.Input((3,)), K.Input((3,))
        seq = K.layers.LSTM(3, return_sequences=True)(dec, initial_state=[h0, c0])
        out, fh, _, _, bc = K.layers.Bidirectional(K.layers.LSTM(3, return_state=True))(
            enc, initial_state=[h0, c0, c0, h0])
        return K.Model([enc, dec, h0, c0], [seq, out, fh, bc])

    check_parity(build, [rand(2, 5, 3), rand(2, 4, 2, seed=2), rand(2, 3, seed=3),
                         rand(2, 3, seed=4)], api=api)


CONV_LSTM_MORE = [
    ("ConvLSTM1D", (3, 7, 2), {"filters": 2, "kernel_size": 3, "padding": "same",
                               "dilation_rate": 2, "return_sequences": True, "return_state": True}),
    ("ConvLSTM3D", (2, 5, 6, 4, 1), {"filters": 2, "kernel_size": 2, "strides": (2, 1, 1),
                                     "activation": "relu", "recurrent_activation": "sigmoid"}),
]


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("case", CONV_LSTM_MORE, ids=lambda c: c[0])
def test_conv_lstm_more_options(api: str, case: tuple) -> None:
    cls, shape, options = case

    def build(K):
        inp = K.Input(shape)
        return K.Model(inp, outputs(getattr(K.layers, cls)(**options)(inp)))

    check_parity(build, rand(2, *shape), api=api)


def test_channels_first_conv_lstm_and_time_distributed_conv_tf_keras(tmp_path: Path) -> None:
    """Compared with the channels_last twin holding the same weights, on transposed inputs:
    TensorFlow runs a channels_first Conv2D inside TimeDistributed on some CPUs only ("Conv2D
    only supports NHWC on the CPU" without oneDNN's layout rewrite)."""
    def build(K, fmt):
        inp = K.Input((3, 2, 6, 5) if fmt == "channels_first" else (3, 6, 5, 2))
        lstm = K.layers.ConvLSTM2D(3, 3, padding="same", data_format=fmt,
                                   return_sequences=True)(inp)
        conv = K.layers.TimeDistributed(K.layers.Conv2D(2, 3, data_format=fmt))(inp)
        return K.Model(inp, [lstm, conv])

    K = keras_module("tf_keras")
    model, twin = build(K, "channels_first"), build(K, "channels_last")
    randomize_weights(model)
    twin.set_weights(model.get_weights())
    x = rand(2, 3, 2, 6, 5)
    want = [np.moveaxis(y, -1, 2) for y in keras_predict(twin, np.moveaxis(x, 2, -1))]
    for fmt, (path, weights) in save_all(model, "tf_keras", FORMATS["tf_keras"], tmp_path).items():
        assert_close(tfless.load(path, weights=weights).predict(x), want, f"tf_keras {fmt}")


@pytest.mark.parametrize("api", APIS)
def test_mask_through_lstm_into_merge_layers(api: str) -> None:
    def build(K):
        ids = K.Input((6,), dtype="int32")
        emb = K.layers.Embedding(20, 4, mask_zero=True)(ids)
        seq = K.layers.LSTM(3, return_sequences=True)(emb)
        joined = K.layers.Concatenate()([seq, emb])
        added = K.layers.Add()([K.layers.Dense(4)(seq), emb])
        return K.Model(ids, [K.layers.GRU(2)(joined), K.layers.GlobalAveragePooling1D()(added)])

    x = np.random.default_rng(0).integers(1, 20, (3, 6)).astype(np.int32)
    x[0, 3:] = 0
    x[1, :2] = 0
    check_parity(build, x, api=api)


def test_time_distributed_given_a_mask_keras3(tmp_path: Path) -> None:
    """A Keras 3 functional TimeDistributed after a masked layer is called with `mask=`: the
    mask goes on to the next RNN; an explicit per-step mask reaches an inner layer that
    takes one (a masked average over each step's items)."""
    def build(K):
        inp = K.Input((6, 3))
        seq = K.layers.LSTM(4, return_sequences=True)(K.layers.Masking(0.0)(inp))
        dense = K.layers.TimeDistributed(K.layers.Dense(3))(seq)
        return K.Model(inp, K.layers.GRU(2)(dense))

    check_parity(build, padded_batch())

    # Both backends, each format: an ONNX export that dropped the inner mask was wrong here.
    K = keras_module("keras3")
    items, keep_in = K.Input((3, 5, 2)), K.Input((3, 5), dtype="bool")
    pooled = K.layers.TimeDistributed(K.layers.GlobalAveragePooling1D())(items, mask=keep_in)
    model = K.Model([items, keep_in], pooled)
    keep = np.random.default_rng(2).random((4, 3, 5)) > 0.4
    keep[..., 0] = True
    x = [rand(4, 3, 5, 2, seed=5), keep]
    want = model.predict(x, verbose=0)
    for fmt in ("keras", "h5"):
        model.save(tmp_path / f"pooled.{fmt}")
        for backend in ("numpy", "onnxruntime"):
            loaded = tfless.load(tmp_path / f"pooled.{fmt}", backend=backend)
            assert_close(loaded.predict(x), [want], f"pooled {fmt} {backend}")
