"""Recurrent cells and the scan loop that drives them (split out of ops/recurrent.py, which
keeps the layer configs, weight names, masks and the layer wrappers).

A cell projects the whole input sequence once (one GEMM, or one convolution, for all
timesteps) and then runs one GEMM per step for the recurrence. At small batches a step is
dominated by the count of NumPy calls, not by arithmetic (an LSTM step of batch 1 and 128
units is ~10 us of GEMM), so an LSTM whose activations are Keras's sigmoid and tanh stores
its gates reordered (i, f, o | c) at build time: one sigmoid pass over three gates and one
tanh pass, in place on the step's own buffer, instead of a sigmoid call per gate.

Weights are converted here into Keras 3's layout (kernel, recurrent_kernel, bias with gates
i,f,c,o for LSTM and z,r,h for GRU): Keras 1 per-gate arrays are concatenated and Keras 2
`CuDNNLSTM`/`CuDNNGRU` weights are converted with the rules of Keras 2's
`_convert_rnn_weights` (CuDNN stores each gate's matrix transposed).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import InputError, ModelFormatError, UnsupportedLayer
from .activations import get_activation, sigmoid
from .convolutional import Geometry, conv_channels_last

F32 = np.float32
GATES = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3, "CuDNNLSTM": 4, "CuDNNGRU": 3}
# Keras 1 stored one array per gate; the index lists give Keras 2's gate order (i,f,c,o / z,r,h).
KERAS1_GATES = {"LSTM": ("i", "f", "c", "o"), "GRU": ("z", "r", "h")}


def _major(config: dict[str, Any]) -> int:
    return int(config.get("keras_major", 3))


def _is_keras1_per_gate(cls: str, config: dict[str, Any]) -> bool:
    """Keras 1 LSTM/GRU kept one W/U/b triple per gate unless consume_less='gpu'."""
    if cls not in KERAS1_GATES:
        return False
    keras1 = _major(config) < 2 or "consume_less" in config
    return keras1 and config.get("consume_less", "cpu") != "gpu"


# ----- numerics -----------------------------------------------------------------------
def conv_nd(x: np.ndarray, kernel: np.ndarray, strides: Sequence[int], padding: str,
            dilation: Sequence[int]) -> np.ndarray:
    """Channels-last N-D convolution (TensorFlow's padding rule): the regular convolution
    of ops/convolutional.py (im2col into one buffer, one sgemm).

    x: (N, *spatial, C_in); kernel: (*k, C_in, C_out).
    """
    rank = kernel.ndim - 2
    geo = Geometry("ConvLSTM", tuple(kernel.shape[:rank]), tuple(strides), tuple(dilation),
                   padding)
    return conv_channels_last(x, geo, kernel.reshape(1, -1, kernel.shape[-1]), 1)


class Cell(ABC):
    """One recurrent cell: `project` maps inputs of any leading shape to gate
    pre-activations (bias included), `step` advances the states by one timestep."""

    state_sizes: tuple[int, ...] = ()

    @abstractmethod
    def project(self, x: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def step(self, xp: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list]: ...

    def zero_states(self, x: np.ndarray) -> list[np.ndarray]:
        return [np.zeros((x.shape[0], n), F32) for n in self.state_sizes]


class DenseCell(Cell):
    def __init__(self, kernel: np.ndarray, bias: np.ndarray | None) -> None:
        self.kernel = np.ascontiguousarray(kernel, F32)
        self.bias = None if bias is None else np.asarray(bias, F32)

    def project(self, x: np.ndarray) -> np.ndarray:
        y = x.astype(F32, copy=False) @ self.kernel
        if self.bias is not None:
            y += self.bias
        return y


class SimpleRNNCell(DenseCell):
    def __init__(self, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray | None,
                 activation: Callable) -> None:
        super().__init__(kernel, bias)
        self.recurrent = np.ascontiguousarray(recurrent, F32)
        self.act = activation
        self.state_sizes = (recurrent.shape[0],)

    def step(self, xp: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list]:
        h = self.act(xp + states[0] @ self.recurrent)
        return h, [h]


class LSTMCell(DenseCell):
    def __init__(self, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray | None,
                 activation: Callable, recurrent_activation: Callable) -> None:
        super().__init__(kernel, bias)
        self.recurrent = np.ascontiguousarray(recurrent, F32)
        self.act, self.rec_act = activation, recurrent_activation
        self.units = u = recurrent.shape[0]
        self.state_sizes = (self.units, self.units)
        # kernel/recurrent/bias stay in Keras's i,f,c,o order (the exporters read them); the
        # fast path keeps its own copies in i,f,o,c order
        self.fast = activation is np.tanh and recurrent_activation is sigmoid
        if self.fast:
            order = np.r_[0:2 * u, 3 * u:4 * u, 2 * u:3 * u]
            self.kernel_ifoc = np.ascontiguousarray(self.kernel[:, order])
            self.recurrent_ifoc = np.ascontiguousarray(self.recurrent[:, order])
            self.bias_ifoc = None if self.bias is None else \
                np.ascontiguousarray(self.bias.reshape(-1)[order])

    def project(self, x: np.ndarray) -> np.ndarray:
        if not self.fast:
            return super().project(x)
        y = x.astype(F32, copy=False) @ self.kernel_ifoc
        if self.bias_ifoc is not None:
            y += self.bias_ifoc
        return y

    def step(self, xp: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list]:
        h, c = states
        if self.fast:
            return self._fast_step(xp, h, c)
        z = xp + h @ self.recurrent
        u = self.units
        i = self.rec_act(z[:, :u])
        f = self.rec_act(z[:, u:2 * u])
        c = f * c + i * self.act(z[:, 2 * u:3 * u])
        o = self.rec_act(z[:, 3 * u:])
        h = o * self.act(c)
        return h, [h, c]

    def _fast_step(self, xp: np.ndarray, h: np.ndarray, c: np.ndarray
                   ) -> tuple[np.ndarray, list]:
        # the same formula as `step`, on the (i, f, o | c) gate order, in place on z; the
        # sigmoid is 1 / (1 + exp(-x)): exp overflows to inf below -88 (scan silences the
        # warning), which gives the exact limit 0
        u = self.units
        z = np.matmul(h, self.recurrent_ifoc)
        z += xp
        gates, cand = z[:, :3 * u], z[:, 3 * u:]
        np.negative(gates, out=gates)
        np.exp(gates, out=gates)
        gates += F32(1)
        np.reciprocal(gates, out=gates)
        np.tanh(cand, out=cand)
        c = np.multiply(z[:, u:2 * u], c)
        np.multiply(z[:, :u], cand, out=cand)
        c += cand
        h = np.tanh(c)
        h *= z[:, 2 * u:3 * u]
        return h, [h, c]


class GRUCell(DenseCell):
    """Keras GRU; `reset_after` applies the reset gate after the recurrent matmul
    (Keras 2/3 default, CuDNN's formula) or before it (Keras 1 and old Keras 2)."""

    def __init__(self, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray | None,
                 activation: Callable, recurrent_activation: Callable,
                 reset_after: bool) -> None:
        self.units = u = recurrent.shape[0]
        self.reset_after = reset_after
        input_bias, self.recurrent_bias = bias, None
        if bias is not None and reset_after:
            bias = np.asarray(bias, F32).reshape(2, 3 * u)
            input_bias, self.recurrent_bias = bias[0], bias[1]
        super().__init__(kernel, input_bias)
        self.recurrent = np.ascontiguousarray(recurrent, F32)
        self.recurrent_zr = np.ascontiguousarray(recurrent[:, :2 * u])
        self.recurrent_h = np.ascontiguousarray(recurrent[:, 2 * u:])
        self.act, self.rec_act = activation, recurrent_activation
        self.state_sizes = (u,)

    def step(self, xp: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list]:
        (h,) = states
        u = self.units
        if self.reset_after:
            inner = h @ self.recurrent
            if self.recurrent_bias is not None:
                inner += self.recurrent_bias
        else:
            inner = h @ self.recurrent_zr
        z = self.rec_act(xp[:, :u] + inner[:, :u])
        r = self.rec_act(xp[:, u:2 * u] + inner[:, u:2 * u])
        if self.reset_after:
            rec_h = r * inner[:, 2 * u:]
        else:
            rec_h = (r * h) @ self.recurrent_h
        hh = self.act(xp[:, 2 * u:] + rec_h)
        h = z * h + (1 - z) * hh
        return h, [h]


class ConvLSTMCell(Cell):
    """Keras ConvLSTMCell, channels last: input convolution with the layer's padding,
    strides and dilation; recurrent convolution with 'same' padding and stride 1."""

    def __init__(self, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray | None,
                 activation: Callable, recurrent_activation: Callable, strides: Sequence[int],
                 padding: str, dilation: Sequence[int]) -> None:
        self.kernel = np.asarray(kernel, F32)
        self.recurrent = np.asarray(recurrent, F32)
        self.bias = None if bias is None else np.asarray(bias, F32)
        self.act, self.rec_act = activation, recurrent_activation
        self.strides, self.padding, self.dilation = tuple(strides), padding, tuple(dilation)
        self.rank = kernel.ndim - 2
        self.filters = recurrent.shape[-2]

    def project(self, x: np.ndarray) -> np.ndarray:
        lead = x.shape[:-1 - self.rank]
        flat = x.reshape(-1, *x.shape[-1 - self.rank:]).astype(F32, copy=False)
        y = conv_nd(flat, self.kernel, self.strides, self.padding, self.dilation)
        if self.bias is not None:
            y += self.bias
        return y.reshape(*lead, *y.shape[1:])

    def zero_states(self, x: np.ndarray) -> list[np.ndarray]:
        step = x[:1, 0]
        spatial = self.project(step[:, None])[0, 0].shape[:-1]
        shape = (x.shape[0], *spatial, self.filters)
        return [np.zeros(shape, F32), np.zeros(shape, F32)]

    def step(self, xp: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list]:
        h, c = states
        ones = (1,) * self.rank
        z = xp + conv_nd(h, self.recurrent, ones, "same", ones)
        u = self.filters
        i = self.rec_act(z[..., :u])
        f = self.rec_act(z[..., u:2 * u])
        c = f * c + i * self.act(z[..., 2 * u:3 * u])
        o = self.rec_act(z[..., 3 * u:])
        h = o * self.act(c)
        return h, [h, c]


class StackedCells(Cell):
    """StackedRNNCells: each step feeds one cell's output to the next; states are the
    cells' states flattened in order."""

    def __init__(self, cells: list[Cell]) -> None:
        self.cells = cells
        self.state_sizes = tuple(n for c in cells for n in c.state_sizes)

    def project(self, x: np.ndarray) -> np.ndarray:
        return self.cells[0].project(x)

    def step(self, xp: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list]:
        new_states: list[np.ndarray] = []
        at = 0
        out = xp
        for k, cell in enumerate(self.cells):
            n = len(cell.state_sizes)
            inp = out if k == 0 else cell.project(out)
            out, s = cell.step(inp, states[at:at + n])
            new_states.extend(s)
            at += n
        return out, new_states


def scan(cell: Cell, x: np.ndarray, states: list[np.ndarray], mask: np.ndarray | None,
         go_backwards: bool, zero_output_for_mask: bool, return_sequences: bool
         ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Keras's `backend.rnn` over a batch-major sequence; returns (output, final states)."""
    xp = cell.project(x)
    steps = x.shape[1]
    order = range(steps - 1, -1, -1) if go_backwards else range(steps)
    with np.errstate(over="ignore", under="ignore"):  # see LSTMCell._fast_step
        outputs, prev, states = _steps(cell, xp, states, mask, order, zero_output_for_mask,
                                       return_sequences)
    if steps == 0:
        raise InputError("recurrent layers need at least one timestep, got a sequence of length 0")
    if return_sequences:
        return np.stack(outputs, axis=1).astype(F32, copy=False), states
    return prev.astype(F32, copy=False), states


def _steps(cell: Cell, xp: np.ndarray, states: list[np.ndarray], mask: np.ndarray | None,
           order: range, zero_output_for_mask: bool, return_sequences: bool
           ) -> tuple[list[np.ndarray], Any, list[np.ndarray]]:
    outputs: list[np.ndarray] = []
    prev = None
    for t in order:
        out, new = cell.step(xp[:, t], states)
        if mask is not None:
            keep = mask[:, t].reshape((-1,) + (1,) * (out.ndim - 1))
            if prev is None:
                prev = np.zeros_like(out)
            out = np.where(keep, out, F32(0) if zero_output_for_mask else prev)
            new = [np.where(keep, n, s) for n, s in zip(new, states)]
        prev, states = out, new
        if return_sequences:
            outputs.append(out)
    return outputs, prev, states


# ----- building cells from configs and weights ---------------------------------------
def _cudnn_to_keras(kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray, gates: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keras 2's `_convert_rnn_weights` from CuDNN layout: each gate's input matrix is a
    row-major (units, input) block and each recurrent matrix is transposed."""
    kernel = np.hstack([k.T.reshape(k.shape, order="F") for k in np.hsplit(kernel, gates)])
    recurrent = np.hstack([k.T for k in np.hsplit(recurrent, gates)])
    return kernel, recurrent, bias


def _weights_in_keras_layout(cls: str, config: dict[str, Any], weights: dict[str, np.ndarray]
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    name = config.get("name", "")
    if _is_keras1_per_gate(cls, config):
        order = KERAS1_GATES[cls]
        kernel = np.concatenate([weights[f"W_{g}"] for g in order], axis=-1)
        recurrent = np.concatenate([weights[f"U_{g}"] for g in order], axis=-1)
        bias = np.concatenate([weights[f"b_{g}"] for g in order], axis=-1)
        return kernel, recurrent, bias
    kernel, recurrent, bias = weights["kernel"], weights["recurrent_kernel"], weights.get("bias")
    if kernel.ndim != 2 or recurrent.ndim != 2:
        raise ModelFormatError(
            f"layer '{name}': kernel {kernel.shape} and recurrent_kernel {recurrent.shape} "
            "must be matrices"
        )
    gates = GATES[cls]
    units = recurrent.shape[0]
    if kernel.shape[1] != gates * units or recurrent.shape[1] != gates * units:
        raise ModelFormatError(
            f"layer '{name}' ({cls}): kernel {kernel.shape} / recurrent_kernel "
            f"{recurrent.shape} do not hold {gates} gates of {units} units"
        )
    if cls == "CuDNNLSTM":
        kernel, recurrent, bias = _cudnn_to_keras(kernel, recurrent, bias, 4)
        bias = bias[:4 * units] + bias[4 * units:]
    elif cls == "CuDNNGRU":
        kernel, recurrent, bias = _cudnn_to_keras(kernel, recurrent, bias, 3)
        bias = bias.reshape(2, 3 * units)
    return kernel, recurrent, bias


def _activation(config: dict[str, Any], key: str, default: str) -> Callable:
    return get_activation(config.get(key, default), config.get("name", ""))


def _gru_reset_after(config: dict[str, Any], bias: np.ndarray | None) -> bool:
    if "reset_after" in config:
        return bool(config["reset_after"])
    return bias is not None and bias.ndim == 2


def build_cell(cls: str, config: dict[str, Any], weights: dict[str, np.ndarray]) -> Cell:
    """The cell of a SimpleRNN/LSTM/GRU/CuDNN* layer (or *Cell) from its config and weights."""
    kernel, recurrent, bias = _weights_in_keras_layout(cls, config, weights)
    if cls.startswith("CuDNN"):
        act, rec_act = get_activation("tanh"), get_activation("sigmoid")
    else:
        act = _activation(config, "activation", "tanh")
        rec_act = _activation(config, "recurrent_activation", "sigmoid")
    if cls == "SimpleRNN":
        return SimpleRNNCell(kernel, recurrent, bias, act)
    if cls in ("LSTM", "CuDNNLSTM"):
        return LSTMCell(kernel, recurrent, bias, act, rec_act)
    reset_after = True if cls == "CuDNNGRU" else _gru_reset_after(config, bias)
    units = recurrent.shape[0]
    if bias is not None and (bias.size != 3 * units * (2 if reset_after else 1)
                             or (not reset_after and bias.ndim != 1)):
        raise ModelFormatError(
            f"layer '{config.get('name', '')}': GRU bias of shape {bias.shape} does not fit "
            f"reset_after={reset_after}"
        )
    return GRUCell(kernel, recurrent, bias, act, rec_act, reset_after)


def _tuple(value: Any, rank: int, name: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * rank
    out = tuple(int(v) for v in value)
    if len(out) != rank:
        raise ModelFormatError(f"{name} {value!r} does not have {rank} entries")
    return out


def build_conv_lstm_cell(config: dict[str, Any], weights: dict[str, np.ndarray]) -> ConvLSTMCell:
    kernel = weights["kernel"]
    rank = kernel.ndim - 2
    padding = str(config.get("padding", "valid")).lower()
    if padding not in ("valid", "same"):
        raise UnsupportedLayer(
            f"layer '{config.get('name', '')}': ConvLSTM padding '{padding}' is not supported"
        )
    return ConvLSTMCell(
        kernel, weights["recurrent_kernel"], weights.get("bias"),
        _activation(config, "activation", "tanh"),
        _activation(config, "recurrent_activation", "sigmoid"),
        _tuple(config.get("strides", 1), rank, "strides"), padding,
        _tuple(config.get("dilation_rate", 1), rank, "dilation_rate"),
    )


