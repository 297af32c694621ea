"""Turn a Keras model config (any Keras version) plus a weight source into a Graph.

Handles Sequential (list form of Keras <= 2.2 and dict form), Functional / Model,
models nested as layers (inlined, once per call), shared layers (one node per call,
sharing arrays), and the three spellings of inbound nodes (Keras 1, Keras 2, Keras 3).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ..errors import ModelFormatError, UnsafeModelError, UnsupportedLayer
from ..graph import Graph, Node, TensorSpec
from ..registry import REGISTRY, get_op
from .normalize import normalize_layer
from .weight_shapes import check_weight_shapes
from .weights import LayerRef, WeightSource

MODEL_CLASSES = {"Sequential", "Functional", "Model"}
TENSOR = "__tensor__"


def snake_case(name: str) -> str:
    """Keras's object-path name for a class: `Conv2DTranspose` -> `conv2d_transpose`."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def keras_major(version: str | None) -> int:
    if not version:
        return 2
    match = re.match(r"\s*(\d+)", str(version))
    return int(match.group(1)) if match else 2


def _dtype_name(value: Any) -> str:
    if isinstance(value, dict):
        value = (value.get("config") or {}).get("name", "float32")
    if not isinstance(value, str):
        return "float32"
    for prefix in ("mixed_", "float32_from_"):
        if value.startswith(prefix):
            return "float32"
    return value


def _shape(value: Any) -> tuple[int | None, ...] | None:
    if value is None:
        return None
    if isinstance(value, dict) and "shape" in value:
        value = value["shape"]
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple)):
        value = value[0]
    shape = tuple(None if d is None else int(d) for d in value)
    if any(d is not None and d < 0 for d in shape):
        raise ModelFormatError(f"input shape {list(value)} has a negative dimension")
    return shape


class _Call:
    """One parsed inbound node: argument templates plus the tensor refs they point to."""

    def __init__(self) -> None:
        self.refs: list[tuple[str, int, int]] = []
        self.args: list[Any] = []
        self.kwargs: dict[str, Any] = {}

    def tensor(self, ref: tuple[str, int, int]) -> dict[str, int]:
        self.refs.append(ref)
        return {TENSOR: len(self.refs) - 1}


