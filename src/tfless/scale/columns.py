"""Column mapping: which table columns feed which model input, and outputs as columns.

Every batch-scoring route (the local streaming CLI in `stream.py`, and the Spark, Dask and
Ray adapters) turns a batch of rows into model inputs and model outputs back into columns
with this module, so all of them accept the same `--columns` spellings and fail the same way.

Contract:

- `parse_columns(spec, model, exclude=()) -> ColumnMap`. `spec` is the `--columns` text:
  * `None`: auto. Columns named like the model's inputs; else (one-input model) the one
    list/array column; else all numeric columns, in table order, stacked as the feature
    axis of the single input. Columns in `exclude` (e.g. `--keep-columns` ids) never feed
    the model in auto mode. Auto is resolved on the first batch's column names (or
    earlier with `ColumnMap.bind(names)`), and every later batch must have those columns.
  * `"feat"`: one list / fixed-size-list / tensor column (or one scalar column for an
    input of one value per row) for a one-input model.
  * `"a,b,c"`: scalar columns stacked into the last axis of a one-input model.
  * `"in1=a,b;in2=c"`: per model input, each side one of the two forms above.
  Checked against `model.inputs` at once: input names, how many scalar columns fit the
  input's per-row shape, numeric dtype.
- `ColumnMap.to_inputs(batch, where="", offset=0) -> list[np.ndarray]`, one array per
  model input in `model.inputs` order, shaped `(rows, *input_shape[1:])` in the input's
  dtype. `batch` is a pyarrow Table/RecordBatch, a pandas DataFrame or a
  `Mapping[str, np.ndarray]` (a value may already be `(rows, ...)`). List columns are
  reshaped to the input shape (one free axis is inferred from the row width). Errors are
  `InputError`s in one line: `"<where>: column 'x': <problem>"` - a missing column (with
  the columns present), a wrong width, a non-numeric dtype, null/NaN values (with the
  first bad row, `offset` added so it is the row in the file), ragged lists.
- `ColumnMap.columns`: the source columns the model reads (None while auto is unbound),
  for column projection when reading.
- `output_columns(model, outputs) -> dict[str, np.ndarray]`: one column per model output
  (`outputs` is what `predict(..., structured=False)` returned, an array or a list); the
  column is named after the output. `(rows,)` stays a scalar column, `(rows, k)` or
  higher becomes a fixed-size-list column (nested for rank > 2).
- `to_arrow(columns) -> pyarrow.Table` builds that table (values may also be pyarrow
  arrays, e.g. input columns kept for ids); `flat_columns(columns)` spreads list columns
  into `name_0, name_1, ...` scalar columns for formats without lists (CSV).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError, MissingExtra
from ..graph import TensorSpec

AUTO = None


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError as exc:
        raise MissingExtra("pyarrow", "scale", "batch scoring of tables") from exc
    return pyarrow


@dataclass(frozen=True)
class Binding:
    """One model input and the source columns that feed it: a single column (list column
    reshaped to the input, or one scalar per row) or several scalar columns stacked into
    the last axis."""

    spec: TensorSpec
    columns: tuple[str, ...]

    @property
    def row_shape(self) -> tuple[int | None, ...]:
        return tuple(self.spec.shape[1:])


class ColumnMap:
    """How rows become model inputs; see the module docstring for the contract."""

    def __init__(self, specs: Sequence[TensorSpec], bindings: Sequence[Binding] | None,
                 exclude: Sequence[str] = (), spec_text: str | None = None) -> None:
        self.specs = list(specs)
        self.bindings = None if bindings is None else list(bindings)
        self.exclude = tuple(exclude)
        self.spec_text = spec_text

    def __repr__(self) -> str:
        if self.bindings is None:
            return "<ColumnMap auto (unbound)>"
        parts = "; ".join(f"{b.spec.name}={','.join(b.columns)}" for b in self.bindings)
        return f"<ColumnMap {parts}>"

    @property
    def columns(self) -> list[str] | None:
        """Source columns read by the model (None while auto mode is not bound yet)."""
        if self.bindings is None:
            return None
        seen: dict[str, None] = {}
        for b in self.bindings:
            seen.update(dict.fromkeys(b.columns))
        return list(seen)

    def bind(self, names: Sequence[str], types: Mapping[str, str] | None = None,
             where: str = "") -> ColumnMap:
        """A concrete map for a table with these column names (auto mode picks its columns
        here; `types` maps a name to 'list', 'number' or 'other' when known)."""
        if self.bindings is not None:
            return self
        bindings = _auto_bindings(self.specs, list(names), types or {}, self.exclude, where)
        return ColumnMap(self.specs, bindings, self.exclude, self.spec_text)

    def to_inputs(self, batch: Any, where: str = "", offset: int = 0) -> list[np.ndarray]:
        """Model inputs for one batch of rows (see the module docstring)."""
        table = _Columns(batch)
        if self.bindings is None:
            bound = self.bind(table.names, table.kinds(), where)
            self.bindings = bound.bindings  # later batches must have the same columns
        assert self.bindings is not None
        missing = [c for c in self.columns or [] if c not in table.names]
        if missing:
            raise InputError(f"{_prefix(where)}column '{missing[0]}' is missing (mapped to input "
                             f"'{self._input_of(missing[0])}'); the columns present are "
                             f"{_names(table.names)}")
        n = table.num_rows
        arrays = []
        for b in self.bindings:
            arrays.append(_input_array(b, table, n, where, offset))
        return arrays

    def _input_of(self, column: str) -> str:
        for b in self.bindings or []:
            if column in b.columns:
                return b.spec.name
        return "?"


# ----- parsing ----------------------------------------------------------------------------
def parse_columns(spec: str | None, model: Any, exclude: Sequence[str] = ()) -> ColumnMap:
    """The `--columns` option for `model` (anything with `.inputs`, a list of TensorSpec)."""
    specs = list(model.inputs)
    for s in specs:
        _check_numeric_dtype(s)
    if spec is None or not spec.strip():
        return ColumnMap(specs, None, exclude, None)
    text = spec.strip()
    names = [s.name for s in specs]
    if "=" in text:
        bindings: dict[str, Binding] = {}
        for part in (p.strip() for p in text.split(";")):
            if not part:
                continue
            if "=" not in part:
                raise InputError(f"--columns {text!r}: '{part}' has no '='; write "
                                 "'input=col' or 'input=a,b' per input, separated by ';'")
            name, cols = (x.strip() for x in part.split("=", 1))
            if name not in names:
                raise InputError(f"--columns {text!r}: the model has no input '{name}'; "
                                 f"its inputs are {names}")
            if name in bindings:
                raise InputError(f"--columns {text!r}: input '{name}' is mapped twice")
            bindings[name] = _binding(specs[names.index(name)], _split(cols, text), text)
        unmapped = [n for n in names if n not in bindings]
        if unmapped:
            raise InputError(f"--columns {text!r}: no columns for input(s) {unmapped}; "
                             f"map every input: {';'.join(n + '=...' for n in names)}")
        return ColumnMap(specs, [bindings[n] for n in names], exclude, text)
    if len(specs) != 1:
        raise InputError(f"--columns {text!r}: the model has {len(specs)} inputs {names}; "
                         f"map each one: {';'.join(n + '=...' for n in names)}")
    return ColumnMap(specs, [_binding(specs[0], _split(text, text), text)], exclude, text)


def _split(cols: str, text: str) -> tuple[str, ...]:
    out = tuple(c.strip() for c in cols.split(","))
    if not out or any(not c for c in out):
        raise InputError(f"--columns {text!r}: empty column name in '{cols}'")
    if len(set(out)) != len(out):
        raise InputError(f"--columns {text!r}: a column is listed twice in '{cols}'")
    return out


def _binding(spec: TensorSpec, cols: tuple[str, ...], text: str) -> Binding:
    b = Binding(spec, cols)
    if len(cols) > 1:
        _check_stack_width(b, len(cols), f"--columns {text!r}: ")
    return b


def _check_numeric_dtype(spec: TensorSpec) -> None:
    try:
        kind = np.dtype(spec.dtype).kind
    except TypeError:
        kind = "?"
    if kind not in "biuf":
        raise InputError(f"input '{spec.name}' takes {spec.dtype} values; batch scoring from "
                         "tables supports numeric inputs only")


def _check_stack_width(b: Binding, k: int, prefix: str) -> None:
    """k scalar columns must fill the input's per-row shape (at most one free axis)."""
    shape = b.row_shape
    known = math.prod(d for d in shape if d is not None)
    free = sum(d is None for d in shape)
    ok = (k == known) if free == 0 else (free == 1 and k % known == 0)
    if not ok:
        raise InputError(f"{prefix}input '{b.spec.name}' takes rows of shape {_fmt(shape)} "
                         f"({known if free == 0 else 'a multiple of ' + str(known)} values), "
                         f"but {k} column(s) {list(b.columns)} give {k} per row")


