"""`import tfless`, load and predict work where TensorFlow, Keras and tf_keras cannot be imported."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"tensorflow", "keras", "tf_keras", "tensorboard"}:
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Block())
    """
)


def test_load_and_predict_without_tensorflow(tmp_path: Path) -> None:
    import keras

    inp = keras.Input((6,), name="x")
    hidden = keras.layers.Dense(8, activation="gelu")(inp)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(hidden))
    path = tmp_path / "m.keras"
    model.save(path)
    x = np.random.default_rng(0).random((5, 6), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "want.npy", model.predict(x, verbose=0))

    script = BLOCKER + textwrap.dedent(
        f"""
        import numpy as np
        try:
            import tensorflow  # noqa: F401
        except ImportError:
            pass
        else:
            raise SystemExit("blocker failed")
        import tfless
        m = tfless.load({str(path)!r})
        got = m.predict(np.load({str(tmp_path / 'x.npy')!r}))
        want = np.load({str(tmp_path / 'want.npy')!r})
        assert np.allclose(got, want, atol=1e-5, rtol=1e-4), (got, want)
        leaked = sorted(k for k in sys.modules if k.split(".")[0] in
                        {{"tensorflow", "keras", "tf_keras"}})
        assert not leaked, leaked
        print("ok", got.shape)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok (5, 2)"
