"""ONNX converters for recurrent layers: SimpleRNN, LSTM, GRU (and CuDNN*), RNN with
stacked cells, Bidirectional and TimeDistributed.

A recurrent layer becomes one ONNX `Scan` whose body is the cell's step, written with the
same formulas as the runtime's cells (gate order i,f,c,o / z,r,h; GRU `reset_after`
applying the reset gate after or before the recurrent matmul; any Keras activation).
The body also carries the runtime's masking rule (a masked step keeps the states and
repeats the previous output, or outputs zeros with `zero_output_for_mask`), so masks of
any pattern, `go_backwards`, `time_major`, initial states and `return_state` export
exactly. Weights come from the runtime's own cell builders, so every layout the runtime
reads (Keras 1 per-gate arrays, CuDNN weights) exports the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import UnsupportedLayer
from ...graph import Node
from ...ops import get_op
from ...ops.activations import ACTIVATIONS
from ...ops.convolutional import Geometry
from ...ops.recurrent import (
    ConvLSTMCell,
    GRUCell,
    LSTMCell,
    RecurrentLayer,
    SimpleRNNCell,
    StackedCells,
    _bidirectional_layers,
    _bidirectional_num_outputs,
    _inner_layer,
    _major,
    _rnn_layer_weight_names,
    _time_distributed_explicit_mask,
    build_recurrent_layer,
    parse_rnn_call,
)
from ..onnx_builder import CONVERTERS, OnnxBuilder, converter
from .activations import activation
from .convolutional import from_channels_first, to_channels_first, window_pads

F32 = np.float32
INT64_MIN = -(2**63) + 1
ACTIVATION_NAMES = {id(fn): name for name, fn in ACTIVATIONS.items()}


def _act(b: OnnxBuilder, fn: Any, x: str, layer: str) -> str:
    name = ACTIVATION_NAMES.get(id(fn))
    if name is None:
        raise UnsupportedLayer(f"layer '{layer}': a recurrent activation has no ONNX converter")
    return activation(b, name, x, layer)


def _cols(b: OnnxBuilder, z: str, start: int, end: int) -> str:
    return b.op("Slice", [z, b.i64([start]), b.i64([end]), b.i64([-1])])


class CellEmitter:
    """The ONNX form of one runtime cell: its weights as initializers and its step."""

    def __init__(self, b: OnnxBuilder, node: Node, key: str, cell: Any) -> None:
        if not isinstance(cell, (SimpleRNNCell, LSTMCell, GRUCell)):
            raise UnsupportedLayer(
                f"layer '{node.name}' ({node.op}): this recurrent cell has no ONNX converter yet")
        self.b, self.node, self.cell = b, node, cell
        self.kernel = b.weight(node, f"{key}kernel", cell.kernel)
        self.bias = None if cell.bias is None else b.weight(node, f"{key}bias", cell.bias)
        if isinstance(cell, GRUCell) and not cell.reset_after:
            self.recurrent_zr = b.weight(node, f"{key}recurrent_zr", cell.recurrent_zr)
            self.recurrent_h = b.weight(node, f"{key}recurrent_h", cell.recurrent_h)
        else:
            self.recurrent = b.weight(node, f"{key}recurrent_kernel", cell.recurrent)
        self.recurrent_bias = None
        if isinstance(cell, GRUCell) and cell.recurrent_bias is not None:
            self.recurrent_bias = b.weight(node, f"{key}recurrent_bias", cell.recurrent_bias)
        self.state_sizes = list(cell.state_sizes)
        self.units = cell.recurrent.shape[0]

    def project(self, x: str) -> str:
        y = self.b.op("MatMul", [x, self.kernel])
        return self.b.op("Add", [y, self.bias]) if self.bias else y

    def step(self, xp: str, states: list[str]) -> tuple[str, list[str]]:
        b, cell, u, name = self.b, self.cell, self.units, self.node.name
        if isinstance(cell, SimpleRNNCell):
            h = _act(b, cell.act, b.op("Add", [xp, b.op("MatMul", [states[0], self.recurrent])]), name)
            return h, [h]
        if isinstance(cell, LSTMCell):
            h, c = states
            z = b.op("Add", [xp, b.op("MatMul", [h, self.recurrent])])
            i = _act(b, cell.rec_act, _cols(b, z, 0, u), name)
            f = _act(b, cell.rec_act, _cols(b, z, u, 2 * u), name)
            c = b.op("Add", [b.op("Mul", [f, c]),
                             b.op("Mul", [i, _act(b, cell.act, _cols(b, z, 2 * u, 3 * u), name)])])
            o = _act(b, cell.rec_act, _cols(b, z, 3 * u, 4 * u), name)
            h = b.op("Mul", [o, _act(b, cell.act, c, name)])
            return h, [h, c]
        (h,) = states
        if cell.reset_after:
            inner = b.op("MatMul", [h, self.recurrent])
            if self.recurrent_bias:
                inner = b.op("Add", [inner, self.recurrent_bias])
        else:
            inner = b.op("MatMul", [h, self.recurrent_zr])
        z = _act(b, cell.rec_act, b.op("Add", [_cols(b, xp, 0, u), _cols(b, inner, 0, u)]), name)
        r = _act(b, cell.rec_act, b.op("Add", [_cols(b, xp, u, 2 * u), _cols(b, inner, u, 2 * u)]),
                 name)
        if cell.reset_after:
            rec_h = b.op("Mul", [r, _cols(b, inner, 2 * u, 3 * u)])
        else:
            rec_h = b.op("MatMul", [b.op("Mul", [r, h]), self.recurrent_h])
        hh = _act(b, cell.act, b.op("Add", [_cols(b, xp, 2 * u, 3 * u), rec_h]), name)
        h = b.op("Add", [b.op("Mul", [z, h]), b.op("Mul", [b.op("Sub", [b.f32(1), z]), hh])])
        return h, [h]


class ConvLSTMEmitter:
    """ConvLSTM's cell: the input convolution over all timesteps at once, then per step
    a 'same', stride-1 convolution of h; gates i,f,c,o on the channel axis."""

    def __init__(self, b: OnnxBuilder, node: Node, cell: ConvLSTMCell) -> None:
        self.b, self.node, self.cell = b, node, cell
        rank = self.rank = cell.rank
        shape, out = b.in_shape(node), b.out_shape(node)
        self.in_sizes = shape[2:-1]
        self.out_sizes = out[2:-1] if len(out) == rank + 3 else out[1:-1]
        if None in self.out_sizes:
            raise UnsupportedLayer(f"layer '{node.name}' ({node.op}): ONNX export needs fixed "
                                   "spatial sizes")
        perm = (rank + 1, rank, *range(rank))
        self.kernel = b.weight(node, "kernel", np.ascontiguousarray(cell.kernel.transpose(perm)))
        self.recurrent = b.weight(node, "recurrent_kernel",
                                  np.ascontiguousarray(cell.recurrent.transpose(perm)))
        self.bias = None if cell.bias is None else b.weight(node, "bias", cell.bias)
        self.state_sizes = [cell.filters, cell.filters]
        self.units = cell.filters
        self.state_dims = [*self.out_sizes, cell.filters]

    def _conv(self, x: str, w: str, geo: Geometry, sizes: Any) -> str:
        b, rank = self.b, self.rank
        y = b.op("Conv", [to_channels_first(b, x, rank, False), w], kernel_shape=list(geo.kernel),
                 strides=list(geo.strides), dilations=list(geo.dilation), **window_pads(geo, sizes))
        return from_channels_first(b, y, rank, False)

    def project(self, x: str) -> str:
        b, cell = self.b, self.cell
        shape = b.op("Shape", [x])
        flat = b.op("Reshape", [x, b.op("Concat", [b.i64([-1]), b.op(
            "Slice", [shape, b.i64([2]), b.i64([2**62])])], axis=0)])
        geo = Geometry(self.node.name, cell.kernel.shape[:self.rank], cell.strides, cell.dilation,
                       cell.padding)
        y = self._conv(flat, self.kernel, geo, self.in_sizes)
        if self.bias:
            y = b.op("Add", [y, self.bias])
        lead = b.op("Slice", [shape, b.i64([0]), b.i64([2])])
        rest = b.op("Slice", [b.op("Shape", [y]), b.i64([1]), b.i64([2**62])])
        return b.op("Reshape", [y, b.op("Concat", [lead, rest], axis=0)])

    def step(self, xp: str, states: list[str]) -> tuple[str, list[str]]:
        b, cell, u, name = self.b, self.cell, self.units, self.node.name
        h, c = states
        ones = (1,) * self.rank
        geo = Geometry(name, cell.recurrent.shape[:self.rank], ones, ones, "same")
        z = b.op("Add", [xp, self._conv(h, self.recurrent, geo, self.out_sizes)])
        i = _act(b, cell.rec_act, _cols(b, z, 0, u), name)
        f = _act(b, cell.rec_act, _cols(b, z, u, 2 * u), name)
        c = b.op("Add", [b.op("Mul", [f, c]),
                         b.op("Mul", [i, _act(b, cell.act, _cols(b, z, 2 * u, 3 * u), name)])])
        o = _act(b, cell.rec_act, _cols(b, z, 3 * u, 4 * u), name)
        h = b.op("Mul", [o, _act(b, cell.act, c, name)])
        return h, [h, c]


def _emitters(b: OnnxBuilder, node: Node, layer: RecurrentLayer, prefix: str) -> list[Any]:
    if isinstance(layer.cell, ConvLSTMCell) and not layer.channels_first and not prefix:
        return [ConvLSTMEmitter(b, node, layer.cell)]
    cells = layer.cell.cells if isinstance(layer.cell, StackedCells) else [layer.cell]
    if layer.channels_first or not cells:
        raise UnsupportedLayer(f"layer '{node.name}' ({node.op}): no ONNX converter for this cell")
    keys = [f"{prefix}cell{i}/" if isinstance(layer.cell, StackedCells) else prefix
            for i in range(len(cells))]
    return [CellEmitter(b, node, k, c) for k, c in zip(keys, cells)]


def run_layer(b: OnnxBuilder, node: Node, layer: RecurrentLayer, prefix: str, x: str,
              mask: str | None, initial: list[str] | None,
              zero_output_for_mask: bool | None = None,
              cells: list[Any] | None = None) -> list[str]:
    """The runtime's RecurrentLayer.run as ONNX: [output, *final states if return_state].
    `cells`: emitters to use instead of those of `layer.cell` (TFLite's fused LSTM)."""
    cells = cells or _emitters(b, node, layer, prefix)
    if layer.time_major:
        x = b.op("Transpose", [x], perm=[1, 0, 2])
        mask = None if mask is None else b.op("Transpose", [mask], perm=[1, 0])
    zero_out = layer.zero_output_for_mask if zero_output_for_mask is None else zero_output_for_mask
    sizes = [n for c in cells for n in c.state_sizes]
    dims = [getattr(c, "state_dims", [n]) for c in cells for n in c.state_sizes]
    states = initial or [b.zeros(x, d) for d in dims]
    if len(states) != len(sizes):
        raise UnsupportedLayer(f"layer '{node.name}': takes {len(sizes)} initial states, "
                               f"got {len(states)}")
    prev0 = b.zeros(x, getattr(cells[-1], "state_dims", [cells[-1].units]))
    xp = cells[0].project(x)
    n = len(states)
    seq_out = layer.return_sequences

    def body(ins: list[str]) -> list[str]:
        old, prev, xp_t = ins[:n], ins[n], ins[n + 1]
        out, new, at = xp_t, [], 0
        for k, cell in enumerate(cells):
            k_states = old[at:at + len(cell.state_sizes)]
            out, s = cell.step(out if k == 0 else cell.project(out), k_states)
            new += s
            at += len(cell.state_sizes)
        if mask is not None:
            rank = len(getattr(cells[-1], "state_dims", [0]))
            keep = b.op("Unsqueeze", [ins[n + 2], b.i64(list(range(1, rank + 1)))])
            out = b.op("Where", [keep, out, b.f32(0) if zero_out else prev])
            new = [b.op("Where", [keep, s_new, s_old]) for s_new, s_old in zip(new, old)]
        return [*new, out] + ([out] if seq_out else [])

    in_types = [F32] * (n + 2) + ([bool] if mask is not None else [])
    out_types = [F32] * (n + 1) + ([F32] if seq_out else [])
    graph = b.subgraph(f"{node.name}/{prefix}step", in_types, out_types, body)
    scans = [xp] + ([mask] if mask is not None else [])
    outs = b.op("Scan", [*states, prev0, *scans], outputs=n + 1 + int(seq_out),
                name=f"{node.name}/{prefix}scan", body=graph, num_scan_inputs=len(scans),
                scan_input_axes=[1] * len(scans),
                scan_input_directions=[1 if layer.go_backwards else 0] * len(scans),
                scan_output_axes=[1] if seq_out else None)
    final_states, last = outs[:n], outs[n]
    out = outs[n + 1] if seq_out else last
    if layer.time_major and seq_out:
        out = b.op("Transpose", [out], perm=[1, 0, 2])
    return [out, *final_states] if layer.return_state else [out]


def _sequence_mask(b: OnnxBuilder, node: Node, xs: list[str]) -> str | None:
    seq, _, explicit = parse_rnn_call(node.config)
    if explicit is not None:
        return b.cast(xs[explicit], bool)
    return b.in_masks(node)[seq]


def _rnn_masks(b: OnnxBuilder, node: Node, xs: list[str], masks: list) -> list:
    mask = _sequence_mask(b, node, xs) if node.config.get("return_sequences") else None
    return [mask] + [None] * (len(node.outputs) - 1)


def convert_recurrent(cls: str):
    def convert(b: OnnxBuilder, node: Node, xs: list[str]) -> list[str]:
        layer = build_recurrent_layer(cls, node.config, node.weights)
        seq, state_pos, _ = parse_rnn_call(node.config)
        initial = [xs[p] for p in state_pos] or None
        return run_layer(b, node, layer, "", xs[seq], _sequence_mask(b, node, xs), initial)

    return convert


for _cls in ("SimpleRNN", "LSTM", "GRU", "CuDNNLSTM", "CuDNNGRU", "RNN", "ConvLSTM1D",
             "ConvLSTM2D", "ConvLSTM3D"):
    converter(_cls, mask=_rnn_masks, uses_mask=True)(convert_recurrent(_cls))


# ----- Bidirectional ------------------------------------------------------------------
def _reverse_time(b: OnnxBuilder, x: str, axis: int) -> str:
    return b.op("Slice", [x, b.i64([-1]), b.i64([INT64_MIN]), b.i64([axis]), b.i64([-1])])


def _bidirectional_masks(b: OnnxBuilder, node: Node, xs: list[str], masks: list) -> list:
    forward, _ = _bidirectional_layers(node.config)
    out = _sequence_mask(b, node, xs) if forward["config"].get("return_sequences") else None
    merged = node.config.get("merge_mode", "concat") is not None
    outs = [out] if merged else [out, out]
    return outs + [None] * (_bidirectional_num_outputs(node.config) - len(outs))


@converter("Bidirectional", mask=_bidirectional_masks, uses_mask=True)
def convert_bidirectional(b: OnnxBuilder, node: Node, xs: list[str]) -> list[str]:
    entries = _bidirectional_layers(node.config)
    layers = []
    for side, entry in zip(("forward", "backward"), entries):
        names = _rnn_layer_weight_names(entry["class_name"])(entry["config"])
        layers.append(build_recurrent_layer(entry["class_name"], entry["config"],
                                            {n: node.weights[f"{side}/{n}"] for n in names}))
    forward, backward = layers
    merge_mode = node.config.get("merge_mode", "concat")
    seq, state_pos, _ = parse_rnn_call(node.config)
    states = [xs[p] for p in state_pos]
    n_forward = len(forward.cell.state_sizes)
    mask = _sequence_mask(b, node, xs)
    seq_out = forward.return_sequences
    y = run_layer(b, node, forward, "forward/", xs[seq], mask, states[:n_forward] or None, seq_out)
    y_rev = run_layer(b, node, backward, "backward/", xs[seq], mask, states[n_forward:] or None,
                      seq_out)
    out, out_rev = y[0], y_rev[0]
    if seq_out:
        out_rev = _reverse_time(b, out_rev, 0 if forward.time_major else 1)
    if merge_mode is None:
        merged = [out, out_rev]
    elif merge_mode == "concat":
        merged = [b.op("Concat", [out, out_rev], axis=-1)]
    elif merge_mode == "sum":
        merged = [b.op("Add", [out, out_rev])]
    elif merge_mode == "mul":
        merged = [b.op("Mul", [out, out_rev])]
    elif merge_mode == "ave":
        merged = [b.op("Div", [b.op("Add", [out, out_rev]), b.f32(2)])]
    else:
        raise UnsupportedLayer(f"layer '{node.name}': merge_mode {merge_mode!r}")
    return merged + y[1:] + y_rev[1:]


# ----- folding time into the batch (TimeDistributed) --------------------------------
INT64_MAX = 2**63 - 1


def _dims_from(b: OnnxBuilder, x: str, start: int, stop: int = INT64_MAX) -> str:
    return b.op("Slice", [b.op("Shape", [x]), b.i64([start]), b.i64([stop])])


def _fold(b: OnnxBuilder, x: str) -> str:
    """(batch, time, ...) -> (batch * time, ...)."""
    return b.op("Reshape", [x, b.op("Concat", [b.i64([-1]), _dims_from(b, x, 2)], axis=0)])


def _unfold(b: OnnxBuilder, y: str, x: str) -> str:
    """(batch * time, ...) back to (batch, time, ...) of the wrapper's input `x`."""
    shape = b.op("Concat", [_dims_from(b, x, 0, 2), _dims_from(b, y, 1)], axis=0)
    return b.op("Reshape", [y, shape])


# ----- TimeDistributed ----------------------------------------------------------------
def _td_explicit_mask(b: OnnxBuilder, node: Node, xs: list[str]) -> str | None:
    """The `mask=` tensor a Keras 3 functional call recorded (a Masking/Embedding mask is
    saved this way), as bool."""
    explicit = _time_distributed_explicit_mask(node.config)
    if explicit is None or explicit >= len(xs):
        return None
    return b.cast(xs[explicit], bool)


def _time_distributed_masks(b: OnnxBuilder, node: Node, xs: list[str], masks: list) -> list:
    """As `ops.recurrent._time_distributed_masks`."""
    mask = _td_explicit_mask(b, node, xs)
    if mask is None:
        mask = masks[0] if masks else None
    if _major(node.config) >= 3:
        return [mask]
    inner, spec = _inner_layer(node.config)
    if spec.mask == "keep":
        return [mask]
    if callable(spec.mask):
        # tf_keras takes the inner layer's own output mask, per step, when it has one
        inner_rule = CONVERTERS[inner["class_name"]].mask
        if inner_rule is None:
            raise UnsupportedLayer(
                f"layer '{node.name}': TimeDistributed around {inner['class_name']} computes "
                "its mask from the inner layer (Keras 2), which the ONNX exporter does not "
                "convert for this layer type yet")
        inner_node = _inner_node(b, node)
        inner_masks = inner_rule(b, inner_node, xs[:1], b.in_masks(inner_node))
        if inner_masks and inner_masks[0] is not None:
            return [_unfold(b, inner_masks[0], xs[0])]
    return [None if mask is None else _any_after_time(b, mask)]


def _any_after_time(b: OnnxBuilder, mask: str) -> str:
    """(batch, time, ...) -> (batch, time): `any` over the trailing axes."""
    flat = b.op("Reshape", [mask, b.op("Concat", [_dims_from(b, mask, 0, 2), b.i64([-1])],
                                        axis=0)])
    return b.cast(b.reduce("ReduceMax", b.cast(flat, np.float32), [-1], keepdims=False), bool)


def _inner_mask(b: OnnxBuilder, node: Node, xs: list[str], inner: dict, spec: Any) -> str | None:
    """The folded (batch * time, ...) mask the runtime hands the inner layer when it reads
    masks: Keras 3's explicit `mask=` tensor, else the mask arriving with the input."""
    if not spec.uses_mask:
        return None
    mask = _td_explicit_mask(b, node, xs)
    if mask is None and len(b.in_shape(node, 0)) > 3:  # a mask of (batch, time, ...)
        mask = b.in_masks(node)[0]
    if mask is None:
        return None
    if not CONVERTERS[inner["class_name"]].uses_mask:
        raise UnsupportedLayer(
            f"layer '{node.name}': TimeDistributed hands a Keras mask to its inner "
            f"{inner['class_name']}, whose ONNX converter does not apply masks yet")
    return _fold(b, mask)


def _inner_node(b: OnnxBuilder, node: Node) -> Node:
    """The wrapped layer as a node on the folded (batch * time, ...) tensors."""
    inner, spec = _inner_layer(node.config)
    weights = {n: node.weights[f"layer/{n}"] for n in spec.weight_names(inner["config"])}
    in_shape, out_shape = b.in_shape(node), b.out_shape(node)
    flat_in, flat_out = f"{node.name}/flat_in", f"{node.name}/flat_out"
    b.facts.shapes[flat_in] = (None, *in_shape[2:])
    b.facts.shapes[flat_out] = (None, *out_shape[2:])
    b.facts.dtypes[flat_in] = b.dtype(node.inputs[0])
    b.facts.dtypes[flat_out] = b.dtype(node.outputs[0])
    return Node(f"{node.name}/{inner['config'].get('name', 'layer')}", inner["class_name"],
                inner["config"], weights, [flat_in], [flat_out])


@converter("TimeDistributed", mask=_time_distributed_masks, uses_mask=True)
def convert_time_distributed(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    inner, spec = _inner_layer(node.config)
    if inner["class_name"] not in CONVERTERS:
        raise UnsupportedLayer(f"layer '{node.name}': TimeDistributed around "
                               f"'{inner['class_name']}', which has no ONNX converter")
    get_op(inner["class_name"], node.name)
    inner_node = _inner_node(b, node)
    mask = _inner_mask(b, node, xs, inner, spec)
    if mask is not None:
        b.masks[inner_node.inputs[0]] = mask
    x = xs[0]
    y = CONVERTERS[inner["class_name"]].convert(b, inner_node, [_fold(b, x)])
    y = y if isinstance(y, str) else y[0]
    return b.op("Identity", [_unfold(b, y, x)], name=node.name)


# ----- TimeDistributed around a nested model: Fold -> inlined nodes -> Unfold --------------
def _fold_masks(b: OnnxBuilder, node: Node, xs: list[str], masks: list) -> list:
    return [None if not masks or masks[0] is None else _fold(b, masks[0])]


@converter("TimeDistributedFold", mask=_fold_masks)
def convert_time_fold(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    return b.op("Identity", [_fold(b, xs[0])], name=node.name)


def _unfold_masks(b: OnnxBuilder, node: Node, xs: list[str], masks: list) -> list:
    """As `ops.recurrent._unfold_masks`."""
    inner, outer = (list(masks) + [None, None])[:2]
    if _major(node.config) >= 3 or outer is None:
        return [outer]
    if inner is not None:
        return [_unfold(b, inner, xs[1])]
    return [_any_after_time(b, outer)]


@converter("TimeDistributedUnfold", mask=_unfold_masks)
def convert_time_unfold(b: OnnxBuilder, node: Node, xs: list[str]) -> str:
    return b.op("Identity", [_unfold(b, xs[0], xs[1])], name=node.name)
