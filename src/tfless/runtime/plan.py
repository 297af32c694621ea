"""The NumPy executor: every op is built once at load, predict only walks the steps.

A Plan is a flat list of steps over integer tensor slots. After each step the slots whose
last consumer has run are cleared, so an intermediate array lives only as long as it is
needed. Keras masks travel beside the tensors, computed only when a mask exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ModelFormatError, TflessError
from ..graph import Graph, Node
from ..ops import get_op
from ..ops.registry import OpSpec


@dataclass
class Step:
    node: Node
    spec: OpSpec
    run: Any
    inputs: list[int]
    outputs: list[int]
    release: list[int]


class Plan:
    """A compiled graph: `run(list of input arrays) -> list of output arrays`."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        slots: dict[str, int] = {}

        def slot(tid: str) -> int:
            return slots.setdefault(tid, len(slots))

        self.input_slots = [slot(s.name) for s in graph.inputs]
        steps: list[Step] = []
        for node in graph.nodes:
            spec = get_op(node.op, node.name)
            try:
                run = spec.build(node.config, node.weights)
            except KeyError as exc:
                raise ModelFormatError(
                    f"layer '{node.name}' ({node.op}): its saved config/weights lack {exc}, which "
                    f"this layer needs (the file may come from a newer or modified Keras)"
                ) from exc
            except (ValueError, TypeError, IndexError) as exc:
                raise TflessError(
                    f"layer '{node.name}' ({node.op}): cannot build from its config/weights: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            steps.append(Step(node, spec, run, [slot(t) for t in node.inputs],
                              [slot(t) for t in node.outputs], []))
        for tid in graph.output_ids:
            if tid not in slots:
                raise TflessError(f"model output '{tid}' is produced by no layer")
        self.output_slots = [slots[t] for t in graph.output_ids]
        keep = set(self.output_slots)
        last_use: dict[int, int] = {}
        for i, step in enumerate(steps):
            for s in step.inputs:
                last_use[s] = i
        for s, i in last_use.items():
            if s not in keep:
                steps[i].release.append(s)
        self.steps = steps
        self.n_slots = len(slots)
        self.slot_of = slots
        self.has_masks = any(st.spec.mask not in ("drop", "keep") for st in steps)

    def run(self, inputs: list[np.ndarray], keep_all: bool = False) -> list[np.ndarray]:
        """Run the plan. With keep_all, intermediate tensors are kept (see `trace`)."""
        values: list[Any] = [None] * self.n_slots
        masks: list[Any] = [None] * self.n_slots if self.has_masks else []
        for s, x in zip(self.input_slots, inputs):
            values[s] = x
        for step in self.steps:
            args = [values[s] for s in step.inputs]
            in_masks = [masks[s] for s in step.inputs] if masks else []
            try:
                if step.spec.uses_mask and any(m is not None for m in in_masks):
                    out = step.run(*args, mask=in_masks)
                else:
                    out = step.run(*args)
            except MemoryError as exc:
                raise TflessError(
                    f"layer '{step.node.name}' ({step.node.op}) needs more memory than is "
                    f"available: {exc}; try a smaller batch_size"
                ) from exc
            except (ValueError, IndexError, TypeError) as exc:
                shapes = ", ".join(str(getattr(a, "shape", "?")) for a in args)
                raise TflessError(
                    f"layer '{step.node.name}' ({step.node.op}) failed on inputs of shape "
                    f"{shapes}: {exc}"
                ) from exc
            outs = out if isinstance(out, (tuple, list)) else (out,)
            for s, y in zip(step.outputs, outs):
                values[s] = y
            if masks:
                self._propagate_masks(step, args, in_masks, masks)
            if not keep_all:
                for s in step.release:
                    values[s] = None
                    if masks:
                        masks[s] = None
        self.last_values = values if keep_all else None
        return [values[s] for s in self.output_slots]

    @staticmethod
    def _propagate_masks(step: Step, args: list, in_masks: list, masks: list) -> None:
        rule = step.spec.mask
        if rule == "drop":
            return
        if rule == "keep":
            if in_masks and in_masks[0] is not None:
                for s in step.outputs:
                    masks[s] = in_masks[0]
            return
        out_masks = rule(step.node.config, args, in_masks)
        for s, m in zip(step.outputs, out_masks):
            masks[s] = m

    def trace(self, inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Every tensor of one run, by tensor id (for inspect, debugging and exporters)."""
        self.run(inputs, keep_all=True)
        values = self.last_values or []
        return {tid: values[s] for tid, s in self.slot_of.items() if values[s] is not None}
