"""ONNX export: the tfless Graph written as an ONNX model with the `onnx` package's helpers.

No TensorFlow and no tf2onnx: every Keras op type has one small converter function
(`onnx_ops/<family>.py`, registered in `CONVERTERS` under the same Keras class names as the
runtime registry) that emits ONNX nodes through an `OnnxBuilder`. Keras masks travel beside
the tensors as boolean ONNX tensors, like in the NumPy plan.

The exported file carries metadata (source file, Keras version, tfless version) and one
test vector (an input and the output the tfless NumPy runtime computes for it) that
`verify_onnx` re-checks with ONNX Runtime.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError, MissingExtra, ModelFormatError, TflessError, UnsupportedLayer
from ..graph import Graph, Node, Shape

if TYPE_CHECKING:  # the op registry loads lazily: importing tfless must not import every op
    from ..runtime.plan import Plan

MIN_OPSET = 13
DEFAULT_OPSET = 17
ATOL, RTOL = 1e-5, 1e-4
META_PREFIX = "tfless."
TEST_VECTOR_KEY = META_PREFIX + "test_vector"
TOLERANCE_KEY = META_PREFIX + "tolerance"
PROBE_SIZES = (8, 9)

Convert = Callable[["OnnxBuilder", Node, list[str]], "str | Sequence[str]"]
MaskConvert = Callable[["OnnxBuilder", Node, list[str], list["str | None"]], "list[str | None]"]


# ----- optional dependencies ---------------------------------------------------------------
def tfless_version() -> str:
    from .. import __version__

    return __version__


def require_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise MissingExtra("onnx", "onnx", "ONNX export") from None
    return onnx


def require_onnxruntime(purpose: str = "the ONNX Runtime backend") -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise MissingExtra("onnxruntime", "onnx", purpose) from None
    return onnxruntime


def max_opset() -> int:
    return int(require_onnx().defs.onnx_opset_version())


# ----- the converter registry -----------------------------------------------------------
@dataclass(frozen=True)
class ConverterSpec:
    """How one Keras layer type becomes ONNX nodes.

    mask: for layers whose runtime mask rule is a function, the ONNX version of that rule
    `(builder, node, inputs, input_masks) -> output masks` (boolean tensor names or None).
    uses_mask: the converter reads `builder.in_masks(node)` (the layer consumes masks).
    """

    name: str
    convert: Convert
    mask: MaskConvert | None = None
    uses_mask: bool = False


CONVERTERS: dict[str, ConverterSpec] = {}


def converter(*names: str, mask: MaskConvert | None = None,
              uses_mask: bool = False) -> Callable[[Convert], Convert]:
    """Register `convert(builder, node, inputs) -> output name(s)` under Keras class names."""

    def decorate(fn: Convert) -> Convert:
        for name in names:
            if name in CONVERTERS:
                raise RuntimeError(f"ONNX converter {name!r} registered twice")
            CONVERTERS[name] = ConverterSpec(name, fn, mask, uses_mask)
        return fn

    return decorate


def _load_converters() -> None:
    from . import onnx_ops  # noqa: F401  (importing fills CONVERTERS)


def unsupported_nodes(graph: Graph) -> list[Node]:
    from ..ops.quantized import runs_keras_quantized

    _load_converters()
    # Keras quantized layers (model.quantize) keep int weights the converters cannot read.
    return [n for n in graph.nodes
            if n.op not in CONVERTERS or runs_keras_quantized(n.op, n.config)]


# ----- static facts about the graph's tensors -----------------------------------------
@dataclass
class TensorFacts:
    """Shape (None = free axis, batch included) and dtype of every tensor, from probes."""

    shapes: dict[str, Shape]
    dtypes: dict[str, np.dtype]


def model_batch(graph: Graph) -> int | None:
    """The batch size the model fixes (every input declares the same one, e.g. a stateful
    RNN's batch_shape or a .tflite file without a free batch), else None."""
    sizes = {s.shape[0] if s.shape else None for s in graph.inputs}
    if len(sizes) == 1:
        size = sizes.pop()
        return int(size) if isinstance(size, (int, np.integer)) else None
    return None


def _probe_inputs(graph: Graph, size: int) -> list[np.ndarray]:
    batch = model_batch(graph) or 1
    return [np.zeros((batch,) + tuple(size if d is None else d for d in s.shape[1:]),
                     dtype=_np_dtype(s.dtype, s.name)) for s in graph.inputs]


def tensor_facts(graph: Graph, plan: Plan) -> TensorFacts:
    traces = [plan.trace(_probe_inputs(graph, size)) for size in PROBE_SIZES]
    shapes: dict[str, Shape] = {}
    dtypes: dict[str, np.dtype] = {}
    for tid, first in traces[0].items():
        arr = np.asarray(first)
        dims: list[int | None] = [None]
        for axis, d in enumerate(arr.shape[1:], start=1):
            same = all(np.shape(t.get(tid))[axis:axis + 1] == (d,) for t in traces[1:])
            dims.append(int(d) if same else None)
        shapes[tid] = tuple(dims) if arr.ndim else ()
        dtypes[tid] = arr.dtype
    return TensorFacts(shapes, dtypes)


def _np_dtype(name: str, where: str) -> np.dtype:
    try:
        dtype = np.dtype(name)
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in "biuf":
        raise UnsupportedLayer(
            f"input '{where}' has dtype '{name}'; ONNX export supports numeric inputs only"
        )
    return dtype


# ----- the builder converters write into -------------------------------------------------
class OnnxBuilder:
    """Collects ONNX nodes and initializers; hands out unique names.

    Converters call `op`, `const`, `reduce`, `cast` and read `shape`/`in_shape`/`out_shape`
    and `in_masks`; none of them imports `onnx` itself.
    """

    def __init__(self, opset: int, facts: TensorFacts, reserved: Sequence[str]) -> None:
        self.onnx = require_onnx()
        self.helper = self.onnx.helper
        self.opset = opset
        self.facts = facts
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.weight_names: set[str] = set()
        self.names: set[str] = set(reserved)
        self.values: dict[str, str] = {}
        self.masks: dict[str, str] = {}
        self._consts: dict[tuple, str] = {}
        # converter-family caches: e.g. a TFLite constant read by several operators
        # becomes one initializer
        self.shared: dict[Any, str] = {}
        self._prefix = ""

    # names
    def fresh(self, base: str) -> str:
        base = self._prefix + base
        name, i = base, 1
        while name in self.names:
            name = f"{base}_{i}"
            i += 1
        self.names.add(name)
        return name

    # constants
    def const(self, value: Any, name: str = "const", dtype: Any = None, weight: bool = False) -> str:
        """An initializer; small non-weight constants are shared. `weight`: a layer weight
        (subject to --float16)."""
        arr = np.asarray(value, dtype=dtype) if dtype is not None else np.asarray(value)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        key = None
        if not weight and arr.size <= 64:
            key = (arr.dtype.str, arr.shape, arr.tobytes())
            if key in self._consts:
                return self._consts[key]
        out = self.fresh(name)
        # (np.ascontiguousarray would turn a 0-d scalar into shape (1,))
        arr = arr if arr.flags.c_contiguous else arr.copy(order="C")
        self.initializers.append(self.onnx.numpy_helper.from_array(arr, out))
        if weight:
            self.weight_names.add(out)
        if key is not None:
            self._consts[key] = out
        return out

    def weight(self, node: Node, key: str, value: np.ndarray | None = None) -> str:
        arr = node.weights[key] if value is None else value
        return self.const(np.asarray(arr, dtype=np.float32) if np.asarray(arr).dtype.kind == "f"
                          else arr, f"{node.name}/{key}", weight=True)

    def f32(self, value: float) -> str:
        return self.const(np.float32(value), "c")

    def i64(self, values: Any) -> str:
        return self.const(np.asarray(values, dtype=np.int64), "i")

    # nodes
    def op(self, op_type: str, inputs: Sequence[str], outputs: int | Sequence[str] = 1,
           name: str | None = None, **attrs: Any) -> Any:
        """Add a node; returns its output name (one output) or list of names."""
        base = name or op_type.lower()
        if isinstance(outputs, int):
            outs = [self.fresh(base if outputs == 1 else f"{base}_out{i}") for i in range(outputs)]
        else:
            outs = list(outputs)
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(self.helper.make_node(op_type, list(inputs), outs,
                                                name=self.fresh(f"{base}/{op_type}"), **attrs))
        return outs[0] if len(outs) == 1 else outs

    def subgraph(self, name: str, input_types: Sequence[Any], output_types: Sequence[Any],
                 body: Callable[[list[str]], Sequence[str]]) -> Any:
        """A GraphProto (for Scan/Loop) built by `body(input names) -> output names`.
        Constants and weights it creates live in the main graph (visible from inside)."""
        helper = self.helper
        saved, self.nodes = self.nodes, []
        try:
            ins = [self.fresh(f"{name}/in{i}") for i in range(len(input_types))]
            outs = [self.op("Identity", [o], name=f"{name}/out") for o in body(ins)]
            nodes = self.nodes
        finally:
            self.nodes = saved
        return helper.make_graph(
            nodes, name,
            [helper.make_tensor_value_info(n, self.onnx_dtype(t), None) for n, t in zip(ins, input_types)],
            [helper.make_tensor_value_info(n, self.onnx_dtype(t), None) for n, t in zip(outs, output_types)])

    def zeros(self, like: str, dims: Sequence[int], batch_axis: int = 0) -> str:
        """float32 zeros of shape (batch of `like`, *dims)."""
        batch = self.op("Slice", [self.op("Shape", [like]), self.i64([batch_axis]),
                                  self.i64([batch_axis + 1])])
        shape = self.op("Concat", [batch, self.i64(list(dims))], axis=0)
        value = self.onnx.helper.make_tensor("value", self.onnx.TensorProto.FLOAT, [1], [0.0])
        return self.op("ConstantOfShape", [shape], value=value)

    def reduce(self, op_type: str, x: str, axes: Sequence[int], keepdims: bool = True) -> str:
        """ReduceX over `axes`, spelled as the opset wants (axes as an input from opset 18,
        ReduceSum from 13)."""
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, [x, self.i64(list(axes))], keepdims=int(keepdims))
        return self.op(op_type, [x], axes=list(axes), keepdims=int(keepdims))

    def cast(self, x: str, dtype: Any) -> str:
        return self.op("Cast", [x], to=self.onnx_dtype(dtype))

    def onnx_dtype(self, dtype: Any) -> int:
        return int(self.helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))

    def clip(self, x: str, low: float | None, high: float | None) -> str:
        return self.op("Clip", [x, self.f32(low) if low is not None else "",
                                self.f32(high) if high is not None else ""])

    # facts
    def shape(self, tid: str) -> Shape:
        return self.facts.shapes[tid]

    def in_shape(self, node: Node, i: int = 0) -> Shape:
        return self.shape(node.inputs[i])

    def out_shape(self, node: Node, i: int = 0) -> Shape:
        return self.shape(node.outputs[i])

    def dtype(self, tid: str) -> np.dtype:
        return self.facts.dtypes[tid]

    def in_masks(self, node: Node) -> list[str | None]:
        return [self.masks.get(t) for t in node.inputs]


