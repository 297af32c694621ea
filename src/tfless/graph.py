"""The Graph IR: what every reader produces and every backend, pass and exporter consumes.

A Graph is a list of nodes in topological order. Each node is one call of a Keras layer:
its op type (the Keras class name), its normalized config, its weights as named NumPy
arrays, and the ids of the tensors it reads and writes. Nested models are inlined by the
readers; a shared layer called twice becomes two nodes that share the same arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

Shape = tuple[int | None, ...]


@dataclass(frozen=True)
class TensorSpec:
    """A named graph input or output: shape includes the batch axis (None = free)."""

    name: str
    shape: Shape
    dtype: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass
class Node:
    """One layer call. `inputs`/`outputs` are tensor ids; `name` is unique in the graph."""

    name: str
    op: str
    config: dict[str, Any]
    weights: dict[str, np.ndarray]
    inputs: list[str]
    outputs: list[str]
    layer: str = ""

    def param_count(self) -> int:
        return int(sum(w.size for w in self.weights.values()))


@dataclass
class Graph:
    """Inputs (tensor id = spec name), nodes in topological order, and output tensors."""

    inputs: list[TensorSpec]
    nodes: list[Node]
    output_ids: list[str]
    output_names: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    def producers(self) -> dict[str, Node]:
        return {t: n for n in self.nodes for t in n.outputs}

    def consumers(self) -> dict[str, list[Node]]:
        out: dict[str, list[Node]] = {}
        for n in self.nodes:
            for t in n.inputs:
                out.setdefault(t, []).append(n)
        return out

    def param_count(self) -> int:
        seen: set[int] = set()
        total = 0
        for n in self.nodes:
            for w in n.weights.values():
                if id(w) not in seen:
                    seen.add(id(w))
                    total += int(w.size)
        return total
