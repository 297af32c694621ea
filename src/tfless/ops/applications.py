"""Layers that Keras's own applications define outside keras.layers.

`keras.applications` builds some models with small layer classes of its own (ConvNeXt's
LayerScale and StochasticDepth live in core.py with the other per-channel layers);
a saved model records them under their class name like any built-in layer, so a file of
such an application names them. Each runs here as Keras's applications module defines it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError, ModelFormatError
from ..registry import register

F32 = np.float32


@register("CustomScaleLayer", mask="drop")
def build_custom_scale(config: dict, weights: dict) -> Any:
    """InceptionResNetV2's residual join: `inputs[0] + inputs[1] * scale` (the shortcut
    plus the scaled residual branch), in float32 like the Keras layer."""
    name = config.get("name", "")
    scale = config.get("scale")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise ModelFormatError(
            f"layer '{name}' (CustomScaleLayer): config field 'scale' must be a number. "
            f"Received: scale={scale!r}"
        )
    factor = F32(scale)

    def run(*inputs: np.ndarray) -> np.ndarray:
        if len(inputs) != 2:
            raise InputError(
                f"layer '{name}' (CustomScaleLayer) takes [shortcut, residual], "
                f"got {len(inputs)} inputs"
            )
        shortcut, residual = inputs
        return shortcut + residual * factor

    return run
