"""Exact weight shapes, checked when a model is loaded.

The NumPy ops broadcast: a scalar or length-1 bias added to a Dense output gives an answer
(a wrong one) instead of an error, and a kernel of the wrong size only fails when data
reaches it. Keras itself refuses such files when it loads them (a weight's shape must equal
the variable's). This module holds the shapes each weight-bearing layer's config implies,
for the layers whose config fixes them (units, filters, kernel_size, input_dim, ...), and
refuses any other shape when the file is read.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ModelFormatError

Shape = tuple[int | None, ...]  # None: any size along that axis (fixed by the input)


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) \
        else None


def _kernel_size(config: dict[str, Any], rank: int) -> Shape:
    value = config.get("kernel_size")
    if isinstance(value, (int, np.integer)):
        return (int(value),) * rank
    if isinstance(value, (list, tuple)) and len(value) == rank:
        return tuple(_int(v) for v in value)
    return (None,) * rank


def _conv_rank(cls: str) -> int | None:
    for rank in (1, 2, 3):
        if f"Conv{rank}D" in cls:
            return rank
    return None


def _int4_packed(config: dict[str, Any], size: int | None) -> int | None:
    """Keras 3 int4-quantized layers store two values per byte along the last axis."""
    policy = config.get("dtype")
    mode = (policy.get("config") or {}).get("mode") if isinstance(policy, dict) else policy
    if size is None or not str(mode or "").startswith("int4"):
        return size
    return (size + 1) // 2


def expected_shapes(cls: str, config: dict[str, Any]) -> dict[str, Shape]:
    """weight name -> shape the layer's config implies (only the names it fixes)."""
    units, filters = _int(config.get("units")), _int(config.get("filters"))
    if cls == "Dense":
        return {"kernel": (None, _int4_packed(config, units)), "bias": (units,)}
    if cls == "Embedding":
        return {"embeddings": (_int(config.get("input_dim")),
                               _int4_packed(config, _int(config.get("output_dim"))))}
    rank = _conv_rank(cls)
    if rank is None:
        return {}
    if config.get("keras_major") == 1:  # Keras 1 stored kernels in backend-specific layouts
        return {"bias": (filters,)} if not cls.startswith("Depthwise") else {}
    k = _kernel_size(config, rank)
    if cls.startswith("Conv") and cls.endswith("Transpose"):
        return {"kernel": (*k, filters, None), "bias": (filters,)}
    if cls.startswith("Conv"):
        return {"kernel": (*k, None, filters), "bias": (filters,)}
    if cls.startswith("SeparableConv"):
        multiplier = _int(config.get("depth_multiplier", 1))
        return {"depthwise_kernel": (*k, None, multiplier),
                "pointwise_kernel": (*(1,) * rank, None, filters), "bias": (filters,)}
    if cls.startswith("DepthwiseConv"):
        return {"depthwise_kernel": (*k, None, _int(config.get("depth_multiplier", 1))),
                "bias": (None,)}
    return {}


def _fits(shape: tuple[int, ...], want: Shape) -> bool:
    return len(shape) == len(want) and all(w is None or w == s for s, w in zip(shape, want))


def check_weight_shapes(cls: str, config: dict[str, Any], weights: dict[str, np.ndarray],
                        label: str, where: str) -> None:
    """ModelFormatError unless every weight the config fixes has exactly that shape, and
    the normalization layers' per-feature vectors agree with each other."""
    for name, want in expected_shapes(cls, config).items():
        arr = weights.get(name)
        if arr is not None and not _fits(arr.shape, want):
            shown = "(" + ", ".join("?" if d is None else str(d) for d in want) + \
                ("," if len(want) == 1 else "") + ")"
            raise ModelFormatError(
                f"{where}: layer '{label}' ({cls}): weight '{name}' has shape {arr.shape}, but "
                f"the layer's config needs {shown}")
    if cls in ("BatchNormalization", "LayerNormalization", "GroupNormalization"):
        shapes = {n: a.shape for n, a in weights.items()}
        if len(set(shapes.values())) > 1 or any(len(s) == 0 for s in shapes.values()):
            raise ModelFormatError(
                f"{where}: layer '{label}' ({cls}): its weights must be per-feature vectors of one "
                f"shape, got {', '.join(f'{n} {s}' for n, s in shapes.items())}")