def _auto_bindings(specs: list[TensorSpec], names: list[str], kinds: Mapping[str, str],
                   exclude: Sequence[str], where: str) -> list[Binding]:
    usable = [n for n in names if n not in exclude]
    input_names = [s.name for s in specs]
    if all(n in usable for n in input_names):
        return [Binding(s, (s.name,)) for s in specs]
    if len(specs) > 1:
        missing = [n for n in input_names if n not in usable]
        raise InputError(f"{_prefix(where)}no columns named like the model's inputs "
                         f"{input_names} (missing {missing}); the columns present are {_names(names)}; "
                         "map them with --columns 'input=col;...'")
    lists = [n for n in usable if kinds.get(n) == "list"]
    if len(lists) == 1:
        return [Binding(specs[0], (lists[0],))]
    if lists:
        raise InputError(f"{_prefix(where)}several list columns {lists} could feed input "
                         f"'{specs[0].name}'; choose one with --columns")
    numeric = [n for n in usable if kinds.get(n, "number") == "number"]
    if not numeric:
        raise InputError(f"{_prefix(where)}no numeric or list columns to feed input "
                         f"'{specs[0].name}'; the columns present are {_names(names)}")
    b = Binding(specs[0], tuple(numeric))
    _check_stack_width(b, len(numeric), f"{_prefix(where)}auto --columns: ")
    return [b]


