"""The benchmark's model set, built with Keras 3 and saved once as .keras files.

Run as a script in its own process (it imports TensorFlow): `python bench/models.py OUT_DIR
NAME...` builds the named models that are not cached in OUT_DIR yet and prints one JSON
line mapping names to paths. The digits CNN is the repository's example file.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "digits_cnn.keras"
VOCAB, SEQ = 20000, 128
# name -> token id range for integer inputs (None: float inputs)
TOKENS = {"lstm_text": VOCAB, "transformer_text": VOCAB}
ORDER = ["digits_cnn", "mlp", "mobilenet_v2", "resnet50", "efficientnet_b0", "lstm_text",
         "transformer_text"]
QUICK = ["digits_cnn", "mlp"]


def build(name: str):
    import keras

    L = keras.layers
    if name == "mlp":
        inp = keras.Input((784,))
        h = L.Dense(512, activation="relu")(inp)
        h = L.Dropout(0.2)(h)
        h = L.Dense(256, activation="relu")(h)
        return keras.Model(inp, L.Dense(10, activation="softmax")(h), name=name)
    if name == "mobilenet_v2":
        return keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))
    if name == "resnet50":
        return keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3))
    if name == "efficientnet_b0":
        return keras.applications.EfficientNetB0(weights=None, input_shape=(224, 224, 3))
    if name == "lstm_text":
        inp = keras.Input((SEQ,), dtype="int32")
        h = L.Embedding(VOCAB, 128)(inp)
        h = L.LSTM(128)(h)
        return keras.Model(inp, L.Dense(2, activation="softmax")(h), name=name)
    if name == "transformer_text":
        inp = keras.Input((SEQ,), dtype="int32")
        h = L.Embedding(VOCAB, 128)(inp)
        for _ in range(2):
            att = L.MultiHeadAttention(num_heads=4, key_dim=32)(h, h)
            h = L.LayerNormalization(epsilon=1e-6)(L.Add()([h, att]))
            ff = L.Dense(128)(L.Dense(256, activation="relu")(h))
            h = L.LayerNormalization(epsilon=1e-6)(L.Add()([h, ff]))
        h = L.GlobalAveragePooling1D()(h)
        return keras.Model(inp, L.Dense(2, activation="softmax")(h), name=name)
    raise SystemExit(f"unknown benchmark model {name!r}; known: {', '.join(ORDER)}")


def main(out_dir: str, names: list[str]) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in names:
        if name == "digits_cnn":
            paths[name] = str(EXAMPLE)
            continue
        path = out / f"{name}.keras"
        if not path.exists():
            model = build(name)
            partial = out / f"{name}.partial.keras"
            model.save(partial)
            partial.replace(path)
        paths[name] = str(path)
    print(json.dumps(paths))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
