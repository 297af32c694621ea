"""The Numba kernels (the `fast` extra: depthwise, bias + activation) against tfless's NumPy
path, and the switch.

Keras parity of depthwise and separable layers is tested in test_convolutional.py, which
runs whichever path is active (the compiled one where Numba is installed, as in the test
extra). Here both paths run on the same inputs over an option grid and must agree exactly:
the compiled loop adds the same products in the same order.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import numpy as np
import pytest

from tfless.ops import compiled
from tfless.ops.conv_epilogue import INPLACE_ACTIVATIONS
from tfless.ops.convolutional import Geometry, depthwise_channels_last

GRID = [  # (spatial, kernel, strides, dilation, padding, multiplier)
    ((9, 8), (3, 3), (1, 1), (1, 1), "same", 1),
    ((9, 8), (3, 3), (2, 2), (1, 1), "same", 1),
    ((10, 7), (3, 2), (2, 1), (1, 1), "valid", 2),
    ((11, 11), (3, 3), (1, 1), (2, 2), "same", 1),
    ((8, 9), (5, 5), (2, 2), (1, 1), "same", 3),
    ((12,), (3,), (1,), (2,), "causal", 1),
    ((6, 6), (1, 1), (1, 1), (1, 1), "valid", 1),
]


@contextlib.contextmanager
def _numpy_kernels():
    old = os.environ.get("TFLESS_KERNELS")
    os.environ["TFLESS_KERNELS"] = "numpy"
    try:
        yield
    finally:
        if old is None:
            del os.environ["TFLESS_KERNELS"]
        else:
            os.environ["TFLESS_KERNELS"] = old


def _numpy_path(*args):
    with _numpy_kernels():
        return depthwise_channels_last(*args)


@pytest.mark.parametrize("spatial,kernel,strides,dilation,padding,mult", GRID)
@pytest.mark.parametrize("with_bias", [False, True])
def test_compiled_depthwise_equals_numpy(spatial, kernel, strides, dilation, padding, mult,
                                         with_bias):
    assert compiled.available()
    rng = np.random.default_rng(len(spatial) + sum(kernel) + mult)
    channels = 5
    x = rng.standard_normal((3, *spatial, channels)).astype(np.float32)
    k = rng.standard_normal((*kernel, channels, mult)).astype(np.float32)
    bias = rng.standard_normal(channels * mult).astype(np.float32) if with_bias else None
    act = INPLACE_ACTIVATIONS["relu6"]
    geo = Geometry("dw", kernel, strides, dilation, padding)
    fast = depthwise_channels_last(x, geo, k, bias, act)
    slow = _numpy_path(x, geo, k, bias, act)
    assert fast.shape == slow.shape
    np.testing.assert_array_equal(fast, slow)
    assert np.array_equal(np.signbit(fast), np.signbit(slow))


def test_switch_and_lazy_import():
    """TFLESS_KERNELS=numpy turns the kernels off, and `import tfless` never imports numba."""
    code = ("import sys, tfless; from tfless.ops import compiled; "
            "print('numba' in sys.modules, compiled.available())")
    env = {**os.environ, "TFLESS_KERNELS": "numpy"}
    off = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert off == ["False", "False"]
    env.pop("TFLESS_KERNELS")
    on = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                        check=True).stdout.split()
    assert on == ["False", "True"]


def test_read_only_inputs_and_weights():
    """Frozen-graph constants and callers' arrays may be read-only: the kernel takes them."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 6, 5, 4)).astype(np.float32)
    k = rng.standard_normal((3, 3, 4, 1)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    for a in (x, k, bias):
        a.setflags(write=False)
    geo = Geometry("dw", (3, 3), (1, 1), (1, 1), "same")
    np.testing.assert_array_equal(depthwise_channels_last(x, geo, k, bias),
                                  _numpy_path(x, geo, k, bias, None))


@pytest.mark.parametrize("name", ["linear", "relu", "relu6"])
@pytest.mark.parametrize("with_bias", [False, True])
def test_compiled_epilogue_equals_numpy(name, with_bias):
    """Bias + relu/relu6 as one compiled pass (outputs from COMPILED_MIN elements) gives the
    bits of NumPy's add and clip, NaN and infinities included."""
    from tfless.ops.conv_epilogue import COMPILED_MIN, epilogue

    rng = np.random.default_rng(7)
    y = (rng.standard_normal((COMPILED_MIN // 16 + 3, 16)) * 5).astype(np.float32)
    y[0, :4] = [np.nan, np.inf, -np.inf, -0.0]
    bias = rng.standard_normal(16).astype(np.float32) if with_bias else None
    act = INPLACE_ACTIVATIONS[name]
    with _numpy_kernels():
        slow = epilogue(y.copy(), bias, act)
    fast = epilogue(y.copy(), bias, act)
    np.testing.assert_array_equal(fast, slow)
    assert np.array_equal(np.signbit(fast), np.signbit(slow))  # -0.0 stays -0.0
    assert np.isnan(fast[0, 0]) and np.array_equal(fast, slow, equal_nan=True)


def test_compiled_layer_norm_matches_numpy():
    """LayerNormalization over the last axis from ROWS_MIN elements runs compiled; it agrees
    with the NumPy path to float32 rounding (its sums run in another order)."""
    from tfless.ops import get_op

    rng = np.random.default_rng(3)
    x = (rng.standard_normal((2, 48, 96)) * 3 + 1).astype(np.float32)
    assert compiled.rows_wanted(x)
    x[0, 0, 0] = np.nan
    weights = {"gamma": rng.standard_normal(96).astype(np.float32),
               "beta": rng.standard_normal(96).astype(np.float32)}
    for config, w in [({"epsilon": 1e-6, "axis": [-1]}, weights),
                      ({"epsilon": 1e-3, "axis": -1, "scale": False, "center": False}, {})]:
        run = get_op("LayerNormalization", "ln").build(config, w)
        fast = run(x)
        with _numpy_kernels():
            slow = run(x)
        assert np.isnan(fast[0, 0]).all() and np.isnan(slow[0, 0]).all()  # NaN spreads over its row
        np.testing.assert_allclose(fast[1:], slow[1:], rtol=1e-5, atol=2e-6)
        np.testing.assert_allclose(fast[0, 1:], slow[0, 1:], rtol=1e-5, atol=2e-6)


def test_compiled_softmax_matches_numpy():
    """Softmax over the last axis from ROWS_MIN elements runs compiled (its own exp): within
    a few float32 ulps of NumPy's over the whole range, 0 where exp underflows, masked
    logits (-1e9, -inf) at 0, NaN kept."""
    from tfless.ops.activations import softmax

    rng = np.random.default_rng(5)
    x = rng.uniform(-100, 30, (4, 64, 72)).astype(np.float32)
    x[0, 0, :] = 0.0
    x[0, 1, 5:] = -1e9
    x[0, 2, 7:] = -np.inf
    x[0, 3, 9] = np.nan
    x[1, 0, :] = rng.uniform(-1e-3, 1e-3, 72)
    fast = softmax(x)
    with _numpy_kernels():
        slow = softmax(x)
    assert np.isnan(fast[0, 3]).all() and np.isnan(slow[0, 3]).all()
    fast[0, 3] = slow[0, 3] = 0.0
    np.testing.assert_allclose(fast, slow, rtol=2e-6, atol=1e-37)
    assert np.all(fast[0, 1, 5:] == 0) and np.all(fast[0, 2, 7:] == 0)
    sums = fast.sum(-1)
    sums[0, 3] = 1.0  # the NaN row, zeroed above
    np.testing.assert_allclose(sums, 1.0, rtol=1e-5)


def test_attention_block_parity_on_compiled_kernels():
    """A transformer block large enough for the compiled LayerNormalization and softmax
    (64 tokens x 64 features, 2 heads) matches Keras."""
    from tests.parity import check_parity, rand

    def build(K):
        inp = K.Input((64, 64))
        att = K.layers.MultiHeadAttention(num_heads=2, key_dim=32)(inp, inp)
        h = K.layers.LayerNormalization(epsilon=1e-6)(K.layers.Add()([inp, att]))
        return K.Model(inp, K.layers.LayerNormalization()(K.layers.Dense(64)(h)))

    assert compiled.ROW_MIN <= 64 and 64 * 64 >= compiled.ROWS_MIN
    check_parity(build, rand(2, 64, 64, seed=4, low=-2, high=2))


def test_row_kernels_never_depend_on_the_batch_size():
    """Whether the row kernels run depends on the row length and the values per item, never
    on the batch: a batch scored whole or in chunks gives the same bits (scale engines)."""
    from tfless.ops.activations import softmax

    rng = np.random.default_rng(9)
    few = rng.standard_normal((5000, 3)).astype(np.float32)  # a classifier's softmax
    assert not compiled.rows_wanted(few)
    np.testing.assert_array_equal(softmax(few)[:7], softmax(few[:7]))
    logits = rng.standard_normal((3, 2, 64, 64)).astype(np.float32)  # attention logits
    assert compiled.rows_wanted(logits) and compiled.rows_wanted(logits[:1].copy())
    np.testing.assert_array_equal(softmax(logits)[:1], softmax(logits[:1].copy()))
