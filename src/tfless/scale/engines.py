"""Scoring files on a distributed engine (Spark, Dask or Ray), and what the adapters share.

`score_files` is what `tfless predict --engine spark|dask|ray` calls: it starts a local
cluster of `workers` (Spark `local[N]`, Dask `LocalCluster(n_workers=N)`, Ray
`ray.init(num_cpus=N)`) or connects to `cluster`, reads Parquet or CSV with the engine's own
reader, scores it with the engine's adapter (`spark.py`, `dask.py`, `ray.py`) and writes
Parquet part files into a temporary directory beside `output`, renamed to `output` only when
every part was written, so a failed run never leaves an output that looks complete.

The worker side shared by the adapters is here too: a per-process model cache keyed by the
file's path, size and modification time (a model is loaded once per worker process, not
once per batch, and a replaced file is loaded again), and `score_batch`, which turns one
batch of rows into model inputs and the outputs into named columns through `columns.py`,
so every engine accepts the same `--columns` spellings and fails the same way.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import errors
from ..errors import InputError, MissingExtra, TflessError
from .columns import ColumnMap, output_columns, parse_columns

ENGINES = ("spark", "dask", "ray")
READABLE = (".parquet", ".pq", ".csv")

# (package to import, extra that installs it) per engine, checked before anything starts
_REQUIREMENTS = {
    "spark": [("pyspark", "spark"), ("pyarrow", "spark"), ("pandas", "spark")],
    "dask": [("dask.dataframe", "dask"), ("distributed", "dask"), ("pyarrow", "dask")],
    "ray": [("ray.data", "ray"), ("pyarrow", "ray")],
}

_models: dict[tuple, Any] = {}
_models_lock = threading.Lock()


def require(engine: str) -> None:
    """A one-line MissingExtra naming `pip install 'tfless[engine]'` if a package is absent."""
    for module, extra in _REQUIREMENTS[engine]:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise MissingExtra(module.split(".")[0], extra,
                               f"scoring with --engine {engine}") from exc


def file_stamp(path: str | os.PathLike | None) -> tuple | None:
    """What identifies one version of a file: resolved path, size, modification time."""
    if path is None:
        return None
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise TflessError(f"{path}: cannot read the model file on this worker ({exc}); give a "
                          "path every worker can read (a shared file system), or ship the file "
                          "with the job") from exc
    return (str(p.resolve()), st.st_size, st.st_mtime_ns)


def cached_model(path: str | os.PathLike, weights: str | os.PathLike | None = None) -> Any:
    """The model loaded from `path` in this process, loaded on first use and again only if
    the file changed (every engine calls this on its workers; threads share one copy)."""
    key = (file_stamp(path), file_stamp(weights))
    with _models_lock:
        model = _models.get(key)
        if model is None:
            from ..model import load

            for old in [k for k in _models if k[0][0] == key[0][0]]:
                del _models[old]  # an older version of the same file
            model = load(path, weights=weights)
            _models[key] = model
        return model


def bound_columns(spec: str | ColumnMap | None, model: Any, names: Sequence[str],
                  kinds: dict[str, str] | None = None, where: str = "") -> ColumnMap:
    """A concrete ColumnMap for a table whose column names (and kinds) are known up front."""
    cmap = spec if isinstance(spec, ColumnMap) else parse_columns(spec, model)
    cmap = cmap.bind(list(names), kinds, where)
    missing = [c for c in cmap.columns or [] if c not in names]
    if missing:
        raise InputError(f"{where + ': ' if where else ''}column '{missing[0]}' is missing; "
                         f"the columns present are {list(names)}")
    return cmap


def score_batch(model: Any, cmap: ColumnMap, batch: Any, batch_size: int | None = None,
                where: str = "", offset: int = 0) -> dict[str, np.ndarray]:
    """Output columns (named after the model's outputs) for one batch of rows."""
    inputs = cmap.to_inputs(batch, where, offset)
    outputs = model.predict(inputs, batch_size=batch_size, structured=False)
    return output_columns(model, outputs)


def empty_outputs(model: Any) -> dict[str, np.ndarray]:
    """Zero-row output columns with the dtypes and per-row shapes a batch gives (engines
    that need the result's schema before running, like Dask's `meta`, use these)."""
    zeros = [np.zeros((1, *(1 if d is None else d for d in s.shape[1:])), dtype=s.dtype)
             for s in model.inputs]
    outs = model.predict(zeros, structured=False)
    return {k: v[:0] for k, v in output_columns(model, outs).items()}


def worker_error(exc: BaseException) -> TflessError | None:
    """The TflessError a worker raised, from the engine's wrapper around it (Spark's Java
    exception, Ray's task error carry it as text in a traceback), so the caller gets its one
    line instead of pages of trace; None if the failure is not one of ours."""
    seen: BaseException | None = exc
    for _ in range(8):  # the exception chain, where the engine keeps it
        if seen is None:
            break
        if isinstance(seen, TflessError):
            return seen
        seen = getattr(seen, "cause", None) or seen.__cause__
    found = re.search(r"tfless\.errors\.(\w+): ([^\n]*)", str(exc))
    if not found:
        return None
    cls = getattr(errors, found.group(1), TflessError)
    message = re.sub(r"\x1b\[[0-9;]*m", "", found.group(2)).strip()
    try:
        return cls(message)
    except TypeError:  # an error class with its own constructor (MissingExtra)
        return TflessError(message)


# ----- files --------------------------------------------------------------------------------
def input_format(path: str) -> str:
    """'parquet' or 'csv' for a file, folder or glob of such files."""
    p = Path(path)
    if any(ch in path for ch in "*?["):
        suffix = Path(path).suffix.lower()
        candidates = sorted(p.parent.glob(p.name))
        if not candidates:
            raise InputError(f"{path}: no files match")
    elif p.is_dir():
        candidates = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in READABLE)
        if not candidates:
            raise InputError(f"{path}: the folder holds no .parquet or .csv files")
        suffix = candidates[0].suffix.lower()
    elif p.exists():
        suffix = p.suffix.lower()
    else:
        raise InputError(f"{path}: no such input file or folder")
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix == ".csv":
        return "csv"
    raise InputError(f"{path}: the engines read Parquet (.parquet) or CSV (.csv) files, got "
                     f"'{suffix or p.name}'")


