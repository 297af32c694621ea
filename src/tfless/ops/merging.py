"""Merging layers: Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot.

Inputs of different ranks are broadcast the Keras way (size-1 axes inserted after the
batch axis). Masks follow the Keras version that saved the file: tf_keras ANDs the
input masks of element-wise merges, Keras 3 ORs them (only when every input is masked)
and also rewrites masked values in Multiply, Maximum and Minimum.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import InputError, ModelFormatError
from ..registry import register

F32 = np.float32
Binary = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _is_keras3(config: dict[str, Any]) -> bool:
    return "keras_major" not in config


def _check_call(config: dict[str, Any], op: str) -> None:
    """A Keras 3 merge layer is called on one list of tensors; anything else is a raw op
    call (Keras 2 configs cannot tell a one-element list from a tensor)."""
    args = config.get("call_args")
    if _is_keras3(config) and args is not None and not (len(args) == 1 and isinstance(args[0], list)):
        raise ModelFormatError(
            f"layer '{config.get('name', '')}' ({op}) is called with arguments {args!r} "
            "instead of one list of tensors: this looks like a raw keras.ops call saved in "
            "the legacy .h5 format, which does not record it as an op. Save the model in the "
            ".keras format instead"
        )


def _same_rank(inputs: tuple[np.ndarray, ...]) -> tuple[list[np.ndarray], bool]:
    """Keras expands lower-rank inputs at axis 1 until all ranks agree."""
    ranks = {x.ndim for x in inputs}
    if len(ranks) == 1:
        return list(inputs), False
    top = max(ranks)
    return [x.reshape(x.shape[:1] + (1,) * (top - x.ndim) + x.shape[1:]) for x in inputs], True


def _expanded(mask: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.broadcast_to(np.expand_dims(np.asarray(mask, dtype=bool), -1), x.shape)


def _elementwise_masks(config: dict, inputs: list, masks: list) -> list:
    if not masks or all(m is None for m in masks):
        return [None]
    if _is_keras3(config):
        if any(m is None for m in masks):
            return [None]
        return [np.logical_or.reduce([np.asarray(m, dtype=bool) for m in masks])]
    return [np.logical_and.reduce([np.asarray(m, dtype=bool) for m in masks if m is not None])]


_elementwise_masks.passes_only = True  # type: ignore[attr-defined]  (registry.OpSpec.mask)


def _fold(op: Binary, xs: list[np.ndarray]) -> np.ndarray:
    out = xs[0]
    for x in xs[1:]:
        out = op(out, x)
    return out


def _make_elementwise(
    op_name: str,
    combine: Callable[[list[np.ndarray]], np.ndarray],
    keras3_masked: Callable[[list[np.ndarray], list], np.ndarray] | None = None,
    arity: int | None = None,
) -> Callable[[dict, dict], Callable]:
    def build(config: dict, weights: dict) -> Callable:
        _check_call(config, op_name)
        name = config.get("name", "")
        masked_values = keras3_masked if _is_keras3(config) else None

        def run(*inputs: np.ndarray, mask: list | None = None) -> np.ndarray:
            if arity is not None and len(inputs) != arity:
                raise InputError(
                    f"layer '{name}' ({op_name}) takes exactly {arity} inputs, got {len(inputs)}"
                )
            xs, reshaped = _same_rank(inputs)
            # Keras 3 reads masks off the tensors it merges; expanded copies carry none
            if masked_values is not None and mask and not reshaped \
                    and any(m is not None for m in mask):
                return masked_values(xs, list(mask))
            return combine(xs)

        return run

    return build


def _multiply_masked(xs: list[np.ndarray], masks: list) -> np.ndarray:
    """Keras 3 Multiply: masked entries count as 1; the result is 0 where all are masked."""
    full = all(m is not None for m in masks)
    out: np.ndarray | None = None
    out_mask: np.ndarray | None = None
    for x, m in zip(xs, masks):
        if m is not None:
            em = _expanded(m, x)
            x = np.where(em, x, x.dtype.type(1))
            if full:
                out_mask = em if out_mask is None else np.logical_or(out_mask, em)
        out = x if out is None else out * x
    assert out is not None
    if out_mask is not None:
        out = np.where(out_mask, out, out.dtype.type(0))
    return out


def _or_masked(op: Binary) -> Callable[[list[np.ndarray], list], np.ndarray]:
    """Keras 3 Maximum/Minimum: masked entries take the other operand's value."""

    def merge(xs: list[np.ndarray], masks: list) -> np.ndarray:
        out: np.ndarray | None = None
        out_mask: np.ndarray | None = None
        for x, m in zip(xs, masks):
            em = None if m is None else _expanded(m, x)
            if out is None:
                out, out_mask = x, em
                continue
            if em is not None:
                x = np.where(em, x, out)
            if out_mask is not None:
                out = np.where(out_mask, out, x)
            out_mask = np.logical_or(out_mask, em) if em is not None and out_mask is not None \
                else None
            out = op(out, x)
        assert out is not None
        return out

    return merge


def _average(xs: list[np.ndarray]) -> np.ndarray:
    total = _fold(np.add, xs)
    return total / total.dtype.type(len(xs)) if total.dtype.kind == "f" else total / len(xs)


