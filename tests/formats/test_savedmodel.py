"""TF SavedModel directories written by tf_keras: parity with tf_keras, and broken or foreign
SavedModels refused with a clear TflessError."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tfless
from tests.parity import assert_close, keras_predict, rand, randomize_weights
from tfless.formats.tensor_bundle import FOOTER_SIZE, read_table


def saved_parity(build: Callable[[Any], Any], inputs: Any, tmp_path: Path) -> Path:
    """Build with tf_keras, randomize, save as a SavedModel dir, compare tfless with tf_keras."""
    import tf_keras

    model = build(tf_keras)
    randomize_weights(model)
    want = keras_predict(model, inputs)
    path = tmp_path / "saved"
    model.save(path, save_format="tf")
    assert (path / "saved_model.pb").is_file() and (path / "keras_metadata.pb").is_file()
    assert_close(tfless.load(path).predict(inputs), want, f"{model.name} [tf_keras savedmodel]")
    return path


def _mlp(K: Any) -> Any:
    return K.Sequential([K.layers.Dense(16, activation="relu", input_shape=(6,)),
                         K.layers.Dropout(0.3), K.layers.Dense(3, activation="softmax")])


def _cnn(K: Any) -> Any:
    x = K.Input((12, 12, 3), name="image")
    h = K.layers.Conv2D(8, 3, padding="same")(x)
    h = K.layers.BatchNormalization()(h)
    h = K.layers.Activation("relu")(h)
    h = K.layers.MaxPooling2D()(h)
    h = K.layers.DepthwiseConv2D(3)(h)
    h = K.layers.BatchNormalization(center=False)(h)
    h = K.layers.GlobalAveragePooling2D()(h)
    return K.Model(x, K.layers.Dense(4, name="logits")(h))


def _transfer(K: Any) -> Any:
    """A pretrained-style base (its own Functional model with BatchNorm) under a new head."""
    base_in = K.Input((10, 10, 3))
    b = K.layers.Conv2D(6, 3, activation="relu", name="base_conv")(base_in)
    b = K.layers.BatchNormalization(name="base_bn")(b)
    b = K.layers.Conv2D(4, 3, name="base_conv2")(b)
    base = K.Model(base_in, b, name="base")
    base.trainable = False
    head = K.Sequential([K.layers.Dense(5, activation="tanh"), K.layers.Dense(2)], name="head")
    x = K.Input((10, 10, 3), name="pixels")
    h = K.layers.GlobalAveragePooling2D()(base(x, training=False))
    return K.Model(x, head(h))


def _recurrent(K: Any) -> Any:
    ids = K.Input((7,), dtype="int32", name="ids")
    h = K.layers.Embedding(30, 8, mask_zero=True)(ids)
    h = K.layers.LSTM(6, return_sequences=True)(h)
    h = K.layers.Bidirectional(K.layers.GRU(5))(h)
    return K.Model(ids, K.layers.Dense(2, activation="sigmoid")(h))


def _multi_io(K: Any) -> Any:
    a = K.Input((5,), name="a")
    b = K.Input((4, 3), name="b")
    shared = K.layers.Dense(6, activation="relu", name="shared")
    hb = K.layers.Flatten()(b)
    ha = shared(a)
    hb2 = shared(K.layers.Dense(5)(hb))
    merged = K.layers.concatenate([ha, hb2])
    score = K.layers.Dense(1, name="score")(merged)
    probs = K.layers.Dense(3, activation="softmax", name="probs")(merged)
    return K.Model([a, b], [score, probs])


def _ids(shape: tuple[int, int], vocab: int) -> np.ndarray:
    ids = np.random.default_rng(3).integers(1, vocab, shape).astype(np.int32)
    ids[0, 4:] = 0  # padded tail: the Embedding mask must reach both RNNs
    ids[1, :] = 0  # a fully masked row
    return ids


def test_sequential_mlp(tmp_path: Path) -> None:
    saved_parity(_mlp, rand(5, 6), tmp_path)


def test_functional_cnn_with_batchnorm(tmp_path: Path) -> None:
    saved_parity(_cnn, rand(2, 12, 12, 3), tmp_path)


def test_nested_transfer_learning_model(tmp_path: Path) -> None:
    saved_parity(_transfer, rand(2, 10, 10, 3), tmp_path)


def test_lstm_bidirectional_gru_with_embedding_mask(tmp_path: Path) -> None:
    saved_parity(_recurrent, _ids((4, 7), 30), tmp_path)


def test_multi_input_multi_output_with_shared_layer(tmp_path: Path) -> None:
    path = saved_parity(_multi_io, [rand(3, 5), rand(3, 4, 3, seed=2)], tmp_path)
    model = tfless.load(path)
    assert [s.name for s in model.inputs] == ["a", "b"]
    assert [s.name for s in model.outputs] == ["score", "probs"]
    assert model.graph.meta["format"] == "savedmodel"


def _two_level_nesting(K: Any) -> Any:
    """A nested model inside a nested model, called on two inputs (a siamese tower), and
    a TimeDistributed wrapper holding its layer's weights."""
    inner = K.Sequential([K.layers.Dense(4, activation="relu", input_shape=(4,)),
                          K.layers.BatchNormalization()], name="inner")
    tower_in = K.Input((5, 3))
    h = K.layers.TimeDistributed(K.layers.Dense(4))(tower_in)
    tower = K.Model(tower_in, inner(K.layers.GlobalMaxPooling1D()(h)), name="tower")
    a = K.Input((5, 3), name="left")
    b = K.Input((5, 3), name="right")
    merged = K.layers.subtract([tower(a), tower(b)])
    return K.Model([a, b], K.layers.Dense(1, name="same")(merged))


