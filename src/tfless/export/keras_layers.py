"""Translate one layer read by tfless (any Keras version) into its Keras 3 serialized form.

`translate_layer(cls, config, weights, major, notes)` returns the Keras 3 class name, the
config Keras 3's constructor accepts, the weights as object paths (`cell/vars/0`, ...)
under the layer's own group, and optional layers to apply after it (the Keras 1/2
`hard_sigmoid` activation, which Keras 3 computes with another formula). Everything that is
changed or dropped is added to `notes`; what cannot be upgraded faithfully raises
UnsupportedLayer naming the layer and the reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import UnsupportedLayer
from ..formats.normalize import normalize_layer
from ..ops import get_op
from ..ops.convolutional import _keras1_kernel
from .keras_signatures import SIGNATURES

LAYERS = SIGNATURES["keras.layers"]
# fields tfless's reader adds to a node config for its ops; never part of a Keras config
READER_FIELDS = {"keras_major", "call_args", "call_kwargs", "build_config"}
# fields Keras 3 takes on every layer (Layer.__init__), as Keras 3 writes them
BASE_FIELDS = {"name", "trainable", "dtype"}
RNN_CELL = {"LSTM": "cell/", "GRU": "cell/", "SimpleRNN": "cell/", "ConvLSTM1D": "cell/",
            "ConvLSTM2D": "cell/", "ConvLSTM3D": "cell/"}
# fields whose non-default value Keras 3 has no way to express
NO_KERAS3 = {"time_major": False}
OBJECT_FIELDS = {"_initializer": "keras.initializers", "_regularizer": "keras.regularizers",
                 "_constraint": "keras.constraints"}
KERAS1_INITIALIZERS = {"zero": "zeros", "one": "ones", "uniform": "random_uniform",
                       "normal": "random_normal"}
# Keras 2's hard_sigmoid is clip(0.2 x + 0.5, 0, 1); Keras 3's is clip(x / 6 + 0.5, 0, 1).
KERAS2_HARD_SIGMOID = "hard_sigmoid_keras2"
GATE_SCALE = 1.2  # Keras 3 hard_sigmoid(1.2 z) = clip(0.2 z + 0.5, 0, 1)

Weights = list[tuple[str, np.ndarray]]

# Layers keras.applications defines outside keras.layers: module, constructor arguments.
APPLICATION_LAYERS = {
    "LayerScale": ("keras.src.applications.convnext", ("init_values", "projection_dim")),
    "StochasticDepth": ("keras.src.applications.convnext", ("drop_path_rate",)),
    "CustomScaleLayer": ("keras.src.applications.inception_resnet_v2", ("scale",)),
}
# tf_keras TFOpLambda functions that are one keras.ops operation with the same float32 math:
# function -> (keras.ops class, its argument names in order)
TF_FUNCTIONS = {
    "__operators__.add": ("Add", ("x", "y")), "math.add": ("Add", ("x", "y")),
    "math.multiply": ("Multiply", ("x", "y")), "math.subtract": ("Subtract", ("x", "y")),
    "math.truediv": ("Divide", ("x", "y")), "math.maximum": ("Maximum", ("x", "y")),
    "math.minimum": ("Minimum", ("x", "y")),
}


def snake(name: str) -> str:
    from ..formats.keras_config import snake_case

    return snake_case(name)


def _object(value: Any, module: str, field: str, label: str, notes: list[str]) -> Any:
    """An initializer/regularizer/constraint in Keras 3's form, or None to drop the field."""
    if value is None:
        return None
    table = SIGNATURES[module]
    if isinstance(value, str):
        name = KERAS1_INITIALIZERS.get(value, value) if module == "keras.initializers" else value
        known = {snake(c) for c in table} | {c.lower() for c in table} | set(table)
        if name in known:
            return name
        notes.append(f"{label}: {field}={value!r} has no Keras 3 equivalent; left at Keras 3's default")
        return None
    if isinstance(value, dict) and isinstance(value.get("class_name"), str):
        cls = value["class_name"]
        if cls in table:
            cfg = value.get("config") or {}
            kept = {k: v for k, v in cfg.items() if k in table[cls]}
            if set(cfg) - set(kept):
                notes.append(f"{label}: {field} {cls} fields {sorted(set(cfg) - set(kept))} "
                             "dropped (Keras 3 does not take them)")
            return {"module": module, "class_name": cls, "config": kept, "registered_name": None}
    notes.append(f"{label}: {field} {str(value)[:60]} has no Keras 3 equivalent; left at "
                 "Keras 3's default")
    return None


