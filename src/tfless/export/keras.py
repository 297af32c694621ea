"""Write a model tfless read from any Keras format as a Keras 3 `.keras` file.

`save_keras(model, path)` (behind `tfless export MODEL -f keras` and `Model.save_keras`)
writes the zip Keras 3 saves: `config.json` (Keras 3 serialization: module/class_name/
config/registered_name, inbound nodes as `args`/`kwargs` with `__keras_tensor__` history),
`metadata.json` and `model.weights.h5` in Keras 3's object-path layout
(`layers/<class_snake>[_n]/vars/<i>`). It needs neither TensorFlow nor Keras (zipfile,
h5py, json). The model is written as one flat Functional model: nested models are inlined
(their layers keep their own names, made unique), shared layers keep one layer with several
inbound nodes. Old spellings and formulas are translated (keras_layers.py); the returned
report lists every change, and what cannot be upgraded faithfully is refused by name.
"""

from __future__ import annotations

import datetime
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import UnsupportedLayer
from ..formats.keras_config import TENSOR
from ..graph import Graph, Node
from .keras_layers import READER_FIELDS, TF_FUNCTIONS, snake, translate_layer
from .keras_signatures import KERAS_VERSION, OPS_MODULES

KERAS_FORMATS = {"hdf5", "keras", "json+h5", "savedmodel"}
CALL_KWARGS = {"mask", "training", "initial_state"}


@dataclass
class KerasExportReport:
    """What `save_keras` wrote and every translation it made."""

    path: str
    source: str
    source_version: str
    layers: int
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        head = (f"wrote {self.path}: Keras 3 .keras ({self.layers} layers) from {self.source} "
                f"(Keras {self.source_version or 'unknown'})")
        if not self.notes:
            return head + "\nno translation needed"
        return head + "\ntranslated:\n" + "\n".join(f"  - {n}" for n in self.notes)


