"""TF graph models as Graphs: SavedModel signatures and frozen GraphDef `.pb` files.

A SavedModel (`saved_model.pb`) holds MetaGraphDefs; the one tagged `serve` carries the
SignatureDefs (input/output keys -> graph tensors), the GraphDef with its function library,
and the SavedObjectGraph. The signature's graph calls a concrete function whose trailing
arguments are captured variables: `concrete_functions[name].bound_inputs` lists their
object ids, and the checkpoint's object graph (same ids) names each variable's tensor in
`variables/`. The Graph's inputs and outputs are the signature's keys, in sorted order (as
TF flattens a signature's dict); predict takes and returns dicts by those keys.

A frozen GraphDef holds its weights as Const nodes; its inputs are the placeholders (or
the nodes the user names) and its outputs the nodes nothing reads (or the ones named).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ModelFormatError, UnsupportedLayer
from ..graph import Graph, TensorSpec
from .limits import DEFAULT_LIMITS, Limits
from .tensor_bundle import TensorBundle
from .tf_graph import GraphSource, Resource, Value, flatten
from .tf_protos import parse
from .tf_values import TF_ENUM_NAMES, TensorDecoder, dtype_name, shape_list

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
VARIABLE_ATTRIBUTE = "VARIABLE_VALUE"
INIT_SIGNATURE = "__saved_model_init_op"
DEFAULT_SIGNATURE = "serving_default"
NUMERIC = frozenset({"float16", "float32", "float64", "int8", "int16", "int32", "int64",
                     "uint8", "uint16", "uint32", "uint64", "bool"})
# Ops that are never a frozen graph's result even when nothing reads them.
NOT_OUTPUTS = frozenset({"NoOp", "Const", "Placeholder", "PlaceholderWithDefault",
                         "VarHandleOp", "VariableV2", "AssignVariableOp", "Assign", "Assert",
                         "SaveV2", "RestoreV2", "MergeV2Checkpoints"})


def _read_proto(path: Path, message: str, limits: Limits) -> Any:
    size = path.stat().st_size
    # graph files may carry their weights as constants: bounded like weights, not configs
    limits.check_weight_bytes(size, str(path))
    return parse(message, path.read_bytes(), str(path))


def _decoder(where: str, limits: Limits) -> TensorDecoder:
    return TensorDecoder(where, limits.check_weight_bytes)


def _spec(name: str, info: Any, where: str, need_rank: bool = True) -> TensorSpec:
    dtype = dtype_name(info.dtype)
    if dtype not in NUMERIC:
        raise UnsupportedLayer(f"{where}: signature tensor '{name}' has type {dtype}; tfless "
                               f"takes and returns numeric tensors only ({', '.join(sorted(NUMERIC))})")
    shape = shape_list(info.tensor_shape)
    if shape is None and not need_rank:
        return TensorSpec(name, (None,), dtype)
    if shape is None:
        raise UnsupportedLayer(f"{where}: signature tensor '{name}' has an unknown rank; tfless "
                               "needs each input's rank (export with a TensorSpec shape)")
    return TensorSpec(name, tuple(shape), dtype)


def _signature_description(sig: Any) -> dict[str, Any]:
    def side(entries: Any) -> list[dict[str, Any]]:
        out = []
        for e in sorted(entries, key=lambda e: e.key):
            shape = shape_list(e.value.tensor_shape)
            out.append({"name": e.key, "dtype": dtype_name(e.value.dtype), "shape": shape,
                        "tensor": e.value.name})
        return out

    return {"inputs": side(sig.inputs), "outputs": side(sig.outputs),
            "method_name": sig.method_name}


def _signature_def_json(sig: Any) -> dict[str, Any]:
    """A SignatureDef as TF Serving's metadata endpoint prints it (proto JSON)."""
    def info(value: Any) -> dict[str, Any]:
        shape = value.tensor_shape
        return {"dtype": TF_ENUM_NAMES.get(value.dtype, "DT_INVALID"),
                "tensor_shape": {"dim": [{"size": str(d.size), "name": d.name}
                                         for d in shape.dim],
                                 "unknown_rank": bool(shape.unknown_rank)
                                 or not value.HasField("tensor_shape")},
                "name": value.name}

    return {"inputs": {e.key: info(e.value) for e in sig.inputs},
            "outputs": {e.key: info(e.value) for e in sig.outputs},
            "method_name": sig.method_name, "defaults": {}}