def _config(cls: str, config: dict[str, Any], label: str, notes: list[str]) -> dict[str, Any]:
    accepted = set(LAYERS[cls])
    out: dict[str, Any] = {}
    dropped = []
    for key, value in config.items():
        if key in READER_FIELDS:
            continue
        if key in NO_KERAS3:
            if value not in (None, NO_KERAS3[key]):
                raise UnsupportedLayer(
                    f"layer '{label}' ({cls}) has {key}={value!r}, which Keras 3 does not "
                    "support: it cannot be upgraded faithfully"
                )
            dropped.append(key)
            continue
        if key == "dtype":
            name = value.get("config", {}).get("name") if isinstance(value, dict) else value
            if name not in (None, "float32"):
                notes.append(f"{label}: dtype policy {name!r} written as float32 (tfless and "
                             "this export compute in float32)")
            out["dtype"] = "float32"
            continue
        suffix = next((s for s in OBJECT_FIELDS if key.endswith(s)), None)
        if suffix is not None and key in accepted:
            converted = _object(value, OBJECT_FIELDS[suffix], key, label, notes)
            if converted is not None:
                out[key] = converted
            continue
        if key in accepted or key in BASE_FIELDS:
            out[key] = value
        else:
            dropped.append(key)
    if dropped and set(dropped) - {"batch_input_shape", "batch_size", "input_dtype",
                                   "input_shape", "input_dim"}:
        notes.append(f"{label} ({cls}): fields {sorted(dropped)} dropped (Keras 3 does not "
                     "take them; they do not change inference)")
    return out


def _ordered(cls: str, config: dict[str, Any], weights: dict[str, np.ndarray],
             label: str) -> list[np.ndarray]:
    """The arrays in Keras 3's `layer.weights` order (the order tfless's op names them)."""
    names = list(get_op(cls, label).weight_names(config))
    if set(names) != set(weights):
        raise UnsupportedLayer(
            f"layer '{label}' ({cls}): its weights ({', '.join(weights)}) do not map onto "
            f"Keras 3's ({', '.join(names)}); it cannot be upgraded faithfully"
        )
    return [weights[n] for n in names]


def _scale_gates(cls: str, arrays: list[np.ndarray], units: int, reset_after: bool
                 ) -> list[np.ndarray]:
    """Gate pre-activations times 1.2, so Keras 3's hard_sigmoid gives Keras 2's values."""
    if cls == "LSTM":  # gates i, f, c, o; c uses `activation`
        gates = [slice(0, 2 * units), slice(3 * units, 4 * units)]
    else:  # GRU: z, r, h; h uses `activation`
        gates = [slice(0, 2 * units)]
    out = []
    for a in arrays:
        a = np.array(a, dtype=np.float32, copy=True)
        for g in gates:
            a[..., g] *= np.float32(GATE_SCALE)
        out.append(a)
    return out


