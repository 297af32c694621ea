"""C export of the model files people committed to public repositories (../shared/realworld).

Every full model with a Keras-computed reference is exported to C, built with the generated
Makefile (`make all test`: -O2 -Wall -Werror -std=c99, then the embedded test vectors), and
the compiled `model` binary is run on the reference inputs; its outputs must match Keras at
the suite's tolerance. A model with a free sequence axis is exported with --max-steps twice
the reference length and run with `--steps N`. Files that are not loadable models must
fail with the loader's clear error before any C is written. One test per file, so pytest-xdist
spreads them; nothing is cached in the repository.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tfless
from tests.conftest import REALWORLD
from tests.export.test_c_coverage import written_op_types
from tests.parity import assert_close
from tfless.export.c import export_c

pytestmark = pytest.mark.slow

CLEAN_ENV = {"PATH": "/usr/bin:/bin"}
TFLESS = Path(sys.executable).parent / "tfless"  # the console script of the venv under test


def _rows() -> list[dict[str, str]]:
    with (REALWORLD / "MANIFEST.tsv").open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


ROWS = _rows()
WITH_REF = [r for r in ROWS if r["ref"]]
FULL_NO_REF = [r for r in ROWS if not r["ref"] and r["kind"] == "full"]


def _file(row: dict[str, str]) -> Path:
    return next((REALWORLD / "files").glob(f"{row['id']}_*"))


def _reference(row: dict[str, str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    with np.load(REALWORLD / "ref" / f"{row['id']}.npz") as z:
        def pick(prefix: str) -> list[np.ndarray]:
            keys = sorted((k for k in z.files if k.startswith(prefix)), key=lambda k: int(k[1:]))
            return [z[k] for k in keys]

        return pick("x"), pick("y")


def _cli_export(path: Path, out: Path, *args: str) -> None:
    done = subprocess.run([str(TFLESS), "export", str(path), "-f", "c", "-o", str(out), *args],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"tfless export {path.name} -f c: {done.stderr[-3000:]}"


def _free_length(model: tfless.Model, xs: list[np.ndarray]) -> int | None:
    """The reference length on the model's free (sequence) axis, if it has one."""
    for spec, x in zip(model.graph.inputs, xs):
        for axis, d in enumerate(spec.shape[1:], start=1):
            if d is None:
                return int(x.shape[axis])
    return None


@pytest.mark.parametrize("row", WITH_REF, ids=[r["id"] for r in WITH_REF])
def test_realworld_model_compiles_to_c_and_matches_keras(row: dict[str, str], tmp_path: Path) -> None:
    xs, ys = _reference(row)
    model = tfless.load(_file(row))
    steps = _free_length(model, xs)
    out = tmp_path / "c"
    if steps is None:
        export_c(model, out, n_test=1)
    else:
        # as a user would: the CLI, compiled for up to twice the reference length, so the
        # run-time length (model --steps N) is a real argument, not the compiled maximum
        _cli_export(_file(row), out, "--max-steps", str(2 * steps))
    built = subprocess.run(["make", "-s", "all", "test"], cwd=out, env=CLEAN_ENV,
                           capture_output=True, text=True)
    assert built.returncode == 0, f"realworld {row['id']}: make failed:\n{built.stderr[-3000:]}"
    # the static scan of the converters (test_c_coverage) saw every op compiled here
    compiled = set(re.findall(r"^/\* \S+: (\w+) ", (out / "model.c").read_text(), re.M))
    assert compiled and compiled <= set(written_op_types()), compiled - set(written_op_types())
    n = xs[0].shape[0]
    raw = np.concatenate([x.reshape(n, -1).astype("<f4") for x in xs], axis=1).tobytes()
    args = [str(out / "model")] + (["--steps", str(steps)] if steps is not None else [])
    done = subprocess.run(args, input=raw, capture_output=True, env=CLEAN_ENV, timeout=600)
    assert done.returncode == 0, f"realworld {row['id']}: model failed: {done.stderr.decode()}"
    got = np.frombuffer(done.stdout, "<f4").reshape(n, -1)
    # the binary writes each sample's outputs one after another
    want = np.concatenate([y.reshape(n, -1) for y in ys], axis=1)
    assert_close([got], [want], f"C export of realworld {row['id']}")


@pytest.mark.parametrize("row", FULL_NO_REF, ids=[r["id"] for r in FULL_NO_REF])
def test_realworld_model_without_reference_matches_numpy_runtime(row: dict[str, str],
                                                                tmp_path: Path) -> None:
    """Full models no Keras loader could run (no reference) but tfless loads: the compiled
    code must match the tfless NumPy runtime (the test vectors `make test` checks)."""
    out = tmp_path / "c"
    _cli_export(_file(row), out, "--test-samples", "2")
    built = subprocess.run(["make", "-s", "all", "test"], cwd=out, env=CLEAN_ENV,
                           capture_output=True, text=True)
    assert built.returncode == 0, f"realworld {row['id']}: {built.stdout[-2000:]}{built.stderr[-2000:]}"


# the loader's refusal of each file that is not a loadable model (as tests/test_realworld.py)
REFUSED = {
    "26": (tfless.ModelFormatError, "weights-only"),
    "27": (tfless.UnsafeModelError, "Lambda"),
    "28": (tfless.ModelFormatError, "pickle"),
}


@pytest.mark.parametrize("file_id", sorted(REFUSED))
def test_realworld_non_model_fails_with_the_loaders_error(file_id: str, tmp_path: Path) -> None:
    row = next(r for r in ROWS if r["id"] == file_id)
    error, words = REFUSED[file_id]
    out = tmp_path / "c"
    with pytest.raises(error, match=words) as info:
        export_c(tfless.load(_file(row)), out)
    assert _file(row).name in str(info.value)
    assert not out.exists()
    # the CLI: exit status 2 and the same error on one line, no traceback, nothing written
    done = subprocess.run([str(TFLESS), "export", str(_file(row)), "-f", "c", "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert words in done.stderr and _file(row).name in done.stderr and not out.exists()


def test_every_file_is_covered() -> None:
    ids = {r["id"] for r in WITH_REF + FULL_NO_REF} | set(REFUSED)
    assert ids == {r["id"] for r in ROWS}