class GraphBuilder:
    """Walks configs recursively; one builder per file."""

    def __init__(self, weights: WeightSource | None, major: int, where: str,
                 lenient: bool = False) -> None:
        self.weights = weights
        self.lenient = lenient
        self.major = major
        self.where = where
        self.nodes: list[Node] = []
        self.used_names: set[str] = set()
        self.layer_weight_cache: dict[tuple[str, ...], dict[str, np.ndarray]] = {}
        self.pending: list[tuple] = []

    # ----- entry -------------------------------------------------------------------
    def build_model(self, model: dict[str, Any], meta: dict[str, Any]) -> Graph:
        cls = model.get("class_name")
        if cls not in MODEL_CLASSES:
            raise ModelFormatError(
                f"{self.where}: top-level object is '{cls}', not a Sequential or Functional model"
            )
        try:
            specs, outputs, out_names = self._model(model, (), (), None)
        except (TypeError, AttributeError, KeyError, ValueError) as exc:
            # a config that is JSON but not shaped like Keras's (a field of the wrong type
            # or missing): report it against the file instead of as a crash
            raise ModelFormatError(f"{self.where}: malformed model config: "
                                   f"{type(exc).__name__}: {exc}") from exc
        except ModelFormatError as exc:
            if self.where in str(exc):
                raise
            raise ModelFormatError(f"{self.where}: {exc}") from exc
        if not outputs or not specs:  # a model whose output (input) list was removed
            raise ModelFormatError(
                f"{self.where}: the model declares no {'outputs' if not outputs else 'inputs'} "
                f"(its {'output_layers' if not outputs else 'input_layers'} list is empty or "
                "missing)")
        self._load_weights()
        if cls != "Sequential" and isinstance(model.get("config"), dict):
            meta = {**meta, **nested_io(model["config"])}
        return Graph(specs, self.nodes, outputs, out_names, meta)

    # ----- models -------------------------------------------------------------------
    def _model(self, model: dict, names: tuple[str, ...], saved: tuple[str, ...],
               call_inputs: list[str] | None) -> tuple[list[TensorSpec], list[str], list[str]]:
        cls = model.get("class_name")
        config = model.get("config")
        if cls == "Sequential":
            return self._sequential(config, model, names, saved, call_inputs)
        return self._functional(config, names, saved, call_inputs)

    def _sequential(self, config: Any, model: dict, names: tuple[str, ...],
                    saved: tuple[str, ...], call_inputs: list[str] | None
                    ) -> tuple[list[TensorSpec], list[str], list[str]]:
        layers = config if isinstance(config, list) else (config or {}).get("layers", [])
        if not layers:
            raise ModelFormatError(f"{self.where}: Sequential model has no layers")
        layers = [normalize_layer(layer, self.major) for layer in layers]
        first = layers[0]
        specs: list[TensorSpec] = []
        if first["class_name"] == "InputLayer":
            cfg = first["config"]
            in_name = cfg.get("name", "input")
            shape = _shape(cfg.get("batch_shape") or cfg.get("batch_input_shape"))
            dtype = _dtype_name(cfg.get("dtype"))
            layers = layers[1:]
        else:
            cfg = first["config"]
            in_name = f"{cfg.get('name', 'input')}_input"
            shape = _shape(
                cfg.get("batch_input_shape") or cfg.get("batch_shape")
                or (config.get("build_input_shape") if isinstance(config, dict) else None)
                or (model.get("build_config") or {}).get("input_shape")
            )
            dtype = _dtype_name(cfg.get("dtype")) if "batch_input_shape" in cfg else "float32"
        if call_inputs is None:
            if shape is None:
                raise ModelFormatError(
                    f"{self.where}: Sequential model has no input shape (it was never built); "
                    "build it or add an InputLayer before saving"
                )
            tensor = in_name
            specs.append(TensorSpec(in_name, shape, dtype))
        else:
            tensor = call_inputs[0]
        counters: dict[str, int] = {}
        for layer in layers:
            call = _Call()
            call.args = [{TENSOR: 0}]
            ref_names = names + (layer["config"].get("name") or layer["class_name"],)
            ref_saved = saved + (self._saved_name(layer["class_name"], counters),)
            outs = self._layer_call(layer, ref_names, ref_saved, 0, [tensor], call)
            tensor = outs[0]
        return specs, [tensor], [layers[-1]["config"].get("name", "output") if layers else tensor]

    @staticmethod
    def _saved_name(class_name: str, counters: dict[str, int]) -> str:
        base = snake_case(class_name)
        if base in counters:
            counters[base] += 1
            return f"{base}_{counters[base]}"
        counters[base] = 0
        return base

    def _functional(self, config: dict, names: tuple[str, ...], saved: tuple[str, ...],
                    call_inputs: list[str] | None
                    ) -> tuple[list[TensorSpec], list[str], list[str]]:
        layers = [normalize_layer(layer, self.major) for layer in config.get("layers", [])]
        by_name = {layer_name(layer): layer for layer in layers}
        input_refs = _ref_list(config.get("input_layers", []))
        output_refs = _ref_list(config.get("output_layers", []))
        tensors: dict[tuple[str, int, int], str] = {}
        specs: list[TensorSpec] = []
        prefix = "/".join(names)
        for i, (lname, node_idx, t_idx) in enumerate(input_refs):
            layer = by_name.get(lname)
            if layer is None:
                raise ModelFormatError(f"{self.where}: input layer '{lname}' is not in the model")
            if call_inputs is not None:
                if i >= len(call_inputs):
                    raise ModelFormatError(
                        f"{self.where}: nested model '{prefix}' is called with "
                        f"{len(call_inputs)} inputs but has {len(input_refs)}"
                    )
                tensors[(lname, node_idx, t_idx)] = call_inputs[i]
            else:
                cfg = layer["config"]
                if layer["class_name"] != "InputLayer":
                    raise ModelFormatError(
                        f"{self.where}: model input '{lname}' is a {layer['class_name']}, "
                        "expected an InputLayer"
                    )
                shape = _shape(cfg.get("batch_shape") or cfg.get("batch_input_shape")
                               or ((None, *cfg["shape"]) if cfg.get("shape") else None))
                if shape is None:
                    raise ModelFormatError(f"{self.where}: input '{lname}' has no shape")
                specs.append(TensorSpec(lname, shape, _dtype_name(cfg.get("dtype"))))
                tensors[(lname, node_idx, t_idx)] = lname
        known = set(by_name)
        pending: list[tuple[dict, int, _Call]] = []
        counters: dict[str, int] = {}
        saved_names: dict[str, str] = {}
        for layer in layers:
            saved_names[layer_name(layer)] = self._saved_name(layer["class_name"], counters)
            if layer["class_name"] == "InputLayer":
                continue
            for k, node in enumerate(layer.get("inbound_nodes") or []):
                pending.append((layer, k, _parse_node(node, known)))

        def key(ref: tuple[str, int, int], role: str) -> tuple[str, int, int]:
            """Keras numbers a nested model's calls from 1 (its own construction is node 0)
            in Keras 2 configs, and in Keras 3 outputs of nested Functional models."""
            lname, idx, t = ref
            cls = by_name[lname]["class_name"] if lname in by_name else ""
            offset = 0
            if cls in MODEL_CLASSES:
                if self.major < 3:
                    offset = 1
                elif role == "io" and cls != "Sequential":
                    offset = 1
            if offset and idx >= offset:
                return (lname, idx - offset, t)
            return ref

        # Shared layers may be listed before the layers feeding their later calls:
        # resolve calls in dependency order.
        while pending:
            progressed = False
            rest = []
            for layer, k, call in pending:
                keys = [key(r, "arg") for r in call.refs]
                if all(r in tensors for r in keys):
                    lname = layer_name(layer)
                    outs = self._layer_call(
                        layer, names + (lname,), saved + (saved_names[lname],), k,
                        [tensors[r] for r in keys], call)
                    for t, tid in enumerate(outs):
                        tensors[(lname, k, t)] = tid
                    progressed = True
                else:
                    rest.append((layer, k, call))
            if not progressed:
                missing = sorted({r[0] for _, _, c in rest for r in c.refs
                                  if key(r, "arg") not in tensors})
                raise ModelFormatError(
                    f"{self.where}: model graph cannot be resolved: layers "
                    f"{', '.join(missing)} are referenced but never produce the needed outputs"
                )
            pending = rest
        outputs, out_names = [], []
        for ref in output_refs:
            k = key(ref, "io")
            if k not in tensors:
                raise ModelFormatError(f"{self.where}: output layer '{ref[0]}' is never computed")
            outputs.append(tensors[k])
            out_names.append(ref[0] if ref[0] not in out_names else f"{ref[0]}_{ref[2]}")
        return specs, outputs, out_names

    # ----- layers -------------------------------------------------------------------
    def _layer_call(self, layer: dict, names: tuple[str, ...], saved: tuple[str, ...],
                    call_index: int, inputs: list[str], call: _Call) -> list[str]:
        cls = layer["class_name"]
        if cls in MODEL_CLASSES:
            _, outs, _ = self._model(layer, names, saved, inputs)
            return outs
        wrapped = (layer.get("config") or {}).get("layer")
        if cls == "TimeDistributed" and isinstance(wrapped, dict) \
                and wrapped.get("class_name") in MODEL_CLASSES:
            return self._time_distributed_model(layer, wrapped, names, saved, call_index, inputs)
        if cls == "Lambda" and not self.lenient:
            raise UnsafeModelError(
                f"{self.where}: layer '{names[-1]}' is a Lambda layer: its function is Python "
                "code stored in the file, and tfless never runs code from a model file. Replace "
                "the Lambda with built-in layers and re-save the model"
            )
        label = "/".join(names)
        if self.major >= 3 and "module" not in layer and _is_raw_op_call(cls, call):
            # Keras 3's legacy .h5 writer drops `module`, so `x + 3.0` (keras.ops.add, as in
            # MobileNetV3's hard-swish) reads as an `Add` layer: its call arguments tell
            cls = f"keras.ops.{cls}"
            call.args = _unpack_constant_list(call.args)
        try:
            spec = get_op(cls, label)
        except UnsupportedLayer:
            if not self.lenient:
                raise
            spec = None
        config = dict(layer["config"])
        config.setdefault("name", names[-1])
        _check_dtype_field(config.get("dtype"), label, self.where)
        if config.get("stateful") and isinstance(layer.get("build_config"), dict):
            # Keras 3 records a stateful RNN's fixed batch size only in its build config
            config.setdefault("build_config", layer["build_config"])
        if self.major < 3:
            config["keras_major"] = self.major
        if call.kwargs or any(not (isinstance(a, dict) and TENSOR in a) for a in call.args) \
                or len(call.args) != 1:
            config["call_args"] = call.args
            config["call_kwargs"] = call.kwargs
        layer_state = getattr(self.weights, "layer_state", None)
        if layer_state is not None:  # .keras: adapted vocabularies, named variables
            for key, value in layer_state(saved).items():
                if config.get(key) is None:
                    config[key] = value
        weights = self._weights(spec, cls, config, names, saved)
        node_name = self._node_name(label, call_index)
        n_out = spec.num_outputs(config) if spec else 1
        outs = [node_name if n_out == 1 else f"{node_name}:{i}" for i in range(n_out)]
        self.nodes.append(Node(node_name, cls, config, weights, list(inputs), outs, label))
        return outs

    def _node_name(self, label: str, call_index: int) -> str:
        """A graph-unique node name. A nested model called several times (a siamese tower)
        inlines its layers once per call with the same labels and call indexes; later
        copies get an `@N` suffix so their outputs stay distinct tensors."""
        name = label if call_index == 0 else f"{label}#{call_index}"
        unique, n = name, 1
        while unique in self.used_names:
            n += 1
            unique = f"{name}@{n}"
        self.used_names.add(unique)
        return unique

    def _time_distributed_model(self, layer: dict, wrapped: dict, names: tuple[str, ...],
                                saved: tuple[str, ...], call_index: int, inputs: list[str]
                                ) -> list[str]:
        """TimeDistributed around a nested model: fold time into the batch, inline the
        model (its weights live under the wrapper's `layer`), unfold the result."""
        label = "/".join(names)
        node_name = self._node_name(label, call_index)
        config: dict[str, Any] = {"name": names[-1]}
        if self.major < 3:
            config["keras_major"] = self.major
        fold = f"{node_name}/fold"
        self.nodes.append(Node(fold, "TimeDistributedFold", config, {}, inputs[:1], [fold], label))
        inner = normalize_layer(wrapped, self.major)
        inner_name = (inner.get("config") or {}).get("name") or inner["class_name"]
        _, outs, _ = self._model(inner, names + (inner_name,), saved + ("layer",), [fold])
        if len(outs) != 1:
            raise UnsupportedLayer(
                f"{self.where}: layer '{label}' is a TimeDistributed around model "
                f"'{inner_name}' with {len(outs)} outputs; only single-output models are supported"
            )
        self.nodes.append(Node(node_name, "TimeDistributedUnfold", config, {},
                               [outs[0], inputs[0]], [node_name], label))
        return [node_name]

    def _weights(self, spec: Any, cls: str, config: dict, names: tuple[str, ...],
                 saved: tuple[str, ...]) -> dict[str, np.ndarray]:
        """The (shared) weight dict of a layer; filled by `_load_weights` once the whole
        graph is known, because a layer object nested in several places is saved once."""
        if names not in self.layer_weight_cache:
            self.layer_weight_cache[names] = {}
            self.pending.append((names, saved, spec, cls, config))
        return self.layer_weight_cache[names]

    def _load_weights(self) -> None:
        found: dict[tuple[str, ...], list] = {}
        for names, saved, spec, _, _config in self.pending:
            children = spec.children if spec else None
            found[names] = [] if self.weights is None else \
                self.weights.layer_weights(LayerRef(names, saved, children))
        for names, _saved, spec, cls, config in self.pending:
            arrays = found[names]
            if spec is None:  # lenient reading of an unsupported layer: keep what is stored
                self.layer_weight_cache[names].update({n: a for n, a in arrays})
                continue
            try:
                expected = list(spec.weight_names(config))
            except UnsupportedLayer as exc:  # e.g. a quantized layer: say which file
                raise UnsupportedLayer(f"{self.where}: {exc}") from None
            if expected and not arrays:
                arrays = self._same_layer_elsewhere(names, found)
            label = "/".join(names)
            if len(arrays) != len(expected):
                self._weight_mismatch(label, cls, expected, arrays)
            named = {name: arr for name, (_, arr) in zip(expected, arrays)}
            check_weight_shapes(cls, config, named, label, self.where)
            self.layer_weight_cache[names].update(named)

    @staticmethod
    def _same_layer_elsewhere(names: tuple[str, ...], found: dict) -> list:
        """Keras saves a layer object once, at the first place it meets it: a nested model
        used both inside another nested model and directly has its weights in one place."""
        for other, arrays in found.items():
            if arrays and other != names and len(names) > 1 and len(other) > 1:
                shorter, longer = sorted((names, other), key=len)
                if longer[-len(shorter):] == shorter or \
                        (shorter[-2:] == longer[-2:]):
                    return arrays
        return []

    def _weight_mismatch(self, label: str, cls: str, expected: list[str], found: list) -> None:
        if not expected:
            raise ModelFormatError(
                f"{self.where}: layer '{label}' ({cls}) should have no weights but the file "
                f"stores {len(found)}: {', '.join(n for n, _ in found)}"
            )
        if not found:
            raise ModelFormatError(
                f"{self.where}: weights of layer '{label}' ({cls}) are missing from the file "
                f"(expected {', '.join(expected)})"
            )
        raise ModelFormatError(
            f"{self.where}: layer '{label}' ({cls}) stores {len(found)} weights "
            f"({', '.join(n for n, _ in found)}) but its config needs {len(expected)} "
            f"({', '.join(expected)})"
        )