ELEMENTWISE = {
    "Add": (lambda xs: _fold(np.add, xs), None, None),
    "Subtract": (lambda xs: np.subtract(xs[0], xs[1]), None, 2),
    "Multiply": (lambda xs: _fold(np.multiply, xs), _multiply_masked, None),
    "Average": (_average, None, None),
    "Maximum": (lambda xs: _fold(np.maximum, xs), _or_masked(np.maximum), None),
    "Minimum": (lambda xs: _fold(np.minimum, xs), _or_masked(np.minimum), None),
}

for _name, (_combine, _masked, _arity) in ELEMENTWISE.items():
    register(_name, mask=_elementwise_masks, uses_mask=True)(
        _make_elementwise(_name, _combine, _masked, _arity))


# ----- Concatenate ---------------------------------------------------------------------------

def _concatenate_masks(config: dict, inputs: list, masks: list) -> list:
    if not masks or all(m is None for m in masks):
        return [None]
    axis = int(config.get("axis", -1))
    keras3 = _is_keras3(config)
    parts = []
    for x, m in zip(inputs, masks):
        x = np.asarray(x)
        if m is None:
            parts.append(np.ones(x.shape, dtype=bool))
            continue
        m = np.asarray(m, dtype=bool)
        if m.ndim < x.ndim:
            # Keras 3 broadcasts the mask over the input; tf_keras only adds an axis
            m = _expanded(m, x) if keras3 else np.expand_dims(m, -1)
        parts.append(m)
    joined = np.concatenate(parts, axis=axis)
    return [joined.any(axis=-1) if keras3 else joined.all(axis=-1)]


_concatenate_masks.passes_only = True  # type: ignore[attr-defined]


@register("Concatenate", mask=_concatenate_masks)
def build_concatenate(config: dict, weights: dict) -> Callable:
    _check_call(config, "Concatenate")
    axis = int(config.get("axis", -1))
    return lambda *inputs: np.concatenate(inputs, axis=axis)


# ----- Dot -----------------------------------------------------------------------------------

def batch_dot(x: np.ndarray, y: np.ndarray, a0: int, a1: int) -> np.ndarray:
    """Keras's batch_dot for one summed axis per input (batch axis 0 kept)."""
    x = np.moveaxis(x, a0, -1)
    y = np.moveaxis(y, a1, 1)
    batch, k = x.shape[0], x.shape[-1]
    x_rest, y_rest = x.shape[1:-1], y.shape[2:]
    out = np.matmul(x.reshape(batch, -1, k), y.reshape(batch, k, -1))
    out = out.reshape((batch,) + x_rest + y_rest)
    return out.reshape(batch, 1) if out.ndim == 1 else out


def _dot_axes(axes: Any, name: str) -> tuple[int, int] | int:
    """`axes` as an int or a pair; Keras 1 files may store each axis as a 1-element list."""
    if isinstance(axes, int):
        return axes
    if isinstance(axes, (list, tuple)) and len(axes) == 2:
        pair = [a[0] if isinstance(a, (list, tuple)) and len(a) == 1 else a for a in axes]
        if all(isinstance(a, int) for a in pair):
            return pair[0], pair[1]
    raise ModelFormatError(
        f"layer '{name}' (Dot): axes must be an int or two ints. Received: axes={axes!r}"
    )


def _l2_normalize(x: np.ndarray, axis: int, keras3: bool) -> np.ndarray:
    square_sum = np.sum(np.square(x), axis=axis, keepdims=True, dtype=x.dtype)
    if keras3:  # keras.ops.normalize with the default epsilon 1e-7
        with np.errstate(divide="ignore"):
            return x * np.minimum(1 / np.sqrt(square_sum), x.dtype.type(1e7))
    return x * (1 / np.sqrt(np.maximum(square_sum, x.dtype.type(1e-12))))  # tf.linalg.l2_normalize


@register("Dot", mask=lambda config, inputs, masks: [None])
def build_dot(config: dict, weights: dict) -> Callable:
    _check_call(config, "Dot")
    name = config.get("name", "")
    axes = _dot_axes(config.get("axes", -1), name)
    normalize = bool(config.get("normalize", False))
    keras3 = _is_keras3(config)

    def run(*inputs: np.ndarray) -> np.ndarray:
        if len(inputs) != 2:
            raise InputError(f"layer '{name}' (Dot) takes exactly 2 inputs, got {len(inputs)}")
        x, y = inputs
        if isinstance(axes, int):
            a0, a1 = (axes % x.ndim, axes % y.ndim) if axes < 0 else (axes, axes)
        else:
            a0, a1 = axes[0] % x.ndim, axes[1] % y.ndim
        if 0 in (a0, a1) or x.shape[a0] != y.shape[a1]:
            raise InputError(
                f"layer '{name}' (Dot): cannot take the dot product of shapes {x.shape} and "
                f"{y.shape} over axes ({a0}, {a1})"
            )
        if normalize:
            x, y = _l2_normalize(x, a0, keras3), _l2_normalize(y, a1, keras3)
        return batch_dot(x, y, a0, a1)

    return run
