"""TF control flow: While/StatelessWhile loops and If/StatelessIf branches.

The graph reader hands each op its body/cond (or then/else) functions as sub-Graphs in
config (`body_graph`, `cond_graph`, `then_graph`, `else_graph`), with calls inlined and
constant variables folded in. Here each sub-Graph is compiled once, at build time, into a
list of kernels from the same registry (so a loop body can hold any supported op, nested
loops included), and run by walking it over a tensor-id -> value dict.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import ModelFormatError, TflessError
from ...graph import Graph
from ...registry import get_op
from .common import Compute, TfNode, tf_kernel

# A loop that runs this often is taken as a graph that never ends (a hostile or broken
# file) rather than left to spin; RNN graphs run once per time step.
MAX_ITERATIONS = 10_000_000


class SubGraph:
    """A sub-Graph's kernels, built once; calling it runs them in order."""

    def __init__(self, graph: Any, where: str) -> None:
        if not isinstance(graph, Graph):
            raise ModelFormatError(f"{where}: the node carries no sub-graph (read it with "
                                   "tfless's TF graph reader)")
        self.input_ids = [spec.name for spec in graph.inputs]
        self.output_ids = list(graph.output_ids)
        self.steps: list[tuple[Compute, list[str], list[str], str]] = []
        # constants are computed once here, not once per loop iteration
        self.constants: dict[str, Any] = {}
        for node in graph.nodes:
            spec = get_op(node.op, node.name)
            try:
                run = spec.build(node.config, node.weights)
            except (KeyError, ValueError, TypeError, IndexError) as exc:
                raise TflessError(f"{where}: node '{node.name}' ({node.op}) in its sub-graph "
                                  f"cannot be built: {type(exc).__name__}: {exc}") from exc
            if node.op == "tf.Const" and len(node.outputs) == 1:
                self.constants[node.outputs[0]] = run()
            else:
                self.steps.append((run, node.inputs, node.outputs, node.name))

    def __call__(self, *args: Any) -> list[Any]:
        values: dict[str, Any] = dict(self.constants)
        values.update(zip(self.input_ids, args))
        for run, inputs, outputs, _ in self.steps:
            out = run(*[values[t] for t in inputs])
            outs = out if isinstance(out, tuple) else (out,)
            for tid, y in zip(outputs, outs):
                values[tid] = y
        return [values[t] for t in self.output_ids]


def truth(value: Any) -> bool:
    """A predicate tensor as TF reads it: a scalar's value, else whether it is non-empty."""
    arr = np.asarray(value)
    return bool(arr.reshape(())) if arr.size == 1 else arr.size > 0


def _loop_outputs(config: dict[str, Any]) -> int:
    body = config.get("body_graph")
    return len(body.output_ids) if isinstance(body, Graph) else 1


@tf_kernel("While", "StatelessWhile", num_outputs=_loop_outputs)
def while_loop(node: TfNode) -> Compute:
    body = SubGraph(node.attr("body_graph"), node.where)
    cond = SubGraph(node.attr("cond_graph"), node.where)
    if len(body.output_ids) != len(body.input_ids) or len(cond.input_ids) != len(body.input_ids):
        raise ModelFormatError(f"{node.where}: its body takes {len(body.input_ids)} loop "
                               f"variables, returns {len(body.output_ids)} and its condition "
                               f"takes {len(cond.input_ids)}")

    def compute(*loop_vars: Any) -> tuple:
        values = list(loop_vars)
        for _ in range(MAX_ITERATIONS):
            if not truth(cond(*values)[0]):
                return tuple(values)
            values = body(*values)
        raise TflessError(f"{node.where}: the loop ran {MAX_ITERATIONS} iterations without "
                          "ending")

    return compute


def _branch_outputs(config: dict[str, Any]) -> int:
    branch = config.get("then_graph")
    return len(branch.output_ids) if isinstance(branch, Graph) else 1


@tf_kernel("If", "StatelessIf", num_outputs=_branch_outputs)
def if_branch(node: TfNode) -> Compute:
    then = SubGraph(node.attr("then_graph"), node.where)
    other = SubGraph(node.attr("else_graph"), node.where)
    if len(then.output_ids) != len(other.output_ids):
        raise ModelFormatError(f"{node.where}: its branches return {len(then.output_ids)} and "
                               f"{len(other.output_ids)} tensors")

    def compute(predicate: Any, *args: Any) -> tuple:
        return tuple((then if truth(predicate) else other)(*args))

    return compute
