"""The shared integer arithmetic (ops/quantized.py) and Keras 3 quantized layers.

The fixed-point helpers are checked against exact integer/fraction arithmetic written
from their definitions (not against the code under test); Keras models quantized with
`model.quantize("int8" | "int4" | "float8")` are saved to `.keras` and compared with Keras.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tfless
from tests.parity import assert_close, randomize_weights
from tfless.ops import quantized as q


# ----- arithmetic ------------------------------------------------------------------------
def test_quantize_multiplier_represents_the_real_value() -> None:
    reals = np.array([0.5, 0.75, 1e-3, 0.999999, 1.0, 3.7, 2.0 ** -20, 0.0])
    mult, shift = q.quantize_multiplier(reals)
    for r, m, s in zip(reals, mult, shift):
        if r == 0:
            assert m == 0 and s == 0
            continue
        assert (1 << 30) <= m < (1 << 31)
        assert abs(float(Fraction(int(m), 1 << 31) * Fraction(2) ** int(s)) - r) <= r * 2 ** -30


def _exact_round(value: Fraction) -> int:
    """Round half away from zero, exactly."""
    sign = -1 if value < 0 else 1
    return sign * int(abs(value) + Fraction(1, 2))


@pytest.mark.parametrize("single", [False, True], ids=["double", "single"])
def test_rescaling_rounds_like_the_reference(single: bool) -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.integers(-(1 << 20), 1 << 20, 400), [0, 1, -1, 2 ** 30, -2 ** 30]])
    for real in (0.0123, 0.5, 0.3333, 1.7e-4):
        m, s = (int(v) for v in q.quantize_multiplier(real))
        got = q.multiply_by_quantized_multiplier(x, m, s, single)
        exact = [Fraction(int(v) * m, 1 << 31) * Fraction(2) ** s for v in x]
        if single:
            # One rounding of the exact product: ties go up (toward +inf), as the shift does.
            want = [int((e + Fraction(1, 2)).__floor__()) for e in exact]
        else:
            # The high multiply rounds to an integer first (its nudge sends ties toward
            # +inf), then the shift rounds again (ties away from zero).
            want = []
            for v in x:
                high = int((Fraction(int(v) * m, 1 << 31) + Fraction(1, 2)).__floor__())
                want.append(_exact_round(Fraction(high) * Fraction(2) ** s) if s < 0 else high)
        assert got.tolist() == want
        # Either way the result is within one of the exact value.
        assert max(abs(g - e) for g, e in zip(got.tolist(), exact)) <= 1


def test_saturating_high_mul_and_rounding_shift_edges() -> None:
    assert q.saturating_rounding_doubling_high_mul(np.int64(q.I32_MIN), np.int64(q.I32_MIN)) \
        == q.I32_MAX
    assert q.rounding_divide_by_pot(np.array([5, -5, 6, -6, 7, -7]), 1).tolist() == \
        [3, -3, 3, -3, 4, -4]


def test_activation_ranges_are_clamps_in_the_quantized_domain() -> None:
    assert q.activation_range(0, 0.1, -5, "int8") == (-128, 127)
    assert q.activation_range(1, 0.1, -5, "int8") == (-5, 127)
    assert q.activation_range(3, 0.1, -5, "int8") == (-5, 55)
    assert q.activation_range(2, 0.05, 10, "uint8") == (0, 30)
    assert q.activation_range(4, 0.1, 0, "int8") is None


def test_quantize_rounds_half_away_and_saturates() -> None:
    x = np.array([0.25, -0.25, 0.75, 100.0, -100.0], np.float32)
    assert q.quantize(x, 0.5, 0, "int8").tolist() == [1, -1, 2, 127, -128]
    assert q.dequantize(np.array([3, -128], np.int8), np.float32(0.5), 1).tolist() == [1.0, -64.5]


def test_hybrid_row_quantization() -> None:
    rows = np.array([[0.0, 0.0], [1.0, -0.5], [-2.0, 0.25]], np.float32)
    values, scale = q.symmetric_quantize_rows(rows)
    assert values.tolist() == [[0, 0], [127, -64], [-127, 16]]
    assert scale.tolist() == [1.0, np.float32(1 / 127), np.float32(2 / 127)]
    values, scale, zero = q.asymmetric_quantize_rows(np.array([[0.0, 1.0], [-1.0, 3.0]], np.float32))
    assert zero.tolist() == [-128, -64]
    assert values.min() >= -128 and values.max() <= 127
    real = (values - zero[:, None]) * scale[:, None]
    assert np.allclose(real, [[0.0, 1.0], [-1.0, 3.0]], atol=scale.max())


def test_int4_unpacking_and_float8_rounding() -> None:
    packed = np.array([[45, -121 & 0xFF], [1, 0]], np.uint8).astype(np.int8)
    assert q.unpack_int4(packed, 3, axis=0).tolist() == [[-3, 7], [2, -8], [1, 0]]
    values = np.array([0.0, 1.0625, 1.1875, 448.0, -3.3, 2.0 ** -9, 3 * 2.0 ** -11], np.float32)
    # e4m3fn: 1.0625 ties to 1.0 (even), 1.1875 to 1.25, subnormal step 2**-9
    assert q.round_to_float8_e4m3fn(values).tolist() == \
        [0.0, 1.0, 1.25, 448.0, -3.25, 2.0 ** -9, 2.0 ** -9]
    assert q.round_to_bfloat16(np.array([1.00390625, 1.01171875], np.float32)).tolist() == \
        [1.0, 1.015625]


# ----- Keras 3 quantized layers ----------------------------------------------------------
def _model(mode: str, block_size: int | None) -> Any:
    import keras

    L = keras.layers
    x = keras.Input((10,))
    tokens = keras.Input((5,), dtype="int32")
    h = L.Dense(12, activation="relu")(x)
    e = L.Flatten()(L.Embedding(20, 7)(tokens))
    h = L.Dense(9, use_bias=False)(L.Concatenate()([h, e]))
    model = keras.Model([x, tokens], L.Dense(5, activation="softmax")(h))
    randomize_weights(model, seed=4)
    if block_size is not None:
        from keras.quantizers import Int4QuantizationConfig

        model.quantize(mode, config=Int4QuantizationConfig(block_size=block_size))
    else:
        model.quantize(mode)
    return model


@pytest.mark.parametrize("mode,block_size", [("int8", None), ("int4", None), ("int4", 4),
                                             ("int4", -1), ("float8", None)])
def test_keras_quantized_layers_match_keras(mode: str, block_size: int | None,
                                            tmp_path: Path) -> None:
    model = _model(mode, block_size)
    path = tmp_path / "q.keras"
    model.save(path)
    rng = np.random.default_rng(1)
    inputs = [rng.normal(size=(6, 10)).astype(np.float32),
              rng.integers(0, 20, (6, 5)).astype(np.int32)]
    want = model.predict(inputs, verbose=0)
    got = tfless.load(path).predict(inputs)
    assert_close(got, [np.asarray(want)], f"keras {mode} block {block_size}")


@pytest.mark.parametrize("mode", ["int8", "float8"])
def test_keras_quantized_einsum_dense_matches_keras(mode: str, tmp_path: Path) -> None:
    import keras

    L = keras.layers
    x = keras.Input((6, 8))
    h = L.EinsumDense("abc,cd->abd", output_shape=(None, 12), bias_axes="d",
                      activation="relu")(x)
    h = L.EinsumDense("abc,cde->abde", output_shape=(None, 3, 4), bias_axes="e")(h)
    h = L.EinsumDense("abde,def->abf", output_shape=(None, 5))(h)
    model = keras.Model(x, h)
    randomize_weights(model, seed=9)
    model.quantize(mode)
    model.save(tmp_path / "e.keras")
    inputs = np.random.default_rng(2).normal(size=(3, 6, 8)).astype(np.float32)
    want = np.asarray(model.predict(inputs, verbose=0))
    assert_close(tfless.load(tmp_path / "e.keras").predict(inputs), [want], f"einsum {mode}")


def test_int4_einsum_dense_is_refused(tmp_path: Path) -> None:
    import keras

    inp = keras.Input((6,))
    model = keras.Model(inp, keras.layers.EinsumDense("ab,bc->ac", output_shape=4)(inp))
    model.quantize("int4")
    model.save(tmp_path / "e.keras")
    with pytest.raises(tfless.UnsupportedLayer, match="is quantized"):
        tfless.load(tmp_path / "e.keras")


@pytest.mark.parametrize("fmt", ["onnx", "c"])
def test_exports_refuse_keras_quantized_layers(fmt: str, tmp_path: Path) -> None:
    """The ONNX and C exporters read float weights directly: quantized layers are refused
    (the C export used to write code that computed with the raw int8 values)."""
    import subprocess
    import sys

    path = tmp_path / "q.keras"
    _model("int8", None).save(path)
    run = subprocess.run([sys.executable, "-m", "tfless.cli", "export", str(path), "-f", fmt,
                          "-o", str(tmp_path / "out")], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 2
    assert "(Dense, quantized)" in run.stderr and "(Embedding, quantized)" in run.stderr
    assert not (tmp_path / "out").exists()