# ----- reading columns ------------------------------------------------------------------
class _Columns:
    """A uniform view of a pyarrow Table/RecordBatch, pandas DataFrame or dict of arrays."""

    def __init__(self, batch: Any) -> None:
        self.batch = batch
        if isinstance(batch, Mapping):
            self.kind = "mapping"
            self.names = [str(k) for k in batch]
            lengths = {len(np.asarray(v)) if np.ndim(v) else 1 for v in batch.values()}
            if len(lengths) > 1:
                raise InputError(f"columns have different lengths {sorted(lengths)}")
            self.num_rows = lengths.pop() if lengths else 0
        elif hasattr(batch, "schema") and hasattr(batch, "column"):
            self.kind = "arrow"
            self.names = list(batch.schema.names)
            self.num_rows = batch.num_rows
        elif hasattr(batch, "columns") and hasattr(batch, "iloc"):
            self.kind = "pandas"
            self.names = [str(c) for c in batch.columns]
            self.num_rows = len(batch)
        else:
            raise InputError(f"cannot read columns from a {type(batch).__name__}; give a pyarrow "
                             "Table/RecordBatch, a pandas DataFrame or a dict of arrays")

    def kinds(self) -> dict[str, str]:
        out = {}
        for n in self.names:
            if self.kind == "arrow":
                out[n] = _arrow_kind(self.batch.schema.field(n).type)
            elif self.kind == "pandas":
                col = self.batch[n]
                if col.dtype.kind in "biuf":
                    out[n] = "number"
                elif col.dtype == object and len(col) and isinstance(
                        col.iloc[0], (list, tuple, np.ndarray)):
                    out[n] = "list"
                else:
                    out[n] = "other"
            else:
                v = np.asarray(self.batch[n]) if not isinstance(self.batch[n], np.ndarray) \
                    else self.batch[n]
                out[n] = ("list" if v.ndim > 1 or v.dtype == object
                          else "number" if v.dtype.kind in "biuf" else "other")
        return out

    def get(self, name: str) -> Any:
        if self.kind == "arrow":
            return self.batch.column(name)
        return self.batch[name]


