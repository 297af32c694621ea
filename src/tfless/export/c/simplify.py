"""Layout clean-up of the lowered graph before it is compiled to C.

ONNX convolutions are channels-first, so the lowering wraps each channels-last layer in a
Transpose pair; between two such layers the graph reads `Transpose(to NHWC) -> activation
-> Transpose(to NCHW)`. Both transposes cancel when only elementwise ops that do not care
about layout sit between them and nothing else reads the intermediate tensors: the ops then
run on the channels-first tensor and the two copies disappear from the C code.
"""

from __future__ import annotations

from typing import Any

from .onnx_graph import outer_names

# ops that compute each element from the same element only (any layout), with their data
# input first; the other inputs must be scalars for the rewrite to be valid
LAYOUT_FREE = {"Relu", "Sigmoid", "Tanh", "Clip", "LeakyRelu", "Elu", "Selu", "Celu",
               "HardSigmoid", "HardSwish", "Exp", "Neg", "Abs", "Sqrt", "Softplus",
               "Softsign", "Erf", "Cast", "Identity", "Mul", "Add", "Sub", "Div", "Max", "Min"}


def _perm(node: Any) -> list[int] | None:
    for a in node.attribute:
        if a.name == "perm":
            return list(a.ints)
    return None


def _scalars(model: Any) -> set[str]:
    from onnx import numpy_helper

    return {t.name for t in model.graph.initializer if numpy_helper.to_array(t).size == 1}


def cancel_transposes(model: Any) -> int:
    """Remove Transpose pairs that undo each other around layout-free ops (in place);
    returns how many pairs went."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    scalars = _scalars(model)
    removed = 0
    changed = True
    while changed:
        changed = False
        consumers: dict[str, list[Any]] = {}
        for node in graph.node:
            for name in set(node.input) | set(_body_reads(node)):
                consumers.setdefault(name, []).append(node)
        for first in graph.node:
            if first.op_type != "Transpose" or _perm(first) is None:
                continue
            chain, tensor = [], first.output[0]
            while True:
                users = consumers.get(tensor, [])
                if len(users) != 1 or tensor in outputs:
                    break
                user = users[0]
                if _body_reads(user):
                    break
                if user.op_type == "Transpose":
                    p, q = _perm(first), _perm(user)
                    undone = q is not None and len(p) == len(q) and all(
                        p[q[i]] == i for i in range(len(p)))
                    if undone and (chain or user.output[0] not in outputs):
                        _splice(graph, first, chain, user)
                        removed += 1
                        changed = True
                    break
                if (user.op_type not in LAYOUT_FREE or user.input[0] != tensor
                        or any(i and i not in scalars for i in user.input[1:])
                        or len(user.output) != 1):
                    break
                chain.append(user)
                tensor = user.output[0]
            if changed:
                break
    return removed


def _body_reads(node: Any) -> list[str]:
    return [n for a in node.attribute if a.HasField("g") for n in outer_names(a.g)]


def _splice(graph: Any, first: Any, chain: list[Any], last: Any) -> None:
    """first -> chain -> last becomes chain alone, reading first's input, writing last's output."""
    source = first.input[0]
    if chain:
        chain[0].input[0] = source
        chain[-1].output[0] = last.output[0]
    else:
        _rename(graph, last.output[0], source)
    graph.node.remove(first)
    graph.node.remove(last)


def _rename(graph: Any, old: str, new: str) -> None:
    """Every read of `old` in `graph` and its sub-graphs reads `new` instead."""
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name == old:
                node.input[k] = new
        for a in node.attribute:
            if a.HasField("g"):
                _rename(a.g, old, new)
