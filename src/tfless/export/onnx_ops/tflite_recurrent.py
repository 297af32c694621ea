"""ONNX converters for TensorFlow Lite's fused recurrent operators (UNIDIRECTIONAL_SEQUENCE_LSTM).

The LSTM runs through the Keras recurrent converters' cell emitter and sequence loop
(`recurrent.py`), with the TFLite gate layout and cell/projection clipping read by the
runtime's own op (`tfless/ops/tflite.py`); operands arrive as in `tflite.py`.
"""

from __future__ import annotations

import numpy as np

from ...graph import Node
from ...ops.activations import ACTIVATIONS as RUNTIME_ACTIVATIONS
from ...ops.recurrent import LSTMCell, RecurrentLayer
from ...ops.tflite import (
    LSTM_BIASES,
    LSTM_GATE_WEIGHTS,
    LSTM_RECURRENT_WEIGHTS,
    LSTM_UNSUPPORTED,
)
from ..onnx_builder import OnnxBuilder
from .recurrent import CellEmitter, _act, _cols, run_layer
from .tflite import F32, Operands, tflite_converter


class ClippedLSTMEmitter(CellEmitter):
    """The LSTM step, with TFLite's cell_clip applied to the new cell state when set."""

    def __init__(self, b: OnnxBuilder, node: Node, cell: LSTMCell, clip: float) -> None:
        super().__init__(b, node, "", cell)
        self.clip = clip

    def step(self, xp: str, states: list[str]) -> tuple[str, list[str]]:
        if self.clip <= 0:
            return super().step(xp, states)
        b, cell, u, name = self.b, self.cell, self.units, self.node.name
        h, c = states
        z = b.op("Add", [xp, b.op("MatMul", [h, self.recurrent])])
        i, f, g, o = (_cols(b, z, k * u, (k + 1) * u) for k in range(4))
        c = b.op("Add", [b.op("Mul", [_act(b, cell.rec_act, f, name), c]),
                         b.op("Mul", [_act(b, cell.rec_act, i, name), _act(b, cell.act, g, name)])])
        c = b.clip(c, -self.clip, self.clip)
        h = b.op("Mul", [_act(b, cell.rec_act, o, name), _act(b, cell.act, c, name)])
        return h, [h, c]


# fused_activation_function code -> the runtime's Keras activation of the same formula
LSTM_ACTIVATION_NAMES = {1: "relu", 2: "hard_tanh", 3: "relu6", 4: "tanh"}


def _initial_state(o: Operands, slot: int, x: str, units: int, batch_axis: int) -> str:
    """The runtime's start state: zeros, or the stored state broadcast over the batch."""
    b = o.b
    value = o.value(slot)
    if value is None and o.present(slot):
        raise o.fail(f"the initial state (operand {slot}) is computed at run time")
    if value is None or not np.any(value):
        return b.zeros(x, [units], batch_axis=batch_axis)
    batch = b.op("Slice", [b.op("Shape", [x]), b.i64([batch_axis]), b.i64([batch_axis + 1])])
    return b.op("Expand", [b.const(np.asarray(value, F32)),
                           b.op("Concat", [batch, b.i64([units])], axis=0)])


@tflite_converter("UNIDIRECTIONAL_SEQUENCE_LSTM")
def unidirectional_sequence_lstm(o: Operands) -> str:
    """One Scan over the runtime's LSTM step (gates i, f, c, o; the fused activation on the
    cell input and output; optional cell clip), starting from the stored state as a Keras
    predict does."""
    for slot, feature in LSTM_UNSUPPORTED.items():
        if o.present(slot):
            raise o.fail(f"LSTM with {feature} (input {slot}) is not supported")
    if not o.present(1):
        raise o.fail("coupled input-forget gate (CIFG) LSTM is not supported")
    if o.op.num_outputs != 1:
        raise o.fail("LSTM returning its states is not supported")
    code = int(o.op.options.get("fused_activation_function", 0))
    if code not in LSTM_ACTIVATION_NAMES:
        raise o.fail(f"LSTM fused_activation_function code {code} is not supported")
    gates = [np.asarray(o.op.require_const(i, "input weight"), F32) for i in LSTM_GATE_WEIGHTS]
    recurrent = [np.asarray(o.op.require_const(i, "recurrent weight"), F32)
                 for i in LSTM_RECURRENT_WEIGHTS]
    biases = [np.asarray(o.op.require_const(i, "gate bias"), F32) for i in LSTM_BIASES]
    cell = LSTMCell(np.concatenate(gates, axis=0).T, np.concatenate(recurrent, axis=0).T,
                    np.concatenate(biases), RUNTIME_ACTIVATIONS[LSTM_ACTIVATION_NAMES[code]],
                    RUNTIME_ACTIVATIONS["sigmoid"])
    time_major = bool(o.op.options.get("time_major", False))
    layer = RecurrentLayer({"name": o.node.name, "return_sequences": True,
                            "time_major": time_major}, cell)
    emitter = ClippedLSTMEmitter(o.b, o.node, cell, float(o.op.options.get("cell_clip", 0.0)))
    x = o.name(0)
    axis = 1 if time_major else 0
    states = [_initial_state(o, 18, x, cell.units, axis), _initial_state(o, 19, x, cell.units, axis)]
    return run_layer(o.b, o.node, layer, "", x, None, states, cells=[emitter])[0]