def _arrow_kind(t: Any) -> str:
    pa = _pyarrow()
    if isinstance(t, pa.ExtensionType):
        t = t.storage_type
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return "list"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        return "number"
    return "other"


def _input_array(b: Binding, table: _Columns, n: int, where: str, offset: int) -> np.ndarray:
    dtype = np.dtype(b.spec.dtype)
    if len(b.columns) == 1:
        name = b.columns[0]
        values, width_shape = _column_values(table.get(name), name, where, offset)
        if width_shape is None:  # one scalar per row
            _check_stack_width(b, 1, f"{_prefix(where)}column '{name}' has one value per row; ")
            flat = values.reshape(n, 1)
        else:
            flat = values
        arr = _reshape(flat, b, name, where, n)
    else:
        cols = []
        for name in b.columns:
            values, width_shape = _column_values(table.get(name), name, where, offset)
            if width_shape is not None:
                raise InputError(f"{_prefix(where)}column '{name}' holds lists; only scalar "
                                 f"columns can be stacked (input '{b.spec.name}' from "
                                 f"{list(b.columns)})")
            cols.append(values)
        stacked = np.stack(cols, axis=1) if cols else np.zeros((n, 0))
        arr = _reshape(stacked, b, ",".join(b.columns), where, n)
    if dtype.kind in "iu" and arr.dtype.kind == "f":
        bad = np.flatnonzero((arr != np.round(arr)).reshape(n, -1).any(axis=1))
        if bad.size:
            raise InputError(f"{_prefix(where)}input '{b.spec.name}' takes integers ({dtype}) "
                             f"but row {offset + int(bad[0])} has fractional values")
    return np.ascontiguousarray(arr, dtype=dtype)


