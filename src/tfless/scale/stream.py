"""Streaming batch scoring on one machine: read a dataset in chunks, predict, write chunks.

`score_files(model, input, output, ...)` reads Parquet (pyarrow.dataset, one row group at a
time, sliced to `chunk_rows`), CSV (pyarrow's streaming CSV reader), a file, folder or glob
of `.npy`/`.npz` files, or a folder of images (`images.py`); maps columns to model inputs
with `columns.py`; predicts each chunk with `Model.predict(batch_size=...)`; and appends the
outputs (plus `--keep-columns` input columns) to a Parquet, CSV or `.npy` file. Memory is
bounded by one chunk (and one Parquet row group), not by the file. The output is written
under a temporary name next to the target and renamed only when every chunk succeeded, so
a failure never leaves a file that looks complete.
"""

from __future__ import annotations

import glob as globlib
import os
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, MissingExtra
from .chunk import Chunk
from .columns import ColumnMap, flat_columns, output_columns, parse_columns, to_arrow

DEFAULT_CHUNK_ROWS = 65536
TABLE_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
ARRAY_SUFFIXES = (".npy", ".npz")
OUTPUT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".npy": "npy"}


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError as exc:
        raise MissingExtra("pyarrow", "scale", "streaming batch scoring") from exc
    return pyarrow


def is_streaming(input: str, output: str | None) -> bool:
    """Whether `tfless predict -i input -o output` goes through this module (tables,
    folders, globs, or a table output); single .npy/.npz/.json files keep the in-memory path."""
    if input == "-":
        return False
    p = Path(input)
    return (p.suffix.lower() in TABLE_SUFFIXES or p.is_dir() or _has_glob(input)
            or (output is not None and Path(output).suffix.lower() in (".parquet", ".pq", ".csv")))


def _has_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


# ----- inputs ---------------------------------------------------------------------------
def input_files(input: str) -> tuple[str, list[Path]]:
    """The kind of dataset ('parquet', 'csv', 'arrays', 'images') and its files, sorted."""
    if _has_glob(input):
        files = [Path(f) for f in sorted(globlib.glob(input, recursive=True)) if Path(f).is_file()]
        if not files:
            raise InputError(f"{input}: the pattern matches no files")
    else:
        p = Path(input)
        if not p.exists():
            raise InputError(f"{input}: no such input file or folder")
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
            if not files:
                raise InputError(f"{input}: the folder is empty")
        else:
            files = [p]
    kinds = {_file_kind(f) for f in files}
    kinds.discard(None)
    if not kinds:
        raise InputError(f"{input}: no .parquet, .csv, .npy/.npz or image files "
                         f"(found {sorted({f.suffix or f.name for f in files})[:6]})")
    if len(kinds) > 1:
        raise InputError(f"{input}: mixes {sorted(kinds)} files; score one kind at a time")
    kind = kinds.pop()
    # a folder of data files may also hold a README, a _SUCCESS marker or .crc files
    files = [f for f in files if _file_kind(f) == kind]
    return kind, files


def _file_kind(f: Path) -> str | None:
    from .images import IMAGE_SUFFIXES

    s = f.suffix.lower()
    if s in TABLE_SUFFIXES:
        return TABLE_SUFFIXES[s]
    if s in ARRAY_SUFFIXES:
        return "arrays"
    if s in IMAGE_SUFFIXES:
        return "images"
    return None


def _arrow_error(pa: Any) -> tuple[type[BaseException], ...]:
    return (pa.ArrowException, OSError, ValueError)


def parquet_chunks(files: Sequence[Path], columns: list[str] | None,
                   chunk_rows: int) -> Iterator[Chunk]:
    """One row group at a time, sliced to chunk_rows; only the needed columns are read."""
    pa = _pyarrow()
    import pyarrow.dataset as ds

    for f in files:
        try:
            dataset = ds.dataset(str(f), format="parquet")
            fragments = list(dataset.get_fragments())
        except _arrow_error(pa) as exc:
            raise InputError(f"{f}: cannot read as Parquet: {_one_line(exc)}") from exc
        _check_names(f, list(dataset.schema.names), columns or [])
        offset = 0
        for fragment in fragments:
            for group in fragment.split_by_row_group():
                index = group.row_groups[0].id
                where = f"{f} row group {index}"
                try:
                    for batch in group.to_batches(batch_size=chunk_rows, columns=columns):
                        if batch.num_rows:
                            yield Chunk(batch, where, offset, batch.num_rows)
                            offset += batch.num_rows
                except _arrow_error(pa) as exc:
                    raise InputError(f"{where}: cannot read: {_one_line(exc)}") from exc


