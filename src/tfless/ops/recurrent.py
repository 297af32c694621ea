"""Recurrent layers: SimpleRNN, LSTM, GRU, ConvLSTM, the RNN wrapper and Bidirectional/TimeDistributed.

Every recurrent layer is a *cell* driven by one scan loop. A cell projects the whole input
sequence once (one GEMM, or one convolution, for all timesteps) and then runs one GEMM per
step for the recurrence. The scan follows Keras's `backend.rnn` exactly:

- a masked step keeps the previous states and outputs the previous step's output (zeros
  before the first step), or zeros when `zero_output_for_mask` is set (Keras forces that
  inside `Bidirectional` when it returns sequences);
- `go_backwards` walks the padded sequence from its end (masks reversed with it) and
  returns the outputs in that reversed order;
- `time_major` (Keras 2) reads and writes `(time, batch, ...)`.

`stateful=True` layers run every predict call from zero states. That is Keras's result for
the first batch a freshly loaded model sees (Keras does not save RNN states), and Keras
only accepts batches of the layer's fixed batch size; since Keras then carries the states
into the next batch, an input whose batch differs from the fixed size (when the config
records it) is refused with an InputError instead of silently diverging.

`TimeDistributed` runs any registered single-output layer on the time axis folded into the
batch. Around a nested (single-output) model the reader inlines the model between a
`TimeDistributedFold` and a `TimeDistributedUnfold` node, so its layers are ordinary nodes.

The cells, their weights in Keras 3's layout and the scan loop live in
`ops/recurrent_cells.py`; this module keeps configs, weight names, masks and the layers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import InputError, ModelFormatError, UnsupportedLayer
from ..registry import REGISTRY, get_op, register
from .recurrent_cells import (  # noqa: F401  (the cells are also imported from here)
    F32,
    GATES,
    KERAS1_GATES,
    Cell,
    ConvLSTMCell,
    GRUCell,
    LSTMCell,
    SimpleRNNCell,
    StackedCells,
    _is_keras1_per_gate,
    _major,
    build_cell,
    build_conv_lstm_cell,
    conv_nd,
    scan,
)

TENSOR = "__tensor__"
KERAS1_STORED = {"LSTM": ("i", "c", "f", "o"), "GRU": ("z", "r", "h")}
CELL_CLASSES = {"SimpleRNNCell": "SimpleRNN", "LSTMCell": "LSTM", "GRUCell": "GRU"}


# ----- configs and weight names ---------------------------------------------------------
def _nested(config: dict[str, Any], entry: Any, field: str) -> dict[str, Any]:
    """A layer entry stored inside another layer's config, in modern spelling."""
    if not isinstance(entry, dict) or "class_name" not in entry:
        raise ModelFormatError(
            f"layer '{config.get('name', '')}': field '{field}' holds no layer entry "
            f"(got {str(entry)[:120]})"
        )
    # the reader already brought nested entries to modern spelling (formats/normalize.py)
    inner = dict(entry.get("config") or {})
    if "keras_major" in config:
        inner["keras_major"] = config["keras_major"]
    return {"class_name": entry["class_name"], "config": inner}