def _is_raw_op_call(cls: str, call: _Call) -> bool:
    """A merge-layer class name whose call is not one list of tensors: a merge layer takes
    exactly that, the keras.ops function of the same class name takes separate arguments
    (`Add(x, y)`, `Multiply(x, 0.5)`) or a list holding a constant."""
    if f"keras.ops.{cls}" not in REGISTRY or cls not in REGISTRY or call.kwargs:
        return False
    args = call.args
    if len(args) == 1 and isinstance(args[0], list) and \
            all(isinstance(a, dict) and TENSOR in a for a in args[0]):
        return False
    return len(args) != 1 or isinstance(args[0], list)


def _unpack_constant_list(args: list[Any]) -> list[Any]:
    """`[[x, 3.0]]` (a list with a constant, which only the keras.ops function accepts)
    becomes the function's two arguments."""
    if len(args) == 1 and isinstance(args[0], list) and len(args[0]) == 2:
        return list(args[0])
    return args


def _check_dtype_field(value: Any, label: str, where: str) -> None:
    """A layer's `dtype` is a name or a DTypePolicy object ({"config": {"name": ...}});
    ops read it without re-checking its shape."""
    inner = value.get("config") if isinstance(value, dict) else None
    if value is None or isinstance(value, str) or (
            isinstance(value, dict) and (inner is None or (
                isinstance(inner, dict) and isinstance(inner.get("name", ""), str)))):
        return
    raise ModelFormatError(f"{where}: layer '{label}': field 'dtype' should be a dtype name or "
                           f"a DTypePolicy object, got {str(value)[:80]!r}")