class OutputDir:
    """A temporary directory beside `output`, renamed to `output` by `commit()`; removed if
    the run fails. An existing non-empty `output` is refused rather than overwritten."""

    def __init__(self, output: str) -> None:
        self.final = Path(output)
        if self.final.exists() and (not self.final.is_dir() or any(self.final.iterdir())):
            raise InputError(f"{output}: already exists; the engines write a folder of Parquet "
                             "files there: remove it or choose another name")
        if not self.final.parent.is_dir():
            raise InputError(f"{output}: cannot write there: no directory "
                             f"{str(self.final.parent)!r}")
        self.tmp = self.final.with_name(f".{self.final.name}.partial-{uuid.uuid4().hex[:8]}")

    def __enter__(self) -> OutputDir:
        return self

    def commit(self) -> None:
        # Hadoop's local file system leaves a .crc checksum file beside each file it writes
        for junk in self.tmp.glob(".*.crc"):
            junk.unlink()
        if self.final.exists():
            self.final.rmdir()  # checked empty above
        self.tmp.replace(self.final)

    def __exit__(self, kind: Any, *_: Any) -> None:
        if kind is not None and self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)


def parquet_rows(folder: Path) -> int:
    """Rows written, from the Parquet footers (no data read)."""
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in sorted(folder.glob("*.parquet")))


@contextlib.contextmanager
def _one_thread_per_worker(local: bool) -> Iterator[None]:
    """A local cluster gets one worker per CPU slot, so each worker's BLAS and tfless's shard
    pool get one thread (unless the environment already says): with a thread per core in
    every worker, N workers on N cores ran 2 x 2 threads and small models were several
    times slower. The workers inherit the variables when the cluster starts."""
    from ..runtime.threads import THREAD_VARS

    saved = {v: os.environ.get(v) for v in THREAD_VARS}
    if local and all(value is None for value in saved.values()):
        os.environ.update(dict.fromkeys(THREAD_VARS, "1"))
    try:
        yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


# ----- the CLI entry point -------------------------------------------------------------------
def score_files(engine: str, model_path: str, input: str, output: str, *,
                weights: str | None = None, columns: str | None = None,
                batch_size: int | None = None, workers: int | None = None,
                cluster: str | None = None,
                keep_columns: Sequence[str] | None = None) -> dict[str, Any]:
    """Score `input` (Parquet/CSV file, folder or glob) with `model_path` on `engine` and
    write Parquet part files (the `keep_columns` copied from the input, then one column per
    model output; rows in input order) to the folder `output`. Returns a report: engine,
    workers, rows, seconds, rows_per_s, output."""
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)} "
                         "(or local)")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise InputError(f"--workers must be a positive integer, got {workers!r}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise InputError(f"--batch-size must be a positive integer, got {batch_size!r}")
    require(engine)
    fmt = input_format(input)
    model = cached_model(model_path, weights)  # fails here, before a cluster starts
    keep = list(keep_columns or [])
    clash = [c for c in keep if c in {s.name for s in model.outputs}]
    if clash:
        raise InputError(f"--keep-columns: '{clash[0]}' is also the name of a model output")
    cmap = parse_columns(columns, model, exclude=keep)
    runner = importlib.import_module(f"tfless.scale.{engine}")
    n_workers = workers or 2
    start = time.perf_counter()
    with OutputDir(output) as out, _one_thread_per_worker(cluster is None):
        runner.score_to_parquet(
            model_path, input, fmt, str(out.tmp), weights=weights, cmap=cmap,
            batch_size=batch_size, workers=n_workers, cluster=cluster, keep=keep)
        rows = parquet_rows(out.tmp)
        out.commit()
    seconds = time.perf_counter() - start
    return {"engine": engine, "workers": None if cluster else n_workers, "cluster": cluster,
            "rows": rows, "seconds": round(seconds, 3),
            "rows_per_s": round(rows / seconds, 1) if seconds > 0 else None,
            "output": str(Path(output))}