def _rnn(cls: str, cfg: dict[str, Any], arrays: list[np.ndarray], label: str,
         notes: list[str]) -> list[np.ndarray]:
    if cfg.get("activation") == KERAS2_HARD_SIGMOID:
        raise UnsupportedLayer(
            f"layer '{label}' ({cls}) uses Keras 1/2 hard_sigmoid as its cell activation; "
            "Keras 3 has no activation with that formula and it cannot be rewritten inside the "
            "cell, so it cannot be upgraded faithfully"
        )
    if cfg.get("recurrent_activation") == KERAS2_HARD_SIGMOID:
        if cls not in ("LSTM", "GRU"):
            raise UnsupportedLayer(
                f"layer '{label}' ({cls}) uses Keras 1/2 hard_sigmoid as recurrent_activation; "
                "only LSTM and GRU gates can be rescaled to Keras 3's hard_sigmoid"
            )
        cfg["recurrent_activation"] = "hard_sigmoid"
        arrays = _scale_gates(cls, arrays, int(cfg["units"]), bool(cfg.get("reset_after")))
        notes.append(f"{label} ({cls}): Keras 2 hard_sigmoid gates (0.2x + 0.5) become Keras 3 "
                     "hard_sigmoid (x/6 + 0.5) with gate kernels and biases scaled by 1.2")
    return arrays


def translate_layer(cls: str, config: dict[str, Any], weights: dict[str, np.ndarray],
                    major: int, notes: list[str], wrapped: bool = False
                    ) -> tuple[dict[str, Any], Weights, list[dict[str, Any]]]:
    """-> (Keras 3 layer entry without inbound nodes, weights by object path, layers to
    apply after it)."""
    label = str(config.get("name", cls))
    if cls in APPLICATION_LAYERS:
        module, params = APPLICATION_LAYERS[cls]
        cfg = {k: v for k, v in config.items() if k in params or k in BASE_FIELDS}
        cfg["dtype"] = "float32"
        arrays = _ordered(cls, config, weights, label) if weights else []
        entry = {"module": module, "class_name": cls, "config": cfg, "registered_name": cls}
        return entry, [(f"vars/{i}", a) for i, a in enumerate(arrays)], []
    if cls not in LAYERS:
        raise UnsupportedLayer(
            f"layer '{label}' is a {cls}, which is not a Keras 3 layer class "
            f"(keras.layers has no {cls}); it cannot be written as a Keras 3 file"
        )
    if cls.startswith("CuDNN") or "consume_less" in config and \
            config.get("consume_less") != "gpu" and cls in ("LSTM", "GRU"):
        raise UnsupportedLayer(
            f"layer '{label}' ({cls}) stores its weights per gate (Keras 1); upgrading that "
            "layout is not supported"
        )
    cfg = _config(cls, config, label, notes)
    after: list[dict[str, Any]] = []
    paths: Weights = []
    if cls in ("Bidirectional", "TimeDistributed"):
        paths = _wrapper(cls, config, cfg, weights, major, notes)
    else:
        tfless_cfg = {k: v for k, v in config.items()}
        arrays = _ordered(cls, tfless_cfg, weights, label) if weights or \
            get_op(cls, label).weight_names(tfless_cfg) else []
        if major == 1 and cls in ("Conv1D", "Conv2D", "Conv3D") and arrays:
            arrays[0] = _keras1_kernel("conv", config, arrays[0], int(cls[4]))
        elif major == 1 and arrays and cls in ("SeparableConv1D", "SeparableConv2D",
                                              "Conv2DTranspose", "Conv3DTranspose"):
            raise UnsupportedLayer(
                f"layer '{label}' ({cls}) comes from a Keras 1 file whose kernel layout this "
                "export does not rearrange"
            )
        if cls == "GRU" and "reset_after" not in cfg:
            # Keras 3 defaults to reset_after=True; Keras 2.2 and older to False
            cfg["reset_after"] = bool(arrays and arrays[-1].ndim == 2)
        if cls in RNN_CELL:
            arrays = _rnn(cls, cfg, arrays, label, notes)
        paths = [(f"{RNN_CELL.get(cls, '')}vars/{i}", a) for i, a in enumerate(arrays)]
        if cls == "BatchNormalization" and isinstance(cfg.get("axis"), list):
            # tf_keras stores the axis as a list; Keras 3 takes one int
            if len(cfg["axis"]) != 1:
                raise UnsupportedLayer(
                    f"layer '{label}' (BatchNormalization) normalizes over axes {cfg['axis']}; "
                    "Keras 3's BatchNormalization takes a single axis"
                )
            cfg["axis"] = int(cfg["axis"][0])
        if cls == "LeakyReLU" and "alpha" in config and "negative_slope" not in cfg:
            cfg["negative_slope"] = config["alpha"]
        after = _hard_sigmoid(cls, cfg, label, notes, wrapped)
    entry = {"module": "keras.layers", "class_name": cls, "config": cfg, "registered_name": None}
    return entry, paths, after


