"""Every bad input to the command line is one line on stderr and exit status 2, never a
traceback: damaged input files, malformed JSON on stdin, out-of-range arguments, bad models
given to `tfless serve`. Run as a user runs it: `python -m tfless.cli` in a subprocess."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import keras

    path = tmp_path_factory.mktemp("cli") / "m.keras"
    inp = keras.Input((4,), name="x")
    keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="probs")(inp)).save(path)
    return path


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tfless.cli", *args], input=stdin,
                          capture_output=True, timeout=120)


def assert_one_line_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    for word in words:
        assert word in err, err


def test_good_input_still_works(model: Path, tmp_path: Path) -> None:
    x = tmp_path / "x.npy"
    np.save(x, np.ones((2, 4), np.float32))
    proc = run("predict", str(model), "-i", str(x), "--top", "2", "--batch-size", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().count("sample") == 2


def _files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    cut = tmp_path / "cut.npy"
    np.save(cut, np.ones((2, 4), np.float32))
    cut.write_bytes(cut.read_bytes()[:100])
    bad_npz = tmp_path / "bad.npz"
    bad_npz.write_bytes(b"PK\x03\x04 not really a zip")
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    ragged = tmp_path / "ragged.json"
    ragged.write_text('{"instances": [[1, 2, 3, 4], [1, 2]]}')
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"instances": [[1, 2, 3, "\xe9"]]}')
    return {
        "zero_byte_npy": (empty, "empty.npy"),
        "truncated_npy": (cut, "cut.npy"),
        "damaged_npz": (bad_npz, "bad.npz"),
        "object_npy": (pickled, "obj.npy"),
        "ragged_json_file": (ragged, "do not form arrays"),
        "not_utf8_json_file": (latin, "latin.json"),
        "missing_file": (tmp_path / "nope.npy", "no such input file"),
    }


@pytest.mark.parametrize("case", ["zero_byte_npy", "truncated_npy", "damaged_npz", "object_npy",
                                  "ragged_json_file", "not_utf8_json_file", "missing_file"])
def test_bad_input_files(case: str, model: Path, tmp_path: Path) -> None:
    path, words = _files(tmp_path)[case]
    assert_one_line_error(run("predict", str(model), "-i", str(path)), "tfless predict: error:",
                          words)


@pytest.mark.parametrize("body, words", [
    (b'[[1, 2, 3, 4], [1, 2]]', "do not form arrays"),
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    (b'{"instances": [[1, 2, 3, 4]', "not valid JSON"),
    (b"\xff\xfe\x00", "stdin"),
    (b'[["a", "b", "c", "d"]]', "expected numbers"),
    (b'[[1, 2, 3]]', "axis 1 must be 4"),
    (b'{"x": [[1, 2, 3, 4]], "y": [[1]]}', "unknown"),
    (b'[[1e999, 2, 3, 4]]', ""),  # infinity is a number: predicted, see below
], ids=["ragged", "deeply_nested", "truncated", "not_utf8", "strings", "wrong_width",
        "unknown_input", "overflow"])
def test_bad_json_on_stdin(body: bytes, words: str, model: Path) -> None:
    proc = run("predict", str(model), "-i", "-", stdin=body)
    if not words:  # a float overflowing to inf is a valid input, as in NumPy and Keras
        assert proc.returncode == 0, proc.stderr
        return
    assert_one_line_error(proc, words)


@pytest.mark.parametrize("args, words", [
    (["--top", "-1"], "--top: must be at least 0, got -1"),
    (["--batch-size", "0"], "--batch-size: must be at least 1, got 0"),
    (["--batch-size", "-3"], "--batch-size: must be at least 1"),
    (["--batch-size", "two"], "expected an integer, got 'two'"),
    (["--backend", "gpu"], "invalid choice"),
    (["--no-such-flag"], "unrecognized arguments"),
])
def test_bad_predict_arguments(args: list[str], words: str, model: Path, tmp_path: Path) -> None:
    x = tmp_path / "x.npy"
    np.save(x, np.ones((1, 4), np.float32))
    assert_one_line_error(run("predict", str(model), "-i", str(x), *args), words)


@pytest.mark.parametrize("args, words", [
    (["verify", "M", "-n", "0"], "-n: must be at least 1"),
    (["verify", "M", "--atol", "-1"], "--atol: must be at least 0"),
    (["verify", "M", "--rtol", "nan"], "--rtol: must be at least 0"),
    (["serve", "M", "--workers", "0"], "--workers must be >= 1"),
    (["serve", "M", "--port", "70000"], "--port must be at most 65535"),
    (["serve", "M", "--max-connections", "0"], "--max-connections"),
    (["serve", "M", "--header-timeout", "-1"], "--header-timeout"),
    ([], "the following arguments are required: command"),
])
def test_bad_arguments_of_other_commands(args: list[str], words: str, model: Path) -> None:
    assert_one_line_error(run(*[str(model) if a == "M" else a for a in args]), words)


@pytest.mark.parametrize("damage", ["hdf5_header_only", "bad_crc"])
def test_serve_with_a_bad_model_is_one_line(damage: str, model: Path, tmp_path: Path) -> None:
    if damage == "hdf5_header_only":
        bad = tmp_path / "bad.h5"
        bad.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(600))  # an HDF5 signature, then nothing
    else:  # a member whose CRC does not match: zipfile's BadZipFile was a 30-line traceback
        bad = tmp_path / "bad.keras"
        with zipfile.ZipFile(model) as src, zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED) as dst:
            for name in src.namelist():
                dst.writestr(name, src.read(name))
        with zipfile.ZipFile(bad) as z:
            crc = z.getinfo("config.json").CRC.to_bytes(4, "little")
        bad.write_bytes(bad.read_bytes().replace(crc, bytes(b ^ 0x55 for b in crc)))
    proc = run("serve", str(bad), "--port", "0")
    assert_one_line_error(proc, "tfless serve: error:", bad.name, "ModelFormatError")
    proc = run("predict", str(bad), "-i", "-", stdin=b"[[1, 2, 3, 4]]")
    assert_one_line_error(proc, "tfless predict: error:", bad.name)