def _cell_weight_names(cls: str, config: dict[str, Any]) -> list[str]:
    if cls in ("ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "ConvLSTM"):
        return ["kernel", "recurrent_kernel"] + (["bias"] if config.get("use_bias", True) else [])
    if _is_keras1_per_gate(cls, config):
        return [f"{w}_{g}" for g in KERAS1_STORED[cls] for w in ("W", "U", "b")]
    if cls.startswith("CuDNN"):
        return ["kernel", "recurrent_kernel", "bias"]
    names = ["kernel", "recurrent_kernel"]
    if config.get("use_bias", True):
        names.append("bias")
    return names


def _cell_entries(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The cells of a generic `RNN` layer, StackedRNNCells flattened, in stacking order."""
    entry = config.get("cell")
    entries = entry if isinstance(entry, list) else [entry]
    cells: list[dict[str, Any]] = []
    for item in entries:
        cell = _nested(config, item, "cell")
        if cell["class_name"] == "StackedRNNCells":
            stacked = dict(config)
            stacked["cell"] = cell["config"].get("cells", [])
            cells.extend(_cell_entries(stacked))
        elif cell["class_name"] in CELL_CLASSES:
            cells.append(cell)
        else:
            raise UnsupportedLayer(
                f"layer '{config.get('name', '')}': RNN cell class '{cell['class_name']}' is not "
                f"supported; supported cells: {', '.join(CELL_CLASSES)}, StackedRNNCells"
            )
    return cells


def _rnn_layer_weight_names(cls: str) -> Callable[[dict[str, Any]], list[str]]:
    def names(config: dict[str, Any]) -> list[str]:
        if cls == "RNN":
            return [f"cell{i}/{n}" for i, c in enumerate(_cell_entries(config))
                    for n in _cell_weight_names(CELL_CLASSES[c["class_name"]], c["config"])]
        return _cell_weight_names(cls, config)

    return names


def _state_count(cls: str, config: dict[str, Any]) -> int:
    if cls == "RNN":
        return sum(_state_count(CELL_CLASSES[c["class_name"]], c["config"])
                   for c in _cell_entries(config))
    return 2 if "LSTM" in cls else 1


def _rnn_num_outputs(cls: str) -> Callable[[dict[str, Any]], int]:
    def count(config: dict[str, Any]) -> int:
        return 1 + (_state_count(cls, config) if config.get("return_state") else 0)

    return count


# ----- call arguments -----------------------------------------------------------------
def _positions(value: Any) -> list[int]:
    """Tensor positions inside a call argument (a tensor template or a list of them)."""
    if isinstance(value, dict) and TENSOR in value:
        return [int(value[TENSOR])]
    if isinstance(value, (list, tuple)):
        return [p for v in value for p in _positions(v)]
    return []


def parse_rnn_call(config: dict[str, Any]) -> tuple[int, list[int], int | None]:
    """Where the sequence, the initial states and an explicit mask sit among the inputs.

    Keras 3 passes `initial_state=[...]` as a keyword; Keras 2 also lists the states
    as extra entries after the sequence in the inbound node.
    """
    args = config.get("call_args")
    kwargs = config.get("call_kwargs") or {}
    if args is None:
        return 0, [], None
    first = _positions(args[0]) if args else []
    if not first:
        raise ModelFormatError(
            f"layer '{config.get('name', '')}': its call has no input sequence tensor"
        )
    seq, states = first[0], first[1:]
    for extra in args[1:]:
        states += _positions(extra)
    states += _positions(kwargs.get("initial_state"))
    if _positions(kwargs.get("constants")):
        raise UnsupportedLayer(
            f"layer '{config.get('name', '')}': RNN `constants` are only used by custom "
            "cells and are not supported"
        )
    mask = _positions(kwargs.get("mask"))
    return seq, states, (mask[0] if mask else None)


def _sequence_mask(config: dict[str, Any], inputs: list, masks: list | None) -> Any:
    seq, _, explicit = parse_rnn_call(config)
    if explicit is not None:
        return np.asarray(inputs[explicit]).astype(bool)
    if masks and len(masks) > seq and masks[seq] is not None:
        return np.asarray(masks[seq]).astype(bool)
    return None


def _saved_order(entries: list[dict[str, Any]]) -> list[int]:
    """The order in which a Keras 3 `.keras` file lists stacked cells: by their object
    path name (snake-case class name numbered per class), not by stacking order."""
    counters: dict[str, int] = {}
    names = []
    for entry in entries:
        base = re.sub("([a-z])([A-Z])", r"\1_\2",
                      re.sub("(.)([A-Z][a-z]+)", r"\1_\2", entry["class_name"])).lower()
        counters[base] = counters.get(base, -1) + 1
        names.append(base if counters[base] == 0 else f"{base}_{counters[base]}")
    return sorted(range(len(entries)), key=lambda i: names[i])


def _fits(cls: str, config: dict[str, Any], arrays: list[np.ndarray], rows: int | None) -> bool:
    recurrent = arrays[1]
    units = int(config.get("units", recurrent.shape[0]))
    kernel_ok = rows is None or arrays[0].shape[0] == rows
    return recurrent.shape == (units, GATES[cls] * units) and kernel_ok


def _stacked_cells(config: dict[str, Any], arrays: list[np.ndarray]) -> list[Cell]:
    """Cells of a generic RNN layer. The arrays come in stacking order (`.h5`) or in object
    path order (Keras 3 `.keras`); the shapes tell which, since a recurrent kernel of shape
    (units, gates * units) names its cell type and size."""
    entries = _cell_entries(config)
    classes = [CELL_CLASSES[e["class_name"]] for e in entries]
    names = [_cell_weight_names(c, e["config"]) for c, e in zip(classes, entries)]
    for order in (list(range(len(entries))), _saved_order(entries)):
        chunks: dict[int, list[np.ndarray]] = {}
        at = 0
        for i in order:
            chunks[i] = arrays[at:at + len(names[i])]
            at += len(names[i])
        rows: int | None = None
        ok = True
        for i, (c, e) in enumerate(zip(classes, entries)):
            if len(chunks[i]) != len(names[i]) or not _fits(c, e["config"], chunks[i], rows):
                ok = False
                break
            rows = chunks[i][1].shape[0]
        if ok:
            return [build_cell(c, e["config"], dict(zip(names[i], chunks[i])))
                    for i, (c, e) in enumerate(zip(classes, entries))]
    raise ModelFormatError(
        f"layer '{config.get('name', '')}': stored weights of shapes "
        f"{[a.shape for a in arrays]} do not fit its cells {classes}"
    )


# ----- layers -------------------------------------------------------------------------
class RecurrentLayer:
    """A built recurrent layer: `__call__(*inputs, mask=None)` -> output [+ states]."""

    def __init__(self, config: dict[str, Any], cell: Cell, channels_first: bool = False
                 ) -> None:
        self.name = config.get("name", "")
        self.cell = cell
        self.return_sequences = bool(config.get("return_sequences", False))
        self.return_state = bool(config.get("return_state", False))
        self.go_backwards = bool(config.get("go_backwards", False))
        self.time_major = bool(config.get("time_major", False))
        self.zero_output_for_mask = bool(config.get("zero_output_for_mask", False))
        self.channels_first = channels_first
        self.stateful = bool(config.get("stateful", False))
        self.stateful_batch = _fixed_batch(config) if self.stateful else None
        self.seq, self.state_pos, _ = parse_rnn_call(config)
        self.config = config

    def __call__(self, *inputs: np.ndarray, mask: list | None = None,
                 initial_state: list[np.ndarray] | None = None) -> Any:
        x = np.asarray(inputs[self.seq])
        seq_mask = _sequence_mask(self.config, list(inputs), mask)
        if initial_state is None and self.state_pos:
            initial_state = [np.asarray(inputs[p], F32) for p in self.state_pos]
        return self.run(x, seq_mask, initial_state)

    def run(self, x: np.ndarray, mask: np.ndarray | None,
            initial_state: list[np.ndarray] | None = None,
            zero_output_for_mask: bool | None = None) -> list[np.ndarray]:
        if x.ndim < 3:
            raise InputError(
                f"layer '{self.name}' expects a sequence (batch, time, features), got shape {x.shape}"
            )
        if self.time_major:
            x = np.swapaxes(x, 0, 1)
            mask = None if mask is None else np.swapaxes(mask, 0, 1)
        if self.channels_first:
            x = np.moveaxis(x, 2, -1)
        if mask is not None and mask.ndim > 2:
            mask = mask.reshape(mask.shape[:2] + (-1,)).any(axis=-1)
        if self.stateful_batch is not None and x.shape[0] != self.stateful_batch:
            raise InputError(
                f"layer '{self.name}' is stateful with batch size {self.stateful_batch}: Keras "
                "carries its states from one batch to the next, while tfless runs every "
                f"predict call from zero states. Predict batches of exactly {self.stateful_batch} "
                f"samples (got {x.shape[0]})"
            )
        states = self._initial_states(x, initial_state)
        zero_out = self.zero_output_for_mask if zero_output_for_mask is None \
            else zero_output_for_mask
        out, states = scan(self.cell, x, states, mask, self.go_backwards, zero_out,
                           self.return_sequences)
        if self.channels_first:
            out = np.moveaxis(out, -1, 2 if self.return_sequences else 1)
            states = [np.moveaxis(s, -1, 1) for s in states]
        if self.time_major and self.return_sequences:
            out = np.swapaxes(out, 0, 1)
        return [out, *states] if self.return_state else [out]

    def _initial_states(self, x: np.ndarray, given: list[np.ndarray] | None) -> list[np.ndarray]:
        zeros = self.cell.zero_states(x)
        if not given:
            return zeros
        if len(given) != len(zeros):
            raise InputError(
                f"layer '{self.name}' takes {len(zeros)} initial states, got {len(given)}"
            )
        states = []
        for g, z in zip(given, zeros):
            g = np.asarray(g, F32)
            if self.channels_first:
                g = np.moveaxis(g, 1, -1)
            if g.shape != z.shape:
                raise InputError(
                    f"layer '{self.name}': initial state of shape {g.shape}, expected {z.shape}"
                )
            states.append(g)
        return states


def _fixed_batch(config: dict[str, Any]) -> int | None:
    shape = config.get("batch_input_shape") or config.get("batch_shape") \
        or (config.get("build_config") or {}).get("input_shape")
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], int):
        return int(shape[0])
    return None


def _rnn_output_masks(cls: str) -> Callable:
    def rule(config: dict[str, Any], inputs: list, masks: list) -> list:
        mask = _sequence_mask(config, inputs, masks)
        out = mask if config.get("return_sequences") else None
        return [out] + [None] * (_rnn_num_outputs(cls)(config) - 1)

    return rule


def _layer_builder(cls: str) -> Callable:
    def build(config: dict[str, Any], weights: dict[str, np.ndarray]) -> RecurrentLayer:
        return build_recurrent_layer(cls, config, weights)

    build.__name__ = f"build_{cls.lower()}"
    return build


def build_recurrent_layer(cls: str, config: dict[str, Any], weights: dict[str, np.ndarray]
                          ) -> RecurrentLayer:
    if cls == "RNN":
        cells = _stacked_cells(config, list(weights.values()))
        cell: Cell = cells[0] if len(cells) == 1 else StackedCells(cells)
        return RecurrentLayer(config, cell)
    if cls.startswith("ConvLSTM"):
        conv_cell = build_conv_lstm_cell(config, weights)
        expected = int(cls[-2]) if cls[-2].isdigit() else conv_cell.rank
        if conv_cell.rank != expected:
            raise ModelFormatError(
                f"layer '{config.get('name', '')}': {cls} kernel has shape "
                f"{weights['kernel'].shape}"
            )
        return RecurrentLayer(config, conv_cell,
                              channels_first=config.get("data_format") == "channels_first")
    return RecurrentLayer(config, build_cell(cls, config, weights))


RECURRENT_CLASSES = ("SimpleRNN", "LSTM", "GRU", "CuDNNLSTM", "CuDNNGRU", "RNN",
                     "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")
for _cls in RECURRENT_CLASSES:
    register(_cls, weights=_rnn_layer_weight_names(_cls), mask=_rnn_output_masks(_cls),
             uses_mask=True, num_outputs=_rnn_num_outputs(_cls))(_layer_builder(_cls))


# ----- Bidirectional ------------------------------------------------------------------
def _bidirectional_layers(config: dict[str, Any]) -> tuple[dict, dict]:
    forward = _nested(config, config.get("layer"), "layer")
    if config.get("backward_layer") is not None:
        backward = _nested(config, config["backward_layer"], "backward_layer")
    else:
        backward = {"class_name": forward["class_name"], "config": dict(forward["config"])}
        backward["config"]["go_backwards"] = not forward["config"].get("go_backwards", False)
    for side in (forward, backward):
        side["config"].pop("call_args", None)
        side["config"].pop("call_kwargs", None)
        if side["class_name"] not in RECURRENT_CLASSES:
            raise UnsupportedLayer(
                f"layer '{config.get('name', '')}': Bidirectional around "
                f"'{side['class_name']}' is not supported; supported: {', '.join(RECURRENT_CLASSES)}"
            )
    return forward, backward


def _bidirectional_weight_names(config: dict[str, Any]) -> list[str]:
    forward, backward = _bidirectional_layers(config)
    return [f"forward/{n}" for n in _rnn_layer_weight_names(forward["class_name"])(forward["config"])] \
        + [f"backward/{n}" for n in _rnn_layer_weight_names(backward["class_name"])(backward["config"])]


def _bidirectional_states(config: dict[str, Any]) -> int:
    forward, backward = _bidirectional_layers(config)
    return _state_count(forward["class_name"], forward["config"]) \
        + _state_count(backward["class_name"], backward["config"])


def _bidirectional_num_outputs(config: dict[str, Any]) -> int:
    outputs = 2 if config.get("merge_mode", "concat") is None else 1
    forward, _ = _bidirectional_layers(config)
    return outputs + (_bidirectional_states(config) if forward["config"].get("return_state") else 0)


def _bidirectional_masks(config: dict[str, Any], inputs: list, masks: list) -> list:
    forward, _ = _bidirectional_layers(config)
    mask = _sequence_mask(config, inputs, masks)
    merged = config.get("merge_mode", "concat") is not None
    out = mask if forward["config"].get("return_sequences") else None
    outs = [out] if merged else [out, out]
    return outs + [None] * (_bidirectional_num_outputs(config) - len(outs))


MERGES = {
    "concat": lambda a, b: np.concatenate([a, b], axis=-1),
    "sum": lambda a, b: a + b,
    "mul": lambda a, b: a * b,
    "ave": lambda a, b: (a + b) / F32(2),
}


BIDIRECTIONAL_CHILDREN = ("forward_layer", "backward_layer")
# Keras 3 `.keras` object paths of a Bidirectional wrapped once or twice in TimeDistributed.
TIME_DISTRIBUTED_CHILDREN = tuple(f"layer/{c}" for c in BIDIRECTIONAL_CHILDREN) \
    + tuple(f"layer/layer/{c}" for c in BIDIRECTIONAL_CHILDREN)


@register("Bidirectional", weights=_bidirectional_weight_names, mask=_bidirectional_masks,
          uses_mask=True, children=BIDIRECTIONAL_CHILDREN,
          num_outputs=_bidirectional_num_outputs)
def build_bidirectional(config: dict[str, Any], weights: dict[str, np.ndarray]) -> Callable:
    forward_entry, backward_entry = _bidirectional_layers(config)
    layers = []
    for side, entry in (("forward", forward_entry), ("backward", backward_entry)):
        names = _rnn_layer_weight_names(entry["class_name"])(entry["config"])
        layers.append(build_recurrent_layer(
            entry["class_name"], entry["config"], {n: weights[f"{side}/{n}"] for n in names}))
    forward, backward = layers
    merge_mode = config.get("merge_mode", "concat")
    if merge_mode is not None and merge_mode not in MERGES:
        raise UnsupportedLayer(
            f"layer '{config.get('name', '')}': merge_mode '{merge_mode}' is not one of "
            f"{', '.join(MERGES)}, None"
        )
    seq, state_pos, _ = parse_rnn_call(config)
    n_forward = len(forward.cell.state_sizes)
    return_sequences = forward.return_sequences
    time_axis = 0 if forward.time_major else 1

    def run(*inputs: np.ndarray, mask: list | None = None) -> list[np.ndarray]:
        x = np.asarray(inputs[seq])
        seq_mask = _sequence_mask(config, list(inputs), mask)
        states = [np.asarray(inputs[p], F32) for p in state_pos]
        f_init = states[:n_forward] if states else None
        b_init = states[n_forward:] if states else None
        y = forward.run(x, seq_mask, f_init, zero_output_for_mask=return_sequences)
        y_rev = backward.run(x, seq_mask, b_init, zero_output_for_mask=return_sequences)
        out, out_rev = y[0], y_rev[0]
        if return_sequences:
            out_rev = np.flip(out_rev, axis=time_axis)
        merged = [out, out_rev] if merge_mode is None else [MERGES[merge_mode](out, out_rev)]
        return merged + y[1:] + y_rev[1:]

    return run


# ----- TimeDistributed ----------------------------------------------------------------
def _inner_layer(config: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    inner = _nested(config, config.get("layer"), "layer")
    inner["config"].setdefault("name", f"{config.get('name', '')}/layer")
    return inner, get_op(inner["class_name"], config.get("name", ""))


def _time_distributed_weight_names(config: dict[str, Any]) -> list[str]:
    inner, spec = _inner_layer(config)
    return [f"layer/{n}" for n in spec.weight_names(inner["config"])]


def _time_distributed_explicit_mask(config: dict[str, Any]) -> int | None:
    """Input position of a `mask=` tensor (Keras 3 functional models record it)."""
    positions = _positions((config.get("call_kwargs") or {}).get("mask"))
    return positions[0] if positions else None


def _time_distributed_masks(config: dict[str, Any], inputs: list, masks: list) -> list:
    """Keras 3 passes the wrapper's mask (the `mask=` of the call, else the input's) on as it
    is. tf_keras asks the inner layer on the folded tensors: a layer that keeps masks keeps
    it, one that makes its own (RNN, Masking, Embedding) gives it per step, and otherwise the
    input mask is reduced to (batch, time) with `any` over the trailing axes."""
    mask = masks[0] if masks else None
    explicit = _time_distributed_explicit_mask(config)
    if explicit is not None and len(inputs) > explicit:
        mask = np.asarray(inputs[explicit]).astype(bool)
    if _major(config) >= 3:
        return [mask]
    inner, spec = _inner_layer(config)
    if spec.mask == "keep":
        return [mask]
    if callable(spec.mask) and inputs:
        x = np.asarray(inputs[0])
        flat_mask = None if mask is None else np.asarray(mask).reshape(-1, *mask.shape[2:])
        inner_masks = spec.mask(inner["config"], [x.reshape(-1, *x.shape[2:])], [flat_mask])
        if inner_masks and inner_masks[0] is not None:
            m = np.asarray(inner_masks[0])
            return [m.reshape(x.shape[:2] + m.shape[1:])]
    if mask is not None and np.ndim(mask) > 2:
        mask = np.asarray(mask).reshape(mask.shape[:2] + (-1,)).any(axis=-1)
    return [mask]


@register("TimeDistributed", weights=_time_distributed_weight_names, mask=_time_distributed_masks,
          uses_mask=True, children=TIME_DISTRIBUTED_CHILDREN)
def build_time_distributed(config: dict[str, Any], weights: dict[str, np.ndarray]) -> Callable:
    inner, spec = _inner_layer(config)
    if spec.num_outputs(inner["config"]) != 1:
        raise UnsupportedLayer(
            f"layer '{config.get('name', '')}': TimeDistributed around a layer with several "
            "outputs is not supported"
        )
    inner_weights = {n: weights[f"layer/{n}"] for n in spec.weight_names(inner["config"])}
    inner_run = spec.build(inner["config"], inner_weights)
    explicit = _time_distributed_explicit_mask(config)

    def run(*inputs: np.ndarray, mask: list | None = None) -> np.ndarray:
        x = np.asarray(inputs[0])
        if x.ndim < 3:
            raise InputError(
                f"layer '{config.get('name', '')}' expects (batch, time, ...), got shape {x.shape}"
            )
        flat = x.reshape(-1, *x.shape[2:])
        # Keras hands an inner layer that takes a mask each step's slice of the wrapper's mask
        # (folded like the inputs): the `mask=` a Keras 3 functional call recorded, else the
        # mask arriving with the input (tf_keras, Keras 3 Sequential).
        m = None
        if spec.uses_mask:
            if explicit is not None:
                m = np.asarray(inputs[explicit]).astype(bool)
            elif mask and mask[0] is not None and np.ndim(mask[0]) > 2:
                m = np.asarray(mask[0])
        if m is not None:
            y = inner_run(flat, mask=[m.reshape(-1, *m.shape[2:])])
        else:
            y = inner_run(flat)
        if isinstance(y, (list, tuple)):
            y = y[0]
        return np.asarray(y).reshape(x.shape[:2] + np.shape(y)[1:])

    return run


# A TimeDistributed around a nested model is expanded by the reader into
# TimeDistributedFold -> the inlined model's nodes -> TimeDistributedUnfold.
def _fold_masks(config: dict[str, Any], inputs: list, masks: list) -> list:
    mask = masks[0] if masks else None
    if mask is None:
        return [None]
    mask = np.asarray(mask)
    return [mask.reshape(-1, *mask.shape[2:])]


@register("TimeDistributedFold", mask=_fold_masks)
def build_time_fold(config: dict[str, Any], weights: dict[str, np.ndarray]) -> Callable:
    def run(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim < 3:
            raise InputError(
                f"layer '{config.get('name', '')}' expects (batch, time, ...), got shape {x.shape}"
            )
        return x.reshape(-1, *x.shape[2:])

    return run


def _unfold_masks(config: dict[str, Any], inputs: list, masks: list) -> list:
    """Keras 3 passes the wrapper's input mask on as it is; tf_keras keeps the inner model's
    output mask (per timestep), else the wrapper's input mask reduced to (batch, time)."""
    inner_mask, outer_mask = (list(masks) + [None, None])[:2]
    if _major(config) >= 3:
        return [outer_mask]
    if inner_mask is not None:
        m = np.asarray(inner_mask)
        return [m.reshape(np.shape(inputs[1])[:2] + m.shape[1:])]
    if outer_mask is not None and np.ndim(outer_mask) > 2:
        m = np.asarray(outer_mask)
        return [m.reshape(m.shape[:2] + (-1,)).any(axis=-1)]
    return [outer_mask]


@register("TimeDistributedUnfold", mask=_unfold_masks)
def build_time_unfold(config: dict[str, Any], weights: dict[str, np.ndarray]) -> Callable:
    def run(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        y = np.asarray(y)
        return y.reshape(np.shape(x)[:2] + y.shape[1:])

    return run


__all__ = ["REGISTRY", "Cell", "RecurrentLayer", "build_cell", "conv_nd", "scan"]