def test_two_level_nested_model(tmp_path: Path) -> None:
    saved_parity(_two_level_nesting, [rand(2, 5, 3), rand(2, 5, 3, seed=2)], tmp_path)


# ----- broken, hostile and foreign SavedModels -------------------------------------------

@pytest.fixture(scope="module")
def saved_mlp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import tf_keras

    path = tmp_path_factory.mktemp("sm") / "mlp"
    _mlp(tf_keras).save(path, save_format="tf")
    return path


@pytest.fixture
def copy(saved_mlp: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(saved_mlp, target)
    return target


def _index(path: Path) -> Path:
    return path / "variables" / "variables.index"


def _data(path: Path) -> Path:
    return path / "variables" / "variables.data-00000-of-00001"


def test_missing_variables_dir(copy: Path) -> None:
    shutil.rmtree(copy / "variables")
    with pytest.raises(tfless.ModelFormatError, match="no variables/ directory"):
        tfless.load(copy)


def test_truncated_index(copy: Path) -> None:
    data = _index(copy).read_bytes()
    _index(copy).write_bytes(data[: len(data) - 20])
    with pytest.raises(tfless.ModelFormatError, match="variables.index"):
        tfless.load(copy)


def test_index_bit_flip_fails_the_block_checksum(copy: Path) -> None:
    data = bytearray(_index(copy).read_bytes())
    data[10] ^= 0x01
    _index(copy).write_bytes(bytes(data))
    with pytest.raises(tfless.ModelFormatError, match="checksum mismatch"):
        tfless.load(copy)


def test_compressed_block_is_refused(copy: Path) -> None:
    """A block trailer whose type byte says snappy: named, not misread."""
    data = bytearray(_index(copy).read_bytes())
    footer = data[-FOOTER_SIZE:]
    # Footer: varint metaindex offset, size, index offset, size; the index block's type
    # byte sits right after its contents.
    values, pos = [], 0
    for _ in range(4):
        value = shift = 0
        while True:
            byte = footer[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        values.append(value)
    data[values[2] + values[3]] = 1
    _index(copy).write_bytes(bytes(data))
    with pytest.raises(tfless.ModelFormatError, match="snappy-compressed"):
        tfless.load(copy)


def test_truncated_data_file(copy: Path) -> None:
    data = _data(copy).read_bytes()
    _data(copy).write_bytes(data[:100])
    with pytest.raises(tfless.ModelFormatError, match="truncated or corrupt"):
        tfless.load(copy)


def test_missing_data_shard(copy: Path) -> None:
    _data(copy).unlink()
    with pytest.raises(tfless.ModelFormatError, match="missing data file"):
        tfless.load(copy)


def test_real_index_parses_and_holds_object_graph(saved_mlp: Path) -> None:
    table = read_table(_index(saved_mlp).read_bytes(), "index")
    assert b"" in table and b"_CHECKPOINTABLE_OBJECT_GRAPH" in table
    assert b"layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE" in table


def _rewrite_entry(copy: Path, key: bytes, edit: Callable[[Any], None]) -> None:
    """Re-encode one BundleEntryProto in an index, keeping the table valid (length and
    checksums recomputed), so only the edited field is wrong."""
    from tfless.formats.tf_protos import parse

    table = read_table(_index(copy).read_bytes(), "index")
    entry = parse("BundleEntryProto", table[key], "entry")
    edit(entry)
    table[key] = entry.SerializeToString()
    _index(copy).write_bytes(_write_table(table))


def _write_table(table: dict[bytes, bytes]) -> bytes:
    """A minimal single-data-block SSTable (no prefix sharing, one restart point)."""
    from tfless.formats.tensor_bundle import TABLE_MAGIC, masked_crc32c

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)

    def block(items: list[tuple[bytes, bytes]]) -> bytes:
        body = b"".join(varint(0) + varint(len(k)) + varint(len(v)) + k + v for k, v in items)
        return body + (0).to_bytes(4, "little") + (1).to_bytes(4, "little")

    out = bytearray()

    def put(contents: bytes) -> bytes:
        handle = varint(len(out)) + varint(len(contents))
        out.extend(contents + b"\x00")
        out.extend(masked_crc32c(contents + b"\x00").to_bytes(4, "little"))
        return handle

    data_handle = put(block(sorted(table.items())))
    meta_handle = put(block([]))
    index_handle = put(block([(max(table), data_handle)]))
    footer = (meta_handle + index_handle).ljust(40, b"\x00") + TABLE_MAGIC.to_bytes(8, "little")
    return bytes(out + footer)


KERNEL = b"layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE"


def test_rewritten_index_still_loads(copy: Path, saved_mlp: Path) -> None:
    """The test table writer is faithful: an unedited rewrite predicts the same."""
    _rewrite_entry(copy, KERNEL, lambda e: None)
    x = rand(2, 6)
    np.testing.assert_array_equal(tfless.load(copy).predict(x), tfless.load(saved_mlp).predict(x))


def test_offset_past_data_file(copy: Path) -> None:
    def edit(e: Any) -> None:
        e.offset = 10**12

    _rewrite_entry(copy, KERNEL, edit)
    with pytest.raises(tfless.ModelFormatError, match="declares bytes 1000000000000"):
        tfless.load(copy)


def test_size_not_matching_shape(copy: Path) -> None:
    def edit(e: Any) -> None:
        e.size = e.size - 4

    _rewrite_entry(copy, KERNEL, edit)
    with pytest.raises(tfless.ModelFormatError, match=r"needs 384 bytes but its index entry "
                                                      r"declares 380"):
        tfless.load(copy)


def test_huge_shape_is_refused_before_allocation(copy: Path) -> None:
    def edit(e: Any) -> None:
        e.shape.dim[0].size = 10**9
        e.size = 10**9 * 16 * 4

    _rewrite_entry(copy, KERNEL, edit)
    with pytest.raises(tfless.TflessError, match="truncated or corrupt|GiB"):
        tfless.load(copy)


def test_without_keras_metadata_the_signature_graph_runs(copy: Path) -> None:
    x = rand(4, 6)
    want = tfless.load(copy).predict(x)
    (copy / "keras_metadata.pb").unlink()
    graph = tfless.load(copy)  # the TF graph of serving_default, inputs by signature key
    got = graph.predict({graph.inputs[0].name: x})
    assert_close(list(got.values()), [want], "tf_keras savedmodel without keras_metadata.pb")


def test_corrupt_keras_metadata(copy: Path) -> None:
    (copy / "keras_metadata.pb").write_bytes(b"\x0a\xff\xff\xff\x0f")
    with pytest.raises(tfless.ModelFormatError, match="SavedMetadata"):
        tfless.load(copy)


def test_keras3_export_loads_as_a_tf_graph(tmp_path: Path) -> None:
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.export(tmp_path / "exported", verbose=False)
    x = rand(3, 4)
    got = tfless.load(tmp_path / "exported").predict(x)
    assert_close(list(got.values()), [model.predict(x, verbose=0)], "keras 3 export")


def test_subclassed_model_is_refused_clearly(tmp_path: Path) -> None:
    import tf_keras

    class Net(tf_keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.dense = tf_keras.layers.Dense(2)

        def call(self, x: Any) -> Any:
            return self.dense(x)

    model = Net()
    model(np.zeros((1, 3), np.float32))
    model.save(tmp_path / "sub", save_format="tf")
    with pytest.raises(tfless.UnsupportedLayer, match="subclassed Keras model"):
        tfless.load(tmp_path / "sub")


def test_cli_inspect_and_predict(saved_mlp: Path, tmp_path: Path) -> None:
    x = rand(3, 6)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "y.npy"
    cli = [sys.executable, "-m", "tfless.cli"]
    inspected = subprocess.run([*cli, "inspect", str(saved_mlp)], capture_output=True, text=True,
                               timeout=120)
    assert inspected.returncode == 0, inspected.stderr
    assert "savedmodel" in inspected.stdout and "Dense" in inspected.stdout
    predicted = subprocess.run([*cli, "predict", str(saved_mlp), "-i", str(tmp_path / "x.npy"),
                                "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert predicted.returncode == 0, predicted.stderr
    np.testing.assert_allclose(np.load(out), tfless.load(saved_mlp).predict(x), rtol=1e-6)


def test_data_bit_flip_fails_the_tensor_checksum(copy: Path) -> None:
    from tfless.formats.tf_protos import parse

    table = read_table(_index(copy).read_bytes(), "index")
    kernel = parse("BundleEntryProto", table[KERNEL], "entry")
    data = bytearray(_data(copy).read_bytes())
    data[kernel.offset + 5] ^= 0x10
    _data(copy).write_bytes(bytes(data))
    with pytest.raises(tfless.ModelFormatError, match="checksum mismatch in tensor"):
        tfless.load(copy)


@pytest.mark.parametrize("size", [0, 7, 16384, 16385, 300_001])
def test_crc32c_matches_the_bytewise_definition(size: int) -> None:
    from tfless.formats.tensor_bundle import CRC_MASK_DELTA, masked_crc32c

    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    crc ^= 0xFFFFFFFF
    want = (((crc >> 15) | (crc << 17)) + CRC_MASK_DELTA) & 0xFFFFFFFF
    assert masked_crc32c(data) == want


def test_reads_without_tensorflow(saved_mlp: Path, tmp_path: Path) -> None:
    """The reader needs neither TensorFlow nor its generated protobuf modules."""
    from tests.test_no_tensorflow import BLOCKER

    x = rand(2, 6)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "want.npy", tfless.load(saved_mlp).predict(x))
    script = BLOCKER + (
        "import sys, numpy as np, tfless\n"
        f"got = tfless.load({str(saved_mlp)!r}).predict(np.load({str(tmp_path / 'x.npy')!r}))\n"
        f"assert np.array_equal(got, np.load({str(tmp_path / 'want.npy')!r}))\n"
        "leaked = [k for k in sys.modules if k.split('.')[0] in {'tensorflow', 'tf_keras'}]\n"
        "assert not leaked, leaked\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