def _hard_sigmoid(cls: str, cfg: dict[str, Any], label: str, notes: list[str],
                  wrapped: bool) -> list[dict[str, Any]]:
    """Keras 2 hard_sigmoid as Rescaling(0.2, 0.5) then ReLU(max_value=1): the same float32
    operations tf_keras runs (multiply, add, clip)."""
    if cfg.get("activation") != KERAS2_HARD_SIGMOID:
        return []
    if wrapped:
        raise UnsupportedLayer(
            f"layer '{label}' ({cls}) inside a wrapper uses Keras 1/2 hard_sigmoid, which Keras "
            "3 computes differently; the rewrite as separate layers is only done at top level"
        )
    cfg["activation"] = "linear"
    notes.append(f"{label} ({cls}): Keras 2 hard_sigmoid written as Rescaling(scale=0.2, "
                 "offset=0.5) + ReLU(max_value=1.0) after the layer")
    return [
        {"module": "keras.layers", "class_name": "Rescaling",
         "config": {"name": f"{label}_hard_sigmoid_affine", "trainable": True,
                    "dtype": "float32", "scale": 0.2, "offset": 0.5}, "registered_name": None},
        {"module": "keras.layers", "class_name": "ReLU",
         "config": {"name": f"{label}_hard_sigmoid_clip", "trainable": True, "dtype": "float32",
                    "max_value": 1.0, "negative_slope": 0.0, "threshold": 0.0},
         "registered_name": None},
    ]


def _wrapper(cls: str, config: dict[str, Any], cfg: dict[str, Any],
             weights: dict[str, np.ndarray], major: int, notes: list[str]) -> Weights:
    """Bidirectional / TimeDistributed: the inner layer(s) translated in place."""
    label = str(config.get("name", cls))
    _ordered(cls, config, weights, label)  # the weight names must be the ones Keras 3 uses
    parts = [("layer", "forward/", "forward_layer/"), ("backward_layer", "backward/",
                                                       "backward_layer/")] \
        if cls == "Bidirectional" else [("layer", "layer/", "layer/")]
    paths: Weights = []
    for field, prefix, group in parts:
        entry = config.get(field)
        if field == "backward_layer" and entry is None:
            entry = dict(config["layer"])
            inner_cfg = dict(entry.get("config") or {})
            inner_cfg["go_backwards"] = not inner_cfg.get("go_backwards", False)
            inner_cfg["name"] = f"backward_{inner_cfg.get('name', '')}"
            entry["config"] = inner_cfg
        inner = normalize_layer(entry, major)
        inner_cfg = dict(inner["config"])
        if cls == "Bidirectional" and field == "layer" and "backward_layer" not in config:
            inner_cfg["name"] = f"forward_{inner_cfg.get('name', '')}"
        if major < 3:
            inner_cfg["keras_major"] = major
        own = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
        inner_entry, inner_paths, _ = translate_layer(inner["class_name"], inner_cfg, own, major,
                                                      notes, wrapped=True)
        cfg[field] = inner_entry
        paths += [(group + p, a) for p, a in inner_paths]
    if cls == "Bidirectional":
        cfg.setdefault("merge_mode", config.get("merge_mode", "concat"))
    return paths
