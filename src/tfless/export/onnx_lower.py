"""The ONNX lowering: a tfless Graph written as an ONNX ModelProto with the `onnx` helpers.

No TensorFlow and no tf2onnx: each node goes through its converter (`onnx_ops/`, see
`onnx_builder.py`); Keras masks travel beside the tensors as boolean ONNX tensors, like in
the NumPy plan. This module knows only Graphs and plans, never the Model: the ONNX Runtime
backend (`backends.py`, below the Model) and the exporters (`onnx.py` and the C exporter,
above it) all build on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import InputError, ModelFormatError, TflessError, UnsupportedLayer
from ..graph import Graph, Node, Shape
from .onnx_builder import (
    CONVERTERS,
    DEFAULT_OPSET,
    MIN_OPSET,
    OnnxBuilder,
    TensorFacts,
    _np_dtype,
    max_opset,
    model_batch,
    require_onnx,
    tensor_facts,
    tfless_version,
)

if TYPE_CHECKING:  # the op registry loads lazily: importing tfless must not import every op
    from ..runtime.plan import Plan


def load_converters() -> None:
    from . import onnx_ops  # noqa: F401  (importing fills CONVERTERS)


def unsupported_nodes(graph: Graph) -> list[Node]:
    from ..ops.quantized import runs_keras_quantized

    load_converters()
    # Keras quantized layers (model.quantize) keep int weights the converters cannot read.
    return [n for n in graph.nodes
            if n.op not in CONVERTERS or runs_keras_quantized(n.op, n.config)]


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
            f"cannot export layer {listed}{more} yet: it has no lowering, which the ONNX "
            f"and C exports share; nothing was written. Layer types that export: "
            f"{', '.join(sorted(CONVERTERS))}"
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
    b.layer = node.name
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