def parquet_schema_names(f: Path) -> tuple[list[str], dict[str, str]]:
    """Column names and kinds of a Parquet file without reading its data."""
    pa = _pyarrow()
    import pyarrow.parquet as pq

    from .columns import _arrow_kind

    try:
        schema = pq.read_schema(str(f))
    except _arrow_error(pa) as exc:
        raise InputError(f"{f}: cannot read as Parquet: {_one_line(exc)}") from exc
    return list(schema.names), {n: _arrow_kind(schema.field(n).type) for n in schema.names}


def csv_chunks(files: Sequence[Path], columns: list[str] | None, chunk_rows: int) -> Iterator[Chunk]:
    """pyarrow's streaming reader, re-sliced to chunk_rows."""
    pa = _pyarrow()
    import pyarrow.csv as pcsv

    for f in files:
        offset = 0
        try:
            reader = pcsv.open_csv(
                str(f), read_options=pcsv.ReadOptions(block_size=1 << 22),
                convert_options=pcsv.ConvertOptions(include_columns=columns))
        except _arrow_error(pa) as exc:
            raise InputError(f"{f}: cannot read as CSV: {_one_line(exc)}") from exc
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except _arrow_error(pa) as exc:
                raise InputError(f"{f} after row {offset}: cannot read: {_one_line(exc)}") from exc
            for start in range(0, batch.num_rows, chunk_rows):
                part = batch.slice(start, chunk_rows)
                yield Chunk(part, f"{f} rows {offset}-{offset + part.num_rows - 1}", offset,
                            part.num_rows)
                offset += part.num_rows


def array_chunks(files: Sequence[Path], model: Any, chunk_rows: int) -> Iterator[Chunk]:
    """.npy files (one array per file for a one-input model) or .npz files keyed by input
    name (or by the names --columns maps); .npy is memory-mapped so only a chunk is read."""
    names = [s.name for s in model.inputs]
    for f in files:
        try:
            if f.suffix.lower() == ".npy":
                if len(names) != 1:
                    raise InputError(f"{f}: the model has {len(names)} inputs {names}; give .npz "
                                     "files keyed by input name")
                arrays = {names[0]: np.load(f, mmap_mode="r", allow_pickle=False)}
            else:
                with np.load(f, allow_pickle=False) as z:
                    arrays = {k: z[k] for k in z.files}
        except (ValueError, OSError, EOFError) as exc:
            raise InputError(f"{f}: cannot read: {_one_line(exc)}") from exc
        lengths = {len(a) if a.ndim else 0 for a in arrays.values()}
        if len(lengths) != 1 or 0 in lengths and any(a.ndim == 0 for a in arrays.values()):
            raise InputError(f"{f}: arrays must share their first (row) axis, got shapes "
                             f"{ {k: a.shape for k, a in arrays.items()} }")
        n = lengths.pop()
        for start in range(0, n, chunk_rows):
            part = {k: np.asarray(a[start:start + chunk_rows]) for k, a in arrays.items()}
            rows = min(chunk_rows, n - start)
            yield Chunk(part, f"{f} rows {start}-{start + rows - 1}", start, rows)


def count_rows(kind: str, files: Sequence[Path]) -> int | None:
    """Total rows when cheap to know (for the progress bar's ETA); None for CSV."""
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            return sum(pq.ParquetFile(str(f)).metadata.num_rows for f in files)
        except (OSError, ValueError, _pyarrow().ArrowException):
            return None
    if kind == "images":
        return len(files)
    if kind == "arrays":
        total = 0
        for f in files:
            if f.suffix.lower() != ".npy":
                return None
            try:
                total += len(np.load(f, mmap_mode="r", allow_pickle=False))
            except (ValueError, OSError, TypeError):
                return None
        return total
    return None


# ----- outputs --------------------------------------------------------------------------
class _Writer(ABC):
    """Appends chunks of output columns to a temporary file; `commit` renames it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
        self.rows = 0

    @abstractmethod
    def write(self, columns: dict[str, Any]) -> None:
        """Append one chunk of rows."""

    @abstractmethod
    def close(self) -> None:
        """Flush and close the temporary file."""

    def commit(self) -> None:
        self.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self.close()
        finally:
            self.tmp.unlink(missing_ok=True)


class _ArrowWriter(_Writer):
    """Parquet or CSV: a pyarrow writer opened on the first chunk's schema."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writer: Any = None

    @abstractmethod
    def _table(self, columns: dict[str, Any]) -> Any:
        """The chunk as a pyarrow Table this format can store."""

    @abstractmethod
    def _open(self, schema: Any) -> Any:
        """A pyarrow writer on the temporary file."""

    def write(self, columns: dict[str, Any]) -> None:
        table = self._table(columns)
        if self.writer is None:
            self.writer = self._open(table.schema)
        self.writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def commit(self) -> None:
        if self.writer is None:  # no rows at all
            raise InputError(f"{self.path}: the input has no rows; nothing was written")
        super().commit()


