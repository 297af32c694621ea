"""Tensors on the wire: dtype names of both protocols, JSON values to checked arrays, and
arrays to JSON whose floats round-trip (float32 printed as its shortest exact form)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson

from ..graph import TensorSpec
from .errors import invalid

# numpy dtype name -> (TensorFlow DataType, KServe V2 datatype)
DTYPES = {
    "float32": ("DT_FLOAT", "FP32"), "float64": ("DT_DOUBLE", "FP64"), "float16": ("DT_HALF", "FP16"),
    "int8": ("DT_INT8", "INT8"), "int16": ("DT_INT16", "INT16"), "int32": ("DT_INT32", "INT32"),
    "int64": ("DT_INT64", "INT64"), "uint8": ("DT_UINT8", "UINT8"), "uint16": ("DT_UINT16", "UINT16"),
    "uint32": ("DT_UINT32", "UINT32"), "uint64": ("DT_UINT64", "UINT64"), "bool": ("DT_BOOL", "BOOL"),
}
V2_TO_NUMPY = {v2: np.dtype(name) for name, (_, v2) in DTYPES.items()}
JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def spec_dtype(spec: TensorSpec) -> np.dtype:
    return np.dtype(spec.dtype) if spec.dtype in DTYPES else np.dtype(np.float32)


def tf_dtype(dtype: np.dtype | str) -> str:
    return DTYPES.get(np.dtype(dtype).name, ("DT_INVALID", ""))[0]


def v2_datatype(dtype: np.dtype | str) -> str:
    return DTYPES.get(np.dtype(dtype).name, ("", "BYTES"))[1]


def loads(body: bytes) -> Any:
    """Parse JSON; NaN and Infinity are accepted, as TF Serving's parser accepts them."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if b"NaN" in body or b"Infinity" in body:
            try:
                return json.loads(body)
            except (ValueError, UnicodeDecodeError):
                pass
        raise invalid(f"JSON Parse error: {exc}") from None


def dumps(payload: Any) -> bytes:
    """JSON bytes of a payload without tensors (statuses, metadata, errors)."""
    return orjson.dumps(payload, option=JSON_OPTIONS)


def has_non_finite(arrays: list[np.ndarray]) -> bool:
    return any(a.dtype.kind == "f" and not np.isfinite(a).all() for a in arrays)


def dumps_arrays(payload: Any, arrays: list[np.ndarray]) -> bytes:
    """JSON bytes of a payload holding these arrays. orjson would write NaN as null, so
    non-finite floats take a slower path that writes NaN/Infinity/-Infinity like TF Serving."""
    if has_non_finite(arrays):
        return json.dumps(_plain(payload), separators=(",", ":")).encode()
    return orjson.dumps(payload, option=JSON_OPTIONS)


def _plain(value: Any) -> Any:
    """Python objects for json.dumps; float32 values keep their shortest decimal form."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic)):
        arr = np.asarray(value)
        if arr.dtype == np.float32 or arr.dtype == np.float16:
            return _plain_floats(arr)
        return arr.tolist()
    return value


def _plain_floats(arr: np.ndarray) -> Any:
    if arr.ndim == 0:
        return float(str(arr[()]))  # str() of a float32 is its shortest round-trip form
    return [_plain_floats(a) for a in arr]


def to_array(value: Any, spec: TensorSpec, where: str) -> np.ndarray:
    """A JSON value (nested lists of numbers) as an array of the input's dtype, or a clear
    400: ragged lists, strings, objects, fractions for an integer input, out-of-range ints."""
    target = spec_dtype(spec)
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise invalid(f"{where}: the values do not form a tensor (lists of different lengths?): "
                      f"{exc}") from None
    kind = arr.dtype.kind
    dt = tf_dtype(target)
    if arr.size == 0:
        return arr.astype(target)
    if kind == "b" and target.kind != "b":
        raise invalid(f"{where}: expected numbers ({dt}), got booleans")
    if kind not in "biuf":
        if kind == "O" and any(is_b64(v) for v in arr.flat):
            raise invalid(f"{where}: {{\"b64\": ...}} values are base64-encoded DT_STRING data; "
                          f"this input is {dt}: send numbers")
        got = "strings" if kind in "US" else "nested objects, nulls or mixed values"
        raise invalid(f"{where}: expected numbers ({dt}), got {got}")
    if target.kind in "iu":
        if kind == "f":
            raise invalid(f"{where}: expected integers ({dt}), got floating-point values")
        info = np.iinfo(target)
        if arr.min() < info.min or arr.max() > info.max:
            raise invalid(f"{where}: values out of range for {dt} [{info.min}, {info.max}]")
    return arr.astype(target, copy=False)


def is_b64(value: Any) -> bool:
    """TF Serving's JSON form of a binary string: {"b64": "<base64>"}."""
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def check_shape(arr: np.ndarray, spec: TensorSpec, where: str) -> None:
    """Rank and fixed dimensions as the model declares them (batch axis included)."""
    want = spec.shape
    shown = "[" + ", ".join("-1" if d is None else str(d) for d in want) + "]"
    if arr.ndim != len(want) or any(w is not None and w != g for w, g in zip(want, arr.shape)):
        raise invalid(f"{where}: expected shape {shown}, got {list(arr.shape)}")