def _reshape(flat: np.ndarray, b: Binding, name: str, where: str, n: int) -> np.ndarray:
    """(rows, width) or (rows, ...) values to (rows, *input_row_shape)."""
    shape = b.row_shape
    width = int(math.prod(flat.shape[1:]))
    known = math.prod(d for d in shape if d is not None)
    free = [i for i, d in enumerate(shape) if d is None]
    if flat.ndim == 1 + len(shape) and all(d is None or d == g for d, g in zip(shape, flat.shape[1:])):
        return flat
    if len(free) > 1:
        raise InputError(f"{_prefix(where)}column '{name}': input '{b.spec.name}' has per-row "
                         f"shape {_fmt(shape)} with {len(free)} free axes; give the column as "
                         "nested lists of that shape")
    if (not free and width != known) or (free and (known == 0 or width % known)):
        want = str(known) if not free else f"a multiple of {known}"
        raise InputError(f"{_prefix(where)}column '{name}' has {width} values per row; input "
                         f"'{b.spec.name}' of shape {_fmt(shape)} needs {want}")
    target = tuple(width // known if d is None else d for d in shape)
    return flat.reshape((n, *target))


def _column_values(col: Any, name: str, where: str, offset: int) -> tuple[np.ndarray, Any]:
    """Values of one column as (rows,) for scalars or (rows, ...) for lists, checked for
    numeric dtype, nulls/NaN and ragged rows. The second item is None for scalar columns."""
    if _is_arrow(col):
        return _arrow_values(_pyarrow(), col, name, where, offset)
    if hasattr(col, "iloc"):  # pandas Series
        if col.dtype == object:
            return _object_values(col.to_numpy(), name, where, offset)
        if col.dtype.kind not in "biuf":  # nullable/extension dtypes: NA becomes NaN
            try:
                arr = col.to_numpy(dtype=np.float64, na_value=np.nan)
            except (TypeError, ValueError) as exc:
                raise InputError(f"{_prefix(where)}column '{name}' has dtype {col.dtype}; "
                                 "the model needs numbers") from exc
        else:
            arr = col.to_numpy()
        return _checked(arr, name, where, offset), None
    arr = col if isinstance(col, np.ndarray) else np.asarray(col)
    if arr.dtype == object:
        return _object_values(arr, name, where, offset)
    arr = _checked(arr, name, where, offset)
    return arr, (None if arr.ndim == 1 else arr.shape[1:])


def _is_arrow(col: Any) -> bool:
    # an arrow array can only exist if pyarrow was imported: dicts of NumPy arrays need no pyarrow
    pa = sys.modules.get("pyarrow")
    return pa is not None and isinstance(col, (pa.Array, pa.ChunkedArray))


def _checked(arr: np.ndarray, name: str, where: str, offset: int) -> np.ndarray:
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{_prefix(where)}column '{name}' has dtype {arr.dtype}; the model "
                         "needs numbers")
    if arr.dtype.kind == "f":
        bad = np.isnan(arr)
        if bad.ndim > 1:
            bad = bad.reshape(len(arr), -1).any(axis=1)
        if bad.any():
            raise InputError(f"{_prefix(where)}column '{name}' has a NaN/null value in row "
                             f"{offset + int(np.flatnonzero(bad)[0])} "
                             f"({int(bad.sum())} row(s) in all)")
    return arr


def _object_values(arr: np.ndarray, name: str, where: str, offset: int) -> tuple[np.ndarray, Any]:
    """A column of per-row lists/arrays (pandas object column)."""
    n = len(arr)
    if n == 0:
        return np.zeros((0, 0)), (0,)
    shapes = []
    for i, v in enumerate(arr):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            raise InputError(f"{_prefix(where)}column '{name}' has a null value in row {offset + i}")
        if isinstance(v, (str, bytes)):
            raise InputError(f"{_prefix(where)}column '{name}' holds text (row {offset + i}); "
                             "the model needs numbers")
        shapes.append(np.shape(v))
    first = shapes[0]
    for i, s in enumerate(shapes):
        if s != first:
            raise InputError(f"{_prefix(where)}column '{name}' has ragged rows: row {offset} "
                             f"has shape {first}, row {offset + i} has {s}")
    try:
        values = np.stack([np.asarray(v) for v in arr])
    except (ValueError, TypeError) as exc:
        raise InputError(f"{_prefix(where)}column '{name}': cannot read rows as arrays: "
                         f"{exc}") from exc
    if values.dtype == object:
        raise InputError(f"{_prefix(where)}column '{name}' holds non-numeric values; the model "
                         "needs numbers")
    values = _checked(values, name, where, offset)
    return values, (first if first else None)


