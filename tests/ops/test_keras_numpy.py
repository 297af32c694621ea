"""Parity of keras.ops operation nodes (numpy, math, nn, core, image, linalg) with Keras 3.

Each group is one functional model with one output per call, so a group saves and loads
once; a mismatch names the output index, which is the position in the group's list.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.parity import check_parity, rand

X = rand(2, 4, 3, seed=3, low=-2, high=2)
POS = rand(2, 4, 3, seed=4, low=0.1, high=2)
UNIT = rand(2, 4, 3, seed=5, low=-0.9, high=0.9)

# name -> (inputs used, call)
UNARY_FLOAT = ["arccos", "arcsin", "arctan", "arcsinh", "arctanh", "cbrt", "cosh", "sinh",
               "tan", "exp2", "deg2rad", "rad2deg", "sinc", "trunc", "reciprocal", "erf",
               "fabs", "isfinite", "isinf", "isnan", "signbit", "real", "conj", "copy",
               "stop_gradient", "ravel", "ndim", "size"]
POSITIVE = ["log10", "log2", "arccosh_plus1", "erfc"]


def _unary_group(o, x, p):
    outs = [getattr(o, n)(x) for n in UNARY_FLOAT]
    outs += [o.log10(p), o.log2(p), o.arccosh(p + 1.0), o.erfc(x)]
    return outs


def _binary_group(o, x, p):
    y = o.flip(x, axis=1)
    return [o.arctan2(x, y), o.hypot(x, y), o.logaddexp(x, y), o.logaddexp2(x, y),
            o.fmax(x, y), o.fmin(x, y), o.mod(x, p), o.floor_divide(x, p), o.heaviside(x, y),
            o.logical_xor(x > 0, y > 0), o.divide_no_nan(x, o.where(y > 0, y, 0.0)),
            o.nextafter(x, y), o.append(x, y, axis=1), o.cross(x, y),
            o.tensordot(x, o.ones((3, 2)), axes=1), o.outer(x[:1, 0], y[:1, 0]), o.inner(x, y),
            o.vdot(x[0], y[0]),
            o.dot(x, o.ones((3,))), o.isclose(x, y, rtol=0.1, atol=0.5),
            o.ldexp(x, 2)]


def _reduce_group(o, x, p):
    return [o.amax(x, axis=1), o.amin(x, axis=(1, 2), keepdims=True), o.argmax(x, axis=1),
            o.argmin(x, axis=-1, keepdims=True), o.median(x, axis=1), o.std(x, axis=2),
            o.var(x, axis=1, keepdims=True), o.ptp(x, axis=1), o.logsumexp(x, axis=1),
            o.nanmean(x, axis=1), o.nansum(x, axis=2), o.nanmax(x, axis=1),
            o.count_nonzero(o.cast(x > 0, "int32"), axis=1), o.cumsum(x, axis=1),
            o.cumprod(p, axis=2), o.average(x, axis=1, weights=o.convert_to_tensor(
                [1.0, 2.0, 3.0, 4.0])), o.quantile(x, 0.3, axis=1),
            o.percentile(x, 75.0, axis=2), o.sort(x, axis=1), o.argsort(x, axis=1)]


def _shape_group(o, x, p):
    idx = o.convert_to_tensor([2, 0, -1])
    return [o.flip(x, axis=(1, 2)), o.roll(x, 2, axis=1), o.repeat(x, 2, axis=2),
            o.tile(x, (1, 2, 1)), o.tril(x, k=-1), o.triu(x), o.diagonal(x, axis1=1, axis2=2),
            o.trace(x, axis1=1, axis2=2), o.moveaxis(x, 1, 2), o.swapaxes(x, 0, 2),
            o.diff(x, axis=1), o.take(x, idx, axis=1), o.take_along_axis(
                x, o.cast(o.argsort(x, axis=1), "int32"), axis=1),
            o.pad(x, [[0, 0], [1, 2], [0, 1]], constant_values=3.0),
            o.pad(x, [[0, 0], [2, 1], [0, 0]], mode="reflect"), *o.split(x, 2, axis=1),
            *o.array_split(x, 3, axis=1), o.hstack([x, x]), o.vstack([x, p]),
            o.dstack([x, p]), o.rot90(x, axes=(1, 2)), o.broadcast_to(x[:, :1], (2, 4, 3)),
            o.searchsorted(o.convert_to_tensor([-1.0, 0.0, 1.0]), o.reshape(x, (-1,))),
            o.nan_to_num(o.log(x)), o.full_like(x, 2.5), *o.unstack(x, num=4, axis=1),
            o.tile(x, 2), o.fliplr(x), o.flipud(x), o.diag(x[0, 0]), o.tri(3) * 0 + x[0, :3]]


def _nn_group(o, x, p):
    ids = o.cast(o.argmax(x, axis=2), "int32")
    img = o.reshape(o.tile(x, (1, 1, 4)), (2, 4, 4, 3))
    mean, var = o.moments(x, axes=[1])
    return [o.one_hot(ids, 3), o.one_hot(ids, 4, axis=1), o.multi_hot(ids, 5),
            o.normalize(x, axis=-1), o.normalize(x, axis=1, order=1), mean, var,
            o.batch_normalization(x, o.ones((3,)) * 0.1, o.ones((3,)) * 2.0, axis=-1,
                                  offset=o.ones((3,)), scale=o.ones((3,)) * 0.5),
            o.rms_normalization(x, scale=o.ones((3,)) * 2.0, axis=-1),
            o.layer_normalization(x, gamma=o.ones((3,)) * 2.0, beta=o.ones((3,)), axis=-1),
            o.depth_to_space(o.tile(img, (1, 1, 1, 4))[..., :12], 2),
            o.space_to_depth(img, 2), o.max_pool(img, 2, strides=1, padding="same"),
            o.average_pool(img, 3, strides=2, padding="valid"),
            o.adaptive_average_pool(img, (3, 2)), o.adaptive_max_pool(img, (3, 3)),
            *o.top_k(o.reshape(x, (2, 12)), 4),
            o.segment_sum(x[0], o.convert_to_tensor([0, 0, 1, 2]), num_segments=3),
            o.segment_max(x[0], o.convert_to_tensor([0, 1, 1, 2]), num_segments=3),
            o.slice(x, (0, 1, 1), (2, 2, 2)),
            o.slice_update(x, (0, 1, 0), o.zeros((2, 2, 3))),
            o.saturate_cast(x * 200.0, "int8"),
            o.image.resize(img, (6, 5), interpolation="bilinear"),
            o.image.rgb_to_grayscale(img),
            o.image.pad_images(img, 1, 2, target_height=7, target_width=6),
            o.image.crop_images(img, 1, 0, target_height=2, target_width=3),
            o.linalg.det(x[:, :3, :3]), o.linalg.inv(x[:, :3, :3] + 3 * o.eye(3)),
            o.linalg.norm(x, axis=-1), o.linalg.norm(x, ord="fro", axis=(1, 2)),
            o.linalg.solve(x[:, :3, :3] + 3 * o.eye(3), x[:, :3, :2]),
            o.linalg.cholesky(o.matmul(x[:, :3], o.transpose(x[:, :3], (0, 2, 1)))
                              + 2 * o.eye(3))]


def _more_group(o, x, p):
    sq = x[:, :3, :3] + 3 * o.eye(3)
    spd = o.matmul(x[:, :3], o.transpose(x[:, :3], (0, 2, 1))) + 2 * o.eye(3)
    seg = o.convert_to_tensor([0, 0, 1, 2])
    n = o.where(x > 1.0, float("nan"), x)
    i, j = o.cast(p * 10, "int32"), o.cast(x * 5 + 10, "int32")
    return [o.nanargmax(n, axis=1), o.nanargmin(n, axis=2), o.nanstd(n, axis=1),
            o.nanvar(n, axis=1), o.nanprod(n, axis=1), o.nanmin(n, axis=1),
            o.nancumsum(n, axis=1), o.nancumprod(n, axis=2),
            *o.hsplit(x, 2), *o.vsplit(x, 2), *o.dsplit(x, 3),
            *o.meshgrid(x[0, 0], x[0, 1]), o.vander(x[0, 0], 3),
            o.trapezoid(x, axis=1), o.correlate(x[0, 0], x[0, 1], mode="same"),
            o.select([x > 0.5, x < -0.5], [x, x * 2.0], 7.0), *o.slogdet(sq),
            o.full_like(x, 1.0) * o.linspace(0.0, 1.0, 3),
            o.full_like(x, 1.0) * o.logspace(0.0, 1.0, 3),
            o.full_like(x, 1.0) * o.geomspace(1.0, 4.0, 3),
            o.isposinf(o.log(p) / 0.0), o.isneginf(o.log(p * 0.0)), o.isreal(x), o.imag(x),
            o.conjugate(x), o.i0(x), o.diagflat(x[0, 0]),
            o.fmod(x, p), o.gcd(i, j), o.lcm(i, j), o.bitwise_and(i, j), o.bitwise_or(i, j),
            o.bitwise_xor(i, j), o.bitwise_invert(i), o.left_shift(i, j % 3),
            o.right_shift(i, j % 3),
            o.all(o.allclose(x, x)) & o.ones((2, 1), "bool"),
            o.array(x, dtype="float16"), o.view(x, "int32"),
            o.in_top_k(o.convert_to_tensor([0, 2]), o.reshape(x, (2, 12))[:, :3], 2),
            o.segment_min(x[0], seg, num_segments=3), o.segment_prod(x[0], seg, num_segments=3),
            o.linalg.pinv(sq), o.logdet(spd), o.linalg.solve_triangular(sq, x[:, :3, :2]),
            o.linalg.solve_triangular(sq, x[:, :3, :2], lower=True),
            o.linalg.cholesky_inverse(o.linalg.cholesky(spd)), o.linalg.matrix_rank(sq),
            o.linalg.lstsq(sq[0], x[0, :3, :2]), o.cdist(x, p), o.erfinv(x * 0.45),
            o.extract_sequences(x[:, 0], 2, 1),
            o.scatter(o.convert_to_tensor([[0, 1], [1, 2], [0, 1]]), x[0, 0], (2, 3)),
            o.scatter_update(x, o.convert_to_tensor([[0, 1, 2], [1, 0, 0]]), x[0, 0, :2]),
            o.dot_product_attention(o.reshape(x, (2, 4, 1, 3)), o.reshape(p, (2, 4, 1, 3)),
                                    o.reshape(x, (2, 4, 1, 3)), is_causal=True),
            o.dot_product_attention(o.reshape(o.tile(x, (1, 1, 4)), (2, 4, 4, 3)),
                                    o.reshape(o.tile(p, (1, 1, 2)), (2, 4, 2, 3)),
                                    o.reshape(o.tile(x, (1, 1, 2)), (2, 4, 2, 3)),
                                    scale=0.5, mask=o.reshape(x[:, :, :1] > 0, (2, 1, 1, 4))),
            o.conv(x, o.ones((2, 3, 4)) * 0.3, strides=1, padding="same"),
            o.depthwise_conv(x, o.ones((2, 3, 2)) * 0.3, padding="valid"),
            o.separable_conv(x, o.ones((2, 3, 1)) * 0.3, o.ones((1, 3, 5)) * 0.2)]


GROUPS = {"more": _more_group, "unary": _unary_group, "binary": _binary_group, "reduce": _reduce_group,
          "shape": _shape_group, "nn": _nn_group}


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_keras_ops_group(group: str) -> None:
    def build(K):
        x, p = K.Input((4, 3)), K.Input((4, 3))
        return K.Model([x, p], GROUPS[group](K.ops, x, p))

    inputs = [UNIT if group == "unary" else X, POS]
    check_parity(build, inputs, formats=("keras",), randomize=False)


def test_keras_ops_split_counts_outputs() -> None:
    def build(K):
        x = K.Input((6, 2))
        a, b, c = K.ops.split(x, [1, 4], axis=1)
        return K.Model(x, [c, a, b])

    check_parity(build, rand(2, 6, 2), formats=("keras",), randomize=False)


def test_float_math_on_integers_is_float32() -> None:
    def build(K):
        x = K.Input((3,), dtype="int32")
        return K.Model(x, [K.ops.log2(x), K.ops.std(x, axis=1), K.ops.argmax(x, axis=1)])

    check_parity(build, np.array([[1, 2, 8], [4, 4, 1]], np.int32), formats=("keras",),
                 randomize=False)


def test_onnx_export_of_new_keras_ops(tmp_path) -> None:
    """The keras.ops calls with an ONNX converter export and match Keras in ONNX Runtime
    (export must succeed: a refusal fails here, unlike check_parity's warning)."""
    import keras

    import tfless
    from tests.parity import assert_close, keras_predict

    x, p = keras.Input((4, 3)), keras.Input((4, 3))
    o = keras.ops
    outs = [o.tan(x), o.sinh(x), o.cosh(x), o.arcsin(x), o.arccos(x), o.arctan(x),
            o.arcsinh(x), o.arccosh(p + 1.0), o.arctanh(x), o.erf(x), o.fabs(x),
            o.reciprocal(p), o.log2(p), o.log10(p), o.isnan(o.log(x)), o.isinf(o.log(x * 0.0)),
            o.stop_gradient(x), o.copy(x), o.amax(x, axis=1), o.amin(x, axis=2, keepdims=True),
            o.argmax(x, axis=1), o.argmin(x, axis=-1, keepdims=True),
            o.take(x, o.convert_to_tensor([2, 0, -1]), axis=1),
            o.take_along_axis(x, o.argmax(x, axis=1, keepdims=True), axis=1),
            o.cumsum(x, axis=1), o.tile(x, (1, 2, 1)), o.swapaxes(x, 1, 2), o.moveaxis(x, 0, 2),
            o.one_hot(o.argmax(x, axis=2), 3), o.one_hot(o.argmax(x, axis=2), 4, axis=1)]
    model = keras.Model([x, p], outs)
    model.save(tmp_path / "ops.keras")
    want = keras_predict(model, [UNIT, POS])
    loaded = tfless.load(tmp_path / "ops.keras", backend="onnxruntime")
    assert_close(loaded.predict([UNIT, POS], structured=False), want, "onnxruntime")
