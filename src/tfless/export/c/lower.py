"""The graph the C backend compiles: the ONNX lowering, with every tensor's facts known.

The C export does not translate Keras layers itself. It takes the ONNX graph the ONNX
exporter builds (`graph_to_onnx`, batch fixed at 1: each Keras layer lowered once to
primitive tensor ops) and learns, for every tensor of it and of its loop bodies, the dtype
and shape, and which tensors are *static*: computed from weights and shapes only
(`Shape`, the `Concat`/`Slice` arithmetic on it, `ConstantOfShape`, folded weights). Static
tensors become constants of the C file, or size expressions when they follow the length;
only the rest is computed by generated code.

The facts come from probes: ONNX Runtime runs the lowered graph (and each loop body on its
own) with every intermediate tensor exposed, once per probe length. With a free sequence
axis, each size is fitted as a polynomial in the run-time length (dims.fit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import TflessError, UnsupportedLayer
from ..onnx import graph_to_onnx, require_onnx, require_onnxruntime
from .dims import Dim, Shape, fit
from .onnx_graph import body_of, node_attr, outer_names
from .simplify import cancel_transposes

# ops whose output is a pure function of their inputs' shapes (never of their values)
SHAPE_OPS = {"Shape", "Size"}
# ops with sub-graphs the C backend lowers itself (their bodies get their own facts)
LOOP_OPS = {"Scan"}
NOT_FOLDABLE = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                "Multinomial", "Bernoulli"}


@dataclass
class Facts:
    """What is known of each tensor name (main graph and loop bodies share one name space)."""

    dtypes: dict[str, np.dtype] = field(default_factory=dict)
    shapes: dict[str, Shape] = field(default_factory=dict)
    # static tensors whose values do not change with the length: C constants
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    # static integer tensors of fixed shape whose values follow the length (flat)
    syms: dict[str, list[Dim]] = field(default_factory=dict)
    static: set[str] = field(default_factory=set)


@dataclass
class FreeAxis:
    """The one free (sequence) axis: which inputs have it, and the export's lengths."""

    inputs: list[tuple[int, int]]  # (input index, axis)
    max_steps: int
    probes: list[int]


@dataclass
class Lowered:
    proto: Any  # onnx.ModelProto
    input_names: list[str]
    output_names: list[str]
    facts: Facts
    free: FreeAxis | None
    doc: str = ""


