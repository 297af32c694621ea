"""`tfless inspect`: what a model file is, what it takes and returns, what it is made of."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import UnsupportedLayer
from .formats import read_graph
from .formats.detect import sniff
from .model import Model
from .ops import REGISTRY


def describe(path: str, weights: str | None = None, as_json: bool = False) -> str:
    graph = read_graph(path, weights, lenient=True)
    unsupported = sorted({n.op for n in graph.nodes if n.op not in REGISTRY})
    info: dict[str, Any] = {
        "file": str(path),
        "format": graph.meta.get("format", sniff(Path(path))),
        "keras_version": graph.meta.get("keras_version", ""),
        "inputs": [s.as_dict() for s in graph.inputs],
        "parameters": graph.param_count(),
        "layers": [
            {"name": n.name, "type": n.op, "params": n.param_count()} for n in graph.nodes
        ],
        "unsupported_layers": unsupported,
    }
    if "signatures" in graph.meta:  # a TF graph SavedModel: what each signature takes/returns
        info["signature"] = graph.meta.get("signature")
        info["signatures"] = graph.meta["signatures"]
    try:
        model = Model(graph, optimize=False)
        info["outputs"] = [s.as_dict() for s in model.outputs]
        table = model.summary()
    except UnsupportedLayer:
        info["outputs"] = [{"name": n} for n in graph.output_names]
        table = "\n".join(f"{n.name} ({n.op})  {n.param_count():,}" for n in graph.nodes)
    if as_json:
        return json.dumps(info, indent=2)
    lines = [
        f"file:          {info['file']}",
        f"format:        {info['format']}",
        f"keras version: {info['keras_version'] or 'unknown'}",
        "inputs:",
        *[f"  {s['name']}: shape {tuple(s['shape'])} {s['dtype']}" for s in info["inputs"]],
        "outputs:",
        *[f"  {s['name']}: shape {tuple(s['shape'])} {s['dtype']}" if "shape" in s
          else f"  {s['name']}: shape unknown (the model has unsupported layers)"
          for s in info["outputs"]],
        f"parameters:    {info['parameters']:,}",
        f"unsupported:   {', '.join(unsupported) or 'none'}",
        *_signature_lines(info.get("signatures"), info.get("signature")),
        "",
        table,
    ]
    return "\n".join(lines)


def _signature_lines(signatures: dict[str, Any] | None, loaded: str | None) -> list[str]:
    if not signatures:
        return []
    lines = ["signatures:"]
    for name, sig in signatures.items():
        note = " (loaded)" if name == loaded else ""
        lines.append(f"  {name}{note}: {sig.get('method_name') or ''}")
        for side in ("inputs", "outputs"):
            for t in sig[side]:
                shape = "unknown rank" if t["shape"] is None else \
                    "(" + ", ".join("None" if d is None else str(d) for d in t["shape"]) + ")"
                lines.append(f"    {side[:-1]:<6} {t['name']}: shape {shape} {t['dtype']} "
                             f"[{t['tensor']}]")
    return lines
