"""`tfless export -f keras` / Model.save_keras: legacy files upgraded to Keras 3 `.keras`.

Every real-world file with a Keras reference is upgraded; Keras 3 loads the result with
safe_mode=True and matches the reference, and so does tfless reading its own file.
Keras 1/2 semantics (hard_sigmoid, tf_keras BatchNormalization axes, shared layers, nested
models, merge layers) are checked against tf_keras; what cannot be upgraded is refused.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tfless
from tests.parity import assert_close, rand, randomize_weights
from tests.test_realworld import WITH_REF, _file, _reference
from tfless.export.keras import save_keras
from tfless.export.keras_signatures import KERAS_VERSION, OPS_MODULES, SIGNATURES


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """Each real-world file with a reference, upgraded once: id -> (path, report text)."""
    out = tmp_path_factory.mktemp("upgraded")
    done = {}
    for row in WITH_REF:
        path = out / f"{row['id']}.keras"
        report = save_keras(tfless.load(_file(row)), path)
        done[row["id"]] = (path, str(report))
    return done


def _inputs(xs: list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    return xs if len(xs) > 1 else xs[0]


@pytest.mark.parametrize("row", WITH_REF, ids=[r["id"] for r in WITH_REF])
def test_realworld_upgrade_loads_in_keras3(row: dict[str, str], upgraded: dict) -> None:
    import keras

    xs, ys = _reference(row)
    path, _ = upgraded[row["id"]]
    model = keras.saving.load_model(path, safe_mode=True, compile=False)
    got = model.predict(_inputs(xs), verbose=0)
    assert_close(got if isinstance(got, list) else [got], ys, f"Keras 3 on upgraded {row['id']}")
    again = tfless.load(path).predict(_inputs(xs))
    assert_close(again if isinstance(again, list) else [again], ys, f"tfless on upgraded {row['id']}")


def test_report_names_translations(upgraded: dict) -> None:
    # file 13 is a Keras 2.1.6 LSTM with hard_sigmoid gates; 11 needs nothing
    assert "hard_sigmoid" in upgraded["13"][1] and "scaled by 1.2" in upgraded["13"][1]
    assert "no translation needed" in upgraded["11"][1]


def test_cli_export_keras(tmp_path: Path) -> None:
    row = next(r for r in WITH_REF if r["id"] == "13")
    out = tmp_path / "up.keras"
    done = subprocess.run([sys.executable, "-m", "tfless.cli", "export", str(_file(row)), "-f",
                           "keras", "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout and "hard_sigmoid" in done.stdout
    xs, ys = _reference(row)
    assert_close([tfless.load(out).predict(xs[0])], ys, "CLI upgrade")


def test_cli_refuses_non_keras_source(tmp_path: Path) -> None:
    import tensorflow as tf

    inp = tf.keras.Input((3,))
    model = tf.keras.Model(inp, tf.keras.layers.Dense(2)(inp))
    src = tmp_path / "m.tflite"
    src.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    done = subprocess.run([sys.executable, "-m", "tfless.cli", "export", str(src), "-f", "keras",
                           "-o", str(tmp_path / "x.keras")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0 and "cannot be written as a Keras 3 file" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "x.keras").exists()


def _upgrade_and_compare(build, x, tmp_path: Path, api: str = "tf_keras",
                         fmt: str = "h5") -> str:
    """Build with `api`, save as `fmt`, upgrade; Keras 3 and tfless must match the source."""
    import keras

    from tests.parity import keras_module, keras_predict

    model = build(keras_module(api))
    randomize_weights(model)
    want = keras_predict(model, x)
    tmp_path.mkdir(parents=True, exist_ok=True)
    src = tmp_path / f"src.{fmt}"
    model.save(src)
    report = tfless.load(src).save_keras(tmp_path / "up.keras")
    k3 = keras.saving.load_model(tmp_path / "up.keras", safe_mode=True, compile=False)
    assert_close(keras_predict(k3, x), want, f"Keras 3 on upgraded {api} {fmt}")
    got = tfless.load(tmp_path / "up.keras").predict(x, structured=False)
    assert_close(got, want, f"tfless on upgraded {api} {fmt}")
    return str(report)


def test_keras2_hard_sigmoid_everywhere(tmp_path: Path) -> None:
    """Dense/Activation hard_sigmoid become Rescaling + ReLU; LSTM/GRU gates are rescaled."""
    def build(K):
        i = K.Input((5, 3))
        x = K.layers.LSTM(4, recurrent_activation="hard_sigmoid", return_sequences=True)(i)
        x = K.layers.GRU(3, recurrent_activation="hard_sigmoid", reset_after=False,
                         return_sequences=True)(x)
        x = K.layers.Bidirectional(K.layers.GRU(2, recurrent_activation="hard_sigmoid"))(x)
        x = K.layers.Dense(3, activation="hard_sigmoid")(x)
        x = K.layers.Activation("hard_sigmoid")(K.layers.Dense(3)(x))
        return K.Model(i, x)

    report = _upgrade_and_compare(build, rand(4, 5, 3, low=-3, high=3), tmp_path)
    assert "Rescaling(scale=0.2, offset=0.5)" in report and "scaled by 1.2" in report


def test_nested_shared_and_merge_layers(tmp_path: Path) -> None:
    def build(K):
        inner = K.Sequential([K.Input((4,)), K.layers.Dense(3, activation="relu"),
                              K.layers.BatchNormalization()], name="tower")
        a, b = K.Input((4,)), K.Input((4,))
        shared = K.layers.Dense(3, name="shared")
        ta, tb = inner(a), inner(b)
        x = K.layers.Concatenate()([shared(ta), shared(tb), K.layers.Subtract()([ta, tb])])
        return K.Model([a, b], [K.layers.Dense(2)(x), K.layers.Add()([ta, tb])])

    _upgrade_and_compare(build, [rand(3, 4, seed=1), rand(3, 4, seed=2)], tmp_path)


def test_keras3_h5_operations(tmp_path: Path) -> None:
    """Keras 3 .h5 records `x + 3.0` as an Add layer; the upgrade writes it as the op."""
    def build(K):
        i = K.Input((6,))
        x = K.layers.Dense(6)(i)
        return K.Model(i, K.layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0))

    for fmt in ("h5", "keras"):
        _upgrade_and_compare(build, rand(3, 6, low=-5, high=5), tmp_path / fmt, "keras3", fmt)


def test_refuses_hard_sigmoid_cell_activation(tmp_path: Path) -> None:
    import tf_keras as K

    i = K.Input((4, 2))
    model = K.Model(i, K.layers.LSTM(3, activation="hard_sigmoid")(i))
    model.save(tmp_path / "m.h5")
    with pytest.raises(tfless.UnsupportedLayer, match="lstm.*hard_sigmoid as its cell activation"):
        tfless.load(tmp_path / "m.h5").save_keras(tmp_path / "up.keras")
    assert not (tmp_path / "up.keras").exists()


def test_refuses_multi_axis_batchnorm(tmp_path: Path) -> None:
    import tf_keras as K

    i = K.Input((4, 3))
    model = K.Model(i, K.layers.BatchNormalization(axis=[1, 2], name="bn2")(i))
    model.save(tmp_path / "m.h5")
    with pytest.raises(tfless.UnsupportedLayer, match="'bn2'.*single axis"):
        tfless.load(tmp_path / "m.h5").save_keras(tmp_path / "up.keras")


def _keras3_signature(cls: type, base: type) -> tuple[str, ...]:
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params if p.name != "self"
                  and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if klass is base or not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return tuple(sorted(names))


def test_signature_tables_match_installed_keras() -> None:
    import importlib

    import keras

    assert keras.__version__ == KERAS_VERSION
    bases = {"keras.layers": keras.layers.Layer, "keras.initializers": keras.initializers.Initializer,
             "keras.regularizers": keras.regularizers.Regularizer,
             "keras.constraints": keras.constraints.Constraint}
    for module, table in SIGNATURES.items():
        mod = importlib.import_module(module)
        for name, params in table.items():
            assert _keras3_signature(getattr(mod, name), bases[module]) == params, name
    for name, module in OPS_MODULES.items():
        assert hasattr(importlib.import_module(module), name), name
    assert os.path.exists(Path(tfless.__file__).parent / "export" / "keras_signatures.py")