class _Writer:
    def __init__(self, graph: Graph, shapes: dict[str, Any], major: int) -> None:
        self.graph = graph
        self.shapes = shapes
        self.major = major
        self.notes: list[str] = []
        self.layers: list[dict[str, Any]] = []  # Keras 3 layer entries, in model order
        self.weights: list[list[tuple[str, np.ndarray]] | None] = []
        self.by_label: dict[str, int] = {}  # tfless layer label -> index in self.layers
        self.after: dict[str, list[int]] = {}  # label -> indexes of layers applied after it
        self.names: set[str] = set()
        self.history: dict[str, tuple[str, int, int]] = {}  # tensor id -> keras_history

    def unique(self, label: str) -> str:
        parts = label.split("/")
        for k in range(1, len(parts) + 1):
            name = "_".join(parts[-k:])
            if name not in self.names:
                self.names.add(name)
                return name
        n = 1
        while f"{label}_{n}" in self.names:
            n += 1
        self.names.add(f"{label}_{n}")
        return f"{label}_{n}"

    def tensor(self, tid: str) -> dict[str, Any]:
        shape = self.shapes.get(tid)
        return {"class_name": "__keras_tensor__", "config": {
            "shape": list(shape) if shape is not None else None, "dtype": "float32",
            "keras_history": list(self.history[tid])}}

    def add_inputs(self) -> None:
        for spec in self.graph.inputs:
            name = self.unique(spec.name)
            self.layers.append({
                "module": "keras.layers", "class_name": "InputLayer",
                "config": {"batch_shape": list(spec.shape), "dtype": spec.dtype, "sparse": False,
                           "ragged": False, "name": name, "optional": False},
                "registered_name": None, "name": name, "inbound_nodes": []})
            self.weights.append([])
            self.history[spec.name] = (name, 0, 0)

    def add_node(self, node: Node) -> None:
        if node.op.startswith("keras.ops.") and node.op[len("keras.ops."):] in OPS_MODULES:
            self.add_operation(node)
            return
        if node.op == "TFOpLambda" and node.config.get("function") in TF_FUNCTIONS:
            self.add_tf_function(node)
            return
        if node.op not in ("TimeDistributedFold", "TimeDistributedUnfold") and "." in node.op:
            raise UnsupportedLayer(
                f"node '{node.name}' is the operation {node.op}, not a Keras layer; only Keras "
                "layer graphs can be written as a Keras 3 file"
            )
        if node.op.startswith("TimeDistributed") and node.op != "TimeDistributed":
            raise UnsupportedLayer(
                f"layer '{node.layer}' is a TimeDistributed around a whole model; writing it "
                "as a Keras 3 file is not supported (the model is inlined in tfless's graph)"
            )
        if node.layer not in self.by_label:
            config = dict(node.config)
            name = self.unique(node.layer or node.name)
            config["name"] = name
            entry, paths, after = translate_layer(node.op, config, node.weights, self.major,
                                                  self.notes)
            entry["name"] = name
            entry["inbound_nodes"] = []
            self.by_label[node.layer] = len(self.layers)
            self.layers.append(entry)
            self.weights.append(paths)
            chain = []
            for extra in after:
                extra_name = self.unique(extra["config"]["name"])
                extra["config"]["name"] = extra_name
                extra.update(name=extra_name, inbound_nodes=[])
                chain.append(len(self.layers))
                self.layers.append(extra)
                self.weights.append([])
            self.after[node.layer] = chain
        index = self.by_label[node.layer]
        entry = self.layers[index]
        call = len(entry["inbound_nodes"])
        entry["inbound_nodes"].append(self.call(node))
        for i, tid in enumerate(node.outputs):
            self.history[tid] = (entry["name"], call, i)
        for extra_index in self.after[node.layer]:
            extra = self.layers[extra_index]
            tid = node.outputs[0]
            extra_call = len(extra["inbound_nodes"])
            extra["inbound_nodes"].append({"args": [self.tensor(tid)], "kwargs": {}})
            self.history[tid] = (extra["name"], extra_call, 0)

    def add_operation(self, node: Node) -> None:
        """A recorded keras.ops call (Keras 3 files): an operation entry, no weights."""
        cls = node.op[len("keras.ops."):]
        name = self.unique(node.layer or node.name)
        config = {k: v for k, v in node.config.items() if k not in READER_FIELDS}
        config["name"] = name
        self.layers.append({"module": OPS_MODULES[cls], "class_name": cls, "config": config,
                            "registered_name": cls, "name": name,
                            "inbound_nodes": [self.call(node)]})
        self.weights.append(None)
        for i, tid in enumerate(node.outputs):
            self.history[tid] = (name, 0, i)

    def add_tf_function(self, node: Node) -> None:
        """A tf_keras TFOpLambda (`x + 3.0` in a tf_keras functional model) as the keras.ops
        operation Keras 3 records for the same expression."""
        function = node.config["function"]
        cls, names = TF_FUNCTIONS[function]
        args = list(node.config.get("call_args") or [{TENSOR: 0}])
        kwargs = dict(node.config.get("call_kwargs") or {})
        for arg_name in names[len(args):]:
            if arg_name not in kwargs:
                raise UnsupportedLayer(f"layer '{node.layer}' (tf.{function}) has no argument "
                                       f"'{arg_name}'; it cannot be upgraded")
            args.append(kwargs.pop(arg_name))
        op_node = Node(node.name, f"keras.ops.{cls}",
                       {"name": node.layer.replace(".", "_"), "call_args": args,
                        "call_kwargs": {}}, {}, node.inputs, node.outputs, node.layer)
        self.add_operation(op_node)
        self.notes.append(f"{node.layer}: TFOpLambda tf.{function} written as keras.ops {cls}")

    def call(self, node: Node) -> dict[str, Any]:
        args = node.config.get("call_args")
        kwargs = node.config.get("call_kwargs") or {}
        if args is None:
            args = [{TENSOR: 0}] if len(node.inputs) == 1 else [[{TENSOR: i}
                                                                  for i in range(len(node.inputs))]]

        def fill(x: Any) -> Any:
            if isinstance(x, dict) and TENSOR in x:
                return self.tensor(node.inputs[int(x[TENSOR])])
            if isinstance(x, dict):
                return {k: fill(v) for k, v in x.items()}
            if isinstance(x, list):
                return [fill(v) for v in x]
            return x

        dropped = sorted(k for k in kwargs if k not in CALL_KWARGS)
        if dropped:
            self.notes.append(f"{node.layer}: call arguments {dropped} dropped")
        return {"args": fill(list(args)),
                "kwargs": {k: fill(v) for k, v in kwargs.items() if k in CALL_KWARGS}}

    def model_config(self, name: str) -> dict[str, Any]:
        def refs(tids: list[str]) -> Any:
            out = [list(self.history[t]) for t in tids]
            return out[0] if len(out) == 1 else out

        inputs = refs([s.name for s in self.graph.inputs])
        outputs = refs(self.graph.output_ids)
        return {"module": "keras.src.models.functional", "class_name": "Functional",
                "config": {"name": name, "trainable": True, "layers": self.layers,
                           "input_layers": inputs, "output_layers": outputs},
                "registered_name": "Functional", "build_config": {"input_shape": None},
                "compile_config": None}

    def weights_h5(self) -> bytes:
        buffer = io.BytesIO()
        with h5py.File(buffer, "w") as h5:
            h5.create_group("vars")
            layers = h5.create_group("layers")
            counters: dict[str, int] = {}
            for entry, paths in zip(self.layers, self.weights):
                if paths is None:  # an operation: not a layer, no object path
                    continue
                base = snake(entry["class_name"])
                counters[base] = counters.get(base, -1) + 1
                saved = base if counters[base] == 0 else f"{base}_{counters[base]}"
                group = layers.create_group(saved)
                group.create_group("vars").attrs["name"] = entry["name"]
                for path, array in paths:
                    parent = group.require_group(path.rsplit("/", 1)[0])
                    parent.create_dataset(path.rsplit("/", 1)[1], data=np.asarray(array))
                self._vars_groups(group, entry)
        return buffer.getvalue()

    @staticmethod
    def _vars_groups(group: h5py.Group, entry: dict[str, Any]) -> None:
        """Empty `vars` groups where Keras 3 writes them for sub-objects (RNN layers of a
        wrapper, their cells)."""
        cfg = entry["config"]
        subs = []
        if entry["class_name"] == "Bidirectional":
            subs = [("forward_layer/", cfg["layer"]), ("backward_layer/", cfg["backward_layer"])]
        elif entry["class_name"] == "TimeDistributed":
            subs = [("layer/", cfg["layer"])]
        for prefix, inner in subs:
            group.require_group(prefix + "vars")
            _Writer._vars_groups(group.require_group(prefix.rstrip("/")), inner)


