"""The op registry: the single list of Keras layers tfless can run.

Each op is a `build(config, weights) -> run` pair: `build` reads the layer's config and
weights once (validating them), `run(*inputs)` only computes. `register` files a builder
under one or more Keras class names together with the order in which Keras stores the
layer's weights and how the layer treats Keras masks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import UnsupportedLayer
from .refusals import refusal

Run = Callable[..., Any]
Builder = Callable[[dict[str, Any], dict[str, np.ndarray]], Run]
WeightNames = Callable[[dict[str, Any]], Sequence[str]]
MaskRule = Callable[[dict[str, Any], list, list], list]


@dataclass(frozen=True)
class OpSpec:
    """How to build one Keras layer type.

    weight_names: Keras's storage order of the layer's weights (trainable first, then
    non-trainable), as a function of its config.
    mask: "drop" (outputs carry no mask), "keep" (every output carries the first input's
    mask), or a rule `(config, inputs, input_masks) -> output_masks`. A rule with the
    attribute `passes_only = True` only combines masks its inputs carry (no input mask, no
    output mask), so a plan whose rules are all of that kind never computes masks.
    uses_mask: run() accepts `mask=[...]` (one entry per input, None where unmasked).
    noop: the layer is the identity at inference (passes may drop it).
    children: for layers that own sub-layers, the order of their saved sub-objects
    (Keras 3 object paths) in `layer.weights` order.
    num_outputs: how many tensors one call returns, as a function of the config.
    """

    name: str
    build: Builder
    weight_names: WeightNames
    family: str
    mask: str | MaskRule = "drop"
    uses_mask: bool = False
    noop: bool = False
    children: tuple[str, ...] | None = None
    num_outputs: Callable[[dict[str, Any]], int] = lambda config: 1


REGISTRY: dict[str, OpSpec] = {}


def _as_weight_names(weights: Sequence[str] | WeightNames) -> WeightNames:
    if callable(weights):
        return weights
    fixed = tuple(weights)
    return lambda config: fixed


def register(
    *names: str,
    weights: Sequence[str] | WeightNames = (),
    mask: str | MaskRule = "drop",
    uses_mask: bool = False,
    noop: bool = False,
    children: Sequence[str] | None = None,
    num_outputs: Callable[[dict[str, Any]], int] | None = None,
) -> Callable[[Builder], Builder]:
    """Register `build` under each Keras class name in `names`."""

    def decorate(build: Builder) -> Builder:
        family = build.__module__.rsplit(".", 1)[-1]
        for name in names:
            if name in REGISTRY:
                raise RuntimeError(f"op {name!r} registered twice")
            REGISTRY[name] = OpSpec(
                name, build, _as_weight_names(weights), family, mask, uses_mask, noop,
                tuple(children) if children is not None else None,
                num_outputs or (lambda config: 1),
            )
        return build

    return decorate


def get_op(name: str, layer: str = "") -> OpSpec:
    """The spec for Keras class `name`, or UnsupportedLayer listing what exists."""
    try:
        return REGISTRY[name]
    except KeyError:
        where = f"layer '{layer}' " if layer else ""
        reason = refusal(name)
        if reason is not None:  # a documented refusal: say why, not what else exists
            raise UnsupportedLayer(
                f"{where}has type '{name}', which tfless does not run: {reason}"
            ) from None
        family = name.rsplit(".", 1)[0] + "." if "." in name else ""
        if family:  # a keras.ops call or a TFLite operator: list its own family
            known = sorted(n[len(family):] for n in REGISTRY if n.startswith(family))
            listing = f"Supported {family[:-1]} operations: {', '.join(known)}"
        else:  # Keras layer classes; internal ops (TimeDistributedFold, ...) are not listed
            internal = {"TimeDistributedFold", "TimeDistributedUnfold"}
            known = sorted(n for n in REGISTRY if "." not in n and n not in internal)
            listing = f"Supported Keras layers: {', '.join(known)}"
        raise UnsupportedLayer(
            f"{where}has type '{name}', which tfless does not support. {listing}"
        ) from None


def supported_ops() -> dict[str, list[str]]:
    """Supported Keras class names grouped by family module."""
    families: dict[str, list[str]] = {}
    for name, spec in sorted(REGISTRY.items()):
        families.setdefault(spec.family, []).append(name)
    return families
