"""Scale-out benchmark: rows/s and peak memory of scoring one Parquet file with a Keras MLP on
Spark, Dask and Ray, with 1 and 2 workers, tfless vs the TensorFlow route (TF + Keras loaded
inside the same engine's workers, same data, same batch size), in one run.

    .venv/bin/python bench/scale.py                      # 200k rows, every engine
    .venv/bin/python bench/scale.py --rows 1000000 --engines dask --workers 1,2,4

Each (engine, route, workers) runs in a fresh child process that starts a local cluster
(Spark local[N], Dask LocalCluster of N single-threaded processes, Ray with N actors),
reads the file with the engine's reader, scores it through the engine's batch API
(`predict_batch_udf`, `map_partitions`, `map_batches`) and writes Parquet. The parent samples
the resident memory of the child's whole process tree (driver, JVM, workers) and keeps the
peak. "score s" is read + predict + write, timed in the child after the cluster is up;
"total s" includes starting the cluster and the workers loading the model. The tfless
route runs with one BLAS thread per worker, as `tfless predict --engine` sets it for a local
cluster; TensorFlow runs with its default threads, as a user runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

WIDTH, HIDDEN, CLASSES = 32, 256, 10
_tf_models: dict[str, Any] = {}


# ----- the TF route inside each engine (what a user does without tfless) ---------------------
def _keras_model(path: str) -> Any:
    if path not in _tf_models:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import keras

        _tf_models[path] = keras.models.load_model(path, compile=False)
    return _tf_models[path]


def _tf_predict(path: str, x: np.ndarray) -> np.ndarray:
    return np.asarray(_keras_model(path).predict_on_batch(x), dtype=np.float32)


def _tf_partition(df: Any, path: str) -> Any:
    import pandas as pd

    x = np.stack(df["features"].to_numpy()).astype(np.float32)
    y = _tf_predict(path, x) if len(x) else np.zeros((0, CLASSES), np.float32)
    return pd.DataFrame({f"p{i}": y[:, i] for i in range(CLASSES)}, index=df.index)


class _TFPredictor:
    def __init__(self, path: str) -> None:
        self.path = path
        _keras_model(path)

    def __call__(self, batch: dict) -> dict:
        y = _tf_predict(self.path, np.stack(batch["features"]).astype(np.float32))
        return {"probs": y}


# ----- one measured run (in a child process) -------------------------------------------------
def child(engine: str, route: str, workers: int, model: str, data: str, out: str,
          batch: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    if engine == "spark":
        from tfless.scale.spark import predict_udf, session

        spark = session(workers)
        up = time.perf_counter()
        df = spark.read.parquet(data)
        if route == "tfless":
            udf = predict_udf(model, batch_size=batch)
        else:
            from pyspark.ml.functions import predict_batch_udf
            from pyspark.sql import types as T

            udf = predict_batch_udf(lambda: (lambda x: _tf_predict(model, x)),
                                    return_type=T.ArrayType(T.FloatType()), batch_size=batch,
                                    input_tensor_shapes=[[WIDTH]])
        df.select(udf("features").alias("probs")).write.parquet(out)
        done = time.perf_counter()
        spark.stop()
    elif engine == "dask":
        import dask.dataframe as dd

        from tfless.scale.dask import client
        from tfless.scale.dask import predict as dask_predict

        c = client(workers)
        up = time.perf_counter()
        ddf = dd.read_parquet(data, split_row_groups=True)
        if route == "tfless":
            preds = dask_predict(ddf, model, batch_size=batch)
        else:
            import pandas as pd

            meta = pd.DataFrame({f"p{i}": np.zeros(0, np.float32) for i in range(CLASSES)})
            preds = ddf.map_partitions(_tf_partition, model, meta=meta)
        preds.to_parquet(out, write_index=False)
        done = time.perf_counter()
        cluster = c.cluster
        c.close()
        cluster.close()
    else:
        import ray
        import ray.data

        from tfless.scale.ray import predict as ray_predict
        from tfless.scale.ray import start

        start(workers)
        ray.data.DataContext.get_current().enable_progress_bars = False
        up = time.perf_counter()
        ds = ray.data.read_parquet(data)
        if route == "tfless":
            preds = ray_predict(ds, model, batch_size=batch, concurrency=workers)
        else:
            preds = ds.map_batches(_TFPredictor, fn_constructor_kwargs={"path": model},
                                   batch_size=batch, batch_format="numpy",
                                   compute=ray.data.ActorPoolStrategy(size=workers))
        preds.write_parquet(out)
        done = time.perf_counter()
        ray.shutdown()
    return {"start_s": up - t0, "score_s": done - up, "total_s": time.perf_counter() - t0}


def _tree_rss(proc: Any) -> int:
    import psutil

    total = 0
    try:
        for p in [proc, *proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return total


def measure(args: argparse.Namespace, engine: str, route: str, workers: int, model: str,
            data: str, work: Path) -> dict[str, Any]:
    import psutil

    out = work / f"out-{engine}-{route}-{workers}"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow",
               PYTHONWARNINGS="ignore")
    if route == "tfless":
        # as `tfless predict --engine` sets it for a local cluster: one thread per worker
        env.update(dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"),
                                 "1"))
    cmd = [sys.executable, __file__, "--child", engine, route, str(workers), model, data,
           str(out), str(args.batch_size)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env)
    watched = psutil.Process(proc.pid)
    peak = 0
    deadline = time.monotonic() + args.timeout
    while proc.poll() is None and time.monotonic() < deadline:
        peak = max(peak, _tree_rss(watched))
        time.sleep(0.2)
    if proc.poll() is None:
        proc.kill()
        return {"error": f"timed out after {args.timeout} s"}
    lines = (proc.stdout.read() if proc.stdout else "").strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": f"exit {proc.returncode}"}
    result = json.loads(lines[-1])
    result["peak_mb"] = peak / 2**20
    result["rows_per_s"] = args.rows / result["score_s"]
    return result


def make_inputs(rows: int, work: Path) -> tuple[str, str]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    x = keras.Input((WIDTH,), name="features")
    h = keras.layers.Dense(HIDDEN, activation="relu")(x)
    h = keras.layers.Dense(HIDDEN, activation="relu")(h)
    m = keras.Model(x, keras.layers.Dense(CLASSES, activation="softmax", name="probs")(h))
    model = str(work / "mlp.keras")
    m.save(model)
    values = rng.normal(size=(rows, WIDTH)).astype(np.float32)
    table = pa.table({"features": pa.FixedSizeListArray.from_arrays(
        pa.array(values.reshape(-1)), WIDTH)})
    data = str(work / "rows.parquet")
    pq.write_table(table, data, row_group_size=max(1, rows // 16))
    return model, data


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        engine, route, workers, model, data, out, batch = sys.argv[2:9]
        print(json.dumps(child(engine, route, int(workers), model, data, out, int(batch))))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--engines", default="spark,dask,ray")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tfless-bench-scale-"))
    model, data = make_inputs(args.rows, work)
    print(f"{args.rows:,} rows x {WIDTH} floats, MLP {WIDTH}-{HIDDEN}-{HIDDEN}-{CLASSES}, "
          f"batch {args.batch_size}; {os.cpu_count()} CPUs")
    print("| engine | workers | tfless rows/s | TF rows/s | speed ratio | tfless peak MB | "
          "TF peak MB | memory ratio | tfless total s | TF total s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for engine in args.engines.split(","):
        for workers in (int(w) for w in args.workers.split(",")):
            r = {route: measure(args, engine, route, workers, model, data, work)
                 for route in ("tfless", "tf")}
            if "error" in r["tfless"] or "error" in r["tf"]:
                print(f"| {engine} | {workers} | {r['tfless'].get('error', '')} | "
                      f"{r['tf'].get('error', '')} | | | | | | |")
                continue
            t, f = r["tfless"], r["tf"]
            print(f"| {engine} | {workers} | {t['rows_per_s']:,.0f} | {f['rows_per_s']:,.0f} | "
                  f"{t['rows_per_s'] / f['rows_per_s']:.2f}x | {t['peak_mb']:,.0f} | "
                  f"{f['peak_mb']:,.0f} | {f['peak_mb'] / t['peak_mb']:.2f}x less | "
                  f"{t['total_s']:.1f} | {f['total_s']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