def save_keras(model: Any, path: str | Path) -> KerasExportReport:
    """Write `model` (a tfless.Model read from a Keras file) as a Keras 3 `.keras` file."""
    graph: Graph = model.source_graph
    fmt = graph.meta.get("format", "")
    if fmt not in KERAS_FORMATS:
        raise UnsupportedLayer(
            f"{graph.meta.get('source', 'model')}: a {fmt or 'non-Keras'} model cannot be "
            "written as a Keras 3 file; supported sources: Keras .keras, .h5, JSON + weights, "
            "tf_keras SavedModel"
        )
    version = str(graph.meta.get("keras_version") or "")
    from ..formats.keras_config import keras_major

    writer = _Writer(graph, model._probe_shapes(), keras_major(version or "3"))
    writer.add_inputs()
    for node in graph.nodes:
        writer.add_node(node)
    name = Path(str(graph.meta.get("source", "model"))).stem or "model"
    config = writer.model_config(name.replace("/", "_"))
    metadata = {"keras_version": KERAS_VERSION,
                "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}
    weights = writer.weights_h5()
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w") as zf:
        zf.writestr("metadata.json", json.dumps(metadata), zipfile.ZIP_DEFLATED)
        zf.writestr("config.json", json.dumps(config), zipfile.ZIP_DEFLATED)
        zf.writestr("model.weights.h5", weights, zipfile.ZIP_STORED)
    tmp.replace(path)
    return KerasExportReport(str(path), str(graph.meta.get("source", "")), version,
                             len(writer.layers), writer.notes)
