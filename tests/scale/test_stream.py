"""`tfless predict` streaming files on one machine, run as a user runs it (subprocess):
Parquet, CSV, .npy/.npz folders and globs, image folders; outputs compared with
`Model.predict` on the whole array; bad input as one-line errors with exit 2; a failed
run leaves neither the output nor a temporary file; memory bounded on a 1M-row file.

Comparisons are to float32 rounding (rtol 1e-6, atol 1e-6 x the output's scale), not bit
for bit: the NumPy
runtime's result for a row moves by an ulp with the batch it is computed in (BLAS sums in
another order for another row count, and a Model's first call times a 4-row head and may
shard the rest across threads by that timing), so even two fresh `tfless.load(...).predict`
calls on the same whole array can differ in the last bit. The decoded inputs themselves
are checked bit for bit in test_columns.py.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

import tfless

from .models import FEATURES, ScaleModels, saved_models

DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits_cnn.keras"
TIMEOUT = 180


@pytest.fixture(scope="module")
def models() -> ScaleModels:
    return saved_models()


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tfless.cli", "predict", *map(str, args)],
                          capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd)


def ok(*args: str | Path) -> subprocess.CompletedProcess:
    proc = run(*args)
    assert proc.returncode == 0, proc.stderr
    return proc


def fails(*args: str | Path, match: str) -> str:
    proc = run(*args)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert match in lines[0], lines[0]
    return lines[0]


def close_to(got: np.ndarray, want: np.ndarray) -> None:
    """Equal to float32 rounding at the output's scale (a linear output near 0 after
    cancellation moves by an ulp of its inputs' scale, not of its own value)."""
    assert got.shape == want.shape and got.dtype == want.dtype
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * scale)


def list_column(table: pa.Table, name: str) -> np.ndarray:
    return np.array(table.column(name).to_pylist(), np.float32)


def features(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, FEATURES)).astype(np.float32)


def mlp_table(x: np.ndarray) -> pa.Table:
    return pa.table({"id": [f"r{i}" for i in range(len(x))],
                     "features": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), FEATURES)})


def leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if "partial" in p.name)


# ----- Parquet ------------------------------------------------------------------------
def test_parquet_one_input_with_ids(models: ScaleModels, tmp_path: Path) -> None:
    x = features(1000)
    pq.write_table(mlp_table(x), tmp_path / "in.parquet", row_group_size=300)
    want = tfless.load(models.mlp).predict(x)
    proc = ok(models.mlp, "-i", tmp_path / "in.parquet", "-o", tmp_path / "out.parquet",
              "--keep-columns", "id", "--chunk-rows", "128", "--batch-size", "50")
    assert "wrote" in proc.stderr and "1,000 rows" in proc.stderr and "\r" not in proc.stderr
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.schema.names == ["id", "probs"]
    assert out.schema.field("probs").type == pa.list_(pa.float32(), 3)
    assert out.column("id").to_pylist() == [f"r{i}" for i in range(1000)]
    close_to(list_column(out, "probs"), want)
    assert leftovers(tmp_path) == []


def test_parquet_two_inputs_two_outputs(models: ScaleModels, tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(400, 4)).astype(np.float32), rng.normal(size=(400, 2, 3)).astype(np.float32)
    table = pa.table({**{f"a{j}": a[:, j] for j in range(4)}, "key": np.arange(400),
                      "bb": pa.array(b.tolist(), pa.list_(pa.list_(pa.float32())))})
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=150)
    probs, score = tfless.load(models.two).predict([a, b])
    ok(models.two, "-i", tmp_path / "in.parquet", "-o", tmp_path / "out.parquet",
       "--columns", "a=a0,a1,a2,a3; b=bb", "--keep-columns", "key", "--chunk-rows", "64")
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.schema.names == ["key", "probs", "score"]
    assert out.column("key").to_pylist() == list(range(400))
    close_to(list_column(out, "probs"), probs)
    close_to(list_column(out, "score"), score)
    # one row group, one chunk: the same values
    pq.write_table(table, tmp_path / "whole.parquet")
    ok(models.two, "-i", tmp_path / "whole.parquet", "-o", tmp_path / "one.parquet",
       "--columns", "a=a0,a1,a2,a3;b=bb")
    one = pq.read_table(tmp_path / "one.parquet")
    close_to(list_column(one, "probs"), probs)
    close_to(list_column(one, "score"), score)


