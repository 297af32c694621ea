"""Shared machinery of the raw TensorFlow op kernels (`tf.<OpName>` registry entries).

The TF graph reader turns each NodeDef into one Graph node with `op = "tf." + node.op`,
the node's attrs decoded to Python values as its config (`config["_node"]` = the node
name) and `Const` values as `weights={"value": array}`. `tf_kernel` turns a
`make(node) -> compute(*inputs)` function into a registry builder: `make` reads and
validates the attrs once, `compute` gets the data inputs in NodeDef order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ...errors import InputError, ModelFormatError, UnsupportedLayer
from ...registry import register

Compute = Callable[..., Any]
MISSING = object()

# Attr dtypes arrive as NumPy dtype names; TF's own spellings are accepted as well.
DTYPE_ALIASES = {"half": "float16", "float": "float32", "double": "float64", "bfloat16": None}


class TfNode:
    """One NodeDef's attrs (and Const value), read at build time."""

    def __init__(self, op: str, config: dict[str, Any], weights: dict[str, np.ndarray]) -> None:
        self.op = op
        self.config = config
        self.weights = weights
        self.name = str(config.get("_node", ""))
        self.where = f"node '{self.name}' (tf.{op})" if self.name else f"tf.{op}"

    def attr(self, key: str, default: Any = MISSING) -> Any:
        if key in self.config:
            return self.config[key]
        if default is MISSING:
            raise ModelFormatError(f"{self.where}: the NodeDef lacks its '{key}' attr")
        return default

    def dtype(self, key: str, default: Any = MISSING) -> np.dtype:
        value = self.attr(key, default)
        return to_dtype(value, self.where, key)

    def refuse(self, key: str, value: Any, supported: str) -> UnsupportedLayer:
        return UnsupportedLayer(
            f"{self.where}: attr {key}={value!r} is not supported; supported: {supported}"
        )

    def choice(self, key: str, allowed: Sequence[Any], default: Any = MISSING) -> Any:
        value = self.attr(key, default)
        if isinstance(value, bytes):
            value = value.decode()
        if value not in allowed:
            raise self.refuse(key, value, ", ".join(map(str, allowed)))
        return value

    def bad_input(self, message: str) -> InputError:
        return InputError(f"{self.where}: {message}")


def to_dtype(value: Any, where: str = "", key: str = "dtype") -> np.dtype:
    """A decoded `type` attr (NumPy dtype name, or a NumPy dtype) as a NumPy dtype."""
    if isinstance(value, np.dtype):
        return value
    name = DTYPE_ALIASES.get(str(value), str(value))
    dt = None
    if name is not None and name not in ("string", "resource", "variant"):
        try:
            dt = np.dtype(name)
        except TypeError:
            dt = None
    if dt is None or dt.kind not in "fiub":
        raise UnsupportedLayer(
            f"{where}: attr {key}={value!r} is not a supported tensor type; supported: "
            "float16, float32, float64, int8-int64, uint8-uint64, bool"
        )
    return dt


def tf_kernel(*ops: str, num_outputs: Callable[[dict[str, Any]], int] | None = None,
              weights: Sequence[str] = ()) -> Callable[[Callable[[TfNode], Compute]],
                                                      Callable[[TfNode], Compute]]:
    """Register `make(node) -> compute(*inputs)` under `tf.<op>` for each op name."""

    def decorate(make: Callable[[TfNode], Compute]) -> Callable[[TfNode], Compute]:
        for op in ops:
            def build(config: dict[str, Any], w: dict[str, np.ndarray], op: str = op) -> Compute:
                return make(TfNode(op, config, w))

            # the registry files an op under its builder's module (the op family)
            build.__module__ = make.__module__
            register(f"tf.{op}", weights=weights, num_outputs=num_outputs)(build)
        return make

    return decorate


def ints(value: Any) -> list[int]:
    """A shape/axis operand (array or list) as a list of Python ints."""
    return [int(v) for v in np.asarray(value).reshape(-1)]


def scalar_int(node: TfNode, value: Any, what: str) -> int:
    arr = np.asarray(value)
    if arr.size != 1 or arr.dtype.kind not in "iu":
        raise node.bad_input(f"{what} must be an integer scalar, got {arr.dtype} of shape "
                             f"{arr.shape}")
    return int(arr.reshape(-1)[0])


def norm_axis(node: TfNode, axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < max(rank, 1):
        raise node.bad_input(f"{what} {axis} is out of range for a rank-{rank} tensor")
    return axis % rank if rank else 0


def arr(x: Any) -> np.ndarray:
    """NumPy ufuncs on 0-d arrays return scalars; graphs pass arrays between nodes."""
    return x if isinstance(x, np.ndarray) else np.asarray(x)
