"""C export: generate C for Keras models, compile with -Wall -Werror, run, compare with Keras."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tfless
from tests.parity import assert_close, keras_module, keras_predict, randomize_weights
from tfless.errors import UnsupportedLayer
from tfless.export.c import export_c

CLEAN_ENV = {"PATH": "/usr/bin:/bin"}


def save(model, tmp: Path, name: str = "model.keras") -> Path:
    path = tmp / name
    model.save(path)
    return path


def make(out: Path, *targets: str) -> None:
    """`make` in the export directory; a failure shows the compiler's or the test's output."""
    done = subprocess.run(["make", "-s", *targets], cwd=out, env=CLEAN_ENV, capture_output=True,
                          text=True)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]


def build_and_run(model_path: Path, out: Path, x: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """Export, `make`, `make test`, then run the binary on raw float32 samples."""
    export_c(tfless.load(model_path), out)
    make(out, "all", "test")
    arrays = x if isinstance(x, list) else [x]
    n = arrays[0].shape[0]
    raw = np.concatenate([a.reshape(n, -1) for a in arrays], axis=1).astype("<f4").tobytes()
    done = subprocess.run([str(out / "model")], input=raw, capture_output=True, check=True,
                          env=CLEAN_ENV)
    return np.frombuffer(done.stdout, "<f4").reshape(n, -1)


def check(build, x, tmp: Path, api: str = "keras3") -> Path:
    K = keras_module(api)
    model = build(K)
    randomize_weights(model)
    want = keras_predict(model, x)
    path = save(model, tmp, "model.keras" if api == "keras3" else "model.h5")
    got = build_and_run(path, tmp / "c", x)
    n = got.shape[0]
    flat = np.concatenate([w.reshape(n, -1) for w in want], axis=1)
    assert_close(got, [flat], f"C export of {model.name}")
    return tmp / "c"


def rand(*shape: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def test_mlp_with_every_activation(tmp_path: Path) -> None:
    acts = ["relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu",
            "hard_sigmoid", "hard_silu", "sigmoid", "tanh", "softplus", "softsign",
            "exponential", "mish", "log_softmax", "linear", "softmax"]

    def build(K):
        inp = K.Input((6,))
        h = inp
        for act in acts:
            h = K.layers.Dense(6, activation=act)(h)
        h = K.layers.ReLU(max_value=0.8, negative_slope=0.1, threshold=0.05)(h)
        h = K.layers.LeakyReLU(negative_slope=0.2)(h)
        h = K.layers.ELU(alpha=0.5)(h)
        h = K.layers.PReLU()(h)
        return K.Model(inp, K.layers.Softmax()(K.layers.Dense(3)(h)))

    check(build, rand(5, 6), tmp_path)


def test_keras2_mlp_uses_keras2_hard_sigmoid(tmp_path: Path) -> None:
    def build(K):
        return K.Sequential([K.layers.Dense(8, activation="hard_sigmoid", input_shape=(4,)),
                             K.layers.Dropout(0.5), K.layers.Dense(3, activation="softmax")])

    check(build, rand(4, 4) * 4, tmp_path, api="tf_keras")


def test_multi_input_multi_output_merges(tmp_path: Path) -> None:
    def build(K):
        a, b = K.Input((4,), name="a"), K.Input((4,), name="b")
        L = K.layers
        m = [L.Add()([a, b]), L.Subtract()([a, b]), L.Multiply()([a, b]),
             L.Average()([a, b]), L.Maximum()([a, b]), L.Minimum()([a, b])]
        cat = L.Concatenate()(m)
        r = L.Reshape((6, 4))(cat)
        p = L.Permute((2, 1))(r)
        return K.Model([a, b], [L.Flatten()(p), L.Dense(2)(L.RepeatVector(3)(a))])

    check(build, [rand(3, 4), rand(3, 4, seed=4)], tmp_path)


def test_embedding_and_csv_io(tmp_path: Path) -> None:
    K = keras_module("keras3")
    inp = K.Input((5,))
    out = K.layers.Dense(2)(K.layers.Flatten()(K.layers.Embedding(10, 3)(inp)))
    model = K.Model(inp, out)
    randomize_weights(model)
    ids = np.array([[0, 1, 2, 3, 9], [4, 4, 5, 6, 7]], np.float32)
    want = keras_predict(model, ids)[0]
    export_c(tfless.load(save(model, tmp_path)), tmp_path / "c")
    subprocess.run(["make", "-s"], cwd=tmp_path / "c", check=True, env=CLEAN_ENV)
    csv = "\n".join(",".join(str(int(v)) for v in row) for row in ids) + "\n"
    done = subprocess.run([str(tmp_path / "c" / "model"), "--csv"], input=csv.encode(),
                          capture_output=True, check=True)
    got = np.array([[float(v) for v in line.split(",")] for line in done.stdout.decode().split()])
    assert_close(got.astype(np.float32), [want], "csv")
    bad = subprocess.run([str(tmp_path / "c" / "model"), "--csv"], input=b"1,2,3,4,10\n",
                         capture_output=True)
    assert bad.returncode == 1 and b"out of range" in bad.stderr


def unconvertible(K):
    """A model with a layer the ONNX lowering has no converter for (integer hashing)."""
    inp = K.Input((4,), dtype="int64")
    return K.Model(inp, K.layers.Hashing(5, name="hasher")(inp))


def test_layer_without_onnx_lowering_fails_before_writing(tmp_path: Path) -> None:
    loaded = tfless.load(save(unconvertible(keras_module("keras3")), tmp_path))
    with pytest.raises(UnsupportedLayer, match="'hasher' \\(Hashing\\).*nothing was written"):
        export_c(loaded, tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_embedded_test_vectors_catch_wrong_code(tmp_path: Path) -> None:
    K = keras_module("keras3")
    inp = K.Input((3,))
    model = K.Model(inp, K.layers.Dense(2, activation="tanh")(inp))
    randomize_weights(model)
    out = tmp_path / "c"
    export_c(tfless.load(save(model, tmp_path)), out)
    assert subprocess.run(["make", "-s", "test"], cwd=out, capture_output=True).returncode == 0
    # a C file whose math drifts from the runtime must fail its own check
    src = (out / "model.c").read_text().replace("tanhf(x)", "tanhf(x * 1.001f)")
    (out / "model.c").write_text(src)
    failed = subprocess.run(["make", "-s", "test"], cwd=out, capture_output=True)
    assert failed.returncode != 0 and b"FAIL" in failed.stdout


def test_cnn_conv_pool_padding(tmp_path: Path) -> None:
    def build(K):
        L = K.layers
        inp = K.Input((12, 16, 3))
        h = L.ZeroPadding2D(((1, 0), (2, 1)))(inp)
        h = L.Conv2D(6, 3, strides=2, padding="same", activation="relu")(h)
        h = L.Conv2D(4, (2, 3), dilation_rate=(1, 2), padding="same", use_bias=False)(h)
        h = L.Conv2D(4, 3, padding="valid", groups=2)(h)
        h = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", strides=(1, 2))(h)
        h = L.SeparableConv2D(5, 2, padding="valid", activation="tanh")(h)
        h = L.UpSampling2D((2, 1))(h)
        h = L.MaxPooling2D(2, strides=1, padding="same")(h)
        h = L.AveragePooling2D((2, 2), padding="same")(h)
        h = L.Cropping2D(((1, 0), (0, 1)))(h)
        a = L.GlobalAveragePooling2D()(h)
        m = L.GlobalMaxPooling2D()(h)
        return K.Model(inp, [a, L.Dense(3, activation="softmax")(L.Flatten()(h)), m])

    check(build, rand(3, 12, 16, 3), tmp_path)


def test_conv1d_family(tmp_path: Path) -> None:
    def build(K):
        L = K.layers
        inp = K.Input((16, 3))
        h = L.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="elu")(inp)
        h = L.ZeroPadding1D(2)(h)
        h = L.Conv1D(5, 4, strides=2, padding="same")(h)
        h = L.SeparableConv1D(6, 3, depth_multiplier=2, padding="same")(h)
        h = L.DepthwiseConv1D(3)(h)
        h = L.MaxPooling1D(2)(h)
        h = L.UpSampling1D(3)(h)
        h = L.AveragePooling1D(3, strides=2, padding="same")(h)
        h = L.Cropping1D((1, 2))(h)
        return K.Model(inp, [L.GlobalMaxPooling1D()(h), L.GlobalAveragePooling1D(keepdims=True)(h)])

    check(build, rand(2, 16, 3), tmp_path)


def test_batchnorm_folded_and_standalone(tmp_path: Path) -> None:
    def build(K):
        L = K.layers
        inp = K.Input((8, 8, 3))
        h = L.BatchNormalization(axis=-1, epsilon=1e-2, name="bn0")(
            L.Conv2D(4, 3, use_bias=False)(inp))
        h = L.ReLU(6.0)(h)
        h = L.BatchNormalization(name="bn1")(L.DepthwiseConv2D(3, padding="same")(h))
        h = L.BatchNormalization(center=False, name="bn2")(L.SeparableConv2D(5, 1)(h))
        # not foldable: it follows a reshape, on another axis
        h = L.BatchNormalization(axis=1, scale=False, name="bn3")(L.Reshape((4, 45))(h))
        return K.Model(inp, L.BatchNormalization(name="bn4")(L.Dense(3)(L.Flatten()(h))))

    out = check(build, rand(2, 8, 8, 3), tmp_path)
    source = (out / "model.c").read_text()
    # the C functions are named after the lowered ops: only bn3 is left as its own ops
    ops = re.findall(r"^/\* (\w+)/\w+: ", source, re.M)
    assert "bn3" in ops and not {"bn0", "bn1", "bn2", "bn4"} & set(ops), ops


def test_mobilenet_v2(tmp_path: Path) -> None:
    def build(K):
        return K.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), alpha=0.35,
                                          classes=10)

    check(build, rand(2, 32, 32, 3), tmp_path)


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
def test_recurrent(tmp_path: Path, api: str) -> None:
    def build(K):
        L = K.layers
        inp = K.Input((7, 3))
        a = L.LSTM(5, return_sequences=True)(inp)
        a = L.GRU(4, go_backwards=True, return_sequences=True)(a)
        a = L.SimpleRNN(3, activation="relu")(a)
        b, h, c = L.LSTM(4, return_state=True, go_backwards=True, recurrent_activation="hard_sigmoid")(inp)
        g = L.GRU(3, reset_after=False, use_bias=False)(inp)
        return K.Model(inp, [a, L.Concatenate()([b, h, c, g])])

    check(build, rand(3, 7, 3), tmp_path, api=api)


def test_valgrind_memcheck_finds_no_errors(tmp_path: Path) -> None:
    valgrind = shutil.which("valgrind")
    assert valgrind, "valgrind is needed for this test: apt-get install -y valgrind"

    def build(K):
        L = K.layers
        inp = K.Input((10, 10, 2))
        h = L.Conv2D(3, 3, padding="same", activation="relu")(L.ZeroPadding2D(1)(inp))
        h = L.SeparableConv2D(4, 3, strides=2)(L.MaxPooling2D(2, padding="same")(h))
        h = L.Reshape((-1, 4))(L.UpSampling2D(2)(h))
        return K.Model(inp, L.Dense(2)(L.GRU(3)(L.Cropping1D(1)(h))))

    out = check(build, rand(2, 10, 10, 2), tmp_path)
    done = subprocess.run([valgrind, "--error-exitcode=9", "--leak-check=full", "-q",
                           "./model_test"], cwd=out, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ERROR SUMMARY" not in done.stderr or "0 errors" in done.stderr


@pytest.mark.filterwarnings("ignore:You passed `rms_scaling=True`")
def test_layer_normalization_and_global_pooling_keepdims(tmp_path: Path) -> None:
    def build(K):
        L = K.layers
        inp = K.Input((6, 5, 4))
        h = L.LayerNormalization(epsilon=1e-5)(inp)
        h = L.LayerNormalization(axis=[2, 3], center=False)(h)
        g = L.GlobalAveragePooling2D(keepdims=True)(h)
        m = L.GlobalMaxPooling2D(keepdims=True)(h)
        s = L.LayerNormalization(rms_scaling=True)(L.Reshape((30, 4))(h))
        return K.Model(inp, [L.Concatenate()([g, m]), s, L.LayerNormalization(scale=False)(h)])

    check(build, rand(2, 6, 5, 4) * 3, tmp_path)


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
def test_layer_normalization_keras_versions(tmp_path: Path, api: str) -> None:
    def build(K):
        inp = K.Input((7,))
        h = K.layers.LayerNormalization(epsilon=1e-3)(K.layers.Dense(9)(inp))
        return K.Model(inp, K.layers.LayerNormalization(epsilon=1e-6)(h))

    check(build, rand(3, 7) * 2, tmp_path, api=api)


def test_transposed_convolutions(tmp_path: Path) -> None:
    def build(K):
        L = K.layers
        img, seq = K.Input((5, 6, 3)), K.Input((7, 2))
        a = L.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu")(img)
        a = L.Conv2DTranspose(3, (2, 3), strides=(1, 2), padding="valid", use_bias=False)(a)
        a = L.Conv2DTranspose(2, 3, strides=2, padding="same", output_padding=1)(a)
        a = L.Conv2DTranspose(2, 3, dilation_rate=2, padding="same")(a)
        b = L.Conv1DTranspose(4, 3, strides=2, padding="same")(seq)
        b = L.Conv1DTranspose(3, 4, strides=3, padding="valid", activation="tanh")(b)
        b = L.Conv1DTranspose(2, 2, strides=2, padding="valid", output_padding=1)(b)
        return K.Model([img, seq], [a, b])

    check(build, [rand(2, 5, 6, 3), rand(2, 7, 2, seed=4)], tmp_path)


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
def test_bidirectional_merge_modes_and_time_distributed(tmp_path: Path, api: str) -> None:
    def build(K):
        L = K.layers
        inp = K.Input((6, 3))
        a = L.Bidirectional(L.LSTM(4, return_sequences=True))(inp)
        a = L.Bidirectional(L.GRU(3, return_sequences=True), merge_mode="sum")(a)
        a = L.TimeDistributed(L.Dense(5, activation="relu"))(a)
        a = L.Bidirectional(L.SimpleRNN(2), merge_mode="ave")(a)
        b = L.Bidirectional(L.GRU(3, reset_after=False, return_sequences=True), merge_mode="mul")(inp)
        c = L.Bidirectional(L.LSTM(2, return_sequences=True), merge_mode=None)(inp)
        d = L.Bidirectional(L.LSTM(3, return_state=True))(inp)
        return K.Model(inp, [a, L.Flatten()(b), L.Concatenate()(c), L.Concatenate()(d)])

    check(build, rand(3, 6, 3), tmp_path, api=api)


def test_time_distributed_conv(tmp_path: Path) -> None:
    def build(K):
        L = K.layers
        inp = K.Input((3, 6, 6, 2))
        h = L.TimeDistributed(L.Conv2D(3, 3, activation="relu"))(inp)
        h = L.TimeDistributed(L.Flatten())(L.TimeDistributed(L.MaxPooling2D())(h))
        return K.Model(inp, L.LSTM(2)(h))

    check(build, rand(2, 3, 6, 6, 2), tmp_path)


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
def test_masks_from_embedding_and_masking_into_rnns(tmp_path: Path, api: str) -> None:
    def build(K):
        L = K.layers
        ids, feats = K.Input((7,), name="ids"), K.Input((7, 3), name="feats")
        e = L.Embedding(12, 4, mask_zero=True)(ids)
        a = L.LSTM(3, return_sequences=True)(e)
        a = L.GRU(2, go_backwards=True)(a)
        b = L.Bidirectional(L.SimpleRNN(3, return_sequences=True))(e)
        b = L.Bidirectional(L.GRU(2))(b)
        # Keras 3 files spell Masking's mask as NotEqual + Any tensors, Keras 2 implicitly
        m = L.Masking(mask_value=0.5)(feats)
        c, h, s = L.LSTM(3, return_state=True)(m)
        return K.Model([ids, feats], [a, b, L.Concatenate()([c, h, s]),
                                      L.SimpleRNN(2, return_sequences=True)(m)])

    ids = np.array([[3, 5, 1, 0, 0, 0, 0], [0, 0, 2, 7, 11, 4, 9], [4, 0, 6, 0, 8, 1, 0]],
                   np.float32)
    feats = rand(3, 7, 3)
    feats[0, 4:] = 0.5
    feats[1, :2] = 0.5
    feats[2, 3] = 0.5
    check(build, [ids, feats], tmp_path, api=api)


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
def test_masks_in_sequential_models(tmp_path: Path, api: str) -> None:
    """A Sequential model's mask travels with the tensors in every Keras version (Keras 3
    records no mask tensors for it): Embedding -> Dense (keeps the mask) -> LSTM, and
    Masking -> GRU; the C code applied no mask to Keras 3 Sequential files before."""
    ids = np.array([[3, 5, 1, 0, 0, 0], [0, 0, 2, 7, 11, 4], [4, 0, 6, 0, 8, 1]], np.float32)
    check(lambda K: K.Sequential([K.Input((6,)), K.layers.Embedding(12, 4, mask_zero=True),
                                  K.layers.Dense(5, activation="tanh"),
                                  K.layers.LSTM(3, return_sequences=True), K.layers.GRU(2)]),
          ids, tmp_path, api=api)
    feats = rand(3, 6, 2)
    feats[0, 3:] = 0.0
    feats[2, 1] = 0.0
    (tmp_path / "masking").mkdir()
    check(lambda K: K.Sequential([K.Input((6, 2)), K.layers.Masking(0.0),
                                  K.layers.GRU(3, go_backwards=True)]),
          feats, tmp_path / "masking", api=api)


@pytest.mark.parametrize("api", ["keras3", "tf_keras"])
def test_sequential_masks_reaching_pooling_layers(tmp_path: Path, api: str) -> None:
    """Masks that reach layers other than RNNs (refused by the old C exporter) now compile
    as the ONNX lowering writes them: a masked average, per time step too."""
    ids = np.array([[3, 5, 1, 0, 0], [0, 0, 2, 7, 9], [4, 0, 6, 0, 8]], np.float32)
    check(lambda K: K.Sequential([K.Input((5,)), K.layers.Embedding(10, 3, mask_zero=True),
                                  K.layers.GlobalAveragePooling1D()]), ids, tmp_path, api=api)
    steps = np.array([[[3, 5, 0, 0, 1], [0, 0, 0, 2, 2], [1, 1, 1, 1, 1], [0, 4, 0, 6, 0]]] * 2,
                     np.float32)
    steps[1, 0] = [9, 0, 0, 0, 0]
    (tmp_path / "steps").mkdir()
    check(lambda K: K.Sequential([K.Input((4, 5)), K.layers.Embedding(10, 3, mask_zero=True),
                                  K.layers.TimeDistributed(K.layers.GlobalAveragePooling1D())]),
          steps, tmp_path / "steps", api=api)


def test_functional_mask_into_global_pooling(tmp_path: Path) -> None:
    def build(K):
        inp = K.Input((5,))
        e = K.layers.Embedding(10, 3, mask_zero=True)(inp)
        return K.Model(inp, [K.layers.GlobalAveragePooling1D()(e),
                             K.layers.GlobalMaxPooling1D()(e)])

    check(build, np.array([[1, 2, 0, 0, 0], [0, 3, 4, 5, 0]], np.float32), tmp_path)


def test_static_library_called_from_c_and_cpp(tmp_path: Path) -> None:
    K = keras_module("keras3")
    inp = K.Input((6, 6, 2))
    h = K.layers.Conv2D(3, 3, activation="relu")(inp)
    model = K.Model(inp, K.layers.Dense(4, activation="softmax")(K.layers.Flatten()(h)))
    randomize_weights(model)
    out = tmp_path / "c"
    export_c(tfless.load(save(model, tmp_path)), out)
    subprocess.run(["make", "-s", "libmodel.a"], cwd=out, check=True, env=CLEAN_ENV)
    x = rand(1, 6, 6, 2)
    want = keras_predict(model, x)[0]
    (tmp_path / "x.f32").write_bytes(x.astype("<f4").tobytes())
    c_program = """\
