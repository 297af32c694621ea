"""TF SavedModel directories written by Keras 2 / tf.keras (`model.save("dir")`).

Such a directory holds, besides TensorFlow's graph (`saved_model.pb`, never read here):
- `keras_metadata.pb`: a SavedMetadata message with one entry per Keras object (node id,
  path like `root.layer_with_weights-0`, JSON metadata). The root's JSON carries the
  model config exactly as a `.h5` file does (tuples spelled `{"class_name": "__tuple__"}`),
  so the config goes through the same GraphBuilder as every other format.
- `variables/variables.index` + `.data-*`: a TensorFlow checkpoint (see tensor_bundle).
  Its `_CHECKPOINTABLE_OBJECT_GRAPH` tensor is the object graph, with the same node ids as
  keras_metadata.pb: each layer node has a `variables` child listing the layer's weights in
  `layer.weights` order, and each variable node names its checkpoint key and its TF name
  (`dense/kernel`). That gives each top-level layer the same (name, array) list a legacy
  `.h5` file stores for it, so LegacyH5Weights's matching (nested models included) applies.

SavedModels without keras_metadata.pb (Keras 3 `model.export()`, `tf.saved_model.save` of
a tf.Module) hold only TensorFlow graphs: they are read by their signatures (tf_savedmodel),
and so is a tf.keras SavedModel when a `signature=` is asked for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ModelFormatError, UnsupportedLayer
from ..graph import Graph
from .keras_config import MODEL_CLASSES, GraphBuilder, keras_major
from .limits import DEFAULT_LIMITS, Limits
from .tensor_bundle import TensorBundle
from .tf_protos import parse
from .tf_savedmodel import read_tf_savedmodel
from .weights import LegacyH5Weights, NamedArrays

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
VARIABLE_ATTRIBUTE = "VARIABLE_VALUE"


def decode_keras_json(value: Any) -> Any:
    """Undo tf.keras's metadata JSON encoding of tuples and TensorShapes (both -> lists)."""
    if isinstance(value, dict):
        if value.get("class_name") in ("__tuple__", "TensorShape") and "items" in value:
            items = value["items"]
            return None if items is None else [decode_keras_json(v) for v in items]
        return {k: decode_keras_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_keras_json(v) for v in value]
    return value


class SavedModelWeights(LegacyH5Weights):
    """Weights of each top-level layer, looked up in the checkpoint's object graph.

    Only how a top-level layer's (name, array) list is found differs from a legacy `.h5`
    file; picking an inner layer's weights out of a nested model's list is inherited."""

    def __init__(self, layer_variables: dict[str, list[tuple[str, str]]], bundle: TensorBundle,
                 where: str) -> None:
        self.layer_variables = layer_variables
        self.bundle = bundle
        self.where = where
        self._read: dict[str, NamedArrays] = {}

    def _read_group(self, layer: str) -> NamedArrays:
        return [(name, self.bundle.array(key)) for name, key in self.layer_variables.get(layer, [])]


def _metadata(path: Path, limits: Limits) -> Any:
    meta_path = path / "keras_metadata.pb"
    if meta_path.stat().st_size > limits.max_config_bytes:
        raise ModelFormatError(f"{meta_path}: larger than the config size limit")
    return parse("SavedMetadata", meta_path.read_bytes(), str(meta_path))


def _root_config(root: Any, where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        info = json.loads(root.metadata)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ModelFormatError(f"{where}: root metadata is not valid JSON: {exc}") from exc
    if not isinstance(info, dict):
        raise ModelFormatError(f"{where}: root metadata is not a JSON object")
    model = info.get("model_config")
    if model is None and info.get("class_name") in MODEL_CLASSES and "config" in info:
        model = {"class_name": info["class_name"], "config": info["config"]}
    if not isinstance(model, dict) or model.get("class_name") not in MODEL_CLASSES \
            or not isinstance(model.get("config"), (dict, list)):
        raise UnsupportedLayer(
            f"{where}: the saved model is a subclassed Keras model ('{info.get('class_name')}'"
            f", {root.identifier}): its architecture is Python code, not a config, so tfless "
            "cannot rebuild it. Build it as a Sequential or Functional model and re-save")
    return decode_keras_json(model), info


def _layer_variables(graph: Any, names: dict[int, str], where: str
                     ) -> dict[str, list[tuple[str, str]]]:
    """Top-level layer name -> [(TF variable name + ':0', checkpoint key)] in weights order."""
    nodes = graph.nodes

    def node(node_id: int) -> Any:
        if not 0 <= node_id < len(nodes):
            raise ModelFormatError(f"{where}: object graph refers to node {node_id} of "
                                   f"{len(nodes)}")
        return nodes[node_id]

    def child(node_id: int, local_name: str) -> int | None:
        for ref in node(node_id).children:
            if ref.local_name == local_name:
                return ref.node_id
        return None

    out: dict[str, list[tuple[str, str]]] = {}
    if not nodes:
        raise ModelFormatError(f"{where}: the checkpoint's object graph is empty")
    for ref in nodes[0].children:
        if not ref.local_name.startswith("layer-") or ref.node_id not in names:
            continue
        name = names[ref.node_id]
        variables = child(ref.node_id, "variables")
        listed = [] if variables is None else sorted(
            node(variables).children, key=lambda r: int(r.local_name)
            if r.local_name.isdigit() else -1)
        found = []
        for var_ref in listed:
            attrs = [a for a in node(var_ref.node_id).attributes if a.name == VARIABLE_ATTRIBUTE]
            if not attrs:
                raise ModelFormatError(f"{where}: weight {var_ref.local_name} of layer '{name}' "
                                       "has no value in the checkpoint")
            found.append((f"{attrs[0].full_name}:0", attrs[0].checkpoint_key))
        out[name] = found
    return out


def read_savedmodel(path: Path, lenient: bool = False, limits: Limits = DEFAULT_LIMITS,
                    signature: str | None = None) -> Graph:
    """A SavedModel directory: Keras layers from keras_metadata.pb when it has one and no
    `signature` is asked for, else the TF graph of the signature (default serving_default)."""
    if signature is not None or not (path / "keras_metadata.pb").is_file():
        return read_tf_savedmodel(path, signature, limits)
    metadata = _metadata(path, limits)
    roots = [n for n in metadata.nodes if n.node_path == "root"]
    if not roots:
        raise ModelFormatError(f"{path}: keras_metadata.pb has no root object")
    model, info = _root_config(roots[0], str(path))
    if not (path / "variables").is_dir():
        raise ModelFormatError(f"{path}: SavedModel has no variables/ directory (incomplete "
                               "copy?); copy the whole SavedModel directory")
    bundle = TensorBundle(path / "variables" / "variables", limits)
    graph = parse("TrackableObjectGraph", bundle.scalar_string(OBJECT_GRAPH_KEY),
                  f"{path}: {OBJECT_GRAPH_KEY}")
    names = {}
    for entry in metadata.nodes:
        try:
            names[entry.node_id] = str(json.loads(entry.metadata).get("name"))
        except (json.JSONDecodeError, AttributeError, RecursionError) as exc:
            raise ModelFormatError(f"{path}: metadata of {entry.node_path} is not a JSON "
                                   f"object: {exc}") from exc
    source = SavedModelWeights(_layer_variables(graph, names, str(path)), bundle, str(path))
    version = str(info.get("keras_version") or "")
    meta = {"format": "savedmodel", "keras_version": version, "source": str(path),
            "backend": str(info.get("backend") or "")}
    builder = GraphBuilder(source, keras_major(version or "2"), str(path), lenient)
    return builder.build_model(model, meta)
