"""Execution backends other than NumPy: the plan runners behind `tfless.load(path, backend=...)`.

A backend turns a Graph (after the passes) into something shaped like the NumPy `Plan`:
`run(inputs) -> outputs` and `trace(inputs)` (shape probing for descriptions, which stays on
the NumPy plan). The Model builds one when asked for a backend, so inputs, outputs, summary
and batching behave exactly as with the NumPy backend. The ONNX Runtime backend lowers the
Graph to ONNX in memory (no file) and runs it in an ONNX Runtime session. This module knows
Graphs and plans only, never the Model that uses it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError
from .export.onnx_builder import DEFAULT_OPSET, ort_run, ort_session, require_onnxruntime
from .export.onnx_lower import graph_to_onnx
from .graph import Graph

BACKENDS = ("numpy", "onnxruntime")


class OnnxRuntimePlan:
    """Plan-shaped runner: `run` executes the graph's ONNX lowering in ONNX Runtime, `trace`
    stays on the NumPy plan."""

    def __init__(self, graph: Graph, numpy_plan: Any, opset: int | None = None) -> None:
        require_onnxruntime()
        self.opset = opset or DEFAULT_OPSET
        self.numpy_plan = numpy_plan
        self.onnx_model, _ = graph_to_onnx(graph, self.opset, plan=numpy_plan)
        self.session = ort_session(self.onnx_model.SerializeToString())
        self.input_names = [i.name for i in self.session.get_inputs()]

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return ort_run(self.session, inputs)

    def trace(self, inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
        return self.numpy_plan.trace(inputs)


def backend_plan(name: str, graph: Graph, numpy_plan: Any) -> Any:
    """The runner for `graph` on backend `name` ("numpy" is `numpy_plan` itself)."""
    if name == "numpy":
        return numpy_plan
    if name == "onnxruntime":
        return OnnxRuntimePlan(graph, numpy_plan)
    raise InputError(f"unknown backend '{name}'; available: {', '.join(BACKENDS)}")