#include <stdio.h>
#include "model.h"
int main(int argc, char** argv) {
    static float in[MODEL_INPUT_SIZE], out[MODEL_OUTPUT_SIZE];
    FILE* f = fopen(argv[1], "rb");
    if (argc < 2 || !f || fread(in, sizeof in, 1, f) != 1) return 3;
    fclose(f);
    if (model_predict(in, out) != 0) return 1;
    for (int i = 0; i < MODEL_OUTPUT_SIZE; ++i) printf("%.9g\\n", out[i]);
    return 0;
}
"""
    cpp_program = """\
#include <array>
#include <cstdio>
#include <fstream>
#include "model.h"
int main(int argc, char** argv) {
    std::array<float, MODEL_INPUT_SIZE> in{};
    std::array<float, MODEL_OUTPUT_SIZE> out{};
    std::ifstream f(argv[argc - 1], std::ios::binary);
    if (!f.read(reinterpret_cast<char*>(in.data()), sizeof(float) * in.size())) return 3;
    if (model_predict(in.data(), out.data()) != 0) return 1;
    for (float v : out) std::printf("%.9g\\n", v);
    return 0;
}
"""
    (tmp_path / "use.c").write_text(c_program)
    (tmp_path / "use.cpp").write_text(cpp_program)
    compilers = [["cc", "-O2", "-Wall", "-Werror", "-std=c99", "-pedantic", "use.c"],
                 ["c++", "-O2", "-Wall", "-Werror", "-std=c++11", "use.cpp"]]
    for i, compiler in enumerate(compilers):
        exe = tmp_path / f"use{i}"
        subprocess.run([*compiler, "-I", str(out), str(out / "libmodel.a"), "-lm", "-o", str(exe)],
                       cwd=tmp_path, check=True, env=CLEAN_ENV)
        done = subprocess.run([str(exe), str(tmp_path / "x.f32")], capture_output=True,
                              text=True, check=True, env=CLEAN_ENV)
        got = np.array([float(v) for v in done.stdout.split()], np.float32)
        assert_close(got[None], [want], compiler[0])


def test_command_line_errors_are_one_line_and_write_nothing(tmp_path: Path) -> None:
    K = keras_module("keras3")
    inp = K.Input((6, 4))
    path = save(unconvertible(K), tmp_path)
    (tmp_path / "a_file").write_text("")
    supported = save(K.Model(inp, K.layers.Dense(2)(inp)), tmp_path, "dense.keras")
    for model_path, out, message in [(path, tmp_path / "c", "'hasher' (Hashing)"),
                                      (supported, tmp_path / "a_file", "is a file")]:
        done = subprocess.run([sys.executable, "-m", "tfless.cli", "export", str(model_path),
                               "-f", "c", "-o", str(out)], capture_output=True, text=True)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "c").exists() and (tmp_path / "a_file").read_text() == ""


def cli_export(model_path: Path, out: Path, *flags: str) -> None:
    done = subprocess.run([sys.executable, "-m", "tfless.cli", "export", str(model_path), "-f",
                           "c", "-o", str(out), *flags], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def run_binary(out: Path, x: list[np.ndarray], *flags: str) -> np.ndarray:
    n = x[0].shape[0]
    raw = np.concatenate([a.reshape(n, -1) for a in x], axis=1).astype("<f4").tobytes()
    done = subprocess.run([str(out / "model"), *flags], input=raw, capture_output=True,
                          check=True, env=CLEAN_ENV)
    return np.frombuffer(done.stdout, "<f4").reshape(n, -1)


@pytest.fixture(scope="module")
def sequence_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    """Embedding + LSTM + GRU over a free sequence axis (one model for the length tests)."""
    K = keras_module("keras3")
    L = K.layers
    ids = K.Input((None,), name="ids")
    h = L.Embedding(20, 4)(ids)
    h = L.LSTM(5, return_sequences=True)(h)
    h = L.Conv1D(3, 3, padding="causal")(h)
    model = K.Model(ids, [L.GRU(3)(h), L.Dense(2)(h)])
    randomize_weights(model)
    return model, save(model, tmp_path_factory.mktemp("seq"))


def _ids(n: int, steps: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 20, (n, steps)).astype(np.float32)


def test_free_sequence_axis_runs_at_any_length(sequence_model, tmp_path: Path) -> None:
    model, path = sequence_model
    out = tmp_path / "c"
    cli_export(path, out, "--max-steps", "12")
    make(out, "all", "test")
    assert "#define MODEL_MAX_STEPS 12" in (out / "model.h").read_text()
    for steps in (3, 11):
        x = _ids(2, steps, seed=steps)
        want = keras_predict(model, x)
        got = run_binary(out, [x], "--steps", str(steps))
        assert_close(got, [np.concatenate([w.reshape(2, -1) for w in want], axis=1)],
                     f"C at {steps} steps")
    too_long = subprocess.run([str(out / "model"), "--steps", "13"], input=b"",
                              capture_output=True, env=CLEAN_ENV)
    assert too_long.returncode != 0


def test_fixed_sequence_length(sequence_model, tmp_path: Path) -> None:
    model, path = sequence_model
    out = tmp_path / "c"
    cli_export(path, out, "--steps", "6")
    make(out, "all", "test")
    assert "MODEL_MAX_STEPS" not in (out / "model.h").read_text()
    x = _ids(3, 6, seed=1)
    want = keras_predict(model, x)
    assert_close(run_binary(out, [x]), [np.concatenate([w.reshape(3, -1) for w in want], axis=1)],
                 "C at a fixed length")


KERAS_WITHOUT_ONEDNN = """\
import os, sys
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras, numpy as np
y = keras.saving.load_model(sys.argv[1]).predict(np.load(sys.argv[2]), verbose=0)
np.save(sys.argv[3], np.concatenate([a.reshape(len(a), -1) for a in
                                     (y if isinstance(y, list) else [y])], axis=1))
