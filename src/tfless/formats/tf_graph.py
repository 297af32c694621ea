"""TensorFlow graphs (GraphDef + function library) flattened into tfless's Graph IR.

One NodeDef becomes one Graph node `tf.<op>` (attrs decoded by tf_values, `config["_node"]`
= the NodeDef's name, a Const's value in `weights["value"]`). Starting from the tensors a
signature (or the user) asks for, the reader walks back over data inputs only, so nodes that
do not reach an output (savers, initializers, control-only NoOps) are never read. On the way:

- `PartitionedCall`/`StatefulPartitionedCall` are inlined: the called FunctionDef's nodes
  join the graph under the call's name, its arguments bound to the call's inputs.
- Variables are resolved at read time: a resource (a checkpoint variable bound to a
  function's captured input, or a TF1 variable node) flows through Identity and calls as a
  value, and `ReadVariableOp` of it becomes a `tf.Const` holding the variable's array, so
  kernels never see resources.
- `While`/`If` keep their body/branch functions as sub-Graphs in config (`body_graph`,
  `cond_graph`, `then_graph`, `else_graph`), built the same way; loop variables that are
  resources pass through the body unchanged and are folded into the sub-Graphs as constants.
- Ops that read or write files or run Python (PyFunc, ReadFile, Save/Restore ...) are
  refused here; any other op the registry lacks is refused when the model is built.

Function bodies name tensors `node:output_arg:index`; the flat output index of a
multi-argument op comes from OUTPUT_ARGS (the ops TF defines with several output args).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ModelFormatError, UnsafeModelError, UnsupportedLayer
from ..graph import Graph, Node, TensorSpec
from .tf_values import TensorDecoder

# Ops whose outputs are several named args (op_def.proto order); for every other op the
# index in `node:arg:index` is the flat output index (one output arg, possibly a list).
OUTPUT_ARGS: dict[str, tuple[str, ...]] = {
    **{op: ("y", "batch_mean", "batch_variance", "reserve_space_1", "reserve_space_2",
            "reserve_space_3") for op in ("FusedBatchNorm", "FusedBatchNormV2",
                                           "FusedBatchNormV3")},
    "TopKV2": ("values", "indices"), "TopK": ("values", "indices"),
    "Unique": ("y", "idx"), "UniqueV2": ("y", "idx"),
    "UniqueWithCounts": ("y", "idx", "count"),
    "TensorListPopBack": ("output_handle", "tensor"),
    "Switch": ("output_false", "output_true"), "Merge": ("output", "value_index"),
    "BroadcastGradientArgs": ("r0", "r1"), "MaxPoolWithArgmax": ("output", "argmax"),
    "QuantizeV2": ("output", "output_min", "output_max"),
}
# Ops that would read/write files or run code outside the kernel whitelist.
REFUSED_OPS = frozenset({
    "PyFunc", "PyFuncStateless", "EagerPyFunc", "ReadFile", "WriteFile", "MatchingFiles",
    "Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice",
    "MergeV2Checkpoints", "ShardedFilename", "ImmutableConst", "LoadAndRemapMatrix",
    "WholeFileReader", "WholeFileReaderV2", "TextLineReader", "TextLineReaderV2",
    "TFRecordReader", "TFRecordReaderV2", "FixedLengthRecordReader", "ReaderRead",
    "WriteScalarSummary", "WriteSummary", "CreateSummaryFileWriter", "PrintV2", "Print",
})
CALL_OPS = frozenset({"PartitionedCall", "StatefulPartitionedCall"})
WHILE_OPS = frozenset({"While", "StatelessWhile"})
IF_OPS = frozenset({"If", "StatelessIf"})
# Pure pass-through ops: aliased instead of becoming nodes (they also carry resources).
ALIAS_OPS = frozenset({"Identity", "StopGradient", "Snapshot"})
VARIABLE_OPS = frozenset({"VarHandleOp", "VariableV2", "Variable"})
V1_CONTROL_FLOW = frozenset({"Enter", "Exit", "NextIteration", "Merge", "Switch", "LoopCond",
                             "RefEnter", "RefExit", "RefNextIteration", "RefMerge", "RefSwitch"})
MAX_CALL_DEPTH = 64
_GRAPH_IDS = itertools.count()


@dataclass(eq=False)
class Resource:
    """A variable whose value the reader knows; `tensors` caches its Const node per graph."""

    array: np.ndarray
    name: str
    tensors: dict[int, str] = field(default_factory=dict)


Value = str | Resource  # a tensor id in the graph being built, or a known variable


@dataclass
class GraphSource:
    """What a GraphDef needs besides its nodes: its functions, how captured inputs and
    variable nodes resolve, and the decoder (which counts constant bytes)."""

    functions: dict[str, Any]
    decoder: TensorDecoder
    where: str
    bound_inputs: Callable[[str], list[Value] | None] = lambda name: None
    variable: Callable[[str], Resource | None] = lambda name: None


def _scope_key(ref: str, in_function: bool, ops: dict[str, str]) -> tuple[str, str, int]:
    """(key in the scope's environment, producing node name, flat output index)."""
    parts = ref.split(":")
    if not in_function:
        index = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        return f"{parts[0]}:{index}", parts[0], index
    if len(parts) == 1:
        return ref, "", 0  # a function argument
    if len(parts) != 3 or not parts[2].isdigit():
        raise ModelFormatError(f"function input '{ref}' is not of the form node:arg:index")
    node, arg, index = parts[0], parts[1], int(parts[2])
    args = OUTPUT_ARGS.get(ops.get(node, ""))
    if args is not None:
        if arg not in args:
            raise ModelFormatError(f"node '{node}' ({ops.get(node)}) has no output '{arg}'")
        if args.index(arg):  # later args: every earlier arg is a single tensor for these ops
            index += args.index(arg)
    return f"{node}:{index}", node, index


class GraphFlattener:
    """Builds one Graph (the main graph or one loop body) from TF nodes."""

    def __init__(self, source: GraphSource, prefix: str = "") -> None:
        self.source = source
        self.prefix = prefix
        self.nodes: list[Node] = []
        self.graph_id = next(_GRAPH_IDS)
        self.node_names: set[str] = set()
        self.depth = 0

    # ----- scopes: a GraphDef's node list or a FunctionDef's body --------------------------
    def run_scope(self, node_defs: Sequence[Any], env: dict[str, Value], wanted: list[str],
                  prefix: str, in_function: bool) -> list[Value]:
        by_name = {nd.name: nd for nd in node_defs}
        ops = {name: nd.op for name, nd in by_name.items()}
        keys = [_scope_key(ref, in_function, ops) for ref in wanted]
        order, out_count = self._order(by_name, ops, env, keys, in_function)
        for name in order:
            self._node(by_name[name], env, prefix, in_function, ops, out_count[name])
        missing = [k for k, _, _ in keys if k not in env]
        if missing:
            raise ModelFormatError(f"{self.source.where}: no tensor {missing[0]!r} in the graph")
        return [env[k] for k, _, _ in keys]

    def _data_inputs(self, nd: Any) -> list[str]:
        inputs = [i for i in nd.input if not i.startswith("^")]
        if nd.op in CALL_OPS:
            bound = self.source.bound_inputs(self._attr_func(nd, "f"))
            if bound:  # captured inputs come from the saved objects, not the call's operands
                inputs = inputs[:len(inputs) - len(bound)]
        return inputs

    def _order(self, by_name: dict[str, Any], ops: dict[str, str], env: dict[str, Value],
               keys: list[tuple[str, str, int]], in_function: bool
               ) -> tuple[list[str], dict[str, int]]:
        """Nodes the wanted tensors depend on, producers first (iterative: graphs are deep),
        and how many outputs of each are read."""
        out_count: dict[str, int] = {}
        order: list[str] = []
        state: dict[str, int] = {}  # 1 = visiting, 2 = done
        stack: list[tuple[str, bool]] = []
        for key, node, index in keys:
            if key not in env:
                if node not in by_name:
                    raise ModelFormatError(f"{self.source.where}: the graph has no node "
                                           f"'{node or key}'")
                out_count[node] = max(out_count.get(node, 0), index + 1)
                stack.append((node, False))
        while stack:
            name, expanded = stack.pop()
            if expanded:
                state[name] = 2
                order.append(name)
                continue
            if state.get(name) == 2:
                continue
            if state.get(name) == 1:
                loop_ops = sorted(V1_CONTROL_FLOW & set(ops.values()))
                if loop_ops:
                    raise UnsupportedLayer(
                        f"{self.source.where}: the graph uses TF1 dataflow control flow "
                        f"({', '.join(loop_ops)}), which tfless does not run; tfless runs "
                        "functional While/If (freeze with convert_variables_to_constants_v2("
                        "..., lower_control_flow=False))")
                raise ModelFormatError(f"{self.source.where}: the graph has a cycle through "
                                       f"node '{name}'")
            state[name] = 1
            stack.append((name, True))
            for ref in self._data_inputs(by_name[name]):
                key, node, index = _scope_key(ref, in_function, ops)
                if key in env:
                    continue
                if node not in by_name:
                    raise ModelFormatError(f"{self.source.where}: node '{name}' reads "
                                           f"'{ref}', which no node produces")
                out_count[node] = max(out_count.get(node, 0), index + 1)
                if state.get(node) != 2:
                    stack.append((node, False))
        return order, out_count

    # ----- one node ------------------------------------------------------------------------
    @staticmethod
    def _attr_func(nd: Any, key: str) -> str:
        for entry in nd.attr:
            if entry.key == key:
                return entry.value.func.name
        raise ModelFormatError(f"node '{nd.name}' ({nd.op}) has no '{key}' function attr")

    def _node(self, nd: Any, env: dict[str, Value], prefix: str, in_function: bool,
              ops: dict[str, str], n_out: int) -> None:
        where = f"{self.source.where}: node '{nd.name}'"
        if nd.op in REFUSED_OPS or nd.op.startswith(("Restore", "Save")):
            raise UnsafeModelError(f"{where} is a '{nd.op}' op, which reads/writes files or runs "
                                   "Python; tfless never runs those from a model")
        inputs = [env[_scope_key(r, in_function, ops)[0]] for r in self._data_inputs(nd)]
        name = prefix + nd.name
        if nd.op in ALIAS_OPS and len(inputs) == 1:
            env[f"{nd.name}:0"] = inputs[0]
        elif nd.op == "IdentityN":
            for k, value in enumerate(inputs):
                env[f"{nd.name}:{k}"] = value
        elif nd.op in VARIABLE_OPS:
            resource = self.source.variable(nd.name)
            if resource is None:
                raise ModelFormatError(f"{where}: variable '{nd.name}' has no value in the "
                                       "checkpoint (or the model has no variables/ directory)")
            env[f"{nd.name}:0"] = resource
        elif nd.op == "ReadVariableOp":
            if not isinstance(inputs[0], Resource):
                raise UnsupportedLayer(f"{where}: ReadVariableOp of a variable tfless could not "
                                       "resolve from the checkpoint")
            env[f"{nd.name}:0"] = self.constant(inputs[0])
        elif nd.op in CALL_OPS:
            outs = self.inline(self._attr_func(nd, "f"), inputs, name + "/")
            for k, value in enumerate(outs):
                env[f"{nd.name}:{k}"] = value
        elif nd.op in WHILE_OPS:
            self._while(nd, inputs, env, name)
        elif nd.op in IF_OPS:
            self._if(nd, inputs, env, name)
        elif nd.op in ("Placeholder", "PlaceholderWithDefault"):
            if nd.op == "PlaceholderWithDefault" and inputs:
                env[f"{nd.name}:0"] = inputs[0]
            else:
                raise ModelFormatError(f"{where}: placeholder '{nd.name}' is read but is not "
                                       "an input of the graph (name it in inputs=)")
        else:
            self._emit(nd, [self._tensor(v) for v in inputs], env, name, n_out)

    def unique(self, name: str) -> str:
        """A node name not used yet in this graph: an inlined function's `call/node` may
        equal a node the graph itself names so (and two variables may share a TF name)."""
        base, k = name, 0
        while name in self.node_names:
            k += 1
            name = f"{base}_{k}"
        self.node_names.add(name)
        return name

    def _tensor(self, value: Value) -> str:
        return self.constant(value) if isinstance(value, Resource) else value

    def constant(self, resource: Resource) -> str:
        """The Const node holding a variable's value in this graph (one per variable)."""
        if self.graph_id not in resource.tensors:
            name = self.unique(f"{self.prefix}{resource.name}/value")
            self.nodes.append(Node(name, "tf.Const", {"dtype": str(resource.array.dtype),
                                                      "_node": name},
                                   {"value": resource.array}, [], [f"{name}:0"]))
            resource.tensors[self.graph_id] = f"{name}:0"
        return resource.tensors[self.graph_id]

    def _emit(self, nd: Any, inputs: list[str], env: dict[str, Value], name: str,
              n_out: int) -> None:
        config = self.source.decoder.attrs(nd)
        config["_node"] = nd.name
        weights = {}
        if nd.op == "Const":
            value = config.pop("value", None)
            if not isinstance(value, np.ndarray):
                raise ModelFormatError(f"{self.source.where}: Const node '{nd.name}' has no "
                                       "tensor value")
            weights["value"] = value
        name = self.unique(name)
        outputs = [f"{name}:{k}" for k in range(max(n_out, 1))]
        self.nodes.append(Node(name, f"tf.{nd.op}", config, weights, inputs, outputs,
                               layer=nd.name))
        for k, tid in enumerate(outputs):
            env[f"{nd.name}:{k}"] = tid

    # ----- functions -------------------------------------------------------------------------
    def function(self, fname: str) -> Any:
        fdef = self.source.functions.get(fname)
        if fdef is None:
            raise ModelFormatError(f"{self.source.where}: the graph calls function '{fname}', "
                                   "which its function library does not define")
        return fdef

    def inline(self, fname: str, args: list[Value], prefix: str) -> list[Value]:
        """A function's outputs with its body added to this graph (args bound to values)."""
        fdef = self.function(fname)
        bound = self.source.bound_inputs(fname) or []
        args = list(args) + list(bound)
        params = [a.name for a in fdef.signature.input_arg]
        if len(args) != len(params):
            raise ModelFormatError(f"{self.source.where}: function '{fname}' takes "
                                   f"{len(params)} arguments, the call passes {len(args)}")
        self.depth += 1
        if self.depth > MAX_CALL_DEPTH:
            raise ModelFormatError(f"{self.source.where}: function calls nest deeper than "
                                   f"{MAX_CALL_DEPTH} (recursive function library?)")
        try:
            ret = {e.key: e.value for e in fdef.ret}
            wanted = []
            for arg in fdef.signature.output_arg:
                if arg.name not in ret:
                    raise ModelFormatError(f"{self.source.where}: function '{fname}' does not "
                                           f"say what its output '{arg.name}' is")
                wanted.append(ret[arg.name])
            env: dict[str, Value] = dict(zip(params, args))
            return self.run_scope(fdef.node_def, env, wanted, prefix, in_function=True)
        finally:
            self.depth -= 1

    def subgraph(self, fname: str, args: list[Value | None], prefix: str,
                 drop_outputs: Sequence[int] = ()) -> Graph:
        """A function as its own Graph: arguments given as None are its inputs, the others
        (known variables) are folded in."""
        fdef = self.function(fname)
        params = [a.name for a in fdef.signature.input_arg]
        if len(params) != len(args):
            raise ModelFormatError(f"{self.source.where}: function '{fname}' takes "
                                   f"{len(params)} arguments, the node passes {len(args)}")
        inner = GraphFlattener(self.source, prefix)
        inner.depth = self.depth + 1
        specs = []
        env: dict[str, Value] = {}
        for k, (param, value) in enumerate(zip(params, args)):
            if value is None:
                tid = f"{prefix}arg{k}"
                specs.append(TensorSpec(tid, (), "float32"))
                env[param] = tid
            else:
                env[param] = value
        ret = {e.key: e.value for e in fdef.ret}
        outs = [ret.get(a.name, "") for k, a in enumerate(fdef.signature.output_arg)
                if k not in drop_outputs]
        if inner.depth > MAX_CALL_DEPTH:
            raise ModelFormatError(f"{self.source.where}: control flow nests deeper than "
                                   f"{MAX_CALL_DEPTH}")
        values = inner.run_scope(fdef.node_def, env, outs, prefix, in_function=True)
        output_ids = [inner._tensor(v) for v in values]
        return Graph(specs, inner.nodes, output_ids, list(output_ids),
                     {"function": fname})

    def _while(self, nd: Any, inputs: list[Value], env: dict[str, Value], name: str) -> None:
        body_name, cond_name = self._attr_func(nd, "body"), self._attr_func(nd, "cond")
        body = self.function(body_name)
        ret = {e.key: e.value for e in body.ret}
        params = [a.name for a in body.signature.input_arg]
        outs = [a.name for a in body.signature.output_arg]
        folded = [k for k, v in enumerate(inputs) if isinstance(v, Resource)]
        for k in folded:
            if k >= len(outs) or ret.get(outs[k]) != params[k]:
                raise UnsupportedLayer(f"{self.source.where}: While node '{nd.name}' changes the "
                                       f"variable in its loop variable {k}; tfless runs loops "
                                       "whose variables stay constant")
        args: list[Value | None] = [v if isinstance(v, Resource) else None for v in inputs]
        config = self.source.decoder.attrs(nd)
        config["_node"] = nd.name
        config["body_graph"] = self.subgraph(body_name, args, f"{name}/body/", folded)
        config["cond_graph"] = self.subgraph(cond_name, args, f"{name}/cond/")
        kept = [k for k in range(len(inputs)) if k not in folded]
        name = self.unique(name)
        outputs = [f"{name}:{j}" for j in range(len(kept))]
        self.nodes.append(Node(name, f"tf.{nd.op}", config, {},
                               [inputs[k] for k in kept],  # type: ignore[misc]
                               outputs, layer=nd.name))
        for k in folded:
            env[f"{nd.name}:{k}"] = inputs[k]
        for j, k in enumerate(kept):
            env[f"{nd.name}:{k}"] = outputs[j]

    def _if(self, nd: Any, inputs: list[Value], env: dict[str, Value], name: str) -> None:
        if not inputs:
            raise ModelFormatError(f"{self.source.where}: If node '{nd.name}' has no condition")
        cond, rest = inputs[0], inputs[1:]
        args: list[Value | None] = [v if isinstance(v, Resource) else None for v in rest]
        config = self.source.decoder.attrs(nd)
        config["_node"] = nd.name
        config["then_graph"] = self.subgraph(self._attr_func(nd, "then_branch"), args,
                                             f"{name}/then/")
        config["else_graph"] = self.subgraph(self._attr_func(nd, "else_branch"), args,
                                             f"{name}/else/")
        n_out = len(config["then_graph"].output_ids)
        name = self.unique(name)
        outputs = [f"{name}:{k}" for k in range(n_out)]
        node_inputs = [self._tensor(cond)] + [v for v in rest if not isinstance(v, Resource)]
        self.nodes.append(Node(name, f"tf.{nd.op}", config, {}, node_inputs,  # type: ignore
                               outputs, layer=nd.name))
        for k, tid in enumerate(outputs):
            env[f"{nd.name}:{k}"] = tid


def flatten(graph_def: Any, source: GraphSource, inputs: list[tuple[str, TensorSpec]],
            outputs: list[tuple[str, str]], meta: dict[str, Any]) -> Graph:
    """The Graph computing `outputs` [(name, tensor ref)] from `inputs` [(tensor ref, spec)]
    of a GraphDef's top-level nodes."""
    flattener = GraphFlattener(source)
    env: dict[str, Value] = {}
    for ref, spec in inputs:
        key, _, _ = _scope_key(ref, False, {})
        env[key] = spec.name
    values = flattener.run_scope(graph_def.node, env, [ref for _, ref in outputs], "", False)
    ids = []
    for (out_name, _), value in zip(outputs, values):
        if isinstance(value, Resource):
            raise UnsupportedLayer(f"{source.where}: output '{out_name}' is a variable handle, "
                                   "not a tensor")
        ids.append(value)
    return Graph([spec for _, spec in inputs], flattener.nodes, ids,
                 [name for name, _ in outputs], meta)
