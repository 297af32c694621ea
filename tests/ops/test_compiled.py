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
