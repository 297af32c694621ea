"""Graph passes: small Graph -> Graph rewrites that keep outputs equal within tolerance."""

from __future__ import annotations

from ..graph import Graph, Node
from ..ops import get_op


def drop_noops(graph: Graph) -> Graph:
    """Remove layers that are the identity at inference (Dropout, noise, augmentation)."""
    alias: dict[str, str] = {}
    kept: list[Node] = []
    for node in graph.nodes:
        inputs = [alias.get(t, t) for t in node.inputs]
        if get_op(node.op, node.name).noop and len(inputs) == 1 and len(node.outputs) == 1 \
                and node.outputs[0] not in graph.output_ids:
            alias[node.outputs[0]] = inputs[0]
            continue
        kept.append(Node(node.name, node.op, node.config, node.weights, inputs,
                         node.outputs, node.layer))
    return Graph(graph.inputs, kept, graph.output_ids, graph.output_names, graph.meta)


PASSES = [drop_noops]


def optimize_graph(graph: Graph) -> Graph:
    for rewrite in PASSES:
        graph = rewrite(graph)
    return graph