def test_parquet_folder_of_part_files_in_order(models: ScaleModels, tmp_path: Path) -> None:
    x = features(300, seed=3)
    d = tmp_path / "data"
    d.mkdir()
    for k in range(3):
        pq.write_table(mlp_table(x[k * 100:(k + 1) * 100]), d / f"part-{k}.parquet")
    (d / "_SUCCESS").write_text("")
    ok(models.mlp, "-i", d, "-o", tmp_path / "out.parquet", "--keep-columns", "id")
    out = pq.read_table(tmp_path / "out.parquet")
    close_to(list_column(out, "probs"), tfless.load(models.mlp).predict(x))
    ok(models.mlp, "-i", str(d / "part-*.parquet"), "-o", tmp_path / "glob.parquet")
    assert pq.read_table(tmp_path / "glob.parquet").num_rows == 300


# ----- CSV --------------------------------------------------------------------------------
def test_csv_scalar_columns_to_csv_and_parquet(models: ScaleModels, tmp_path: Path) -> None:
    x = features(500, seed=4)
    cols = {"id": np.arange(500), **{f"f{j}": x[:, j] for j in range(FEATURES)}}
    pcsv.write_csv(pa.table(cols), tmp_path / "in.csv")
    want = tfless.load(models.mlp).predict(x)
    # auto: every numeric column except the kept id, in file order
    ok(models.mlp, "-i", tmp_path / "in.csv", "-o", tmp_path / "out.csv", "--keep-columns", "id",
       "--chunk-rows", "100")
    out = pcsv.read_csv(tmp_path / "out.csv")
    assert out.schema.names == ["id", "probs_0", "probs_1", "probs_2"]
    assert out.column("id").to_pylist() == list(range(500))
    # CSV text holds each float32 value's shortest repr, so it reads back unchanged
    got = np.stack([out.column(f"probs_{k}").to_numpy() for k in range(3)], 1).astype(np.float32)
    close_to(got, want)
    names = ",".join(f"f{j}" for j in range(FEATURES))
    ok(models.mlp, "-i", tmp_path / "in.csv", "-o", tmp_path / "out.parquet", "--columns", names)
    close_to(list_column(pq.read_table(tmp_path / "out.parquet"), "probs"), want)


# ----- arrays -----------------------------------------------------------------------------
def test_npy_folder_glob_and_npz(models: ScaleModels, tmp_path: Path) -> None:
    x = features(250, seed=5)
    d = tmp_path / "arrays"
    d.mkdir()
    np.save(d / "a.npy", x[:120])
    np.save(d / "b.npy", x[120:])
    want = tfless.load(models.mlp).predict(x)
    ok(models.mlp, "-i", d, "-o", tmp_path / "out.npy", "--chunk-rows", "50")
    close_to(np.load(tmp_path / "out.npy"), want)
    ok(models.mlp, "-i", str(d / "*.npy"), "-o", tmp_path / "out.parquet")
    close_to(list_column(pq.read_table(tmp_path / "out.parquet"), "probs"), want)
    # a single .npy streams when a batch-scoring option asks for it
    ok(models.mlp, "-i", d / "a.npy", "-o", tmp_path / "a.npy", "--chunk-rows", "1000")
    close_to(np.load(tmp_path / "a.npy"), want[:120])

    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(90, 4)).astype(np.float32), rng.normal(size=(90, 2, 3)).astype(np.float32)
    z = tmp_path / "npz"
    z.mkdir()
    np.savez(z / "0.npz", a=a[:40], b=b[:40])
    np.savez(z / "1.npz", a=a[40:], b=b[40:])
    ok(models.two, "-i", z, "-o", tmp_path / "two.parquet")
    out = pq.read_table(tmp_path / "two.parquet")
    probs, score = tfless.load(models.two).predict([a, b])
    close_to(list_column(out, "probs"), probs)
    close_to(list_column(out, "score"), score)


