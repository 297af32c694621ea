"""Train the bundled example model: a small CNN on scikit-learn's 8x8 handwritten digits.

The digits data ships inside scikit-learn (no download). Run from the repository root:

    pip install keras tensorflow scikit-learn
    python examples/train_digits.py

It writes examples/digits_cnn.keras (Keras 3 format), examples/digits_cnn.h5 (legacy HDF5),
and examples/digits_samples.npy with examples/digits_samples_labels.json (ten held-out images
and their true digits) for `tfless predict`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = Path(__file__).resolve().parent


def main() -> None:
    import keras
    from sklearn.datasets import load_digits

    keras.utils.set_random_seed(7)
    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")[..., None]  # (1797, 8, 8, 1) in [0, 1]
    labels = digits.target.astype("int64")
    order = np.random.default_rng(7).permutation(len(images))
    images, labels = images[order], labels[order]
    split = 1500
    train_x, test_x = images[:split], images[split:]
    train_y, test_y = labels[:split], labels[split:]

    model = keras.Sequential(
        [
            keras.Input((8, 8, 1), name="image"),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(10, activation="softmax", name="digit"),
        ],
        name="digits_cnn",
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train_x, train_y, epochs=40, batch_size=32, verbose=0)
    loss, accuracy = model.evaluate(test_x, test_y, verbose=0)
    print(f"held-out accuracy: {accuracy:.3f} on {len(test_x)} images")

    model.save(HERE / "digits_cnn.keras")
    model.save(HERE / "digits_cnn.h5")
    np.save(HERE / "digits_samples.npy", test_x[:10])
    (HERE / "digits_samples_labels.json").write_text(json.dumps(test_y[:10].tolist()) + "\n")


if __name__ == "__main__":
    main()