def layer_name(layer: dict) -> str:
    return str(layer.get("name") or layer["config"].get("name"))


def _is_ref(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 3 and isinstance(value[0], str) \
        and isinstance(value[1], int) and isinstance(value[2], int)


def ref_structure(value: Any) -> tuple[list[tuple[str, int, int]], Any]:
    """input_layers/output_layers -> (flat refs, template). The value is a [name, node,
    tensor] triple or any nesting of lists and dicts of them (Keras 3); refs come in Keras's
    flattening order (dict keys sorted), the template has the same nesting (dicts keep
    their stored key order) with each ref replaced by its flat index."""
    refs: list[tuple[str, int, int]] = []

    def index(v: Any) -> Any:
        if _is_ref(v):
            refs.append((str(v[0]), int(v[1]), int(v[2])))
            return len(refs) - 1
        if isinstance(v, dict):
            indexed = {k: index(v[k]) for k in sorted(v)}
            return {k: indexed[k] for k in v}
        if isinstance(v, (list, tuple)):
            return [index(item) for item in v]
        raise ModelFormatError(f"model inputs/outputs: cannot read layer reference {v!r}")

    return refs, index(value)


def _ref_list(value: Any) -> list[tuple[str, int, int]]:
    return ref_structure(value)[0]


def nested_io(config: dict[str, Any]) -> dict[str, Any]:
    """Graph meta for a Functional model whose inputs or outputs are not a flat list:
    `input_structure` / `output_structure` templates (see `ref_structure`)."""
    meta: dict[str, Any] = {}
    for field, key in (("input_layers", "input_structure"), ("output_layers", "output_structure")):
        value = config.get(field)
        if isinstance(value, dict) or (isinstance(value, list) and not _is_ref(value)
                                       and not all(_is_ref(v) for v in value)):
            meta[key] = ref_structure(value)[1]
    return meta


def _is_entry(x: Any, known: set[str]) -> bool:
    return (isinstance(x, list) and len(x) in (3, 4) and isinstance(x[0], str)
            and (x[0] in known or x[0] == "_CONSTANT_VALUE") and isinstance(x[1], int))


def _parse_node(node: Any, known: set[str]) -> _Call:
    call = _Call()
    if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
        call.args = _map_keras3(node.get("args", []), call)
        call.kwargs = _map_keras3(node.get("kwargs", {}), call)
        return call
    entries = [node] if _is_entry(node, known) else node
    kwargs: dict[str, Any] = {}

    def first_arg(x: Any) -> Any:
        if _is_entry(x, known):
            if len(x) == 4 and isinstance(x[3], dict):
                kwargs.update(x[3])
            if x[0] == "_CONSTANT_VALUE":
                return x[2]
            return call.tensor((x[0], int(x[1]), int(x[2])))
        if isinstance(x, list):
            return [first_arg(v) for v in x]
        return x

    mapped = [first_arg(e) for e in entries]
    call.args = [mapped[0] if len(mapped) == 1 else mapped]
    call.kwargs = _map_keras2_kwargs(kwargs, call, known)
    return call


def _map_keras3(x: Any, call: _Call) -> Any:
    if isinstance(x, dict):
        if x.get("class_name") == "__keras_tensor__":
            hist = x["config"]["keras_history"]
            return call.tensor((str(hist[0]), int(hist[1]), int(hist[2])))
        return {k: _map_keras3(v, call) for k, v in x.items()}
    if isinstance(x, list):
        return [_map_keras3(v, call) for v in x]
    return x


def _map_keras2_kwargs(x: Any, call: _Call, known: set[str]) -> Any:
    if isinstance(x, list) and len(x) == 3 and isinstance(x[0], str) and x[0] in known \
            and isinstance(x[1], int) and isinstance(x[2], int):
        return call.tensor((x[0], x[1], x[2]))
    if isinstance(x, dict):
        return {k: _map_keras2_kwargs(v, call, known) for k, v in x.items()}
    if isinstance(x, list):
        return [_map_keras2_kwargs(v, call, known) for v in x]
    return x


def check_supported(model: dict) -> list[str]:
    """Names of layer classes in a config that tfless cannot run (for inspect)."""
    missing: set[str] = set()

    def walk(obj: Any) -> None:
        cfg = obj.get("config")
        layers = cfg if isinstance(cfg, list) else (cfg or {}).get("layers") \
            if isinstance(cfg, dict) else None
        if obj.get("class_name") in MODEL_CLASSES and layers is not None:
            for layer in layers:
                walk(normalize_layer(layer, 3))
            return
        try:
            get_op(str(obj.get("class_name")))
        except UnsupportedLayer:
            missing.add(str(obj.get("class_name")))

    walk(model)
    return sorted(missing)