# ----- Graph -> ModelProto -------------------------------------------------------------
def _check_supported(graph: Graph) -> None:
    missing = unsupported_nodes(graph)
    if missing:
        from ..ops.quantized import runs_keras_quantized

        listed = ", ".join(f"'{n.name}' ({n.op}"
                           f"{', quantized' if runs_keras_quantized(n.op, n.config) else ''})"
                           for n in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise UnsupportedLayer(
            f"ONNX export does not support layer {listed}{more} yet; nothing was written. "
            f"Layer types with ONNX converters: {', '.join(sorted(CONVERTERS))}"
        )


def _dims(shape: Shape, batch: int | None, prefix: str) -> list[Any]:
    dims: list[Any] = ["batch" if batch is None else batch]
    dims += [d if d is not None else f"{prefix}_dim{i}" for i, d in enumerate(shape[1:], 1)]
    return dims


def _convert_node(b: OnnxBuilder, node: Node) -> None:
    from ..ops import get_op

    spec = CONVERTERS[node.op]
    rt = get_op(node.op, node.name)
    xs = [b.values[t] for t in node.inputs]
    in_masks = b.in_masks(node)
    has_mask = any(m is not None for m in in_masks)
    if rt.uses_mask and has_mask and not spec.uses_mask:
        raise UnsupportedLayer(
            f"layer '{node.name}' ({node.op}) receives a Keras mask, which the ONNX exporter "
            "does not apply for this layer type yet"
        )
    b._prefix = ""
    try:
        out = spec.convert(b, node, xs)
    except TflessError:
        raise
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise TflessError(
            f"layer '{node.name}' ({node.op}): cannot convert to ONNX: {type(exc).__name__}: {exc}"
        ) from exc
    outs = [out] if isinstance(out, str) else list(out)
    if len(outs) != len(node.outputs):
        raise TflessError(f"layer '{node.name}' ({node.op}): ONNX converter made {len(outs)} "
                          f"outputs, the layer has {len(node.outputs)}")
    for tid, name in zip(node.outputs, outs):
        b.values[tid] = name
    rule = rt.mask
    if rule == "keep":
        out_masks: list[str | None] = [in_masks[0] if in_masks else None] * len(outs)
    elif rule == "drop":
        out_masks = [None] * len(outs)
    elif spec.mask is not None:
        out_masks = list(spec.mask(b, node, xs, in_masks))
    elif has_mask:
        raise UnsupportedLayer(
            f"layer '{node.name}' ({node.op}) passes a Keras mask on in a way the ONNX exporter "
            "does not convert yet"
        )
    else:
        out_masks = [None] * len(outs)
    for tid, m in zip(node.outputs, out_masks):
        if m is not None:
            b.masks[tid] = m


def graph_to_onnx(graph: Graph, opset: int = DEFAULT_OPSET, batch: int | None = None,
                  doc: str = "", facts: TensorFacts | None = None,
                  plan: Plan | None = None) -> tuple[Any, list[str]]:
    """The ONNX ModelProto of `graph` (batch None = dynamic) and the names of its weight
    initializers. Raises before building anything if a layer has no converter."""
    onnx = require_onnx()
    top = max_opset()
    if not MIN_OPSET <= opset <= top:
        raise InputError(f"opset {opset} is not available: use {MIN_OPSET} to {top} "
                         f"(the newest the installed onnx {onnx.__version__} supports)")
    if batch is not None and batch < 1:
        raise InputError(f"batch must be 'dynamic' or a positive integer, got {batch}")
    if batch is None:  # "dynamic" keeps a batch the model itself fixes
        batch = model_batch(graph)
    _check_supported(graph)
    if len(set(graph.output_names)) != len(graph.output_names):
        raise ModelFormatError(f"model output names are not unique: {graph.output_names}")
    if facts is None:
        from ..runtime.plan import Plan

        facts = tensor_facts(graph, plan or Plan(graph))
    helper = onnx.helper
    reserved = [s.name for s in graph.inputs] + list(graph.output_names)
    b = OnnxBuilder(opset, facts, reserved)
    inputs = []
    for spec in graph.inputs:
        dtype = _np_dtype(spec.dtype, spec.name)
        inputs.append(helper.make_tensor_value_info(
            spec.name, b.onnx_dtype(dtype), _dims(spec.shape, batch, spec.name)))
        b.values[spec.name] = spec.name
    for node in graph.nodes:
        _convert_node(b, node)
    outputs = []
    for tid, name in zip(graph.output_ids, graph.output_names):
        b.op("Identity", [b.values[tid]], [name], name=name)
        outputs.append(helper.make_tensor_value_info(
            name, b.onnx_dtype(facts.dtypes[tid]), _dims(facts.shapes[tid], batch, name)))
    g = helper.make_graph(b.nodes, "tfless", inputs, outputs, b.initializers, doc_string=doc)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(g, opset_imports=opsets, producer_name="tfless",
                              producer_version=tfless_version())
    model.ir_version = helper.find_min_ir_version_for(opsets)
    return model, sorted(b.weight_names)


# ----- float16 weights ------------------------------------------------------------------
def weights_to_float16(model: Any, weight_names: Sequence[str]) -> tuple[int, int, int]:
    """Store float32 layer weights as float16, each followed by a Cast back to float32
    (so every op still computes in float32). Returns how many weights were converted and
    their size in bytes before and after."""
    onnx = require_onnx()
    wanted = set(weight_names)
    graph = model.graph
    casts = []
    count = before = after = 0
    for init in graph.initializer:
        if init.name not in wanted or init.data_type != onnx.TensorProto.FLOAT:
            continue
        name = init.name
        arr = onnx.numpy_helper.to_array(init)
        before += arr.nbytes
        after += arr.nbytes // 2
        init.CopyFrom(onnx.numpy_helper.from_array(arr.astype(np.float16), name + "/float16"))
        casts.append(onnx.helper.make_node("Cast", [name + "/float16"], [name],
                                           name=name + "/Cast", to=onnx.TensorProto.FLOAT))
        count += 1
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return count, before, after


# ----- test vectors --------------------------------------------------------------------
def make_test_input(graph: Graph, batch: int, seed: int = 0) -> list[np.ndarray]:
    """A deterministic input: floats in [-1, 1), integers (token ids) in {0, 1}; free
    axes get length 8."""
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in graph.inputs:
        dtype = _np_dtype(spec.dtype, spec.name)
        shape = (batch,) + tuple(8 if d is None else d for d in spec.shape[1:])
        if dtype.kind == "f":
            arrays.append(rng.uniform(-1, 1, shape).astype(dtype))
        elif dtype.kind == "b":
            arrays.append(rng.integers(0, 2, shape).astype(bool))
        else:
            arrays.append(rng.integers(0, 2, shape).astype(dtype))
    return arrays


def _pack(arrays: dict[str, np.ndarray]) -> str:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _unpack(text: str) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@dataclass
class Comparison:
    name: str
    max_abs: float
    max_rel: float
    ok: bool


def compare(got: Sequence[np.ndarray], want: Sequence[np.ndarray], names: Sequence[str],
            atol: float, rtol: float) -> list[Comparison]:
    out = []
    for name, g, w in zip(names, got, want):
        g64, w64 = np.asarray(g, np.float64), np.asarray(w, np.float64)
        if g64.shape != w64.shape:
            out.append(Comparison(name, float("inf"), float("inf"), False))
            continue
        err = np.abs(g64 - w64)
        rel = err / np.maximum(np.abs(w64), 1e-12)
        same_nan = np.isnan(g64) & np.isnan(w64)
        ok = bool(np.all((err <= atol + rtol * np.abs(w64)) | same_nan))
        out.append(Comparison(name, float(np.nanmax(err, initial=0.0)),
                              float(np.nanmax(np.where(np.abs(w64) > atol, rel, 0), initial=0.0)),
                              ok))
    return out


def ort_session(model_bytes: bytes) -> Any:
    ort = require_onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        raise TflessError(f"ONNX Runtime cannot load the model: {exc}") from exc


def ort_run(session: Any, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    feed = {i.name: a for i, a in zip(session.get_inputs(), inputs)}
    return [np.asarray(y) for y in session.run(None, feed)]


# ----- export --------------------------------------------------------------------------
@dataclass
class ExportReport:
    path: str
    opset: int
    batch: int | None
    bytes: int
    float16: bool = False
    weights_converted: int = 0
    weight_bytes_float32: int = 0
    weight_bytes_float16: int = 0
    checked: str = ""
    comparisons: list[Comparison] = field(default_factory=list)
    quantized: Any = None  # an onnx_quantize.QuantizationReport for --quantize

    @property
    def max_abs_error(self) -> float:
        return max((c.max_abs for c in self.comparisons), default=0.0)

    @property
    def max_rel_error(self) -> float:
        return max((c.max_rel for c in self.comparisons), default=0.0)

    def __str__(self) -> str:
        batch = "dynamic" if self.batch is None else str(self.batch)
        lines = [f"wrote {self.path}: ONNX opset {self.opset}, batch {batch}, "
                 f"{_size(self.bytes)}"]
        if self.float16:
            saved = 1 - self.weight_bytes_float16 / max(self.weight_bytes_float32, 1)
            lines.append(f"float16 weights ({self.weights_converted} tensors): "
                         f"{_size(self.weight_bytes_float32)} -> "
                         f"{_size(self.weight_bytes_float16)} ({saved:.0%} smaller)")
        if self.quantized is not None:
            lines.append(str(self.quantized))
        if self.comparisons:
            what = "accuracy cost" if self.float16 or self.quantized else \
                "matches the NumPy runtime"
            lines.append(f"{what} on the test vector ({self.checked}): max abs error "
                         f"{self.max_abs_error:.3g}, max rel error {self.max_rel_error:.3g}")
        elif self.checked:
            lines.append(self.checked)
        return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _as_model(model: Any) -> Any:
    from ..model import Model, load

    if isinstance(model, (str, Path)):
        return load(model)
    if not isinstance(model, Model):
        raise InputError(f"export_onnx needs a tfless.Model or a model path, got {type(model).__name__}")
    return model


def build_onnx(model: Any, opset: int = DEFAULT_OPSET, batch: int | None = None,
               float16: bool = False, test_input: Any = None,
               check_runtime: bool = True, quantize: str | None = None,
               samples: Any = None) -> tuple[Any, ExportReport]:
    """The checked ONNX ModelProto of a tfless Model plus a report (path left empty).
    quantize="int8": int8 weights (export/onnx_quantize.py); `samples` (default: the test
    vector) measure the accuracy change."""
    onnx = require_onnx()
    model = _as_model(model)
    graph = model.graph
    # the test vector's expected outputs always come from the NumPy runtime, also when the
    # model runs in ONNX Runtime (backend="onnxruntime")
    plan = getattr(model, "numpy_plan", model.plan)
    batch = batch or model_batch(graph)
    proto, weight_names = graph_to_onnx(graph, opset, batch, plan=plan)
    meta = graph.meta
    if test_input is None:
        inputs = make_test_input(graph, batch or 1)
    else:
        inputs = model._arrange(test_input)
        if batch is not None and inputs[0].shape[0] != batch:
            raise InputError(f"test_input has batch {inputs[0].shape[0]}, the export uses {batch}")
    expected = [np.asarray(y) for y in plan.run(inputs)]
    vector = {f"in:{s.name}": a for s, a in zip(graph.inputs, inputs)}
    vector.update({f"out:{n}": y for n, y in zip(graph.output_names, expected)})
    report = ExportReport("", opset, batch, 0, float16)
    if float16:
        (report.weights_converted, report.weight_bytes_float32,
         report.weight_bytes_float16) = weights_to_float16(proto, weight_names)
    if quantize:
        from .onnx_quantize import quantize_weights

        if float16:
            raise InputError("--float16 and --quantize cannot be combined")
        report.quantized = quantize_weights(proto, weight_names, quantize)
    lossy = float16 or bool(quantize)
    atol, rtol = ATOL, RTOL
    if check_runtime or lossy:
        session = _session_or_note(proto, report, lossy)
        if session is not None:
            got = ort_run(session, inputs)
            report.checked = "onnxruntime"
            if quantize:
                from .onnx_quantize import measure

                sample = inputs if samples is None else model._arrange(samples)
                measure(report.quantized, ort_run(session, sample),
                        [np.asarray(y) for y in plan.run(sample)], graph.output_names)
            if lossy:
                report.comparisons = compare(got, expected, graph.output_names, np.inf, 0)
                # verify later accepts what float16 weights cost here, with headroom
                atol = max(ATOL, 2.0 * report.max_abs_error)
            report.comparisons = compare(got, expected, graph.output_names, atol, rtol)
            bad = [c for c in report.comparisons if not c.ok]
            if bad:
                raise TflessError(
                    f"the exported ONNX graph disagrees with the tfless NumPy runtime on output "
                    f"'{bad[0].name}' (max abs error {bad[0].max_abs:.3g}); nothing was written. "
                    "This is a tfless bug: please report it with the model")
    props = {
        "source": str(meta.get("source", "")),
        "source_format": str(meta.get("format", "")),
        "keras_version": str(meta.get("keras_version", "")),
        "tfless_version": tfless_version(),
        "float16_weights": "1" if float16 else "0",
        "quantized_weights": quantize or "",
    }
    onnx.helper.set_model_props(proto, {
        **{META_PREFIX + k: v for k, v in props.items()},
        TEST_VECTOR_KEY: _pack(vector),
        TOLERANCE_KEY: json.dumps({"atol": atol, "rtol": rtol}),
    })
    proto.doc_string = (f"Exported by tfless {tfless_version()} from "
                        f"{Path(props['source']).name or 'a Keras model'} "
                        f"(Keras {props['keras_version'] or 'unknown'})")
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise TflessError(f"the exported ONNX graph fails onnx.checker (a tfless bug): {exc}") from exc
    report.bytes = proto.ByteSize()
    return proto, report


def _session_or_note(proto: Any, report: ExportReport, needed: bool) -> Any:
    try:
        ort = require_onnxruntime("checking the exported model")
    except MissingExtra:
        if needed:
            raise
        report.checked = "not checked with ONNX Runtime (onnxruntime is not installed)"
        return None
    try:
        return ort_session(proto.SerializeToString())
    except TflessError as exc:
        if ("opset" in str(exc).lower() or "ir version" in str(exc).lower()) and not needed:
            report.checked = (f"not checked with ONNX Runtime: onnxruntime {ort.__version__} "
                              f"does not run opset {report.opset}")
            return None
        raise


def export_onnx(model: Any, path: str | Path, *, opset: int = DEFAULT_OPSET,
                batch: int | str | None = None, float16: bool = False,
                test_input: Any = None, quantize: str | None = None,
                calibration: Any = None) -> ExportReport:
    """Write `model` (a tfless.Model or a model path) to `path` as ONNX.

    batch: None or "dynamic" (default) for a free batch axis, or a fixed positive size.
    float16: store weights as float16 (with casts); the report gives the size reduction
    and the accuracy cost on the embedded test vector.
    quantize: "int8" stores MatMul/Gemm/Conv weights as per-channel int8 (weight-only QDQ);
    calibration: sample inputs on which the report measures the accuracy change."""
    onnx = require_onnx()
    proto, report = build_onnx(model, opset, parse_batch(batch), float16, test_input,
                               quantize=quantize, samples=calibration)
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    try:
        onnx.save_model(proto, str(tmp))
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{path}: cannot write: {exc}") from exc
    report.path = str(path)
    report.bytes = path.stat().st_size
    return report


def parse_batch(batch: int | str | None) -> int | None:
    if batch is None or batch == "dynamic":
        return None
    try:
        value = int(batch)
    except (TypeError, ValueError):
        raise InputError(f"batch must be 'dynamic' or a positive integer, got {batch!r}") from None
    if value < 1:
        raise InputError(f"batch must be 'dynamic' or a positive integer, got {batch!r}")
    return value


# ----- verify --------------------------------------------------------------------------
@dataclass
class VerifyReport:
    path: str
    ok: bool
    comparisons: list[Comparison]
    metadata: dict[str, str]
    atol: float
    rtol: float

    def __str__(self) -> str:
        head = "OK" if self.ok else "FAILED"
        lines = [f"{self.path}: {head}: ONNX Runtime reproduces the embedded test vector"
                 if self.ok else f"{self.path}: {head}: outputs differ from the embedded test vector"]
        src = self.metadata.get(META_PREFIX + "source")
        if src:
            lines.append(f"  exported by tfless {self.metadata.get(META_PREFIX + 'tfless_version')} "
                         f"from {src} (Keras {self.metadata.get(META_PREFIX + 'keras_version') or '?'})")
        for c in self.comparisons:
            lines.append(f"  {c.name}: max abs error {c.max_abs:.3g}, max rel error {c.max_rel:.3g}"
                         f" (tolerance {self.atol:.3g} abs + {self.rtol:.3g} rel) "
                         f"{'ok' if c.ok else 'MISMATCH'}")
        return "\n".join(lines)


def verify_onnx(path: str | Path) -> VerifyReport:
    """Check an exported .onnx file: onnx.checker, then its embedded test vector in ONNX Runtime."""
    onnx = require_onnx()
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    try:
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:  # onnx raises DecodeError/ValidationError/OSError variants
        raise ModelFormatError(f"{path}: not a valid ONNX model: {exc}") from exc
    props = {p.key: p.value for p in proto.metadata_props}
    if TEST_VECTOR_KEY not in props:
        raise ModelFormatError(
            f"{path}: has no tfless test vector (metadata '{TEST_VECTOR_KEY}'); only files "
            "written by `tfless export -f onnx` can be verified")
    vector = _unpack(props[TEST_VECTOR_KEY])
    tol = json.loads(props.get(TOLERANCE_KEY, "{}"))
    atol, rtol = float(tol.get("atol", ATOL)), float(tol.get("rtol", RTOL))
    session = ort_session(proto.SerializeToString())
    names_in = [i.name for i in session.get_inputs()]
    names_out = [o.name for o in session.get_outputs()]
    try:
        inputs = [vector[f"in:{n}"] for n in names_in]
        want = [vector[f"out:{n}"] for n in names_out]
    except KeyError as exc:
        raise ModelFormatError(f"{path}: the test vector has no entry {exc}") from None
    comparisons = compare(ort_run(session, inputs), want, names_out, atol, rtol)
    return VerifyReport(str(path), all(c.ok for c in comparisons), comparisons, props, atol, rtol)
