"""Walking ONNX graphs with sub-graphs: the names a graph reads from outside, a loop's body,
a node's attribute values."""

from __future__ import annotations

from typing import Any

from ...errors import TflessError


def outer_names(graph: Any) -> list[str]:
    """Names a graph's nodes (and their sub-graphs) read, in first-use order."""
    seen: list[str] = []
    for node in graph.node:
        for name in node.input:
            if name and name not in seen:
                seen.append(name)
        for attr in node.attribute:
            if attr.HasField("g"):
                seen += [n for n in outer_names(attr.g) if n not in seen]
    return seen


def body_of(node: Any) -> Any:
    for attr in node.attribute:
        if attr.name == "body":
            return attr.g
    raise TflessError(f"ONNX node '{node.name}' ({node.op_type}) has no body")


def node_attr(node: Any, key: str, default: Any = None) -> Any:
    """The value of attribute `key` of an ONNX node (strings decoded), else `default`."""
    from onnx import helper

    for a in node.attribute:
        if a.name == key:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default
