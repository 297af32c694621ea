"""`import tfless`, load and predict work where TensorFlow, Keras and tf_keras cannot be imported.

The subprocess blocks those packages with an import hook that also records every attempt:
tfless must not even try to import them (an optional `try: import tensorflow` would pass a
test that only checks the result)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

BLOCKED = ("tensorflow", "keras", "tf_keras", "tensorboard", "jax", "torch")

BLOCKER = textwrap.dedent(
    f"""
    import importlib.abc, sys

    ATTEMPTS = []

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {set(BLOCKED)!r}:
                ATTEMPTS.append(name)
                raise ImportError(f"{{name}} is blocked in this test")
            return None

    sys.meta_path.insert(0, Block())
    """
)


def _models(tmp_path: Path) -> list[dict]:
    """A Keras 3 .keras, a tf_keras .h5 (LSTM) and a tf_keras JSON + weights file, with
    Keras's outputs for one input each."""
    import keras
    import tf_keras

    rng = np.random.default_rng(0)
    cases = []
    inp = keras.Input((6,), name="x")
    hidden = keras.layers.Dense(8, activation="gelu")(inp)
    k3 = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(hidden))
    k3.save(tmp_path / "m.keras")
    x = rng.random((5, 6), dtype=np.float32)
    cases.append({"path": "m.keras", "x": x, "y": k3.predict(x, verbose=0)})

    seq = tf_keras.Sequential([tf_keras.layers.Embedding(10, 4, mask_zero=True, input_shape=(7,)),
                               tf_keras.layers.LSTM(3), tf_keras.layers.Dense(2)])
    seq.save(tmp_path / "m.h5")
    ids = rng.integers(0, 10, (3, 7)).astype(np.int32)
    cases.append({"path": "m.h5", "x": ids, "y": seq.predict(ids, verbose=0)})

    (tmp_path / "arch.json").write_text(seq.to_json())
    seq.save_weights(tmp_path / "w.h5")
    cases.append({"path": "arch.json", "weights": "w.h5", "x": ids, "y": cases[-1]["y"]})
    for i, case in enumerate(cases):
        np.save(tmp_path / f"x{i}.npy", case["x"])
        np.save(tmp_path / f"y{i}.npy", case["y"])
    return cases


def test_load_predict_and_cli_without_tensorflow(tmp_path: Path) -> None:
    cases = [{k: v for k, v in c.items() if k in ("path", "weights")} for c in _models(tmp_path)]
    script = BLOCKER + textwrap.dedent(
        f"""
        import contextlib, io, json
        from pathlib import Path

        import numpy as np
        try:
            import tensorflow  # noqa: F401
        except ImportError:
            pass
        else:
            raise SystemExit("blocker failed")
        ATTEMPTS.clear()

        import tfless
        from tfless.cli import main

        d = Path({str(tmp_path)!r})
        for i, case in enumerate(json.loads({json.dumps(cases)!r})):
            weights = d / case["weights"] if "weights" in case else None
            model = tfless.load(d / case["path"], weights=weights)
            got = model.predict(np.load(d / f"x{{i}}.npy"))
            want = np.load(d / f"y{{i}}.npy")
            assert np.allclose(got, want, atol=1e-5, rtol=1e-4), (case, got, want)
            argv = ["predict", str(d / case["path"]), "-i", str(d / f"x{{i}}.npy"),
                    "-o", str(d / f"cli{{i}}.npy")]
            if weights:
                argv += ["--weights", str(weights)]
            with contextlib.redirect_stderr(io.StringIO()):
                assert main(argv) == 0
            assert np.allclose(np.load(d / f"cli{{i}}.npy"), want, atol=1e-5, rtol=1e-4)
            with contextlib.redirect_stdout(io.StringIO()):
                assert main(["inspect", str(d / case["path"])] +
                            (["--weights", str(weights)] if weights else [])) == 0
        leaked = sorted(k for k in sys.modules if k.split(".")[0] in {set(BLOCKED)!r})
        assert not leaked, leaked
        assert not ATTEMPTS, f"tfless tried to import {{sorted(set(ATTEMPTS))}}"
        print("ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=180, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
