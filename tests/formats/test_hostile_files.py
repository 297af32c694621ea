"""Broken, hostile and non-model files fail with a clear TflessError before any harm."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

import tfless


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import keras

    d = tmp_path_factory.mktemp("small")
    inp = keras.Input((4,), name="features")
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="probs")(inp))
    paths = {"keras": d / "m.keras", "h5": d / "m.h5"}
    model.save(paths["keras"])
    model.save(paths["h5"])
    return paths


def test_truncated_h5(small_model: dict[str, Path], tmp_path: Path) -> None:
    data = small_model["h5"].read_bytes()
    bad = tmp_path / "cut.h5"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(tfless.ModelFormatError, match="cut.h5"):
        tfless.load(bad)


def test_truncated_keras_zip(small_model: dict[str, Path], tmp_path: Path) -> None:
    data = small_model["keras"].read_bytes()
    bad = tmp_path / "cut.keras"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(tfless.ModelFormatError, match="cut.keras"):
        tfless.load(bad)


def test_random_bytes(tmp_path: Path) -> None:
    bad = tmp_path / "noise.h5"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(tfless.ModelFormatError, match="not a Keras model file"):
        tfless.load(bad)


def test_empty_file(tmp_path: Path) -> None:
    bad = tmp_path / "empty.keras"
    bad.write_bytes(b"")
    with pytest.raises(tfless.ModelFormatError, match="empty"):
        tfless.load(bad)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(tfless.ModelFormatError, match="no such file"):
        tfless.load(tmp_path / "nope.h5")


def test_hdf5_that_is_not_a_model(tmp_path: Path) -> None:
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f["table"] = np.arange(10)
    with pytest.raises(tfless.ModelFormatError, match="not a Keras model"):
        tfless.load(path)


def test_weights_only_file_names_the_fix(tmp_path: Path) -> None:
    import tf_keras

    model = tf_keras.Sequential([tf_keras.layers.Dense(2, input_shape=(3,))])
    path = tmp_path / "w.h5"
    model.save_weights(path)
    with pytest.raises(tfless.ModelFormatError, match="weights-only.*weights="):
        tfless.load(path)


def test_extension_does_not_matter(small_model: dict[str, Path], tmp_path: Path) -> None:
    swapped_zip = tmp_path / "really_a_zip.h5"
    swapped_zip.write_bytes(small_model["keras"].read_bytes())
    swapped_h5 = tmp_path / "really_hdf5.keras"
    swapped_h5.write_bytes(small_model["h5"].read_bytes())
    x = np.random.default_rng(0).random((2, 4), dtype=np.float32)
    a = tfless.load(swapped_zip).predict(x)
    b = tfless.load(swapped_h5).predict(x)
    np.testing.assert_allclose(a, b, atol=1e-6)


def _keras_zip(path: Path, small: Path, extra: dict[str, bytes], compress: bool = False) -> None:
    with zipfile.ZipFile(small) as src, zipfile.ZipFile(
        path, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    ) as dst:
        for name in src.namelist():
            if name not in extra:
                dst.writestr(name, src.read(name))
        for name, data in extra.items():
            dst.writestr(name, data)


def test_zip_bomb_is_refused(small_model: dict[str, Path], tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.keras"
    _keras_zip(bomb, small_model["keras"], {"model.weights.h5": bytes(64 * 1024**2)}, compress=True)
    assert bomb.stat().st_size < 1024**2
    with pytest.raises(tfless.UnsafeModelError, match="zip bomb"):
        tfless.load(bomb)


def test_path_traversal_member_is_refused(small_model: dict[str, Path], tmp_path: Path) -> None:
    evil = tmp_path / "evil.keras"
    _keras_zip(evil, small_model["keras"], {"../../etc/evil.txt": b"x"})
    with pytest.raises(tfless.UnsafeModelError, match="escapes"):
        tfless.load(evil)
    assert not (tmp_path.parent / "etc").exists()



def test_compressed_and_stored_weights_read_alike(small_model: dict[str, Path], tmp_path: Path) -> None:
    # Keras stores model.weights.h5 uncompressed (read in place); zip tools may deflate it
    deflated = tmp_path / "deflated.keras"
    _keras_zip(deflated, small_model["keras"], {}, compress=True)
    with zipfile.ZipFile(deflated) as z:
        assert z.getinfo("model.weights.h5").compress_type == zipfile.ZIP_DEFLATED
    x = np.random.default_rng(1).random((3, 4), dtype=np.float32)
    np.testing.assert_array_equal(tfless.load(deflated).predict(x),
                                  tfless.load(small_model["keras"]).predict(x))


def test_damaged_weight_bytes_are_detected(small_model: dict[str, Path], tmp_path: Path) -> None:
    # HDF5 keeps no checksum of raw data: a flipped byte in a kernel must not give wrong answers
    import keras

    model = keras.models.load_model(small_model["keras"])
    kernel = model.layers[-1].get_weights()[0].astype(np.float32).tobytes()
    data = bytearray(small_model["keras"].read_bytes())
    at = data.find(kernel)
    assert at > 0, "kernel bytes not found stored in the archive"
    data[at + 5] ^= 0xFF
    bad = tmp_path / "damaged.keras"
    bad.write_bytes(bytes(data))
    with pytest.raises(tfless.ModelFormatError, match="damaged.keras.*CRC"):
        tfless.load(bad)

def _h5_with_kernel(path: Path, shape: tuple[int, ...], write: bool) -> None:
    config = {
        "class_name": "Sequential",
        "config": {"name": "s", "layers": [
            {"class_name": "InputLayer", "config": {"batch_input_shape": [None, shape[0]],
                                                    "name": "in"}},
            {"class_name": "Dense", "config": {"name": "d", "units": shape[1]}},
        ]},
    }
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = "2.15.0"
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = [b"in", b"d"]
        g.create_group("in").attrs["weight_names"] = []
        d = g.create_group("d")
        d.attrs["weight_names"] = [b"d/kernel:0", b"d/bias:0"]
        k = d.create_dataset("d/kernel:0", shape=shape, dtype="f4", chunks=True)
        d.create_dataset("d/bias:0", data=np.zeros(shape[1], np.float32))
        if write:
            k[...] = 0.5


def test_terabyte_weight_is_refused_before_allocation(tmp_path: Path) -> None:
    path = tmp_path / "huge.h5"
    _h5_with_kernel(path, (1_000_000, 1_000_000), write=False)
    assert path.stat().st_size < 8 * 1024**2  # declares 4 TB
    with pytest.raises(tfless.UnsafeModelError, match="GiB"):
        tfless.load(path)


def test_declared_but_missing_weight_data(tmp_path: Path) -> None:
    path = tmp_path / "hollow.h5"
    _h5_with_kernel(path, (512, 512), write=False)
    with pytest.raises(tfless.ModelFormatError, match="truncated or corrupt"):
        tfless.load(path)


def test_weight_shape_must_match_config(tmp_path: Path) -> None:
    path = tmp_path / "mismatch.h5"
    _h5_with_kernel(path, (4, 3), write=True)
    with h5py.File(path, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        cfg["config"]["layers"][1]["config"]["units"] = 7
        f.attrs["model_config"] = json.dumps(cfg)
    with pytest.raises(tfless.ModelFormatError, match=r"mismatch.h5.*layer 'd'.*'kernel' has shape "
                       r"\(4, 3\).*needs \(\?, 7\)"):
        tfless.load(path)


def test_lambda_layer_is_never_run(tmp_path: Path) -> None:
    import tf_keras

    model = tf_keras.Sequential([tf_keras.layers.Lambda(lambda x: x * 2, input_shape=(3,))])
    path = tmp_path / "lambda.h5"
    model.save(path)
    with pytest.raises(tfless.UnsafeModelError, match="Lambda"):
        tfless.load(path)


def test_custom_layer_is_named(tmp_path: Path) -> None:
    import keras

    @keras.saving.register_keras_serializable(package="Mine")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2

    inp = keras.Input((3,))
    model = keras.Model(inp, Doubler(name="doubler")(inp))
    path = tmp_path / "custom.keras"
    model.save(path)
    with pytest.raises(tfless.UnsupportedLayer, match="doubler.*Mine>Doubler"):
        tfless.load(path)


def test_unknown_layer_lists_supported(tmp_path: Path) -> None:
    path = tmp_path / "unknown.h5"
    _h5_with_kernel(path, (4, 3), write=True)
    with h5py.File(path, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        cfg["config"]["layers"][1]["class_name"] = "FancyDense"
        f.attrs["model_config"] = json.dumps(cfg)
    with pytest.raises(tfless.UnsupportedLayer, match="FancyDense.*Supported Keras layers: .*Dense"):
        tfless.load(path)


@pytest.mark.parametrize(
    "bad, words",
    [
        ([np.zeros((2, 4)), np.zeros((2, 4))], "takes 1 inputs"),
        (np.zeros((2, 5)), "axis 1 must be 4"),
        (np.zeros((2, 4, 1)), "rank 2"),
        (np.array([["a", "b", "c", "d"]]), "expected numbers"),
        ({"wrong": np.zeros((2, 4))}, "missing \\['features'\\]"),
    ],
)
def test_bad_inputs(small_model: dict[str, Path], bad: object, words: str) -> None:
    model = tfless.load(small_model["keras"])
    with pytest.raises(tfless.InputError, match=words):
        model.predict(bad)


def test_inputs_by_name_and_empty_batch(small_model: dict[str, Path]) -> None:
    model = tfless.load(small_model["keras"])
    x = np.random.default_rng(1).random((3, 4), dtype=np.float32)
    np.testing.assert_array_equal(model.predict({"features": x}), model.predict(x))
    assert model.predict(np.zeros((0, 4), np.float32)).shape == (0, 3)
    assert model.predict(x, batch_size=2).shape == (3, 3)


def test_cli_error_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "noise.keras"
    bad.write_bytes(b"not a model at all")
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 4), np.float32))
    proc = subprocess.run([sys.executable, "-m", "tfless.cli", "predict", str(bad), "-i", str(x)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "noise.keras" in proc.stderr
    assert "Traceback" not in proc.stderr


# ----- configs that are JSON but not what Keras writes ---------------------------------------
def _config_of(small: Path) -> dict:
    with zipfile.ZipFile(small) as z:
        return json.loads(z.read("config.json"))


def _probs(config: dict) -> dict:
    return next(layer for layer in config["config"]["layers"] if layer["config"]["name"] == "probs")


def _input_layer(config: dict) -> dict:
    return next(layer for layer in config["config"]["layers"] if layer["class_name"] == "InputLayer")


def _edited(config: dict, edit) -> bytes:
    edit(config)
    return json.dumps(config).encode()


MALFORMED = {
    "deep_nesting": (lambda c: b"[" * 100_000 + b"]" * 100_000, tfless.ModelFormatError,
                     "config.json is not valid JSON"),
    "layers_null": (lambda c: _edited(c, lambda c: c["config"].update(layers=None)),
                    tfless.ModelFormatError, "malformed model config"),
    "negative_input_dim": (lambda c: _edited(c, lambda c: _input_layer(c)["config"].update(
        batch_shape=[None, -4])), tfless.ModelFormatError, "negative dimension"),
    "units_not_a_number": (lambda c: _edited(c, lambda c: _probs(c)["config"].update(units="many")),
                           tfless.TflessError, "layer 'probs'"),
    "activation_not_a_name": (lambda c: _edited(c, lambda c: _probs(c)["config"].update(activation=42)),
                              tfless.UnsupportedLayer, "activation 42"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_config_names_the_file(case: str, small_model: dict[str, Path],
                                         tmp_path: Path) -> None:
    make, error, words = MALFORMED[case]
    bad = tmp_path / f"{case}.keras"
    _keras_zip(bad, small_model["keras"], {"config.json": make(_config_of(small_model["keras"]))})
    with pytest.raises(error, match=words) as info:
        tfless.load(bad)
    assert bad.name in str(info.value)


def test_deeply_nested_h5_config(small_model: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "deep.h5"
    bad.write_bytes(small_model["h5"].read_bytes())
    with h5py.File(bad, "r+") as f:
        f.attrs["model_config"] = "[" * 100_000
    with pytest.raises(tfless.ModelFormatError, match="deep.h5: model_config attribute is not valid"):
        tfless.load(bad)


def test_weight_name_without_dataset(small_model: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "dangling.h5"
    bad.write_bytes(small_model["h5"].read_bytes())
    with h5py.File(bad, "r+") as f:
        f["model_weights"]["probs"].attrs["weight_names"] = [b"probs/kernel", b"probs/ghost"]
    with pytest.raises(tfless.ModelFormatError, match="dangling.h5: layer 'probs' lists weight "
                       "'probs/ghost'.*no such dataset"):
        tfless.load(bad)


# ----- regressions from fuzzing (issue 19) ----------------------------------------------------
def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


def test_member_with_bad_crc(small_model: dict[str, Path], tmp_path: Path) -> None:
    # a deflated config.json whose stored CRC no longer matches: zipfile raised BadZipFile
    bad = tmp_path / "crc.keras"
    _keras_zip(bad, small_model["keras"], {}, compress=True)
    with zipfile.ZipFile(bad) as z:
        info = z.getinfo("config.json")
    stored = info.CRC.to_bytes(4, "little")
    data = bad.read_bytes()
    assert data.count(stored) == 2  # the local header's and the central directory's copies
    data = data.replace(stored, (info.CRC ^ 1).to_bytes(4, "little"))
    bad.write_bytes(data)
    with pytest.raises(tfless.ModelFormatError, match="crc.keras.*config.json.*corrupt"):
        tfless.load(bad)


def test_damaged_global_heap_does_not_hang(small_model: dict[str, Path], tmp_path: Path) -> None:
    # a zeroed object size in the heap holding weight_names made libhdf5 loop forever
    bad = _copy(small_model["h5"], tmp_path / "heap.h5")
    data = bytearray(bad.read_bytes())
    heaps = [i for i in range(len(data)) if data[i:i + 8] == b"GCOL\x01\x00\x00\x00"]
    assert heaps
    data[heaps[-1] + 16:heaps[-1] + 64] = bytes(48)
    bad.write_bytes(bytes(data))
    proc = subprocess.run([sys.executable, "-c", f"import tfless; tfless.load({str(bad)!r})"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "ModelFormatError" in proc.stderr
    assert "global heap" in proc.stderr and "heap.h5" in proc.stderr


def _bias_path(f: h5py.File) -> str:
    return "model_weights/probs/probs/bias" if "model_weights/probs/probs/bias" in f \
        else "model_weights/probs/probs/bias:0"


@pytest.mark.parametrize("kind", ["dangling_soft", "soft", "external", "virtual"])
def test_links_are_refused(kind: str, small_model: dict[str, Path], tmp_path: Path) -> None:
    bad = _copy(small_model["h5"], tmp_path / f"{kind}.h5")
    other = tmp_path / "elsewhere.h5"
    with h5py.File(other, "w") as o:
        o["b"] = np.full(3, 100.0, np.float32)  # would change every prediction
    with h5py.File(bad, "r+") as f:
        name = _bias_path(f)
        del f[name]
        if kind == "dangling_soft":
            f[name] = h5py.SoftLink("/no/such/thing")
        elif kind == "soft":
            f[name] = h5py.SoftLink("/model_weights/probs/probs/kernel")
        elif kind == "external":
            f[name] = h5py.ExternalLink(str(other), "/b")
        else:
            layout = h5py.VirtualLayout(shape=(3,), dtype="f4")
            layout[...] = h5py.VirtualSource(str(other), "b", shape=(3,))
            f.create_virtual_dataset(name, layout)
    words = {"dangling_soft": "soft link", "soft": "soft link", "external": "external link",
             "virtual": "virtual dataset"}[kind]
    with pytest.raises(tfless.UnsafeModelError, match=f"{kind}.h5.*{words}"):
        tfless.load(bad)


def test_external_raw_data_storage_is_refused(small_model: dict[str, Path], tmp_path: Path) -> None:
    bad = _copy(small_model["h5"], tmp_path / "rawext.h5")
    raw = tmp_path / "bias.bin"
    raw.write_bytes(np.full(3, 100.0, np.float32).tobytes())
    with h5py.File(bad, "r+") as f:
        name = _bias_path(f)
        del f[name]
        f.create_dataset(name, shape=(3,), dtype="<f4", external=[(str(raw), 0, 12)])
    with pytest.raises(tfless.UnsafeModelError, match="rawext.h5.*external file"):
        tfless.load(bad)


def test_non_numeric_vars_name(small_model: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "vars.keras"
    with zipfile.ZipFile(small_model["keras"]) as z:
        weights = tmp_path / "w.h5"
        weights.write_bytes(z.read("model.weights.h5"))
    with h5py.File(weights, "r+") as f:
        group = next(g for g in f["layers"].values() if "vars" in g and len(g["vars"]))
        group["vars"].move("0", "zero")
    _keras_zip(bad, small_model["keras"], {"model.weights.h5": weights.read_bytes()})
    with pytest.raises(tfless.ModelFormatError, match="vars.keras.*holds 'zero'"):
        tfless.load(bad)


def test_weight_names_not_a_list(small_model: dict[str, Path], tmp_path: Path) -> None:
    bad = _copy(small_model["h5"], tmp_path / "names.h5")
    with h5py.File(bad, "r+") as f:
        f["model_weights"]["probs"].attrs["weight_names"] = 42
    with pytest.raises(tfless.ModelFormatError, match="names.h5.*weight_names.*list of names"):
        tfless.load(bad)


def test_layer_dtype_not_a_dict(small_model: dict[str, Path], tmp_path: Path) -> None:
    config = _config_of(small_model["keras"])
    _probs(config)["config"]["dtype"] = {"module": "keras", "config": "relu"}
    bad = tmp_path / "dtype.keras"
    _keras_zip(bad, small_model["keras"], {"config.json": json.dumps(config).encode()})
    with pytest.raises(tfless.ModelFormatError, match="dtype.keras.*'probs'.*'dtype'"):
        tfless.load(bad)


@pytest.mark.parametrize("bias", [np.float32(0.5), np.zeros(1, np.float32), np.zeros(4, np.float32)])
def test_wrong_bias_shape_is_refused_at_load(bias: np.ndarray, small_model: dict[str, Path],
                                             tmp_path: Path) -> None:
    # a scalar (or length-1) bias was broadcast into every output: a silent wrong answer
    bad = _copy(small_model["h5"], tmp_path / "bias.h5")
    with h5py.File(bad, "r+") as f:
        name = _bias_path(f)
        del f[name]
        f[name] = bias
    with pytest.raises(tfless.ModelFormatError,
                       match=r"bias.h5.*'probs'.*'bias' has shape .*needs \(3,\)"):
        tfless.load(bad)


def test_weight_of_strings_is_refused(small_model: dict[str, Path], tmp_path: Path) -> None:
    bad = _copy(small_model["h5"], tmp_path / "text.h5")
    with h5py.File(bad, "r+") as f:
        name = _bias_path(f)
        del f[name]
        f[name] = np.array([b"a", b"b", b"c"])
    with pytest.raises(tfless.ModelFormatError, match="text.h5.*arrays of numbers"):
        tfless.load(bad)


@pytest.mark.parametrize("field, words", [
    ("output_layers", "declares no outputs.*output_layers"),
    ("input_layers", "cannot be resolved: layers features"),
])
def test_model_without_outputs_or_inputs(field: str, words: str, small_model: dict[str, Path],
                                         tmp_path: Path) -> None:
    config = _config_of(small_model["keras"])
    config["config"][field] = []
    bad = tmp_path / "none.keras"
    _keras_zip(bad, small_model["keras"], {"config.json": json.dumps(config).encode()})
    with pytest.raises(tfless.ModelFormatError, match=f"none.keras.*{words}"):
        tfless.load(bad)
