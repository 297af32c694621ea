"""`tfless verify` compares tfless with Keras itself, and says clearly when Keras is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_no_tensorflow import BLOCKER


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import keras
    import tf_keras

    d = tmp_path_factory.mktemp("verify")
    inp = keras.Input((5,))
    m3 = keras.Model(inp, keras.layers.Dense(4, activation="softmax")(inp))
    m3.save(d / "k3.keras")
    m2 = tf_keras.Sequential([tf_keras.layers.Dense(3, activation="hard_sigmoid", input_shape=(5,))])
    m2.save(d / "k2.h5")
    return {"k3": d / "k3.keras", "k2": d / "k2.h5"}


@pytest.mark.parametrize("which", ["k3", "k2"])
def test_verify_cli(saved: dict[str, Path], which: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "tfless.cli", "verify", str(saved[which]), "-n", "3"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "tfless vs Keras" in proc.stdout and "max abs diff" in proc.stdout


def test_verify_without_keras_says_how_to_fix(saved: dict[str, Path]) -> None:
    call = f"sys.exit(main(['verify', {str(saved['k3'])!r}]))"
    code = BLOCKER + "import sys\nfrom tfless.cli import main\n" + call + "\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "pip install" in proc.stderr and "Traceback" not in proc.stderr
