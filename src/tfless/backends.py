"""Execution backends other than NumPy: `tfless.load(path, backend="onnxruntime")`.

The ONNX Runtime backend exports the loaded Graph to ONNX in memory (no file) and runs it
in an ONNX Runtime session. It is a `tfless.Model` whose plan runs in ONNX Runtime:
inputs, outputs, summary and batching behave exactly as with the NumPy backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import InputError
from .graph import Graph
from .model import Model

BACKENDS = ("numpy", "onnxruntime")


class OnnxRuntimePlan:
    """Plan-shaped runner: `run` executes in ONNX Runtime, `trace` (shape probing for
    descriptions) stays on the NumPy plan."""

    def __init__(self, session: Any, numpy_plan: Any) -> None:
        self.session = session
        self.numpy_plan = numpy_plan
        self.input_names = [i.name for i in session.get_inputs()]

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        from .export.onnx import ort_run

        return ort_run(self.session, inputs)

    def trace(self, inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
        return self.numpy_plan.trace(inputs)


class OnnxRuntimeModel(Model):
    """A Model whose predictions run in ONNX Runtime."""

    backend = "onnxruntime"

    def __init__(self, graph: Graph, optimize: bool | Sequence[str] = True,
                 opset: int | None = None) -> None:
        from .export.onnx import DEFAULT_OPSET, graph_to_onnx, ort_session, require_onnxruntime

        require_onnxruntime()
        super().__init__(graph, optimize=optimize)
        self.opset = opset or DEFAULT_OPSET
        self.onnx_model, _ = graph_to_onnx(self.graph, self.opset, plan=self.plan)
        self.numpy_plan = self.plan
        self.plan = OnnxRuntimePlan(ort_session(self.onnx_model.SerializeToString()), self.plan)

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + " backend: onnxruntime>"


def load_backend(name: str, graph: Graph, optimize: bool | Sequence[str] = True) -> Model:
    """A Model for `graph` that runs on backend `name`."""
    if name == "numpy":
        return Model(graph, optimize=optimize)
    if name == "onnxruntime":
        return OnnxRuntimeModel(graph, optimize=optimize)
    raise InputError(f"unknown backend '{name}'; available: {', '.join(BACKENDS)}")
