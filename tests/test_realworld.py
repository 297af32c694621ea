"""Model files people committed to public repositories (../shared/realworld).

Every full model with a Keras-computed reference must load and match it; files that are
not loadable models must fail with a clear, specific TflessError (never a traceback).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

import tfless
from tests.conftest import REALWORLD
from tests.parity import assert_close

MANIFEST = REALWORLD / "MANIFEST.tsv"


def _rows() -> list[dict[str, str]]:
    with MANIFEST.open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


ROWS = _rows()


def _file(row: dict[str, str]) -> Path:
    return next((REALWORLD / "files").glob(f"{row['id']}_*"))


def _reference(row: dict[str, str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    with np.load(REALWORLD / "ref" / f"{row['id']}.npz") as z:
        xs = [z[k] for k in sorted((k for k in z.files if k.startswith("x")), key=lambda k: int(k[1:]))]
        ys = [z[k] for k in sorted((k for k in z.files if k.startswith("y")), key=lambda k: int(k[1:]))]
    return xs, ys


WITH_REF = [r for r in ROWS if r["ref"]]


@pytest.mark.parametrize("row", WITH_REF, ids=[r["id"] for r in WITH_REF])
def test_full_models_match_keras(row: dict[str, str]) -> None:
    xs, ys = _reference(row)
    model = tfless.load(_file(row))
    got = model.predict(xs if len(xs) > 1 else xs[0])
    assert_close(got if isinstance(got, list) else [got], ys, f"realworld {row['id']}")


EXPECTED_ERRORS = {
    "26": (tfless.ModelFormatError, "weights-only"),
    "27": (tfless.UnsafeModelError, "Lambda"),
    "28": (tfless.ModelFormatError, "pickle"),
}


@pytest.mark.parametrize("file_id", sorted(EXPECTED_ERRORS))
def test_non_models_fail_clearly(file_id: str) -> None:
    row = next(r for r in ROWS if r["id"] == file_id)
    error, words = EXPECTED_ERRORS[file_id]
    with pytest.raises(error, match=words):
        tfless.load(_file(row))


@pytest.mark.parametrize("file_id", sorted(EXPECTED_ERRORS))
def test_cli_reports_non_models_in_one_line(file_id: str, tmp_path: Path) -> None:
    from tfless.cli import main

    row = next(r for r in ROWS if r["id"] == file_id)
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 4), np.float32))
    assert main(["predict", str(_file(row)), "-i", str(x)]) == 2
