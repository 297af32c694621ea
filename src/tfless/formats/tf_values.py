"""TensorFlow attr and tensor values (AttrValue, TensorProto, TensorShapeProto) as Python.

The TF graph reader stores each NodeDef's attrs in its Graph node's config decoded here:
a `type` becomes a NumPy dtype name ("float32", "int32", "bool"; "string", "resource",
"variant" for the non-numeric ones), a `shape` a list with None for unknown sizes (None
for unknown rank), a `tensor` an np.ndarray, `s` a str, `i`/`f`/`b` Python scalars, `func`
the function's name, `list(...)` a list of those. Tensor sizes are checked before anything
is allocated: a TensorProto may declare a huge shape with a single repeated value.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ModelFormatError

# TensorFlow's DataType enum (types.proto) -> NumPy dtype name; reference types are +100.
DTYPE_NAMES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8",
               7: "string", 8: "complex64", 9: "int64", 10: "bool", 14: "bfloat16",
               17: "uint16", 18: "complex128", 19: "float16", 20: "resource", 21: "variant",
               22: "uint32", 23: "uint64"}
# TF Serving spells dtypes by their enum names in signature metadata.
TF_ENUM_NAMES = {1: "DT_FLOAT", 2: "DT_DOUBLE", 3: "DT_INT32", 4: "DT_UINT8", 5: "DT_INT16",
                 6: "DT_INT8", 7: "DT_STRING", 8: "DT_COMPLEX64", 9: "DT_INT64", 10: "DT_BOOL",
                 14: "DT_BFLOAT16", 17: "DT_UINT16", 18: "DT_COMPLEX128", 19: "DT_HALF",
                 20: "DT_RESOURCE", 21: "DT_VARIANT", 22: "DT_UINT32", 23: "DT_UINT64"}
# Which repeated TensorProto field holds the values of each dtype when not in tensor_content.
_VALUE_FIELDS = {"float32": "float_val", "float64": "double_val", "int32": "int_val",
                 "uint8": "int_val", "int16": "int_val", "int8": "int_val", "uint16": "int_val",
                 "int64": "int64_val", "bool": "bool_val", "float16": "half_val",
                 "bfloat16": "half_val", "uint32": "uint32_val", "uint64": "uint64_val"}
MAX_RANK = 64


def dtype_name(enum: int) -> str:
    """NumPy-style name of a TF DataType enum value (reference types as their base type)."""
    base = enum - 100 if enum > 100 else enum
    return DTYPE_NAMES.get(base, f"dtype_enum_{enum}")


def shape_list(shape: Any) -> list[int | None] | None:
    """A TensorShapeProto as a list (None = unknown size), None for an unknown rank."""
    if shape.unknown_rank:
        return None
    if len(shape.dim) > MAX_RANK:
        raise ModelFormatError(f"a tensor shape declares {len(shape.dim)} dimensions")
    return [None if d.size < 0 else int(d.size) for d in shape.dim]


class TensorDecoder:
    """Decodes TensorProtos, counting their bytes against the model's weight limit."""

    def __init__(self, where: str, check_bytes: Any) -> None:
        self.where = where
        self.check_bytes = check_bytes  # (total_bytes, where) -> None, raising past the limit
        self.total = 0

    def tensor(self, proto: Any, node: str = "") -> np.ndarray:
        where = f"{self.where}: node '{node}'" if node else self.where
        dtype = dtype_name(proto.dtype)
        shape = shape_list(proto.tensor_shape)
        if shape is None or any(d is None for d in shape):
            raise ModelFormatError(f"{where}: a constant tensor has no complete shape")
        count = 1
        for d in shape:
            count *= d
        if dtype == "string":
            self.total += count * 8  # at least a pointer per element, counted before filling
            self.check_bytes(self.total, self.where)
            values = list(proto.string_val)
            return self._fill(np.array(values, dtype=object), count, shape, where)
        if dtype not in _VALUE_FIELDS:
            raise ModelFormatError(f"{where}: constants of TF dtype {dtype} are not supported")
        np_dtype = np.dtype("<u2" if dtype == "bfloat16" else dtype).newbyteorder("<")
        self.total += count * np_dtype.itemsize
        self.check_bytes(self.total, self.where)
        if proto.tensor_content:
            content = proto.tensor_content
            if len(content) != count * np_dtype.itemsize:
                raise ModelFormatError(
                    f"{where}: constant of shape {shape} and dtype {dtype} holds "
                    f"{len(content)} bytes, not {count * np_dtype.itemsize}")
            arr = np.frombuffer(content, dtype=np_dtype).reshape(shape)
        else:
            values = getattr(proto, _VALUE_FIELDS[dtype])
            if dtype in ("float16", "bfloat16"):  # half_val holds the bit patterns as int32
                raw = np.array(values, dtype=np.int64).astype(np.uint16)
                arr = self._fill(raw, count, shape, where)
            else:
                arr = self._fill(np.array(values, dtype=np_dtype), count, shape, where)
        if dtype == "bfloat16":
            return (arr.astype(np.uint32) << 16).view(np.float32)
        if dtype == "float16":
            arr = arr.view(np.float16) if arr.dtype == np.uint16 else arr
        return arr.astype(arr.dtype.newbyteorder("="), copy=True)

    @staticmethod
    def _fill(values: np.ndarray, count: int, shape: list, where: str) -> np.ndarray:
        """TF's short form: fewer values than elements repeat the last one (none = zeros)."""
        if len(values) > count:
            raise ModelFormatError(f"{where}: constant of shape {shape} lists {len(values)} "
                                   "values")
        if len(values) == count:
            return values.reshape(shape)
        fill = values[-1] if len(values) else (b"" if values.dtype == object else 0)
        out = np.full(count, fill, dtype=values.dtype)
        out[:len(values)] = values
        return out.reshape(shape)

    def attr(self, value: Any, node: str = "") -> Any:
        """One AttrValue as a Python value (see the module docstring)."""
        kind = value.WhichOneof("value")
        if kind is None:
            return None
        if kind == "list":
            return self._list(value.list, node)
        if kind == "s":
            return value.s.decode("utf8", "replace")
        if kind in ("i", "f", "b", "placeholder"):
            return getattr(value, kind)
        if kind == "type":
            return dtype_name(value.type)
        if kind == "shape":
            return shape_list(value.shape)
        if kind == "tensor":
            return self.tensor(value.tensor, node)
        return value.func.name

    def _list(self, lst: Any, node: str) -> list[Any]:
        if lst.s:
            return [s.decode("utf8", "replace") for s in lst.s]
        if lst.i:
            return [int(v) for v in lst.i]
        if lst.f:
            return [float(v) for v in lst.f]
        if lst.b:
            return [bool(v) for v in lst.b]
        if lst.type:
            return [dtype_name(t) for t in lst.type]
        if lst.shape:
            return [shape_list(s) for s in lst.shape]
        if lst.tensor:
            return [self.tensor(t, node) for t in lst.tensor]
        return [f.name for f in lst.func]

    def attrs(self, node_def: Any) -> dict[str, Any]:
        """A NodeDef's attrs (large internal ones TF keeps for its optimizers dropped)."""
        out: dict[str, Any] = {}
        for entry in node_def.attr:
            if entry.key in ("_output_shapes", "config_proto", "_class"):
                continue
            out[entry.key] = self.attr(entry.value, node_def.name)
        return out
