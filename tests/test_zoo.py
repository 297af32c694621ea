"""Model zoo: keras.applications architectures (weights=None) saved by Keras, run by tfless.

Each model gets non-default BatchNormalization statistics so that folding and inference
formulas are exercised, is saved as `.keras` (and some as `.h5`), and must match Keras
end to end: max error <= 1e-4 of the output scale and identical top-1 classes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tfless

pytestmark = pytest.mark.slow


def perturb_batchnorm(model) -> None:
    rng = np.random.default_rng(3)
    for layer in model._flatten_layers() if hasattr(model, "_flatten_layers") else model.layers:
        if layer.__class__.__name__ == "BatchNormalization":
            values = []
            for w in layer.weights:
                shape = tuple(w.shape)
                if "moving_mean" in w.path:
                    values.append(rng.normal(0, 0.1, shape))
                elif "moving_variance" in w.path:
                    values.append(rng.uniform(0.5, 1.5, shape))
                elif "gamma" in w.path:
                    values.append(rng.uniform(0.8, 1.2, shape))
                else:
                    values.append(rng.normal(0, 0.05, shape))
            layer.set_weights([v.astype("float32") for v in values])


# name -> (input shape, formats saved); small inputs keep the suite fast on two cores.
APPS: dict[str, tuple[tuple[int, int, int], tuple[str, ...]]] = {
    "MobileNetV2": ((96, 96, 3), ("keras", "h5")),
    "MobileNetV3Small": ((96, 96, 3), ("keras",)),
    "ResNet50": ((96, 96, 3), ("keras", "h5")),
    "EfficientNetB0": ((96, 96, 3), ("keras",)),
    "DenseNet121": ((64, 64, 3), ("keras",)),
    "InceptionV3": ((96, 96, 3), ("keras",)),
    "Xception": ((96, 96, 3), ("keras",)),
    "NASNetMobile": ((96, 96, 3), ("keras",)),
    "VGG16": ((64, 64, 3), ("keras", "h5")),
    "ConvNeXtTiny": ((64, 64, 3), ("keras",)),
}
# These include their own input rescaling and expect pixel values in [0, 255].
RAW_PIXELS = {"EfficientNetB0", "ConvNeXtTiny", "MobileNetV3Small"}


def assert_zoo_match(got: np.ndarray, want: np.ndarray, label: str) -> None:
    scale = float(np.abs(want).max())
    err = float(np.abs(got - want).max())
    assert err <= 1e-4 * max(scale, 1e-6) + 1e-6, f"{label}: max error {err:.3g} vs scale {scale:.3g}"
    assert np.array_equal(got.argmax(-1), want.argmax(-1)), f"{label}: top-1 differs"


@pytest.mark.parametrize("name", sorted(APPS))
def test_application(name: str, tmp_path: Path) -> None:
    import keras

    shape, formats = APPS[name]
    model = getattr(keras.applications, name)(weights=None, input_shape=shape)
    perturb_batchnorm(model)
    high = 255.0 if name in RAW_PIXELS else 1.0
    x = np.random.default_rng(0).uniform(0, high, (2, *shape)).astype("float32")
    want = model.predict(x, verbose=0)
    for fmt in formats:
        path = tmp_path / f"{name}.{fmt}"
        model.save(path)
        got = tfless.load(path).predict(x)
        assert_zoo_match(got, want, f"{name} [{fmt}]")


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
def test_transfer_learning_model(api: str, tmp_path: Path) -> None:
    """An applications base nested in a Sequential with a new head, as in fine-tuning."""
    if api == "keras3":
        import keras as K
    else:
        import tf_keras as K
    base = K.applications.MobileNetV2(weights=None, include_top=False, input_shape=(64, 64, 3),
                                      alpha=0.35)
    base.trainable = False
    model = K.Sequential([
        K.Input((64, 64, 3)),
        K.layers.Rescaling(1 / 127.5, offset=-1),
        base,
        K.layers.GlobalAveragePooling2D(),
        K.layers.Dropout(0.2),
        K.layers.Dense(5, activation="softmax"),
    ])
    x = np.random.default_rng(1).uniform(0, 255, (3, 64, 64, 3)).astype("float32")
    want = model.predict(x, verbose=0)
    for fmt in ("keras", "h5"):
        path = tmp_path / f"transfer.{fmt}"
        model.save(path)
        assert_zoo_match(tfless.load(path).predict(x), want, f"transfer {api} [{fmt}]")
