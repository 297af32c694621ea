"""Test helpers for the raw TF op kernels: trace one op with TF, decode its NodeDef attrs
the way the graph reader hands them to kernels, and run the tfless kernel on a one-node
Graph through the real runtime Plan."""

from __future__ import annotations

from typing import Any

import numpy as np

from tfless.graph import Graph, Node, TensorSpec
from tfless.ops import get_op
from tfless.runtime.plan import Plan


def decode_attr(tf: Any, value: Any) -> Any:
    """One AttrValue as the reader contract decodes it (type -> NumPy dtype name, shape ->
    list with None for unknown dims, or None for unknown rank, ...)."""
    kind = value.WhichOneof("value")
    if kind == "list":
        lst = value.list
        for field in ("s", "i", "f", "b", "type", "shape", "tensor"):
            items = list(getattr(lst, field))
            if items:
                return [_scalar(tf, field, v) for v in items]
        return []
    if kind is None:
        return None
    return _scalar(tf, kind, getattr(value, kind))


def _scalar(tf: Any, kind: str, v: Any) -> Any:
    if kind == "s":
        return v.decode()
    if kind == "type":
        return tf.as_dtype(v).name
    if kind == "shape":
        return None if v.unknown_rank else [None if d.size < 0 else int(d.size) for d in v.dim]
    if kind == "tensor":
        return tf.make_ndarray(v)
    if kind == "func":
        return v.name
    return v


def node_config(tf: Any, node_def: Any) -> dict[str, Any]:
    config = {k: decode_attr(tf, v) for k, v in node_def.attr.items()}
    config["_node"] = node_def.name
    return config


def run_tfless(op: str, config: dict[str, Any], inputs: list[np.ndarray],
               weights: dict[str, np.ndarray] | None = None) -> list[np.ndarray]:
    """Run tf.<op> as a one-node Graph whose inputs are graph inputs, through Plan."""
    spec = get_op(f"tf.{op}")
    n_out = spec.num_outputs(config)
    specs = [TensorSpec(f"in{i}", tuple(np.shape(x)), str(np.asarray(x).dtype))
             for i, x in enumerate(inputs)]
    outs = [f"{config['_node']}:{k}" for k in range(n_out)]
    node = Node(config["_node"], f"tf.{op}", config, weights or {}, [s.name for s in specs],
                outs)
    graph = Graph(specs, [node], outs, outs)
    return Plan(graph).run([np.asarray(x) for x in inputs])
