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
def test_cli_reports_non_models_in_one_line(file_id: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from tfless.cli import main

    row = next(r for r in ROWS if r["id"] == file_id)
    words = EXPECTED_ERRORS[file_id][1]
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 4), np.float32))
    assert main(["predict", str(_file(row)), "-i", str(x)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and _file(row).name in err and words in err


@pytest.mark.parametrize("row", WITH_REF, ids=[r["id"] for r in WITH_REF])
def test_cli_predict_matches_keras(row: dict[str, str], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """`tfless predict FILE -i x -o y` as a user runs it: .npy for one input (.npz keyed by
    input name otherwise) in, .npz out keyed by output name; `inspect` describes the file."""
    from tfless.cli import main

    xs, ys = _reference(row)
    path = _file(row)
    names = [s.name for s in tfless.load(path).inputs]
    x = tmp_path / ("x.npy" if len(xs) == 1 else "x.npz")
    if len(xs) == 1:
        np.save(x, xs[0])
    else:
        np.savez(x, **dict(zip(names, xs)))
    out = tmp_path / "y.npz"
    assert main(["predict", str(path), "-i", str(x), "-o", str(out)]) == 0
    with np.load(out) as z:
        assert_close([z[k] for k in z.files], ys, f"realworld {row['id']} via the CLI")
    assert main(["inspect", str(path)]) == 0
    printed = capsys.readouterr().out
    assert f"file:          {path}" in printed and "unsupported:   none" in printed
    assert "Total params" in printed


def test_cli_json_in_and_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """JSON inputs ({input name: nested lists}) and JSON outputs on stdout or in a file."""
    import json

    from tfless.cli import main

    row = next(r for r in ROWS if r["id"] == "10")  # Keras 3 .h5 seq2seq, int token inputs
    xs, ys = _reference(row)
    path = _file(row)
    name = tfless.load(path).inputs[0].name
    x = tmp_path / "x.json"
    x.write_text(json.dumps({name: xs[0].tolist()}))
    assert main(["predict", str(path), "-i", str(x)]) == 0
    printed = json.loads(capsys.readouterr().out)
    got = [np.asarray(v, np.float32) for v in printed["outputs"].values()]
    assert_close(got, ys, "JSON on stdout")
    out = tmp_path / "y.json"
    assert main(["predict", str(path), "-i", str(x), "-o", str(out)]) == 0
    got = [np.asarray(v, np.float32) for v in json.loads(out.read_text())["outputs"].values()]
    assert_close(got, ys, "JSON file")


NO_REF_LOADABLE = [r["id"] for r in ROWS if not r["ref"] and r["id"] not in ("26", "27", "28")]


@pytest.mark.parametrize("file_id", NO_REF_LOADABLE)
def test_cli_inspect_files_keras_cannot_open(file_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    from tfless.cli import main

    path = _file(next(r for r in ROWS if r["id"] == file_id))
    assert main(["inspect", str(path)]) == 0
    assert "unsupported:   none" in capsys.readouterr().out


@pytest.mark.parametrize("file_id", sorted(EXPECTED_ERRORS))
def test_cli_inspect_non_models(file_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    """inspect names the problem in one line, or (a Lambda model) describes the file and
    lists the layer it cannot run."""
    from tfless.cli import main

    path = _file(next(r for r in ROWS if r["id"] == file_id))
    code = main(["inspect", str(path)])
    captured = capsys.readouterr()
    if file_id == "27":
        assert code == 0
        assert "unsupported:   Lambda" in captured.out and "shape unknown" in captured.out
    else:
        assert code == 2
        assert captured.err.count("\n") == 1 and path.name in captured.err
        assert EXPECTED_ERRORS[file_id][1] in captured.err


# Files Keras itself no longer opens: the reference comes from rebuilding the model with
# tf_keras from the stored config and setting the stored weights by hand.

def _predict_rebuilt(model, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(x, verbose=0))


def test_keras_2_14_zip_with_checkpoint_dependency_paths() -> None:
    import io
    import json
    import zipfile

    import h5py
    import tf_keras

    path = _file(next(r for r in ROWS if r["id"] == "09"))
    with zipfile.ZipFile(path) as z:
        config = json.loads(z.read("config.json"))
        weights = h5py.File(io.BytesIO(z.read("model.weights.h5")), "r")
    rebuilt = tf_keras.saving.deserialize_keras_object(config)
    group = weights["_layer_checkpoint_dependencies"]
    for layer, key in zip(rebuilt.layers, ["dense", "dense_1", "dense_2"], strict=True):
        layer.set_weights([group[key]["vars"][str(i)][()] for i in range(2)])
    x = np.random.default_rng(0).random((4, 15), dtype=np.float32)
    assert_close([tfless.load(path).predict(x)], [_predict_rebuilt(rebuilt, x)], "realworld 09")


def test_keras_2_0_2_lstm_with_int_embedding_dtype() -> None:
    import json

    import h5py
    import tf_keras

    path = _file(next(r for r in ROWS if r["id"] == "18"))
    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["model_config"])
    for layer in config["config"]:
        layer["config"].pop("dtype", None)  # tf_keras cannot build a float initializer for int32
    rebuilt = tf_keras.models.model_from_json(json.dumps(config))
    rebuilt.load_weights(path)
    x = np.random.default_rng(0).integers(0, 100, (3, 256)).astype(np.float32)
    assert_close([tfless.load(path).predict(x)], [_predict_rebuilt(rebuilt, x)], "realworld 18")


def test_keras_1_2_convolution_model() -> None:
    """Keras 1.2 spellings (Convolution2D, border_mode, subsample, output_dim, mode-0 BN)."""
    import json

    import h5py
    import tf_keras

    path = _file(next(r for r in ROWS if r["id"] == "17"))
    L = tf_keras.layers
    layers: list = []
    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["model_config"])
        group = f["model_weights"]
        arrays = {name: [group[name][w][()] for w in group[name].attrs["weight_names"]]
                  for name in (n.decode() for n in group.attrs["layer_names"])}
    for spec in config["config"]:
        cls, cfg = spec["class_name"], spec["config"]
        if cls == "BatchNormalization":
            layer = L.BatchNormalization(axis=cfg["axis"], epsilon=cfg["epsilon"],
                                         input_shape=cfg["batch_input_shape"][1:])
        elif cls == "Convolution2D":
            layer = L.Conv2D(cfg["nb_filter"], (cfg["nb_row"], cfg["nb_col"]),
                             strides=cfg["subsample"], padding=cfg["border_mode"])
        elif cls == "ELU":
            layer = L.ELU(cfg["alpha"])
        elif cls == "Dense":
            layer = L.Dense(cfg["output_dim"])
        elif cls == "Dropout":
            layer = L.Dropout(cfg["p"])
        else:
            layer = L.Flatten()
        layers.append((layer, cfg["name"]))
    rebuilt = tf_keras.Sequential([layer for layer, _ in layers])
    for layer, name in layers:
        if arrays.get(name):
            layer.set_weights(arrays[name])
    x = np.random.default_rng(0).random((2, 66, 200, 3), dtype=np.float32)
    assert_close([tfless.load(path).predict(x)], [_predict_rebuilt(rebuilt, x)], "realworld 17")
