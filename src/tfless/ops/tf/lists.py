"""TF TensorLists (the `variant` tensors TensorArray and Keras's RNN loops are built on).

A TensorList value is a `TensorList` object: its items (None for a slot reserved but not
yet written), the element shape it was declared with and the element dtype. Every op
returns a new list (TF's value semantics), copying only the item references, so a list
read after a later SetItem elsewhere still sees its own items. A slot never written reads
as zeros of the element shape, as TF does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .common import Compute, TfNode, ints, scalar_int, tf_kernel, to_dtype


class TensorList:
    """A list of tensors flowing through the graph as one value."""

    __slots__ = ("items", "element_shape", "dtype")

    def __init__(self, items: list[np.ndarray | None], element_shape: list[int] | None,
                 dtype: np.dtype) -> None:
        self.items = items
        self.element_shape = element_shape  # None = unknown rank; -1 = unknown size
        self.dtype = dtype

    def with_items(self, items: list[np.ndarray | None]) -> TensorList:
        return TensorList(items, self.element_shape, self.dtype)


def _shape_operand(value: Any) -> list[int] | None:
    """An element_shape operand: a scalar -1 means unknown rank."""
    arr = np.asarray(value)
    if arr.ndim == 0:
        return None if int(arr) == -1 else [int(arr)]
    return ints(arr)


def _merge_shapes(a: list[int] | None, b: list[int] | None) -> list[int] | None:
    if a is None:
        return b
    if b is None or len(a) != len(b):
        return a
    return [x if x >= 0 else y for x, y in zip(a, b)]


def _check_list(node: TfNode, value: Any) -> TensorList:
    if not isinstance(value, TensorList):
        raise node.bad_input(f"expected a TensorList, got {type(value).__name__}")
    return value


def _zeros(node: TfNode, lst: TensorList, shape: list[int] | None) -> np.ndarray:
    full = _merge_shapes(lst.element_shape, shape)
    if full is None or any(d < 0 for d in full):
        raise node.bad_input("reads a list slot never written, and the element shape "
                             f"{full} is not fully known")
    return np.zeros(full, dtype=lst.dtype)


def _index(node: TfNode, lst: TensorList, index: Any) -> int:
    i = scalar_int(node, index, "index")
    if not 0 <= i < len(lst.items):
        raise node.bad_input(f"index {i} is outside the list of {len(lst.items)} items")
    return i


@tf_kernel("TensorListReserve")
def reserve(node: TfNode) -> Compute:
    dtype = node.dtype("element_dtype")
    return lambda shape, n: TensorList([None] * max(scalar_int(node, n, "num_elements"), 0),
                                       _shape_operand(shape), dtype)


@tf_kernel("EmptyTensorList")
def empty(node: TfNode) -> Compute:
    dtype = node.dtype("element_dtype")
    return lambda shape, max_elements: TensorList([], _shape_operand(shape), dtype)


@tf_kernel("TensorListFromTensor")
def from_tensor(node: TfNode) -> Compute:
    dtype = node.dtype("element_dtype")

    def compute(tensor: np.ndarray, shape: Any) -> TensorList:
        t = np.asarray(tensor)
        if t.ndim == 0:
            raise node.bad_input("cannot split a scalar into a list")
        return TensorList(list(t), _merge_shapes(_shape_operand(shape), list(t.shape[1:])),
                          dtype)

    return compute


@tf_kernel("TensorListGetItem")
def get_item(node: TfNode) -> Compute:
    def compute(lst: Any, index: Any, shape: Any) -> np.ndarray:
        lst = _check_list(node, lst)
        item = lst.items[_index(node, lst, index)]
        return _zeros(node, lst, _shape_operand(shape)) if item is None else item

    return compute


@tf_kernel("TensorListSetItem")
def set_item(node: TfNode) -> Compute:
    resize = bool(node.attr("resize_if_index_out_of_bounds", False))

    def compute(lst: Any, index: Any, item: np.ndarray) -> TensorList:
        lst = _check_list(node, lst)
        items = list(lst.items)
        i = scalar_int(node, index, "index")
        if resize and i >= len(items):
            items.extend([None] * (i + 1 - len(items)))
        if not 0 <= i < len(items):
            raise node.bad_input(f"index {i} is outside the list of {len(items)} items")
        items[i] = np.asarray(item)
        return lst.with_items(items)

    return compute


def _stack(node: TfNode, lst: TensorList, shape: list[int] | None,
           items: list[np.ndarray | None]) -> np.ndarray:
    if not items:
        full = _merge_shapes(lst.element_shape, shape)
        if full is None or any(d < 0 for d in full):
            raise node.bad_input("stacks an empty list whose element shape is not known")
        return np.zeros([0, *full], dtype=lst.dtype)
    filled = [item for item in items if item is not None]
    known = list(filled[0].shape) if filled else shape
    arrays = [np.zeros(known or [], lst.dtype) if item is None else item for item in items]
    if len({a.shape for a in arrays}) > 1:
        raise node.bad_input(f"stacks items of different shapes {sorted({a.shape for a in arrays})}")
    return np.stack(arrays)


@tf_kernel("TensorListStack")
def stack(node: TfNode) -> Compute:
    def compute(lst: Any, shape: Any) -> np.ndarray:
        lst = _check_list(node, lst)
        return _stack(node, lst, _shape_operand(shape), lst.items)

    return compute


@tf_kernel("TensorListGather")
def gather(node: TfNode) -> Compute:
    def compute(lst: Any, indices: Any, shape: Any) -> np.ndarray:
        lst = _check_list(node, lst)
        items = [lst.items[_index(node, lst, i)] for i in np.asarray(indices).reshape(-1)]
        return _stack(node, lst, _shape_operand(shape), items)

    return compute


@tf_kernel("TensorListLength")
def length(node: TfNode) -> Compute:
    return lambda lst: np.array(len(_check_list(node, lst).items), dtype=np.int32)


@tf_kernel("TensorListElementShape")
def element_shape(node: TfNode) -> Compute:
    out = to_dtype(node.attr("shape_type", "int32"), node.where, "shape_type")

    def compute(lst: Any) -> np.ndarray:
        shape = _check_list(node, lst).element_shape
        return np.array(-1 if shape is None else shape, dtype=out)

    return compute


@tf_kernel("TensorListPushBack")
def push_back(node: TfNode) -> Compute:
    def compute(lst: Any, item: np.ndarray) -> TensorList:
        lst = _check_list(node, lst)
        return lst.with_items([*lst.items, np.asarray(item)])

    return compute


@tf_kernel("TensorListPopBack", num_outputs=lambda config: 2)
def pop_back(node: TfNode) -> Compute:
    def compute(lst: Any, shape: Any) -> tuple:
        lst = _check_list(node, lst)
        if not lst.items:
            raise node.bad_input("pops from an empty list")
        item = lst.items[-1]
        value = _zeros(node, lst, _shape_operand(shape)) if item is None else item
        return lst.with_items(lst.items[:-1]), value

    return compute
