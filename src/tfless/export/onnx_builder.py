"""What ONNX converters write with: the `OnnxBuilder`, the converter registry, tensor facts.

Every Keras op type has one small converter function (`onnx_ops/<family>.py`, registered
with `@converter` in `CONVERTERS` under the same Keras class names as the runtime registry)
that emits ONNX nodes through an `OnnxBuilder`; `onnx_lower.py` walks a Graph and calls
them. The converters import only this module, so the lowering can load them without a
loop. The optional `onnx`/`onnxruntime` imports and the ONNX Runtime session helpers live
here too: the lowering, the ONNX Runtime backend and the exporters all need them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import MissingExtra, TflessError, UnsupportedLayer
from ..graph import Graph, Node, Shape

if TYPE_CHECKING:  # the op registry loads lazily: importing tfless must not import every op
    from ..runtime.plan import Plan

MIN_OPSET = 13
DEFAULT_OPSET = 17
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
        self.layer = ""  # the Keras layer being converted: node names start with it

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
        label = base if not self.layer or base.startswith(self.layer) else f"{self.layer}/{base}"
        self.nodes.append(self.helper.make_node(op_type, list(inputs), outs,
                                                name=self.fresh(f"{label}/{op_type}"), **attrs))
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