# ----- images -----------------------------------------------------------------------------
def test_image_folder_like_keras_load_img(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(7)
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    files = [d / "a.png", d / "b.jpg", d / "sub" / "c.png"]
    for f in files:  # RGB 12x10: converted to grayscale and resized to the model's 8x8
        Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(f)
    (d / "notes.txt").write_text("not an image")
    ok(DIGITS, "-i", d, "-o", tmp_path / "out.parquet", "--scale", "1/16")
    import keras

    x = np.stack([keras.utils.img_to_array(keras.utils.load_img(
        f, color_mode="grayscale", target_size=(8, 8))) for f in sorted(files)]) * np.float32(1 / 16)
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.column("path").to_pylist() == [str(f) for f in sorted(files)]
    close_to(list_column(out, "digit"), tfless.load(DIGITS).predict(x))
    ok(DIGITS, "-i", d, "-o", tmp_path / "out.npy", "--scale", "0.0625", "--interpolation",
       "bilinear", "--chunk-rows", "2")
    x2 = np.stack([keras.utils.img_to_array(keras.utils.load_img(
        f, color_mode="grayscale", target_size=(8, 8), interpolation="bilinear"))
        for f in sorted(files)]) * np.float32(0.0625)
    close_to(np.load(tmp_path / "out.npy"), tfless.load(DIGITS).predict(x2))
    fails(DIGITS, "-i", d, "-o", tmp_path / "x.parquet", "--color-mode", "rgb",
          match="--color-mode rgb gives 3 channels but input 'image'")
    (d / "broken.png").write_bytes(b"not a png")
    fails(DIGITS, "-i", d, "-o", tmp_path / "x.parquet", match="broken.png: cannot read as an image")
    assert not (tmp_path / "x.parquet").exists() and leftovers(tmp_path) == []


# ----- errors -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    x = features(20, seed=8)
    pq.write_table(mlp_table(x), d / "good.parquet")
    nan = x.copy()
    nan[13, 2] = np.nan
    pq.write_table(mlp_table(nan), d / "nan.parquet", row_group_size=5)
    pq.write_table(pa.table({"features": pa.array(x[:, :5].tolist())}), d / "narrow.parquet")
    ragged = x.tolist()
    ragged[3] = ragged[3][:4]
    pq.write_table(pa.table({"features": pa.array(ragged)}), d / "ragged.parquet")
    pq.write_table(mlp_table(x).append_column("probs", pa.array(np.arange(20))), d / "clash.parquet")
    (d / "parts").mkdir()
    pq.write_table(mlp_table(x), d / "parts" / "0.parquet")
    pq.write_table(pa.table({"feats": pa.array(x.tolist())}), d / "parts" / "1.parquet")
    (d / "garbage.parquet").write_bytes(b"PAR1 this is not parquet")
    (d / "text.csv").write_text("id,f0\n1,abc\n2,def\n")
    return d


@pytest.mark.parametrize("args,match", [
    (["-i", "missing.parquet"], "missing.parquet: no such input file or folder"),
    (["-i", "good.parquet", "--columns", "feats"], "column 'feats' is missing; the columns present are "
                                                  "['id', 'features']"),
    (["-i", "narrow.parquet"], "row group 0: column 'features' has 5 values per row; input "
                               "'features' of shape (8,) needs 8"),
    (["-i", "nan.parquet"], "nan.parquet row group 2: column 'features' has a NaN/null value in row 13"),
    (["-i", "ragged.parquet"], "column 'features' has ragged lists: row 0 has 8 values, row 3 has 4"),
    (["-i", "garbage.parquet"], "garbage.parquet: cannot read as Parquet"),
    (["-i", "parts"], "1.parquet: column 'features' is missing; the columns present are ['feats']"),
    (["-i", "text.csv", "--columns", "f0"], "column 'f0' has type string"),
    (["-i", "good.parquet", "--keep-columns", "nope"], "column 'nope' is missing"),
    (["-i", "nothing-*.parquet"], "the pattern matches no files"),
    (["-i", "clash.parquet", "--keep-columns", "probs"],
     "--keep-columns 'probs' has the name of a model output"),
    (["-i", "good.parquet", "--chunk-rows", "0"], "--chunk-rows must be a positive integer"),
    (["-i", "good.parquet", "--workers", "2"], "--workers/--cluster apply to --engine spark"),
])
def test_bad_input_is_one_line_exit_2(models: ScaleModels, bad_files: Path, args: list[str],
                                      match: str) -> None:
    out = bad_files / "out.parquet"
    proc = subprocess.run([sys.executable, "-m", "tfless.cli", "predict", str(models.mlp), *args,
                           "-o", str(out)], capture_output=True, text=True, timeout=TIMEOUT,
                          cwd=bad_files)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and match in lines[0], proc.stderr
    assert not out.exists() and leftovers(bad_files) == []


def test_output_and_option_errors(models: ScaleModels, bad_files: Path, tmp_path: Path) -> None:
    good = bad_files / "good.parquet"
    fails(models.mlp, "-i", good, match="batch scoring needs -o OUTPUT")
    fails(models.mlp, "-i", good, "-o", tmp_path / "no" / "out.parquet", match="no directory")
    fails(models.mlp, "-i", good, "-o", tmp_path / "out.feather", match="unknown output format")
    fails(models.mlp, "-i", good, "-o", tmp_path / "out.npy", "--keep-columns", "id",
          match="a .npy file holds one output")
    fails(models.two, "-i", good, "-o", tmp_path / "out.parquet",
          match="no columns named like the model's inputs ['a', 'b']")
    fails(models.mlp, "-i", good, "-o", tmp_path / "o.parquet", "--top", "2", match="--top")
    assert leftovers(tmp_path) == [] and not list(tmp_path.glob("o*"))


def test_failure_in_a_later_chunk_leaves_no_output(models: ScaleModels, tmp_path: Path) -> None:
    """Two files; the second fails in its last row group after chunks were written."""
    d = tmp_path / "in"
    d.mkdir()
    x = features(60, seed=9)
    pq.write_table(mlp_table(x[:30]), d / "0.parquet", row_group_size=10)
    bad = x[30:].copy()
    bad[25, 0] = np.nan
    pq.write_table(mlp_table(bad), d / "1.parquet", row_group_size=10)
    for out in ("out.parquet", "out.csv", "out.npy"):
        line = fails(models.mlp, "-i", d, "-o", tmp_path / out, "--chunk-rows", "10",
                     match="1.parquet row group 2: column 'features' has a NaN/null value in row 25")
        assert str(d) in line
        assert not (tmp_path / out).exists() and leftovers(tmp_path) == []
    # an earlier good output is replaced only by a complete new one
    ok(models.mlp, "-i", d / "0.parquet", "-o", tmp_path / "out.parquet")
    before = (tmp_path / "out.parquet").read_bytes()
    fails(models.mlp, "-i", d, "-o", tmp_path / "out.parquet", match="NaN/null")
    assert (tmp_path / "out.parquet").read_bytes() == before


def test_existing_paths_unchanged(tmp_path: Path) -> None:
    """.npy -> .npy without batch-scoring options still runs the in-memory path."""
    proc = ok(DIGITS, "-i", DIGITS.parent / "digits_samples.npy", "-o", tmp_path / "o.npy")
    assert "digit(10, 10)" in proc.stderr
    proc = ok(DIGITS, "-i", DIGITS.parent / "digits_samples.npy", "--top", "1")
    assert proc.stdout.startswith("sample 0: class")


def test_progress_bar_on_a_terminal_only(models: ScaleModels, tmp_path: Path) -> None:
    pq.write_table(mlp_table(features(3000)), tmp_path / "in.parquet", row_group_size=500)
    quiet = ok(models.mlp, "-i", tmp_path / "in.parquet", "-o", tmp_path / "q.parquet")
    assert quiet.stderr.strip().splitlines() == [quiet.stderr.strip()]  # one 'wrote' line
    master, slave = pty.openpty()
    # a new pseudo-terminal is 0 columns wide, where tqdm draws nothing
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tfless.cli", "predict", str(models.mlp), "-i",
         str(tmp_path / "in.parquet"), "-o", str(tmp_path / "t.parquet"), "--chunk-rows", "500"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                data = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            seen += data
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.wait(timeout=TIMEOUT) == 0
    text = seen.decode(errors="replace")
    assert "3.00k/3.00k" in text and "rows/s" in text, text


# ----- memory -----------------------------------------------------------------------------
RSS_BOUND_MB = 400


@pytest.mark.slow
def test_million_rows_in_bounded_memory(models: ScaleModels, tmp_path: Path) -> None:
    """1M rows x 32 float32 values (8 read by the model, 24 kept with the ids: 136 MB of
    input values, about twice that read whole as Arrow and NumPy) scored with the CLI
    under a fixed peak RSS."""
    from .models import FEATURES as F

    rows, width = 1_000_000, 32
    assert width % F == 0
    path = tmp_path / "big.parquet"
    rng = np.random.default_rng(10)
    schema = pa.schema([("id", pa.int64()), ("features", pa.list_(pa.float32(), F)),
                        ("pad", pa.list_(pa.float32(), width - F))])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, 100_000):
            x = rng.normal(size=(100_000, width)).astype(np.float32)
            writer.write_table(pa.table({
                "id": np.arange(start, start + 100_000),
                "features": pa.FixedSizeListArray.from_arrays(pa.array(x[:, :F].reshape(-1)), F),
                "pad": pa.FixedSizeListArray.from_arrays(pa.array(x[:, F:].reshape(-1)), width - F),
            }), row_group_size=50_000)
    out = tmp_path / "preds.parquet"
    probe = (f"import resource, subprocess, sys; p = subprocess.run([sys.executable, '-m', "
             f"'tfless.cli', 'predict', {str(models.mlp)!r}, '-i', {str(path)!r}, '-o', "
             f"{str(out)!r}, '--columns', 'features', '--keep-columns', 'id,pad', "
             f"'--chunk-rows', '20000']); "
             f"print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(p.returncode)")
    # one thread: the memory bound is the same, and this run takes 6 s instead of 40 s
    # (the runtime shards large batches of this tiny MLP into 4-row pieces on two threads,
    # which is much slower than one whole-batch call; see docs/scale-out.md)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr
    peak_mb = int(proc.stdout.strip()) / 1024
    print(f"peak RSS scoring {rows:,} rows: {peak_mb:.0f} MB")
    assert peak_mb < RSS_BOUND_MB, f"peak RSS {peak_mb:.0f} MB >= {RSS_BOUND_MB} MB"
    meta = pq.ParquetFile(out).metadata
    assert meta.num_rows == rows
    tail = pq.ParquetFile(out).read_row_group(meta.num_row_groups - 1)
    assert tail.column("id").to_pylist()[-1] == rows - 1
