"""TensorFlow Lite's fused recurrent operator (float32): UNIDIRECTIONAL_SEQUENCE_LSTM.

Operands arrive as for every TFLite op (`tflite.py`); the four gates' weights are joined
into one input and one recurrent matrix once, the input projection runs for all steps at
once, and the steps apply TFLite's fused activation and cell clipping. The ONNX converter
(`export/onnx_ops/tflite_recurrent.py`) reads the same operand slots from here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError, UnsupportedLayer
from .activations import sigmoid
from .tflite import (
    F32,
    LSTM_BIASES,
    LSTM_GATE_WEIGHTS,
    LSTM_RECURRENT_WEIGHTS,
    LSTM_UNSUPPORTED,
    Compute,
    TfliteOp,
    tflite_op,
)


@tflite_op("UNIDIRECTIONAL_SEQUENCE_LSTM")
def unidirectional_sequence_lstm(op: TfliteOp) -> Compute:
    """The fused LSTM tf_keras conversions produce: four gates, no peephole, projection or
    layer normalization (those variants are refused). State starts from the stored
    initial value each call, as a Keras predict does (the interpreter instead keeps its
    variable tensors between invocations)."""
    for slot, feature in LSTM_UNSUPPORTED.items():
        if op.present(slot):
            raise UnsupportedLayer(f"{op.where}: LSTM with {feature} (input {slot}) is not "
                                   "supported; tfless runs the Keras-style LSTM")
    if not op.present(1):
        raise UnsupportedLayer(f"{op.where}: coupled input-forget gate (CIFG) LSTM is not "
                               "supported")
    if op.num_outputs != 1:
        raise UnsupportedLayer(f"{op.where}: LSTM returning its states is not supported")
    gates = [np.asarray(op.require_const(i, "input weight"), F32) for i in LSTM_GATE_WEIGHTS]
    recurrent = [np.asarray(op.require_const(i, "recurrent weight"), F32)
                 for i in LSTM_RECURRENT_WEIGHTS]
    biases = [np.asarray(op.require_const(i, "gate bias"), F32) for i in LSTM_BIASES]
    kernel = np.ascontiguousarray(np.concatenate(gates, axis=0).T)          # (in, 4u)
    rkernel = np.ascontiguousarray(np.concatenate(recurrent, axis=0).T)     # (u, 4u)
    bias = np.concatenate(biases)
    units = gates[0].shape[0]
    act = op.activation()
    clip = F32(op.options.get("cell_clip", 0.0))
    time_major = bool(op.options.get("time_major", False))

    def initial(state: np.ndarray | None, batch: int) -> np.ndarray:
        if state is None or not np.any(state):
            return np.zeros((batch, units), F32)
        return np.broadcast_to(np.asarray(state, F32), (batch, units)).copy()

    def compute(x: np.ndarray, *rest: Any) -> np.ndarray:
        seq = np.asarray(x, F32)
        if seq.ndim != 3 or seq.shape[-1] != kernel.shape[0]:
            raise InputError(f"{op.where}: expects (batch, time, {kernel.shape[0]}) inputs, "
                             f"got {seq.shape}")
        if time_major:
            seq = seq.transpose(1, 0, 2)
        batch, steps = seq.shape[:2]
        h = initial(rest[17], batch)
        c = initial(rest[18], batch)
        projected = (seq.reshape(-1, seq.shape[-1]) @ kernel + bias).reshape(batch, steps, -1)
        out = np.empty((batch, steps, units), F32)
        for t in range(steps):
            z = projected[:, t] + h @ rkernel
            i = sigmoid(z[:, :units])
            f = sigmoid(z[:, units:2 * units])
            g = act(z[:, 2 * units:3 * units])
            o = sigmoid(z[:, 3 * units:])
            c = f * c + i * g
            if clip > 0:
                c = np.clip(c, -clip, clip)
            h = o * act(c)
            out[:, t] = h
        return out.transpose(1, 0, 2).copy() if time_major else out

    return compute
