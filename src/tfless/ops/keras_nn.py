"""keras.ops operation nodes from keras.ops.nn, .math, .core, .image and .linalg.

Just over 600 lines, long because it is one flat table of small kernels (one per
keras.ops name, five namespaces): a further split would cut a namespace in two.

The companion of `keras_numpy` (the keras.ops.numpy calls), split off to keep each
module readable; both register through `keras_numpy.make_op`, so config handling,
constant arguments and multi-output nodes work the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import UnsupportedLayer
from ..registry import register
from .keras_numpy import EPSILON, F32, Kernel, Maker, _float, _linalg, make_op
from .tfop import _array, _axis, _dtype


def _one_hot(config: dict) -> Kernel:
    if config.get("sparse"):
        raise UnsupportedLayer(f"layer '{config.get('name', '')}': sparse one_hot is not "
                               "supported (dense outputs only)")
    n, axis = int(config["num_classes"]), int(config.get("axis", -1))
    dtype = np.dtype(F32) if config.get("dtype") is None else _dtype(config["dtype"])
    multi = config.get("_multi", False)

    def kernel(x: Any) -> np.ndarray:
        idx = np.asarray(_array(x)).astype(np.int64)
        hot = (idx[..., None] == np.arange(n)).astype(dtype)
        if multi:  # multi_hot: Keras reduces over axis 1 (axis 0 for rank-1 input)
            return np.max(hot, axis=1 if idx.ndim > 1 else 0)
        return np.moveaxis(hot, -1, axis) if axis != -1 else hot

    return kernel


def _multi_hot(config: dict) -> Kernel:
    return _one_hot({**config, "_multi": True})


def _normalize(config: dict) -> Kernel:
    axis, order = int(config.get("axis", -1)), config.get("order", 2)
    epsilon = config.get("epsilon")

    def kernel(x: Any) -> np.ndarray:
        a = _float(x)
        if order != 2:
            norm = np.linalg.norm(a, ord=order, axis=axis, keepdims=True).astype(a.dtype)
            return a / np.maximum(norm, a.dtype.type(epsilon or 1e-12)) if epsilon else a / norm
        square = np.sum(a * a, axis=axis, keepdims=True)
        eps = a.dtype.type(1e-12 if epsilon is None else epsilon)
        return a / np.sqrt(np.maximum(square, eps * eps) if epsilon is None
                           else np.maximum(square, eps))

    return kernel


def _moments(config: dict) -> Kernel:
    axes, keepdims = _axis(config.get("axes")), bool(config.get("keepdims", False))

    def kernel(x: Any) -> tuple[np.ndarray, np.ndarray]:
        a = _float(x)
        mean = np.mean(a, axis=axes, keepdims=True, dtype=a.dtype)
        var = np.mean(np.square(a - mean), axis=axes, keepdims=keepdims, dtype=a.dtype)
        return (mean if keepdims else np.squeeze(mean, axis=axes)), var

    return kernel


def _batch_norm(config: dict) -> Kernel:
    axis, eps = int(config.get("axis", -1)), config.get("epsilon", 1e-3)

    def kernel(x: Any, mean: Any, variance: Any, offset: Any = None, scale: Any = None
               ) -> np.ndarray:
        a = _float(x)
        shape = [1] * a.ndim
        shape[axis] = a.shape[axis]
        inv = F32(1) / np.sqrt(np.reshape(_float(variance), shape) + F32(eps))
        if scale is not None:
            inv = inv * np.reshape(_float(scale), shape)
        out = (a - np.reshape(_float(mean), shape)) * inv
        return out + np.reshape(_float(offset), shape) if offset is not None else out

    return kernel


def _rms_norm(config: dict) -> Kernel:
    axis, eps = _axis(config.get("axis", -1)), config.get("epsilon")

    def kernel(x: Any, scale: Any = 1) -> np.ndarray:
        a = _float(x)
        e = a.dtype.type(EPSILON if eps is None else eps)
        rrms = F32(1) / np.sqrt(np.mean(a * a, axis=axis, keepdims=True) + e)
        return a * rrms * _float(scale)

    return kernel


def _layer_norm(config: dict) -> Kernel:
    axis, eps = _axis(config.get("axis", -1)), config.get("epsilon")
    if config.get("rms_scaling"):
        raise UnsupportedLayer(f"layer '{config.get('name', '')}': layer_norm with "
                               "rms_scaling=True is not supported; use keras.ops.rms_normalization")

    def kernel(x: Any, gamma: Any = None, beta: Any = None) -> np.ndarray:
        a = _float(x)
        mean = np.mean(a, axis=axis, keepdims=True)
        var = np.mean(np.square(a - mean), axis=axis, keepdims=True)
        inv = F32(1) / np.sqrt(var + a.dtype.type(EPSILON if eps is None else eps))
        if gamma is not None:
            inv = inv * _float(gamma)
        shift = -mean * inv
        if beta is not None:
            shift = shift + _float(beta)
        return a * inv + shift

    return kernel


def _space_depth(to_space: bool) -> Maker:
    def make(config: dict) -> Kernel:
        b = int(config["block_size"])
        first = config.get("data_format", "channels_last") == "channels_first"

        def kernel(x: Any) -> np.ndarray:
            a = _array(x)
            if first:
                a = np.transpose(a, (0, 2, 3, 1))
            n, h, w, c = a.shape
            if to_space:
                y = a.reshape(n, h, w, b, b, c // (b * b)).transpose(0, 1, 3, 2, 4, 5)
                y = y.reshape(n, h * b, w * b, c // (b * b))
            else:
                y = a.reshape(n, h // b, b, w // b, b, c).transpose(0, 1, 3, 2, 4, 5)
                y = y.reshape(n, h // b, w // b, b * b * c)
            return np.transpose(y, (0, 3, 1, 2)) if first else y

        return kernel

    return make


def _top_k(config: dict) -> Kernel:
    k = int(config.get("k", 1))

    def kernel(x: Any) -> tuple[np.ndarray, np.ndarray]:
        a = _array(x)
        order = np.argsort(-a if a.dtype.kind != "b" else ~a, axis=-1, kind="stable")[..., :k]
        return np.take_along_axis(a, order, axis=-1), order.astype(np.int32)

    return kernel


def _in_top_k(config: dict) -> Kernel:
    k = int(config.get("k", 1))

    def kernel(targets: Any, predictions: Any) -> np.ndarray:
        p = _array(predictions)
        t = np.asarray(_array(targets)).astype(np.int64)
        target_value = np.take_along_axis(p, t[:, None], axis=1)
        return np.sum(p > target_value, axis=1) < k

    return kernel


def _segment(fn: str) -> Maker:
    def make(config: dict) -> Kernel:
        n = config.get("num_segments")
        if n is None:
            raise UnsupportedLayer(f"layer '{config.get('name', '')}': segment reductions need "
                                   "`num_segments` (the output length) in the call")

        def kernel(data: Any, segment_ids: Any) -> np.ndarray:
            d = _array(data)
            ids = np.asarray(_array(segment_ids)).astype(np.int64)
            hot = ids[None, :] == np.arange(int(n))[:, None]
            hot = hot.reshape(hot.shape + (1,) * (d.ndim - 1))
            if fn == "sum":
                return np.sum(np.where(hot, d[None], d.dtype.type(0)), axis=1)
            if fn == "prod":
                return np.prod(np.where(hot, d[None], d.dtype.type(1)), axis=1)
            fill = d.dtype.type(-np.inf if fn == "max" else np.inf) if d.dtype.kind == "f" else \
                (np.iinfo(d.dtype).min if fn == "max" else np.iinfo(d.dtype).max)
            reduce = np.max if fn == "max" else np.min
            return reduce(np.where(hot, d[None], fill), axis=1)

        return kernel

    return make


def _unstack(config: dict) -> Kernel:
    axis = int(config.get("axis", 0))
    return lambda x: tuple(np.moveaxis(_array(x), axis, 0))


def _slice(config: dict) -> Kernel:
    shape = [int(s) for s in config["shape"]]

    def kernel(inputs: Any, start_indices: Any) -> np.ndarray:
        a = _array(inputs)
        starts = [int(s) for s in np.asarray(_array(start_indices)).reshape(-1)]
        return a[tuple(slice(s, s + n) for s, n in zip(starts, shape))]

    return kernel


def _slice_update(config: dict) -> Kernel:
    def kernel(inputs: Any, start_indices: Any, updates: Any) -> np.ndarray:
        a, u = _array(inputs).copy(), _array(updates)
        starts = [int(s) for s in np.asarray(_array(start_indices)).reshape(-1)]
        a[tuple(slice(s, s + n) for s, n in zip(starts, u.shape))] = u
        return a

    return kernel


def _saturate_cast(config: dict) -> Kernel:
    dtype = _dtype(config.get("dtype"))

    def kernel(x: Any) -> np.ndarray:
        a = _array(x)
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            a = np.clip(a, info.min, info.max)
        return a.astype(dtype)

    return kernel


def _resize_maker(config: dict) -> Kernel:
    from .preprocessing import build_resizing  # the Resizing layer's kernels, one copy

    size = config.get("size") or [None, None]
    layer = build_resizing({**config, "height": size[0], "width": size[1]}, {})
    return lambda images: layer(_array(images))


def _rgb_to_grayscale(config: dict) -> Kernel:
    first = config.get("data_format") == "channels_first"
    weights = np.array([0.2989, 0.5870, 0.1140], dtype=F32)

    def kernel(images: Any) -> np.ndarray:
        a = _float(images)
        axis = -3 if first else -1
        gray = np.tensordot(np.moveaxis(a, axis, -1), weights, axes=([-1], [0]))
        return np.expand_dims(gray.astype(a.dtype), axis)

    return kernel


def _image_box(crop: bool) -> Maker:
    fields = ("top", "left", "bottom", "right")

    def make(config: dict) -> Kernel:
        kind = "cropping" if crop else "padding"
        values = {f: config.get(f"{f}_{kind}") for f in fields}
        target = config.get("target_height"), config.get("target_width")
        first = config.get("data_format") == "channels_first"

        def kernel(images: Any) -> np.ndarray:
            a = _array(images)
            h_ax, w_ax = (a.ndim - 2, a.ndim - 1) if first else (a.ndim - 3, a.ndim - 2)
            h, w = a.shape[h_ax], a.shape[w_ax]
            top, left = values["top"] or 0, values["left"] or 0
            bottom, right = values["bottom"], values["right"]
            if crop:
                th = target[0] if target[0] is not None else h - top - (bottom or 0)
                tw = target[1] if target[1] is not None else w - left - (right or 0)
                if bottom is not None and target[0] is None:
                    th = h - top - bottom
                if values["top"] is None and bottom is not None and target[0] is not None:
                    top = h - bottom - th
                if values["left"] is None and right is not None and target[1] is not None:
                    left = w - right - tw
                key = [slice(None)] * a.ndim
                key[h_ax], key[w_ax] = slice(top, top + th), slice(left, left + tw)
                return a[tuple(key)]
            th = target[0] if target[0] is not None else h + top + (bottom or 0)
            tw = target[1] if target[1] is not None else w + left + (right or 0)
            if values["top"] is None and bottom is not None:
                top = th - h - bottom
            if values["left"] is None and right is not None:
                left = tw - w - right
            width = [(0, 0)] * a.ndim
            width[h_ax], width[w_ax] = (top, th - h - top), (left, tw - w - left)
            return np.pad(a, width)

        return kernel

    return make


def _pool(kind: str, adaptive: bool) -> Maker:
    def make(config: dict) -> Kernel:
        from . import pooling

        first = config.get("data_format") == "channels_first"
        if adaptive:
            size = config.get("output_size")

            def adaptive_kernel(inputs: Any) -> np.ndarray:
                a = _float(inputs)
                rank = a.ndim - 2
                sizes = (size,) * rank if isinstance(size, int) else tuple(size)
                for d, out in enumerate(sizes):
                    a = pooling.adaptive_pool_axis(a, d + (2 if first else 1), out, kind)
                return a

            return adaptive_kernel
        built: dict[int, Callable] = {}

        def kernel(inputs: Any) -> np.ndarray:
            a = _array(inputs)
            rank = a.ndim - 2
            if rank not in built:
                pool = config.get("pool_size")
                layer = {"pool_size": pool, "strides": config.get("strides") or pool,
                         "padding": config.get("padding", "valid"),
                         "data_format": config.get("data_format") or "channels_last",
                         "name": config.get("name", "")}
                built[rank] = pooling.make_pool(rank, kind)(layer, {})
            return built[rank](a)

        return kernel

    return make


def _norm(config: dict) -> Kernel:
    order, axis, keepdims = config.get("ord"), _axis(config.get("axis")), config.get("keepdims")

    def kernel(x: Any) -> np.ndarray:
        a = _float(x)
        if axis is None and order is None:
            return np.asarray(np.sqrt(np.sum(a * a)), a.dtype).reshape(
                (1,) * a.ndim if keepdims else ())
        return np.linalg.norm(a, ord=order, axis=axis, keepdims=bool(keepdims)).astype(a.dtype)

    return kernel


def _erfinv(x: np.ndarray) -> np.ndarray:
    """Inverse erf: Giles's single-precision polynomial starting point, then two Newton
    steps on erf in float64 (so the answer is float32-exact away from +-1)."""
    from .keras_numpy import _erf

    x64 = x.astype(np.float64)
    w = -np.log((1.0 - x64) * (1.0 + x64))
    small = w < 5.0
    ws = w - 2.5
    p_small = 2.81022636e-08
    for c in (3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
              -0.00125372503, -0.00417768164, 0.246640727, 1.50140941):
        p_small = c + p_small * ws
    wb = np.sqrt(np.maximum(w, 5.0)) - 3.0
    p_big = -0.000200214257
    for c in (0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
              -0.0076224613, 0.00943887047, 1.00167406, 2.83297682):
        p_big = c + p_big * wb
    y = np.where(small, p_small, p_big) * x64
    for _ in range(2):
        finite = np.isfinite(y)
        err = np.where(finite, _erf(np.where(finite, y, 0.0)) - x64, 0.0)
        y = y - err / (2.0 / np.sqrt(np.pi) * np.exp(-np.where(finite, y, 0.0) ** 2))
    return y.astype(x.dtype)


def _triangular_solve(a: np.ndarray, b: np.ndarray, lower: bool) -> np.ndarray:
    """Solve a x = b using only the lower (or upper) triangle of `a`, as TF does."""
    tri = np.tril(a) if lower else np.triu(a)
    return np.linalg.solve(tri, b)


def _solve_triangular(config: dict) -> Kernel:
    lower = bool(config.get("lower", False))

    def kernel(a: Any, b: Any) -> np.ndarray:
        a64, b64 = _float(a).astype(np.float64), _float(b).astype(np.float64)
        vector = b64.ndim == a64.ndim - 1
        out = _triangular_solve(a64, b64[..., None] if vector else b64, lower)
        return (out[..., 0] if vector else out).astype(F32)

    return kernel


def _cholesky_inverse(config: dict) -> Kernel:
    upper = bool(config.get("upper", False))

    def kernel(x: Any) -> np.ndarray:
        a = _float(x).astype(np.float64)
        eye = np.broadcast_to(np.eye(a.shape[-1]), a.shape)
        inv = _triangular_solve(a, eye, lower=not upper)
        t = np.swapaxes(inv, -1, -2)
        return (inv @ t if upper else t @ inv).astype(F32)

    return kernel


def _matrix_rank(config: dict) -> Kernel:
    tol = config.get("tol")

    def kernel(x: Any) -> np.ndarray:
        a = _float(x)
        s = np.linalg.svd(a.astype(np.float64), compute_uv=False)
        limit = (s.max(axis=-1, keepdims=True) * max(a.shape[-2:]) * np.finfo(a.dtype).eps
                 if tol is None else float(tol))
        return np.sum(s > limit, axis=-1).astype(np.int32)

    return kernel


def _lstsq(config: dict) -> Kernel:
    rcond = config.get("rcond")

    def kernel(a: Any, b: Any) -> np.ndarray:
        a64, b64 = _float(a).astype(np.float64), _float(b).astype(np.float64)
        return np.linalg.lstsq(a64, b64, rcond=rcond)[0].astype(F32)

    return kernel


def _cdist(config: dict) -> Kernel:
    def kernel(x: Any, y: Any) -> np.ndarray:
        a, b = _float(x), _float(y)
        diff = a[..., :, None, :] - b[..., None, :, :]
        return np.sqrt(np.sum(diff * diff, axis=-1))

    return kernel


def _extract_sequences(config: dict) -> Kernel:
    length, stride = int(config["sequence_length"]), int(config["sequence_stride"])

    def kernel(x: Any) -> np.ndarray:
        a = _array(x)
        count = max(0, (a.shape[-1] - length) // stride + 1)
        idx = np.arange(count)[:, None] * stride + np.arange(length)[None, :]
        return a[..., idx]

    return kernel


def _scatter(config: dict) -> Kernel:
    shape = tuple(int(s) for s in config["shape"])

    def kernel(indices: Any, values: Any) -> np.ndarray:
        idx = np.asarray(_array(indices)).astype(np.int64)
        v = _array(values)
        out = np.zeros(shape, dtype=v.dtype)
        np.add.at(out, tuple(np.moveaxis(idx, -1, 0)), v)  # scatter_nd sums duplicates
        return out

    return kernel


def _scatter_update(config: dict) -> Kernel:
    reduction = config.get("reduction")
    ufunc = {None: None, "add": np.add, "max": np.maximum, "min": np.minimum,
             "mul": np.multiply}
    if reduction not in ufunc:
        raise UnsupportedLayer(f"layer '{config.get('name', '')}': scatter_update "
                               f"reduction={reduction!r} is not supported; supported: "
                               "None, add, max, min, mul")

    def kernel(inputs: Any, indices: Any, updates: Any) -> np.ndarray:
        out = _array(inputs).copy()
        idx = tuple(np.moveaxis(np.asarray(_array(indices)).astype(np.int64), -1, 0))
        u = np.asarray(_array(updates)).astype(out.dtype)
        if ufunc[reduction] is None:
            out[idx] = u
        else:
            ufunc[reduction].at(out, idx, u)
        return out

    return kernel


LARGE_NEGATIVE = F32(3.38953e38 * -0.7)  # what Keras's TF backend puts at masked logits


def _dot_product_attention(config: dict) -> Kernel:
    causal = bool(config.get("is_causal", False))
    if config.get("flash_attention") or config.get("attn_logits_soft_cap") is not None:
        raise UnsupportedLayer(f"layer '{config.get('name', '')}': flash attention and logit "
                               "soft caps are not supported (Keras's TF backend has neither)")

    def kernel(query: Any, key: Any, value: Any, bias: Any = None, mask: Any = None,
               scale: Any = None) -> np.ndarray:
        q, k, v = _float(query), _float(key), _float(value)
        if q.shape[2] > k.shape[2] > 1:  # grouped-query attention: repeat the kv heads
            k = np.repeat(k, q.shape[2] // k.shape[2], axis=2)
            v = np.repeat(v, q.shape[2] // v.shape[2], axis=2)
        s = F32(1) / np.sqrt(F32(k.shape[-1])) if scale is None else F32(scale)
        logits = np.einsum("btnh,bsnh->bnts", q, k) * s
        if bias is not None:
            logits = logits + _float(bias)
        keep = None if mask is None else np.asarray(mask, bool)
        if causal:
            tri = np.tril(np.ones(logits.shape[-2:], bool))
            keep = tri if keep is None else keep & tri
        if keep is not None:
            logits = np.where(keep, logits, LARGE_NEGATIVE)
        top = np.max(logits, axis=-1, keepdims=True)
        e = np.exp(logits - top)
        probs = e / np.sum(e, axis=-1, keepdims=True)
        return np.einsum("bnts,bsnh->btnh", probs, v)

    return kernel


def _conv(kind: str) -> Maker:
    """keras.ops.conv / depthwise_conv / separable_conv: the layer kernels
    of `convolutional`, built for the kernel tensors of each call (usually constants)."""
    def make(config: dict) -> Kernel:
        from . import convolutional as conv

        options = {k: config.get(k) for k in ("strides", "padding", "data_format",
                                              "dilation_rate")}
        options = {k: v for k, v in options.items() if v is not None}
        options.setdefault("data_format", "channels_last")

        def compute(inputs: Any, weight: Any, pointwise_kernel: Any = None) -> np.ndarray:
            x, w = _float(inputs), _float(weight)
            rank = x.ndim - 2
            layer = {**options, "name": config.get("name", ""), "kernel_size": w.shape[:rank],
                     "use_bias": False, "activation": "linear", "depth_multiplier": w.shape[-1]}
            if kind == "conv":
                groups = x.shape[1 if options["data_format"] == "channels_first" else -1] \
                    // w.shape[-2]
                run = conv.make_conv(rank)({**layer, "groups": groups}, {"kernel": w})
            elif kind == "depthwise":
                run = conv.make_depthwise(rank)(layer, {"depthwise_kernel": w})
            elif kind == "separable":
                run = conv.make_separable(rank)(layer, {"depthwise_kernel": w,
                                                        "pointwise_kernel": _float(pointwise_kernel)})
            else:
                raise UnsupportedLayer(f"keras.ops conv kind {kind!r}")
            return run(x)

        if kind == "separable":
            return lambda inputs, depthwise_kernel, pointwise_kernel: compute(
                inputs, depthwise_kernel, pointwise_kernel)
        return lambda inputs, kernel: compute(inputs, kernel)

    return make


NN_OPS: dict[str, Maker] = {
    # nn
    "OneHot": _one_hot, "MultiHot": _multi_hot, "Normalize": _normalize,
    "Moments": _moments, "BatchNorm": _batch_norm, "RMSNorm": _rms_norm,
    "LayerNorm": _layer_norm,
    "DepthToSpace": _space_depth(True), "SpaceToDepth": _space_depth(False),
    "MaxPool": _pool("max", False), "AveragePool": _pool("avg", False),
    "AdaptiveMaxPool": _pool("max", True), "AdaptiveAveragePool": _pool("avg", True),
    # math
    "TopK": _top_k, "InTopK": _in_top_k,
    "SegmentSum": _segment("sum"), "SegmentMax": _segment("max"),
    "SegmentMin": _segment("min"), "SegmentProd": _segment("prod"),
    # core
    "Unstack": _unstack, "Slice": _slice, "SliceUpdate": _slice_update,
    "SaturateCast": _saturate_cast,
    # image
    "Resize": _resize_maker, "RGBToGrayscale": _rgb_to_grayscale,
    "PadImages": _image_box(False), "CropImages": _image_box(True),
    # linalg
    "Det": _linalg(np.linalg.det), "Inv": _linalg(np.linalg.inv),
    "Pinv": lambda config: (lambda x: np.linalg.pinv(
        _float(x).astype(np.float64), rcond=config.get("rcond", 1e-15)).astype(F32)),
    "Cholesky": lambda config: (lambda x: (lambda L: np.swapaxes(L, -1, -2)
                                           if config.get("upper") else L)(
        np.linalg.cholesky(_float(x).astype(np.float64))).astype(F32)),
    "Solve": lambda config: (lambda a, b: np.linalg.solve(
        _float(a).astype(np.float64), _float(b).astype(np.float64)).astype(F32)),
    "Norm": _norm,
    "SolveTriangular": _solve_triangular, "CholeskyInverse": _cholesky_inverse,
    "MatrixRank": _matrix_rank, "Lstsq": _lstsq,
    "CDist": _cdist, "ExtractSequences": _extract_sequences,
    "Erfinv": lambda config: (lambda x: _erfinv(_float(x))),
    "Scatter": _scatter, "ScatterUpdate": _scatter_update,
    "DotProductAttention": _dot_product_attention,
    "Conv": _conv("conv"), "DepthwiseConv": _conv("depthwise"),
    "SeparableConv": _conv("separable"),
    "Logdet": _linalg(lambda x: np.linalg.slogdet(x)[1]),
}


def _unstack_outputs(config: dict) -> int:
    if not config.get("num"):
        raise UnsupportedLayer(f"layer '{config.get('name', '')}': unstack without `num` "
                               "records no output count; call keras.ops.unstack(x, num=...)")
    return int(config["num"])


MULTI_OUTPUT: dict[str, Callable[[dict], int]] = {
    "Moments": lambda config: 2, "TopK": lambda config: 2, "Unstack": _unstack_outputs,
}

for _op, _maker in NN_OPS.items():
    register(f"keras.ops.{_op}", num_outputs=MULTI_OUTPUT.get(_op))(make_op(_op, _maker))