class _Variables:
    """Captured inputs of concrete functions, resolved to checkpoint arrays on first use."""

    def __init__(self, path: Path, meta_graph: Any, decoder: TensorDecoder,
                 limits: Limits) -> None:
        self.where = str(path)
        self.objects = meta_graph.object_graph_def
        self.concrete = {e.key: e.value for e in self.objects.concrete_functions}
        self.graph_nodes = {n.name: n for n in meta_graph.graph_def.node}
        self.decoder = decoder
        self.bundle: TensorBundle | None = None
        self.checkpoint: Any = None
        if (path / "variables" / "variables.index").is_file():
            self.bundle = TensorBundle(path / "variables" / "variables", limits)
            if OBJECT_GRAPH_KEY in self.bundle.keys():
                self.checkpoint = parse("TrackableObjectGraph",
                                        self.bundle.scalar_string(OBJECT_GRAPH_KEY),
                                        f"{path}: {OBJECT_GRAPH_KEY}")
        self.resolved: dict[int, Resource] = {}
        self.named: dict[str, Resource] = {}

    def bound_inputs(self, fname: str) -> list[Value] | None:
        concrete = self.concrete.get(fname)
        if concrete is None or not concrete.bound_inputs:
            return None
        return [self.object_value(int(i), fname) for i in concrete.bound_inputs]

    def object_value(self, node_id: int, fname: str) -> Resource:
        if node_id in self.resolved:
            return self.resolved[node_id]
        nodes = self.objects.nodes
        if not 0 <= node_id < len(nodes):
            raise ModelFormatError(f"{self.where}: function '{fname}' captures object "
                                   f"{node_id} of {len(nodes)}")
        obj = nodes[node_id]
        kind = obj.WhichOneof("kind")
        if kind == "variable":
            value = Resource(self._checkpoint_value(node_id, obj.variable.name),
                             obj.variable.name or f"variable_{node_id}")
        elif kind == "constant":
            const = self.graph_nodes.get(obj.constant.operation)
            if const is None or const.op != "Const":
                raise ModelFormatError(f"{self.where}: captured constant "
                                       f"'{obj.constant.operation}' is not a Const node")
            attrs = {e.key: e.value for e in const.attr}
            if "value" not in attrs:
                raise ModelFormatError(f"{self.where}: captured constant '{const.name}' has "
                                       "no value")
            value = Resource(self.decoder.tensor(attrs["value"].tensor, const.name), const.name)
        else:
            raise UnsupportedLayer(f"{self.where}: function '{fname}' captures a saved "
                                   f"'{kind}' object (object {node_id}); tfless resolves "
                                   "captured variables and constants only")
        self.resolved[node_id] = value
        return value

    def _checkpoint_value(self, node_id: int, name: str) -> Any:
        if self.bundle is None or self.checkpoint is None:
            raise ModelFormatError(f"{self.where}: the graph reads variable '{name}' but the "
                                   "SavedModel has no variables/ checkpoint; copy the whole "
                                   "SavedModel directory")
        nodes = self.checkpoint.nodes
        attrs = [a for a in nodes[node_id].attributes if a.name == VARIABLE_ATTRIBUTE] \
            if node_id < len(nodes) else []
        if not attrs:
            raise ModelFormatError(f"{self.where}: variable '{name}' (object {node_id}) has no "
                                   "value in the checkpoint")
        return self.bundle.array(attrs[0].checkpoint_key)

    def variable(self, name: str) -> Resource | None:
        """A TF1 variable node, whose checkpoint key is its name."""
        if self.bundle is None or name not in self.bundle.keys():
            return None
        if name not in self.named:
            self.named[name] = Resource(self.bundle.array(name), name)
        return self.named[name]


def read_tf_savedmodel(path: Path, signature: str | None = None,
                       limits: Limits = DEFAULT_LIMITS) -> Graph:
    """The Graph of one signature of a SavedModel directory (default: serving_default)."""
    pb = path / "saved_model.pb"
    if not pb.is_file():
        raise ModelFormatError(f"{path}: has saved_model.pbtxt only; tfless reads the binary "
                               "saved_model.pb (save the model again without as_text)")
    saved = _read_proto(pb, "SavedModel", limits)
    graphs = list(saved.meta_graphs)
    if not graphs:
        raise ModelFormatError(f"{pb}: the SavedModel holds no MetaGraphDef")
    serving = [g for g in graphs if "serve" in g.meta_info_def.tags]
    meta_graph = (serving or graphs)[0]
    signatures = {e.key: e.value for e in meta_graph.signature_def if e.key != INIT_SIGNATURE}
    if not signatures:
        raise ModelFormatError(f"{path}: the SavedModel has no signatures to run (save it with "
                               "signatures=..., or use model.export())")
    if signature is None:
        signature = DEFAULT_SIGNATURE if DEFAULT_SIGNATURE in signatures or \
            len(signatures) != 1 else next(iter(signatures))
    if signature not in signatures:
        raise ModelFormatError(f"{path}: no signature '{signature}'; the SavedModel has "
                               f"{', '.join(sorted(signatures))}")
    sig = signatures[signature]
    where = f"{path} (signature '{signature}')"
    inputs = [(e.value.name, _spec(e.key, e.value, where))
              for e in sorted(sig.inputs, key=lambda e: e.key)]
    outputs = [(e.key, e.value.name) for e in sorted(sig.outputs, key=lambda e: e.key)]
    for key, _ in outputs:
        _spec(key, {e.key: e.value for e in sig.outputs}[key], where, need_rank=False)
    decoder = _decoder(str(path), limits)
    variables = _Variables(path, meta_graph, decoder, limits)
    library = {f.signature.name: f for f in meta_graph.graph_def.library.function}
    source = GraphSource(library, decoder, where, variables.bound_inputs, variables.variable)
    meta = {"format": "savedmodel-graph", "source": str(path), "signature": signature,
            "signatures": {k: _signature_description(v) for k, v in signatures.items()},
            "signature_defs": {e.key: _signature_def_json(e.value)
                               for e in meta_graph.signature_def},
            "tensorflow_version": meta_graph.meta_info_def.tensorflow_version,
            "output_structure": {key: i for i, (key, _) in enumerate(outputs)}}
    graph = flatten(meta_graph.graph_def, source, inputs, outputs, meta)
    graph.meta["output_dtypes"] = {
        tid: dtype_name({e.key: e.value for e in sig.outputs}[key].dtype)
        for tid, (key, _) in zip(graph.output_ids, outputs)}
    return graph


