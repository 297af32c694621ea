"""A model in NumPy-native form: graph.json + weights.npz + test_vector.npz + manifest.json.

The bundle holds the reader's Graph (before optimization passes), so loading it needs only
the ops and the runtime: no file-format code, no h5py. The manifest records where the model
came from (source file hash) and the tfless version that wrote it; the test vector lets the
executable check itself (`NAME info --check`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, ModelFormatError
from ..graph import Graph, Node, TensorSpec
from ..model_io import sample_inputs

GRAPH, WEIGHTS, TEST_VECTOR, MANIFEST = "graph.json", "weights.npz", "test_vector.npz", \
    "manifest.json"
CHECK_ATOL, CHECK_RTOL = 1e-5, 1e-4


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise ModelFormatError(f"cannot store config value {value!r} ({type(value).__name__}) in a "
                           "bundle")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_bundle(model: Any, directory: str | Path, source: str | Path | None = None,
                version: str = "", seed: int = 0, serve: bool = False) -> dict[str, Any]:
    """Write `model` (a tfless Model) into `directory`; returns the manifest.

    `serve` records whether the executable carries the server stack (`NAME serve`)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    graph: Graph = model.source_graph
    arrays: dict[str, np.ndarray] = {}
    keys: dict[int, str] = {}
    nodes = []
    for node in graph.nodes:
        refs = {}
        for wname, array in node.weights.items():
            # shared layers hold the same arrays: store them once
            key = keys.setdefault(id(array), f"w{len(keys)}")
            arrays[key] = array
            refs[wname] = key
        nodes.append({"name": node.name, "op": node.op, "config": node.config,
                      "inputs": node.inputs, "outputs": node.outputs, "layer": node.layer,
                      "weights": refs})
    doc = {"inputs": [s.as_dict() for s in graph.inputs], "nodes": nodes,
           "output_ids": graph.output_ids, "output_names": graph.output_names,
           "meta": {k: v for k, v in graph.meta.items() if isinstance(v, (str, int, float))}}
    (out / GRAPH).write_text(json.dumps(doc, default=_jsonable), encoding="utf8")
    np.savez(out / WEIGHTS, **arrays)

    x = sample_inputs(model, 2, seed)
    y = model.predict(x, structured=False)
    y = y if isinstance(y, list) else [y]
    np.savez(out / TEST_VECTOR, **{f"x{i}": a for i, a in enumerate(x)},
             **{f"y{i}": a for i, a in enumerate(y)})
    manifest = {
        "source": Path(str(source or graph.meta.get("source", ""))).name,
        "source_sha256": file_sha256(source) if source else "",
        "tfless_version": version,
        "format": graph.meta.get("format"),
        "keras_version": graph.meta.get("keras_version"),
        "inputs": [s.as_dict() for s in model.inputs],
        "outputs": [s.as_dict() for s in model.outputs],
        "serve": serve,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf8")
    return manifest


def load_graph(directory: str | Path) -> Graph:
    """The Graph stored by `save_bundle`."""
    d = Path(directory)
    doc = json.loads((d / GRAPH).read_text(encoding="utf8"))
    with np.load(d / WEIGHTS, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    nodes = [Node(n["name"], n["op"], n["config"], {w: arrays[k] for w, k in n["weights"].items()},
                  n["inputs"], n["outputs"], n.get("layer", "")) for n in doc["nodes"]]
    inputs = [TensorSpec(s["name"], tuple(s["shape"]), s["dtype"]) for s in doc["inputs"]]
    return Graph(inputs, nodes, doc["output_ids"], doc["output_names"], doc.get("meta", {}))


def read_manifest(directory: str | Path) -> dict[str, Any]:
    return json.loads((Path(directory) / MANIFEST).read_text(encoding="utf8"))


def check_test_vector(model: Any, directory: str | Path) -> float:
    """Run the stored test inputs; returns the max abs error or raises InputError on mismatch."""
    with np.load(Path(directory) / TEST_VECTOR, allow_pickle=False) as z:
        xs = [z[f"x{i}"] for i in range(len(model.inputs))]
        want = [z[f"y{i}"] for i in range(len(model.outputs))]
    got = model.predict(xs if len(xs) > 1 else xs[0], structured=False)
    got = got if isinstance(got, list) else [got]
    worst = 0.0
    for k, (g, w) in enumerate(zip(got, want)):
        err = np.abs(g.astype(np.float64) - w.astype(np.float64))
        bad = err > CHECK_ATOL + CHECK_RTOL * np.abs(w.astype(np.float64))
        if bad.any():
            i = int(np.argmax(bad.ravel()))
            raise InputError(f"test vector mismatch: output {k} at flat index {i}: got "
                             f"{g.ravel()[i]!r}, expected {w.ravel()[i]!r}")
        worst = max(worst, float(err.max(initial=0.0)))
    return worst