def _session(model: Any) -> Any:
    ort = require_onnxruntime("the C export (it probes the ONNX lowering)")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # intermediate tensors must be computed as written, not fused away
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(model.SerializeToString(), options,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        raise TflessError(f"ONNX Runtime cannot run the lowered graph (a tfless bug): {exc}") from exc


def _run_exposed(onnx: Any, graph: Any, feeds: dict[str, np.ndarray], initializers: Sequence[Any],
                 opset_imports: Sequence[Any]) -> dict[str, np.ndarray]:
    """Every node output of `graph` (a GraphProto) for `feeds`; outer names it reads are
    supplied as extra inputs (values in `feeds`) or initializers."""
    helper = onnx.helper
    g = onnx.GraphProto()
    g.CopyFrom(graph)
    del g.output[:]
    defined = {i.name for i in g.input} | {t.name for t in g.initializer}
    for node in g.node:
        defined.update(o for o in node.output if o)
    known_inits = {t.name: t for t in initializers}
    for name in outer_names(graph):
        if name in defined:
            continue
        if name in known_inits:
            g.initializer.append(known_inits[name])
        elif name in feeds:
            arr = feeds[name]
            g.input.append(helper.make_tensor_value_info(
                name, int(helper.np_dtype_to_tensor_dtype(arr.dtype)), list(arr.shape)))
        defined.add(name)
    names = [o for node in g.node for o in node.output if o]
    for name in names:
        g.output.append(onnx.ValueInfoProto(name=name))
    model = helper.make_model(g, opset_imports=list(opset_imports), producer_name="tfless")
    model.ir_version = helper.find_min_ir_version_for(list(opset_imports))
    session = _session(model)
    wanted = {i.name for i in session.get_inputs()}
    values = session.run(names, {k: v for k, v in feeds.items() if k in wanted})
    return dict(zip(names, (np.asarray(v) for v in values)))


def _scan_body_feeds(node: Any, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Inputs for one step of a Scan body: the initial states and step 0 of each scan input."""
    body = body_of(node)
    n_scan = int(node_attr(node, "num_scan_inputs", 0))
    ins = list(node.input)
    n_state = len(ins) - n_scan
    axes = list(node_attr(node, "scan_input_axes", [0] * n_scan))
    feeds: dict[str, np.ndarray] = {}
    for k, (inner, outer) in enumerate(zip(body.input, ins)):
        arr = values[outer]
        if k >= n_state:
            axis = axes[k - n_state] % arr.ndim
            arr = np.take(arr, 0, axis=axis) if arr.shape[axis] else \
                np.zeros(arr.shape[:axis] + arr.shape[axis + 1:], arr.dtype)
        feeds[inner.name] = arr
    return feeds


def _probe_graph(onnx: Any, graph: Any, feeds: dict[str, np.ndarray], initializers: Sequence[Any],
                 opset_imports: Sequence[Any], out: dict[str, np.ndarray]) -> None:
    """Fill `out` with the value of every tensor of `graph` and of its Scan bodies."""
    values = dict(feeds)
    values.update(_run_exposed(onnx, graph, feeds, initializers, opset_imports))
    out.update(values)
    for node in graph.node:
        if node.op_type in LOOP_OPS:
            body_feeds = {**values, **_scan_body_feeds(node, values)}
            _probe_graph(onnx, body_of(node), body_feeds, initializers, opset_imports, out)


def static_names(graph: Any, static: set[str]) -> None:
    """Add to `static` every tensor of `graph` (and bodies) computed without input values."""
    for node in graph.node:
        if node.op_type in LOOP_OPS:
            static_names(body_of(node), static)
            continue
        ins = [i for i in node.input if i]
        if node.op_type in SHAPE_OPS or (node.op_type not in NOT_FOLDABLE
                                          and all(i in static for i in ins)):
            static.update(o for o in node.output if o)


def _free_axes(proto: Any) -> list[tuple[int, int]]:
    free = []
    for i, vi in enumerate(proto.graph.input):
        for axis, d in enumerate(vi.type.tensor_type.shape.dim):
            if not d.HasField("dim_value"):
                free.append((i, axis))
    return free


def lower(model: Any, inputs_at: Any, max_steps: int | None, steps: int | None = None) -> Lowered:
    """The lowered graph of a tfless Model with its facts.

    `inputs_at(steps)` gives one sample per input (batch 1) with the free axis at `steps`
    (ignored when there is none); `max_steps` is the longest length the C code accepts;
    `steps` fixes the free axis at that length instead (--steps)."""
    onnx = require_onnx()
    from ..onnx import DEFAULT_OPSET

    proto, _ = graph_to_onnx(model.graph, DEFAULT_OPSET, batch=1,
                             plan=getattr(model, "numpy_plan", model.plan))
    cancel_transposes(proto)
    free_axes = _free_axes(proto)
    if free_axes and steps:
        # a fixed length: the lowered inputs get it, and no size follows a run-time length
        for i, axis in free_axes:
            proto.graph.input[i].type.tensor_type.shape.dim[axis].dim_value = steps
        free_axes = []
    names = [s.name for s in model.graph.inputs]
    if free_axes:
        if len(free_axes) > 1:
            where = ", ".join(f"'{names[i]}' axis {a}" for i, a in free_axes)
            raise UnsupportedLayer(
                f"the model has {len(free_axes)} free axes ({where}); the C export supports one "
                "free (sequence) axis: rebuild the model with fixed sizes for the others")
        if max_steps is None or max_steps < 4:
            raise TflessError(f"input '{names[free_axes[0][0]]}' has a free axis: give the "
                              "longest length the C code must accept (--max-steps N, N >= 4)")
        probes = [max_steps, max_steps - 1, max_steps - 3, max_steps // 2 + 1]
        free: FreeAxis | None = FreeAxis(free_axes, max_steps, probes)
    else:
        probes = [0]
        free = None
    runs = []
    for steps in probes:
        feeds = dict(zip(names, inputs_at(steps)))
        values: dict[str, np.ndarray] = {}
        _probe_graph(onnx, proto.graph, feeds, list(proto.graph.initializer),
                     list(proto.opset_import), values)
        for t in proto.graph.initializer:
            values[t.name] = onnx.numpy_helper.to_array(t)
        runs.append(values)
    facts = Facts()
    facts.static = {t.name for t in proto.graph.initializer}
    static_names(proto.graph, facts.static)
    for name, first in runs[0].items():
        arrays = [r[name] for r in runs]
        facts.dtypes[name] = first.dtype
        if any(a.ndim != first.ndim for a in arrays):
            raise UnsupportedLayer(f"tensor '{name}' of the lowered graph changes rank with the "
                                   "sequence length; the C export needs a fixed rank")
        facts.shapes[name] = tuple(
            fit([a.shape[k] for a in arrays], probes, f"axis {k} of tensor '{name}'")
            for k in range(first.ndim))
        if name not in facts.static:
            continue
        if all(a.shape == first.shape and np.array_equal(a, first) for a in arrays):
            facts.consts[name] = first
        elif first.dtype.kind in "iu" and all(a.shape == first.shape for a in arrays) \
                and first.size <= 64:
            flat = [a.ravel() for a in arrays]
            facts.syms[name] = [fit([int(f[k]) for f in flat], probes, f"value {k} of '{name}'")
                                for k in range(first.size)]
    return Lowered(proto, names, [o.name for o in proto.graph.output], facts, free)
