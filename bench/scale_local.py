"""Streaming batch scoring on one machine: `tfless predict -i data.parquet -o preds.parquet`
against the TensorFlow route (Keras `model.predict` over the same Parquet row groups,
outputs written with pyarrow), on the same file in the same run.

Each route runs in its own process, started by a small wrapper that reports the route's peak
RSS (getrusage RUSAGE_CHILDREN) and wall time including start-up. The model is an MLP saved
with Keras 3; the data a Parquet file of ROWS rows with an id and a FEATURES-wide list column.
Prints a Markdown table with rows/s, peak RSS and the ratios tfless / TF.

    .venv/bin/python bench/scale_local.py                  # 1,000,000 rows
    .venv/bin/python bench/scale_local.py --rows 200000 --features 32
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# The TF route: what a user writes to score a Parquet file with Keras, chunk by chunk.
TF_ROUTE = """
import sys
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
import keras
model_path, src, dst, chunk = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
model = keras.saving.load_model(model_path)
writer = None
for batch in pq.ParquetFile(src).iter_batches(batch_size=chunk, columns=["id", "features"]):
    col = batch.column("features")
    x = col.values.to_numpy().reshape(len(col), -1)
    y = model.predict(x, batch_size=chunk, verbose=0)
    out = pa.table({"id": batch.column("id"),
                    "probs": pa.FixedSizeListArray.from_arrays(pa.array(y.reshape(-1)), y.shape[1])})
    if writer is None:
        writer = pq.ParquetWriter(dst, out.schema)
    writer.write_table(out)
writer.close()
"""

# Runs one route as a child and reports its peak RSS and wall time as JSON.
WRAPPER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"rc": proc.returncode, "seconds": time.perf_counter() - start,
                  "peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                  "stderr": proc.stderr[-2000:]}))
"""


def build(d: Path, rows: int, features: int) -> tuple[Path, Path]:
    import keras
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    keras.utils.set_random_seed(0)
    x_in = keras.Input((features,), name="features")
    h = keras.layers.Dense(64, activation="relu")(x_in)
    h = keras.layers.Dense(32, activation="relu")(h)
    model = keras.Model(x_in, keras.layers.Dense(3, activation="softmax", name="probs")(h))
    model_path = d / "mlp.keras"
    model.save(model_path)
    data = d / "data.parquet"
    rng = np.random.default_rng(0)
    schema = pa.schema([("id", pa.int64()), ("features", pa.list_(pa.float32(), features))])
    step = 100_000
    with pq.ParquetWriter(data, schema) as writer:
        for start in range(0, rows, step):
            n = min(step, rows - start)
            x = rng.normal(size=(n, features)).astype(np.float32)
            writer.write_table(pa.table({
                "id": np.arange(start, start + n),
                "features": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), features),
            }, schema=schema), row_group_size=50_000)
    return model_path, data


def measure(cmd: list[str], env: dict[str, str] | None = None) -> dict:
    proc = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], capture_output=True, text=True,
                          env=env, timeout=3600)
    report = json.loads(proc.stdout)
    if report["rc"] != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{report['stderr']}")
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--features", type=int, default=16)
    ap.add_argument("--chunk-rows", type=int, default=65536)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tfless-bench-scale-") as tmp:
        d = Path(tmp)
        model, data = build(d, args.rows, args.features)
        tfless = [sys.executable, "-m", "tfless.cli", "predict", str(model), "-i", str(data),
                  "-o", str(d / "tfless.parquet"), "--columns", "features",
                  "--keep-columns", "id", "--chunk-rows", str(args.chunk_rows)]
        one = dict(os.environ, OMP_NUM_THREADS="1")
        runs = {
            "tfless (default threads)": measure(tfless),
            "tfless (OMP_NUM_THREADS=1)": measure(tfless, one),
            "TF + Keras (same chunks)": measure([sys.executable, "-c", TF_ROUTE, str(model),
                                                 str(data), str(d / "tf.parquet"),
                                                 str(args.chunk_rows)]),
        }
        check = _max_difference(d / "tfless.parquet", d / "tf.parquet")
    tf = runs["TF + Keras (same chunks)"]
    print(f"MLP {args.features}->64->32->3, {args.rows:,} rows, chunks of {args.chunk_rows:,}; "
          f"max |tfless - TF| = {check:.2e}\n")
    print("| route | rows/s | wall s (incl. start) | peak RSS MB | speed vs TF | memory vs TF |")
    print("|---|---|---|---|---|---|")
    for name, r in runs.items():
        print(f"| {name} | {args.rows / r['seconds']:,.0f} | {r['seconds']:.1f} | {r['peak_mb']:.0f} "
              f"| {tf['seconds'] / r['seconds']:.2f}x | {r['peak_mb'] / tf['peak_mb']:.2f}x |")


def _max_difference(a: Path, b: Path) -> float:
    import numpy as np
    import pyarrow.parquet as pq

    ta, tb = pq.read_table(a), pq.read_table(b)
    assert ta.column("id").equals(tb.column("id")), "rows out of order"
    pa_, pb = (t.column("probs").combine_chunks().values.to_numpy() for t in (ta, tb))
    return float(np.abs(pa_ - pb).max())


if __name__ == "__main__":
    main()