def is_graphdef(head: bytes) -> bool:
    """Whether bytes start like a serialized GraphDef: field 1 (a NodeDef) whose own first
    fields are a printable name (1) and an op name (2)."""
    def varint(pos: int) -> tuple[int, int]:
        value = shift = 0
        while pos < len(head) and shift < 64:
            byte = head[pos]
            value |= (byte & 0x7F) << shift
            pos += 1
            if not byte & 0x80:
                return value, pos
            shift += 7
        return -1, pos

    if head[:1] != b"\x0a":
        return False
    _, pos = varint(1)
    if head[pos:pos + 1] != b"\x0a":
        return False
    length, pos = varint(pos + 1)
    name = head[pos:pos + length]
    if length <= 0 or len(name) < length or not all(32 < c < 127 for c in name):
        return False
    return head[pos + length:pos + length + 1] == b"\x12"


def _reached(nodes: dict[str, Any], names: list[str]) -> set[str]:
    """Nodes the named ones read through data inputs (convert_variables_to_constants leaves
    placeholders that nothing reads)."""
    seen: set[str] = set()
    stack = [n for n in names if n in nodes]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        stack.extend(i.split(":")[0] for i in nodes[name].input
                     if not i.startswith("^") and i.split(":")[0] in nodes)
    return seen


def read_graphdef(path: Path, inputs: list[str] | None = None,
                  outputs: list[str] | None = None, limits: Limits = DEFAULT_LIMITS) -> Graph:
    """A frozen GraphDef `.pb`: inputs/outputs by node name (`name` or `name:k`), else
    every Placeholder and every node whose outputs nothing reads."""
    graph_def = _read_proto(path, "GraphDef", limits)
    where = str(path)
    nodes = {n.name: n for n in graph_def.node}
    decoder = _decoder(where, limits)
    if outputs is None:
        read = {i.lstrip("^").split(":")[0] for n in graph_def.node for i in n.input}
        outputs = [n.name for n in graph_def.node if n.name not in read and n.op not in NOT_OUTPUTS]
        if not outputs:
            raise ModelFormatError(f"{where}: the graph has no output nodes; name them with "
                                   "outputs=")
    if inputs is None:
        used = _reached(nodes, [ref.split(":")[0] for ref in outputs])
        inputs = [n.name for n in graph_def.node if n.op == "Placeholder" and n.name in used]
    specs = []
    for ref in inputs:
        node = nodes.get(ref.split(":")[0])
        if node is None:
            raise ModelFormatError(f"{where}: no input node '{ref}'; placeholders: "
                                   f"{', '.join(n.name for n in graph_def.node if n.op == 'Placeholder')}")
        attrs = {e.key: decoder.attr(e.value, node.name) for e in node.attr
                 if e.key in ("dtype", "shape")}
        dtype, shape = attrs.get("dtype", "float32"), attrs.get("shape")
        if dtype not in NUMERIC:
            raise UnsupportedLayer(f"{where}: input '{ref}' has type {dtype}; tfless takes "
                                   "numeric tensors only")
        if shape is None:
            raise UnsupportedLayer(f"{where}: input '{ref}' has no known rank; freeze the graph "
                                   "with a shaped placeholder")
        specs.append((ref, TensorSpec(ref.split(":")[0] if ref.endswith(":0") else ref,
                                      tuple(shape), dtype)))
    library = {f.signature.name: f for f in graph_def.library.function}
    source = GraphSource(library, decoder, where)
    meta = {"format": "graphdef", "source": where,
            "output_structure": None}
    names = [ref[:-2] if ref.endswith(":0") else ref for ref in outputs]
    return flatten(graph_def, source, specs, list(zip(names, outputs)), meta)
