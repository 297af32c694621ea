"""Dask: score a Dask DataFrame with a tfless model, one task per partition.

    from tfless.scale.dask import predict
    preds = predict(ddf, "model.keras")          # a Dask DataFrame, one column per output
    ddf = ddf.join(preds)                        # same partitions and index as ddf

Each partition goes through `map_partitions`; the worker process loads the model once
(`engines.cached_model`, keyed by the file's path and modification time) and keeps it for
every later partition, so with `distributed` the model is read once per worker, not once
per task. The path must be readable on every worker (a shared file system; a local cluster
shares this machine's). Columns are chosen as in `columns.py` (`columns=None`: columns
named like the inputs, else the one list column, else every numeric column). Outputs of one
value per row are plain NumPy columns; wider outputs are fixed-size list columns
(`pandas.ArrowDtype`), which `to_parquet` writes as Parquet lists.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import InputError
from .columns import ColumnMap, parse_columns
from .engines import cached_model, empty_outputs, require, score_batch


def predict(ddf: Any, model_path: str | os.PathLike, *, weights: str | os.PathLike | None = None,
            columns: str | ColumnMap | None = None, batch_size: int | None = None,
            keep: tuple[str, ...] | list[str] = ()) -> Any:
    """A lazy Dask DataFrame of the model's outputs for every row of `ddf` (see the module
    docstring), after the `keep` columns copied from `ddf`; `batch_size` rows go to the
    model at a time within a partition."""
    require("dask")
    import dask.dataframe as dd

    if not isinstance(ddf, dd.DataFrame):
        raise InputError(f"predict needs a dask.dataframe.DataFrame, got {type(ddf).__name__}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    model = cached_model(model_path, weights)
    keep = list(keep)
    missing = [c for c in keep if c not in ddf.columns]
    if missing:
        raise InputError(f"keep: column '{missing[0]}' is missing; the columns present are "
                         f"{list(ddf.columns)}")
    cmap = columns if isinstance(columns, ColumnMap) else parse_columns(columns, model,
                                                                        exclude=keep)
    meta = _with_kept(ddf._meta, keep, output_frame(empty_outputs(model), ddf._meta.index[:0]))
    return ddf.map_partitions(
        _score_partition, str(model_path), None if weights is None else str(weights), cmap,
        batch_size, "Dask DataFrame", keep, meta=meta, align_dataframes=False)


def _score_partition(df: Any, model_path: str, weights: str | None, cmap: ColumnMap,
                     batch_size: int | None, where: str, keep: list[str],
                     partition_info: Any = None) -> Any:
    # runs on a worker: the cache there holds the model after the first partition
    model = cached_model(model_path, weights)
    label = f"{where} partition {partition_info['number']}" if partition_info else where
    return _with_kept(df, keep, output_frame(score_batch(model, cmap, df, batch_size, label),
                                             df.index))


def _with_kept(df: Any, keep: list[str], outputs: Any) -> Any:
    if not keep:
        return outputs
    import pandas as pd

    return pd.concat([df[keep], outputs], axis=1)


def output_frame(columns: dict[str, np.ndarray], index: Any) -> Any:
    """A pandas DataFrame of output columns; (rows, k, ...) arrays become fixed-size lists."""
    import pandas as pd
    import pyarrow as pa

    from .columns import to_arrow

    table = to_arrow(columns)
    frame = table.to_pandas(
        types_mapper=lambda t: pd.ArrowDtype(t) if pa.types.is_fixed_size_list(t) else None)
    frame.index = index
    return frame


# ----- the CLI's engine ----------------------------------------------------------------------
def client(workers: int, cluster: str | None = None) -> Any:
    """A distributed Client on `cluster` (a scheduler address such as tcp://host:8786) or on
    a new LocalCluster of `workers` single-threaded worker processes."""
    require("dask")
    from distributed import Client, LocalCluster

    if cluster:
        return Client(cluster)
    local = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                         dashboard_address=None)
    return Client(local)


def score_to_parquet(model_path: str, input: str, fmt: str, out_dir: str, *,
                     weights: str | None, cmap: ColumnMap, batch_size: int | None,
                     workers: int, cluster: str | None, keep: list[str]) -> None:
    """Read with Dask, score with `predict`, write numbered Parquet part files (in input
    order) to `out_dir`."""
    import dask.dataframe as dd

    c = client(workers, cluster)
    try:
        # a row group per partition, so a single file still spreads over the workers
        ddf = (dd.read_parquet(input, split_row_groups=True) if fmt == "parquet"
               else dd.read_csv(input))
        preds = predict(ddf, model_path, weights=weights, columns=cmap, batch_size=batch_size,
                        keep=keep)
        preds.to_parquet(out_dir, write_index=False,
                         name_function=lambda i: f"part-{i:05d}.parquet")
    finally:
        started = c.cluster if cluster is None else None
        c.close()
        if started is not None:
            started.close()