class _ParquetWriter(_ArrowWriter):
    def _table(self, columns: dict[str, Any]) -> Any:
        return to_arrow(columns)

    def _open(self, schema: Any) -> Any:
        import pyarrow.parquet as pq

        return pq.ParquetWriter(str(self.tmp), schema)


class _CsvWriter(_ArrowWriter):
    def _table(self, columns: dict[str, Any]) -> Any:
        pa = _pyarrow()
        flat: dict[str, Any] = {}
        for name, v in columns.items():
            if isinstance(v, (pa.Array, pa.ChunkedArray)):
                if pa.types.is_nested(v.type):
                    raise InputError(f"{self.path}: --keep-columns '{name}' holds lists, which "
                                     "CSV cannot store; write Parquet instead")
                flat[name] = v
            else:
                flat.update(flat_columns({name: v}))
        return pa.table(flat)

    def _open(self, schema: Any) -> Any:
        import pyarrow.csv as pcsv

        return pcsv.CSVWriter(str(self.tmp), schema)


class _NpyWriter(_Writer):
    """One output as a .npy file. The row count is only known at the end, so the header
    is written last, into room reserved for the largest row count."""

    RESERVED_ROWS = 10 ** 15

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.file: Any = None
        self.row_shape: tuple[int, ...] | None = None
        self.dtype: np.dtype | None = None

    def _header(self, rows: int, length: int | None = None) -> bytes:
        assert self.dtype is not None and self.row_shape is not None
        shape = (rows, *self.row_shape)
        text = (f"{{'descr': {np.lib.format.dtype_to_descr(self.dtype)!r}, "
                f"'fortran_order': False, 'shape': {shape!r}, }}")
        # .npy format 1.0: magic, version, uint16 header length, header padded with
        # spaces and ended by a newline so the data starts on a 64-byte boundary
        pre = len(b"\x93NUMPY") + 2 + 2
        body = len(text) + 1
        total = length if length is not None else -(-(pre + body) // 64) * 64
        text = text + " " * (total - pre - body) + "\n"
        return b"\x93NUMPY\x01\x00" + (total - pre).to_bytes(2, "little") + text.encode("latin1")

    def write(self, columns: dict[str, Any]) -> None:
        pa = _pyarrow() if "pyarrow" in sys.modules else None
        arrays = [v for v in columns.values()
                  if not (pa is not None and isinstance(v, (pa.Array, pa.ChunkedArray)))]
        if len(columns) != 1 or len(arrays) != 1:
            raise InputError(f"{self.path}: a .npy file holds one output without other columns "
                             f"(got {list(columns)}); write Parquet instead")
        a = np.ascontiguousarray(arrays[0])
        if self.file is None:
            self.row_shape, self.dtype = tuple(a.shape[1:]), a.dtype
            self.file = open(self.tmp, "wb")
            self.reserved = len(self._header(self.RESERVED_ROWS))
            self.file.write(b"\0" * self.reserved)
        self.file.write(a.tobytes())
        self.rows += len(a)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def commit(self) -> None:
        if self.file is None:
            raise InputError(f"{self.path}: the input has no rows; nothing was written")
        self.file.seek(0)
        self.file.write(self._header(self.rows, self.reserved))
        super().commit()


def open_writer(output: str) -> _Writer:
    p = Path(output)
    fmt = OUTPUT_FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise InputError(f"{output}: unknown output format '{p.suffix}' for streaming; use "
                         ".parquet, .csv or .npy (one output)")
    if not p.parent.is_dir():
        raise InputError(f"{output}: cannot write outputs: no directory {str(p.parent)!r}")
    return {"parquet": _ParquetWriter, "csv": _CsvWriter, "npy": _NpyWriter}[fmt](p)


# ----- the scoring loop -------------------------------------------------------------------
def score_files(model: Any, input: str, output: str, *, columns: str | None = None,
                keep_columns: Sequence[str] = (), batch_size: int | None = None,
                chunk_rows: int = DEFAULT_CHUNK_ROWS, image_size: tuple[int, int] | None = None,
                scale: float | None = None, color_mode: str | None = None,
                interpolation: str = "nearest", progress: bool | None = None) -> dict[str, Any]:
    """Score every row of `input` into `output`; returns rows, seconds and the output path.
    `progress=None` shows a bar only when stderr is a terminal."""
    if not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise InputError(f"--chunk-rows must be a positive integer, got {chunk_rows!r}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise InputError(f"--batch-size must be a positive integer, got {batch_size!r}")
    _pyarrow()
    kind, files = input_files(input)
    keep = list(keep_columns)
    writer = open_writer(output)
    if kind == "images" and "path" not in keep and not isinstance(writer, _NpyWriter):
        keep.insert(0, "path")  # which image each prediction belongs to
    cmap = parse_columns(columns, model, exclude=keep)
    chunks = _chunks(kind, files, model, cmap, keep, chunk_rows,
                     dict(image_size=image_size, scale=scale, color_mode=color_mode,
                          interpolation=interpolation))
    total = count_rows(kind, files)
    bar = _progress_bar(progress, total)
    start = time.perf_counter()
    out_names = [s.name for s in model.outputs]
    try:
        for chunk in chunks:
            inputs = cmap.to_inputs(chunk.data, chunk.where, chunk.offset)
            preds = model.predict(inputs if len(inputs) > 1 else inputs[0],
                                  batch_size=batch_size, structured=False)
            cols: dict[str, Any] = {}
            for name in keep:
                cols[name] = _kept(chunk, name)
            for name, arr in output_columns(model, preds).items():
                if name in cols:
                    raise InputError(f"--keep-columns '{name}' has the name of a model output "
                                     f"({out_names}); keep another column or rename it")
                cols[name] = arr
            writer.write(cols)
            if bar is not None:
                bar.update(chunk.rows)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    return {"rows": writer.rows, "seconds": seconds, "output": str(writer.path),
            "files": len(files), "outputs": out_names}


def _chunks(kind: str, files: list[Path], model: Any, cmap: ColumnMap, keep: list[str],
            chunk_rows: int, image_options: dict[str, Any]) -> Iterator[Chunk]:
    if kind in ("parquet", "csv"):
        if cmap.columns is None and kind == "parquet":
            names, kinds = parquet_schema_names(files[0])
            cmap.bindings = cmap.bind(names, kinds, str(files[0])).bindings
        wanted = None if cmap.columns is None else list(dict.fromkeys(cmap.columns + keep))
        reader = parquet_chunks if kind == "parquet" else csv_chunks
        if wanted is not None:
            _check_present(kind, files[0], wanted)
        return reader(files, wanted, chunk_rows)
    if kind == "arrays":
        return array_chunks(files, model, chunk_rows)
    from .images import image_chunks

    return image_chunks(files, model, chunk_rows, columns=cmap, **image_options)


def _check_present(kind: str, f: Path, wanted: list[str]) -> None:
    """Name a missing column before reading (the readers' own errors are less clear)."""
    if kind == "parquet":
        names, _ = parquet_schema_names(f)
    else:
        pa = _pyarrow()
        import pyarrow.csv as pcsv

        try:
            names = list(pcsv.open_csv(str(f)).schema.names)
        except _arrow_error(pa) as exc:
            raise InputError(f"{f}: cannot read as CSV: {_one_line(exc)}") from exc
    _check_names(f, names, wanted)


def _check_names(f: Path, names: list[str], wanted: Sequence[str]) -> None:
    from .columns import _names

    for c in wanted:
        if c not in names:
            raise InputError(f"{f}: column '{c}' is missing; the columns present are {_names(names)}")


def _kept(chunk: Chunk, name: str) -> Any:
    data = chunk.data
    if isinstance(data, dict):
        if name not in data:
            raise InputError(f"{chunk.where}: --keep-columns '{name}' is not in the input "
                             f"(it has {sorted(data)})")
        return np.asarray(data[name])
    if name not in data.schema.names:
        raise InputError(f"{chunk.where}: --keep-columns '{name}' is missing; the columns "
                         f"present are {list(data.schema.names)}")
    return data.column(name)


def _progress_bar(progress: bool | None, total: int | None) -> Any:
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # the bar is a nicety: scoring does not need it
        return None
    return tqdm(total=total, unit="rows", unit_scale=True, file=sys.stderr, smoothing=0.1)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