def _arrow_values(pa: Any, col: Any, name: str, where: str, offset: int) -> tuple[np.ndarray, Any]:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if isinstance(col.type, pa.ExtensionType):
        col = col.storage
    kind = _arrow_kind(col.type)
    if kind == "other":
        raise InputError(f"{_prefix(where)}column '{name}' has type {col.type}; the model "
                         "needs numbers or lists of numbers")
    if col.null_count:
        row = _first_null(col)
        raise InputError(f"{_prefix(where)}column '{name}' has a null value in row "
                         f"{offset + row} ({col.null_count} row(s) in all)")
    n = len(col)
    if kind == "number":
        return _checked(col.to_numpy(zero_copy_only=False), name, where, offset), None
    dims: list[int] = []
    arr = col
    while _arrow_kind(arr.type) == "list":
        if arr.null_count:
            raise InputError(f"{_prefix(where)}column '{name}' has a null list item (row "
                             f"{offset + _outer_row(col, arr, dims)})")
        if pa.types.is_fixed_size_list(arr.type):
            width = arr.type.list_size
            values = arr.flatten()
        else:
            offsets = arr.offsets.to_numpy()
            lengths = np.diff(offsets)
            width = int(lengths[0]) if len(lengths) else 0
            bad = np.flatnonzero(lengths != width)
            if bad.size:
                rows = math.prod(dims) or 1
                raise InputError(f"{_prefix(where)}column '{name}' has ragged lists: row "
                                 f"{offset} has {width} values, row "
                                 f"{offset + int(bad[0]) // rows} has {int(lengths[bad[0]])}")
            values = arr.flatten()
        dims.append(width)
        arr = values
    if _arrow_kind(arr.type) != "number":
        raise InputError(f"{_prefix(where)}column '{name}' holds lists of {arr.type}; the model "
                         "needs numbers")
    if arr.null_count:
        inner = math.prod(dims) or 1
        raise InputError(f"{_prefix(where)}column '{name}' has a null value inside the list of "
                         f"row {offset + _first_null(arr) // inner}")
    flat = arr.to_numpy(zero_copy_only=False).reshape((n, *dims))
    return _checked(flat, name, where, offset), tuple(dims)


def _first_null(arr: Any) -> int:
    mask = arr.is_null().to_numpy(zero_copy_only=False)
    return int(np.flatnonzero(mask)[0])


def _outer_row(col: Any, arr: Any, dims: list[int]) -> int:
    return _first_null(arr) // (math.prod(dims) or 1)


# ----- outputs ----------------------------------------------------------------------------
def output_columns(model: Any, outputs: Any) -> dict[str, np.ndarray]:
    """One column per model output, named after it (see the module docstring)."""
    arrays = outputs if isinstance(outputs, list) else [outputs]
    names = [s.name for s in model.outputs]
    if len(arrays) != len(names):
        raise InputError(f"the model has {len(names)} outputs {names}, got {len(arrays)} arrays")
    out: dict[str, np.ndarray] = {}
    for name, a in zip(names, arrays):
        key, i = name, 1
        while key in out:  # two outputs with one name cannot share a column
            i += 1
            key = f"{name}_{i}"
        out[key] = np.asarray(a)
    return out


def to_arrow(columns: Mapping[str, Any]) -> Any:
    """A pyarrow Table of these columns: 1-D arrays as scalar columns, (rows, k, ...) as
    fixed-size lists (nested for rank > 2); pyarrow arrays pass through unchanged."""
    pa = _pyarrow()
    fields = {}
    for name, v in columns.items():
        if isinstance(v, (pa.Array, pa.ChunkedArray)):
            fields[name] = v
            continue
        a = np.ascontiguousarray(v)
        arr = pa.array(a.reshape(-1)) if a.ndim != 1 else pa.array(a)
        for width in reversed(a.shape[1:]):
            arr = pa.FixedSizeListArray.from_arrays(arr, int(width))
        fields[name] = arr
    return pa.table(fields)


def flat_columns(columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """List columns spread into scalar columns `name_0, name_1, ...` (row-major over the
    per-row shape), for formats without list values such as CSV."""
    out: dict[str, np.ndarray] = {}
    for name, v in columns.items():
        a = np.asarray(v)
        if a.ndim <= 1:
            out[name] = a
            continue
        flat = a.reshape(len(a), -1)
        for j in range(flat.shape[1]):
            out[f"{name}_{j}"] = flat[:, j]
    return out


def _names(names: Sequence[str], limit: int = 12) -> str:
    """A column list short enough for a one-line error."""
    if len(names) <= limit:
        return str(list(names))
    return f"{list(names[:limit])[:-1]}... ({len(names)} in all)".replace("]...", ", ...]")


def _prefix(where: str) -> str:
    return f"{where}: " if where else ""


def _fmt(shape: Sequence[int | None]) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + (
        ",)" if len(shape) == 1 else ")")