"""


def test_3d_convolutions_pooling_and_bilinear_upsampling(tmp_path: Path) -> None:
    """TensorFlow's oneDNN kernels (which the suite turns on) give 3-D pooling, padding and
    Conv3DTranspose wrong shapes or abort, so Keras's reference comes from a process with
    them off (TensorFlow's own kernels)."""
    K = keras_module("keras3")
    L = K.layers
    vol = K.Input((6, 7, 5, 2))
    a = L.ZeroPadding3D(((1, 0), (0, 1), (1, 1)))(vol)
    a = L.Conv3D(3, (3, 2, 3), strides=(1, 2, 1), padding="same", activation="relu")(a)
    a = L.MaxPooling3D((2, 2, 1), padding="same")(a)
    a = L.Conv3D(2, 2, dilation_rate=(1, 1, 2), use_bias=False)(a)
    t = L.Conv3DTranspose(2, 2, strides=2)(a)
    t = L.Conv3DTranspose(3, 3, strides=(1, 2, 1), padding="same", use_bias=False)(t)
    p = L.AveragePooling3D((2, 1, 2), padding="same")(L.UpSampling3D((1, 2, 1))(t))
    model = K.Model(vol, [L.Flatten()(a), L.GlobalMaxPooling3D()(p), L.Flatten()(p)])
    randomize_weights(model)
    path = save(model, tmp_path)
    x = rand(2, 6, 7, 5, 2)
    np.save(tmp_path / "x.npy", x)
    subprocess.run([sys.executable, "-c", KERAS_WITHOUT_ONEDNN, str(path), str(tmp_path / "x.npy"),
                    str(tmp_path / "y.npy")], check=True, capture_output=True)
    want = np.load(tmp_path / "y.npy")
    assert_close(build_and_run(path, tmp_path / "c", x), [want], "3-D C export")

    def images(K):
        img = K.Input((8, 6, 3))
        b = K.layers.UpSampling2D((2, 3), interpolation="bilinear")(img)
        return K.Model(img, K.layers.Conv2D(2, 3, strides=2)(b))

    (tmp_path / "img").mkdir()
    check(images, rand(2, 8, 6, 3, seed=5), tmp_path / "img")


def test_channels_first_convolutions(tmp_path: Path) -> None:
    """TensorFlow's CPU kernels refuse NCHW convolutions, so Keras's answer comes from the
    channels_last twin with the same weights on transposed images."""
    K = keras_module("keras3")
    L = K.layers

    def build(fmt: str):
        inp = K.Input((3, 8, 6) if fmt == "channels_first" else (8, 6, 3))
        h = L.Conv2D(4, 3, padding="same", data_format=fmt, activation="relu")(inp)
        h = L.DepthwiseConv2D(3, data_format=fmt)(h)
        h = L.MaxPooling2D(2, data_format=fmt)(h)
        h = L.UpSampling2D(2, interpolation="bilinear", data_format=fmt)(h)
        return K.Model(inp, L.Conv2DTranspose(2, 3, strides=2, data_format=fmt)(h))

    first, last = build("channels_first"), build("channels_last")
    randomize_weights(last)
    first.set_weights(last.get_weights())
    x = rand(2, 3, 8, 6)
    want = keras_predict(last, x.transpose(0, 2, 3, 1))[0].transpose(0, 3, 1, 2)
    got = build_and_run(save(first, tmp_path), tmp_path / "c", x)
    assert_close(got, [want.reshape(2, -1)], "channels_first C export")


def test_transformer_block_with_multi_head_attention(tmp_path: Path) -> None:
    def build(K):
        L = K.layers
        inp = K.Input((6, 8))
        att = L.MultiHeadAttention(2, 4, name="att")(inp, inp)
        h = L.LayerNormalization()(L.Add()([inp, att]))
        f = L.Dense(8)(L.Dense(16, activation="gelu")(h))
        return K.Model(inp, L.LayerNormalization()(L.Add()([h, f])))

    check(build, rand(2, 6, 8), tmp_path)


def test_conv_lstm_2d(tmp_path: Path) -> None:
    def build(K):
        L = K.layers
        inp = K.Input((3, 6, 5, 2))
        h = L.ConvLSTM2D(3, 3, padding="same", return_sequences=True)(inp)
        return K.Model(inp, L.ConvLSTM2D(2, (2, 3), strides=(1, 2))(h))

    check(build, rand(2, 3, 6, 5, 2), tmp_path)
