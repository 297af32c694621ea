"""Ray Data: a tfless model as a callable class for `Dataset.map_batches`.

    from tfless.scale.ray import Predictor, predict
    preds = ds.map_batches(Predictor, fn_constructor_kwargs={"model_path": "model.keras"},
                           concurrency=2, batch_size=4096, batch_format="pyarrow")
    preds = predict(ds, "model.keras", concurrency=2)     # the same, in one call

Ray builds one `Predictor` per actor, so the model is loaded once per actor (through
`engines.cached_model`, keyed by the file's path and modification time) and every batch that
actor gets reuses it. The path must be readable where the actors run (a shared file system;
a local Ray shares this machine's). Columns are chosen as in `columns.py`. A batch in
"pyarrow" format gives a Table whose wider outputs are fixed-size list columns (written to
Parquet as lists); "numpy" gives a dict of arrays shaped (rows, ...); "pandas" a DataFrame.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import InputError
from .columns import ColumnMap, parse_columns, to_arrow
from .engines import cached_model, require, score_batch, worker_error


class Predictor:
    """Scores one batch of rows per call: `map_batches(Predictor, fn_constructor_kwargs=
    {"model_path": ...}, concurrency=N)`. Extra columns in `keep` are passed through."""

    def __init__(self, model_path: str | os.PathLike, weights: str | os.PathLike | None = None,
                 columns: str | ColumnMap | None = None, batch_size: int | None = None,
                 keep: tuple[str, ...] = ()) -> None:
        self.model = cached_model(model_path, weights)
        self.cmap = columns if isinstance(columns, ColumnMap) else parse_columns(
            columns, self.model, exclude=tuple(keep))
        self.batch_size = batch_size
        self.keep = tuple(keep)

    def __call__(self, batch: Any) -> Any:
        outputs: dict[str, Any] = dict(score_batch(
            self.model, self.cmap, batch, self.batch_size, "Ray batch"))
        kept: dict[str, Any] = {}
        for name in self.keep:
            if name in outputs:
                raise InputError(f"kept column '{name}' has the name of a model output")
            kept[name] = batch[name] if isinstance(batch, Mapping) or hasattr(
                batch, "iloc") else batch.column(name)
        outputs = {**kept, **outputs}  # ids first, as the other routes write them
        if isinstance(batch, Mapping):
            return {k: np.asarray(v) for k, v in outputs.items()}
        table = to_arrow(outputs)
        if hasattr(batch, "iloc"):
            import pandas as pd
            import pyarrow as pa

            return table.to_pandas(types_mapper=lambda t: pd.ArrowDtype(t)
                                   if pa.types.is_fixed_size_list(t) else None)
        return table


def predict(ds: Any, model_path: str | os.PathLike, *, weights: str | os.PathLike | None = None,
            columns: str | ColumnMap | None = None, batch_size: int | None = None,
            concurrency: int = 1, keep: tuple[str, ...] = ()) -> Any:
    """`ds.map_batches` with a Predictor on `concurrency` actors: a lazy Dataset of the
    outputs (one column per model output) plus the `keep` columns. `batch_size` rows per
    batch (Ray's default when None)."""
    require("ray")
    import ray.data

    if not isinstance(ds, ray.data.Dataset):
        raise InputError(f"predict needs a ray.data.Dataset, got {type(ds).__name__}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    cached_model(model_path, weights)  # a bad file fails here, not on every actor
    return ds.map_batches(
        Predictor, batch_size=batch_size or 4096, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        fn_constructor_kwargs={"model_path": str(model_path),
                               "weights": None if weights is None else str(weights),
                               "columns": columns, "batch_size": batch_size, "keep": tuple(keep)})


# ----- the CLI's engine ----------------------------------------------------------------------
def start(workers: int, cluster: str | None = None) -> bool:
    """Connects to `cluster` (ray://host:10001 or an address for ray.init) or starts a local
    Ray for `workers` actors; True if this call started it (and so should stop it)."""
    require("ray")
    import ray

    if ray.is_initialized():
        return False
    if cluster:
        ray.init(address=cluster, log_to_driver=False)
    else:
        # N CPU slots for the N model actors and one for Ray Data's file listing, reading and
        # writing tasks: with N slots the actors hold them all and those tasks wait forever
        ray.init(num_cpus=workers + 1, include_dashboard=False, log_to_driver=False)
    return True


def score_to_parquet(model_path: str, input: str, fmt: str, out_dir: str, *,
                     weights: str | None, cmap: ColumnMap, batch_size: int | None,
                     workers: int, cluster: str | None, keep: list[str]) -> None:
    """Read with Ray Data, score on `workers` actors, write Parquet files (in input order as far
    as Ray Data's preserve_order keeps it: see the comment below)."""
    import ray
    import ray.data

    started = start(workers, cluster)
    ctx = ray.data.DataContext.get_current()
    saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars)
    try:
        # part files in input order, as far as Ray Data keeps it: Ray 2.60 has handed a write
        # task its blocks out of order under load even so (rows 2000-2499 before 1500-1999 in
        # one file), which is why docs/scale-out.md says to join on a kept id column
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        ds = ray.data.read_parquet(input) if fmt == "parquet" else ray.data.read_csv(input)
        preds = predict(ds, model_path, weights=weights, columns=cmap, batch_size=batch_size,
                        concurrency=workers, keep=tuple(keep))
        preds.write_parquet(out_dir)
    except Exception as exc:
        clear = worker_error(exc)
        if clear is None:
            raise
        raise clear from exc
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved
        if started:
            ray.shutdown()
