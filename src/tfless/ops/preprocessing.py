"""Preprocessing layers with stored state: Rescaling, Normalization, CenterCrop, Resizing.

Image resizing reproduces TensorFlow's `tf.image.resize` kernels (half-pixel centers,
float32 coordinates): nearest, bilinear and Keys-cubic bicubic with its 1024-entry
coefficient table, and ScaleAndTranslate (lanczos3/lanczos5, and every antialiased
downscale). Other interpolations are refused by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError, ModelFormatError, UnsupportedLayer
from ..registry import register

F32 = np.float32
EPSILON = F32(1e-7)  # keras.backend.epsilon()


def _deserialize_number(value: Any) -> Any:
    """Keras 3 serializes NumPy arrays in configs as {"class_name": "__numpy__", ...}."""
    if isinstance(value, dict) and value.get("class_name") == "__numpy__":
        inner = value.get("config", {})
        return np.asarray(inner.get("value"), dtype=inner.get("dtype", "float32"))
    return value


def _float_input(x: np.ndarray) -> np.ndarray:
    return x if x.dtype == F32 else np.asarray(x, dtype=F32)


# ----- Rescaling and Normalization -----------------------------------------------------------

@register("Rescaling", mask=lambda config, inputs, masks: masks[:1] if "keras_major" not in config
          else [None])
def build_rescaling(config: dict, weights: dict) -> Any:
    scale = np.asarray(_deserialize_number(config.get("scale", 1.0)), dtype=F32)
    offset = np.asarray(_deserialize_number(config.get("offset", 0.0)), dtype=F32)
    return lambda x: _float_input(x) * scale + offset


def _normalization_weights(config: dict[str, Any]) -> list[str]:
    # layers built from `mean=`/`variance=` keep them in the config and store no weights
    return [] if config.get("mean") is not None else ["mean", "variance", "count"]


def _keep_axes(axis: Any) -> tuple[int, ...]:
    if axis is None:
        return ()
    return (int(axis),) if isinstance(axis, int) else tuple(int(a) for a in axis)


@register("Normalization", weights=_normalization_weights,
          mask=lambda config, inputs, masks: masks[:1] if "keras_major" not in config else [None])
def build_normalization(config: dict, weights: dict) -> Any:
    name = config.get("name", "")
    axes = _keep_axes(config.get("axis", -1))
    invert = bool(config.get("invert", False))
    if config.get("mean") is not None:
        if config.get("variance") is None:
            raise ModelFormatError(f"layer '{name}': config has `mean` but no `variance`")
        mean = np.asarray(_deserialize_number(config["mean"]), dtype=F32)
        variance = np.asarray(_deserialize_number(config["variance"]), dtype=F32)
        from_config = True
    else:
        mean, variance = weights["mean"].astype(F32), weights["variance"].astype(F32)
        from_config = False
    if mean.shape != variance.shape:
        raise ModelFormatError(
            f"layer '{name}': mean {mean.shape} and variance {variance.shape} differ in shape"
        )
    std = np.maximum(np.sqrt(variance), EPSILON)

    def shapes(x: np.ndarray) -> tuple[list[int], list[int]]:
        """(broadcast shape, sizes of the kept axes) for an input like `x`."""
        keep = sorted(a % x.ndim for a in axes if -x.ndim <= a < x.ndim)
        if len(keep) != len(axes):
            raise InputError(f"layer '{name}': axis {axes} is out of range for input {x.shape}")
        return [x.shape[d] if d in keep else 1 for d in range(x.ndim)], [x.shape[d] for d in keep]

    def stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        broadcast, kept = shapes(x)
        if from_config:
            # values given for the trailing kept axes (or one scalar) spread over all of them
            m = np.broadcast_to(mean, kept).reshape(broadcast)
            s = np.broadcast_to(std, kept).reshape(broadcast)
            return m, s
        if mean.size != int(np.prod(kept)):
            raise InputError(
                f"layer '{name}': stored mean has {mean.size} values but the input {x.shape} "
                f"has {int(np.prod(kept))} positions on axis {axes}"
            )
        return mean.reshape(broadcast), std.reshape(broadcast)

    def run(x: np.ndarray) -> np.ndarray:
        x = _float_input(x)
        m, s = stats(x)
        return m + x * s if invert else (x - m) / s

    return run


# ----- image resizing kernels (NHWC, float32) ---------------------------------------------------

def _scale(in_size: int, out_size: int) -> np.float32:
    return F32(in_size) / F32(out_size)


def _nearest_index(in_size: int, out_size: int) -> np.ndarray:
    pos = (np.arange(out_size, dtype=F32) + F32(0.5)) * _scale(in_size, out_size)
    return np.clip(np.floor(pos).astype(np.int64), 0, in_size - 1)


def _linear_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pos = (np.arange(out_size, dtype=F32) + F32(0.5)) * _scale(in_size, out_size) - F32(0.5)
    floor = np.floor(pos)
    lower = np.maximum(floor.astype(np.int64), 0)
    upper = np.minimum(np.ceil(pos).astype(np.int64), in_size - 1)
    return lower, upper, (pos - floor).astype(F32)


def _cubic_table(a: float = -0.5, size: int = 1024) -> np.ndarray:
    """TensorFlow's Keys-cubic coefficient table: row i holds the weights at i / size."""
    x = (np.arange(size + 1, dtype=np.float64) / size).astype(F32).astype(np.float64)
    near = (((a + 2) * x - (a + 3)) * x * x + 1).astype(F32)
    x1 = (x + 1.0).astype(F32).astype(np.float64)
    far = ((((a * x1) - 5 * a) * x1 + 8 * a) * x1 - 4 * a).astype(F32)
    return np.stack([near, far], axis=1)


CUBIC_TABLE = _cubic_table()


def _cubic_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, weights), each (out_size, 4): taps outside the image get weight 0 and the
    rest are renormalized, as TensorFlow's half-pixel bicubic does."""
    size = CUBIC_TABLE.shape[0] - 1
    pos = (np.arange(out_size, dtype=F32) + F32(0.5)) * _scale(in_size, out_size) - F32(0.5)
    base = np.floor(pos).astype(np.int64)
    offset = np.rint((pos - np.floor(pos)) * F32(size)).astype(np.int64)
    taps = base[:, None] + np.arange(-1, 3)[None, :]
    weights = np.stack([CUBIC_TABLE[offset, 1], CUBIC_TABLE[offset, 0],
                        CUBIC_TABLE[size - offset, 0], CUBIC_TABLE[size - offset, 1]], axis=1)
    inside = (taps >= 0) & (taps < in_size)
    weights = np.where(inside, weights, F32(0))
    total = weights.sum(axis=1, keepdims=True, dtype=F32)
    ok = np.abs(total) >= F32(1000) * np.finfo(F32).tiny
    weights = np.where(ok, weights * (F32(1) / np.where(ok, total, F32(1))), weights)
    return np.clip(taps, 0, in_size - 1), weights.astype(F32)


def _resize_nearest(x: np.ndarray, height: int, width: int) -> np.ndarray:
    rows = _nearest_index(x.shape[1], height)
    cols = _nearest_index(x.shape[2], width)
    return x[:, rows][:, :, cols]


def _resize_bilinear(x: np.ndarray, height: int, width: int) -> np.ndarray:
    x = _float_input(x)
    top, bottom, dy = _linear_weights(x.shape[1], height)
    left, right, dx = _linear_weights(x.shape[2], width)
    dx = dx[None, None, :, None]
    dy = dy[None, :, None, None]
    upper, lower = x[:, top], x[:, bottom]
    top_row = upper[:, :, left] + (upper[:, :, right] - upper[:, :, left]) * dx
    bottom_row = lower[:, :, left] + (lower[:, :, right] - lower[:, :, left]) * dx
    return top_row + (bottom_row - top_row) * dy


def _resize_bicubic(x: np.ndarray, height: int, width: int) -> np.ndarray:
    x = _float_input(x)
    cols, wx = _cubic_weights(x.shape[2], width)
    rows, wy = _cubic_weights(x.shape[1], height)
    across = sum(x[:, :, cols[:, k]] * wx[None, None, :, k, None] for k in range(4))
    return sum(across[:, rows[:, k]] * wy[None, :, k, None, None] for k in range(4))


def _lanczos(radius: float) -> Any:
    def kernel(x: np.ndarray) -> np.ndarray:
        pi = F32(3.14159265359)
        with np.errstate(divide="ignore", invalid="ignore"):
            y = F32(radius) * np.sin(pi * x) * np.sin(pi * x / F32(radius)) / (pi * pi * x * x)
        return np.where(x > radius, F32(0), np.where(x <= F32(1e-3), F32(1), y)).astype(F32)

    return radius, kernel


def _keys_cubic(x: np.ndarray) -> np.ndarray:
    near = ((F32(1.5) * x - F32(2.5)) * x) * x + F32(1)
    far = ((F32(-0.5) * x + F32(2.5)) * x - F32(4)) * x + F32(2)
    return np.where(x >= 2, F32(0), np.where(x >= 1, far, near)).astype(F32)


# TensorFlow's scale_and_translate kernels: (radius, kernel(|distance|))
SAMPLING_KERNELS = {
    "lanczos3": _lanczos(3.0), "lanczos5": _lanczos(5.0),
    "bilinear": (1.0, lambda x: np.maximum(F32(1) - x, F32(0))), "bicubic": (2.0, _keys_cubic),
}


def _sampling_weights(in_size: int, out_size: int, method: str, antialias: bool) -> np.ndarray:
    """(out, in) float32 weights of TensorFlow's ScaleAndTranslate (no translation): each
    output samples at (i + 0.5) / scale over the kernel's span, widened by 1 / scale when
    antialiasing a downscale, weights renormalized to sum to one."""
    radius, kernel = SAMPLING_KERNELS[method]
    inv_scale = F32(1) / (F32(out_size) / F32(in_size))
    kernel_scale = max(inv_scale, F32(1)) if antialias else F32(1)
    sample = (np.arange(out_size, dtype=F32) + F32(0.5)) * inv_scale
    reach = F32(radius) * kernel_scale
    start = np.clip(np.ceil(sample - reach - F32(0.5)), 0, in_size - 1).astype(np.int64)
    end = np.clip(np.floor(sample + reach - F32(0.5)), 0, in_size - 1).astype(np.int64) + 1
    source = np.arange(in_size)
    weights = kernel(np.abs((source[None, :].astype(F32) + F32(0.5) - sample[:, None])
                            * (F32(1) / kernel_scale)))
    inside = (source[None, :] >= start[:, None]) & (source[None, :] < end[:, None])
    weights = np.where(inside, weights, F32(0))
    total = weights.sum(axis=1, keepdims=True, dtype=F32)
    ok = np.abs(total) >= F32(1000) * np.finfo(F32).tiny
    weights = np.where(ok, weights / np.where(ok, total, F32(1)), weights)
    valid = (sample >= 0) & (sample <= in_size)
    return np.where(valid[:, None], weights, F32(0)).astype(F32)


def _scale_and_translate(method: str, antialias: bool) -> Any:
    def resize(x: np.ndarray, height: int, width: int) -> np.ndarray:
        x = _float_input(x)
        rows = _sampling_weights(x.shape[1], height, method, antialias)
        cols = _sampling_weights(x.shape[2], width, method, antialias)
        across = np.einsum("bhwc,vw->bhvc", x, cols)
        return np.einsum("bhvc,uh->buvc", across, rows).astype(F32)

    return resize


RESIZERS = {"nearest": _resize_nearest, "bilinear": _resize_bilinear, "bicubic": _resize_bicubic,
            "lanczos3": _scale_and_translate("lanczos3", False),
            "lanczos5": _scale_and_translate("lanczos5", False)}
# tf.image.resize with antialias=True runs these through ScaleAndTranslate instead
ANTIALIASED = {name: _scale_and_translate(name, True)
               for name in ("bilinear", "bicubic", "lanczos3", "lanczos5")}


def _crop_box(height: int, width: int, target_h: int, target_w: int) -> tuple[int, int, int, int]:
    """(top, left, crop height, crop width) of the centered crop with the target's aspect."""
    crop_h = max(min(height, int(F32(width * target_h) / F32(target_w))), 1)
    crop_w = max(min(width, int(F32(height * target_w) / F32(target_h))), 1)
    return int(F32(height - crop_h) / 2), int(F32(width - crop_w) / 2), crop_h, crop_w


def smart_resize(x: np.ndarray, height: int, width: int, method: str = "bilinear") -> np.ndarray:
    """Keras's smart_resize: crop the largest centered box of the target aspect, then resize."""
    top, left, crop_h, crop_w = _crop_box(x.shape[1], x.shape[2], height, width)
    return RESIZERS[method](x[:, top:top + crop_h, left:left + crop_w], height, width)


def _pad_to_aspect(x: np.ndarray, height: int, width: int, fill: float) -> np.ndarray:
    """Keras 3's pad_to_aspect_ratio: `start` rows (or columns) of `fill` on both sides."""
    in_h, in_w = x.shape[1], x.shape[2]
    pad_h = max(in_h, int(F32(in_w * height) / F32(width)))
    pad_w = max(in_w, int(F32(in_h * width) / F32(height)))
    h_start, w_start = int(F32(pad_h - in_h) / 2), int(F32(pad_w - in_w) / 2)
    if h_start > 0:
        band = np.full((x.shape[0], h_start, in_w, x.shape[3]), fill, dtype=x.dtype)
        x = np.concatenate([band, x, band], axis=1)
    if w_start > 0:
        band = np.full((x.shape[0], x.shape[1], w_start, x.shape[3]), fill, dtype=x.dtype)
        x = np.concatenate([band, x, band], axis=2)
    return x


def _channels_first(config: dict[str, Any]) -> bool:
    return config.get("data_format") == "channels_first"


def _as_nhwc(x: np.ndarray, name: str, channels_first: bool) -> tuple[np.ndarray, bool]:
    """Batched NHWC view of an image input (rank 3 inputs are single images)."""
    if x.ndim not in (3, 4):
        raise InputError(f"layer '{name}' expects images of rank 3 or 4, got shape {x.shape}")
    single = x.ndim == 3
    if single:
        x = x[None]
    if channels_first:
        x = np.transpose(x, (0, 2, 3, 1))
    return x, single


def _from_nhwc(y: np.ndarray, single: bool, channels_first: bool) -> np.ndarray:
    if channels_first:
        y = np.transpose(y, (0, 3, 1, 2))
    return y[0] if single else y


def _size(config: dict[str, Any], name: str) -> tuple[int, int]:
    try:
        height, width = int(config["height"]), int(config["width"])
    except (KeyError, TypeError, ValueError):
        raise ModelFormatError(f"layer '{name}': config needs integer `height` and `width`") from None
    if height <= 0 or width <= 0:
        raise ModelFormatError(
            f"layer '{name}': height and width must be positive. Received: {height}x{width}"
        )
    return height, width


@register("Resizing")
def build_resizing(config: dict, weights: dict) -> Any:
    name = config.get("name", "")
    height, width = _size(config, name)
    method = config.get("interpolation", "bilinear")
    if method not in RESIZERS:
        raise UnsupportedLayer(
            f"layer '{name}': interpolation='{method}' is not supported; supported: "
            f"{', '.join(RESIZERS)}"
        )
    antialias = bool(config.get("antialias")) and method in ANTIALIASED
    crop = bool(config.get("crop_to_aspect_ratio", False))
    pad = bool(config.get("pad_to_aspect_ratio", False))
    if pad and config.get("fill_mode", "constant") != "constant":
        raise UnsupportedLayer(
            f"layer '{name}': fill_mode='{config.get('fill_mode')}' is not supported; only "
            "'constant' is"
        )
    fill = float(config.get("fill_value", 0.0))
    channels_first = _channels_first(config)
    resize = ANTIALIASED[method] if antialias else RESIZERS[method]

    def run(x: np.ndarray) -> np.ndarray:
        images, single = _as_nhwc(x, name, channels_first)
        if crop:
            top, left, crop_h, crop_w = _crop_box(images.shape[1], images.shape[2], height, width)
            y = resize(images[:, top:top + crop_h, left:left + crop_w], height, width)
        else:
            if pad:
                images = _pad_to_aspect(_float_input(images), height, width, fill)
            y = resize(images, height, width)
        return _from_nhwc(_float_input(y), single, channels_first)

    return run


@register("CenterCrop")
def build_center_crop(config: dict, weights: dict) -> Any:
    name = config.get("name", "")
    height, width = _size(config, name)
    channels_first = _channels_first(config)

    def run(x: np.ndarray) -> np.ndarray:
        images, single = _as_nhwc(_float_input(x), name, channels_first)
        h_diff, w_diff = images.shape[1] - height, images.shape[2] - width
        if h_diff >= 0 and w_diff >= 0:
            top, left = h_diff // 2, w_diff // 2
            y = images[:, top:top + height, left:left + width]
        else:  # smaller inputs are cropped to the aspect ratio and resized up
            y = smart_resize(images, height, width)
        return _from_nhwc(y, single, channels_first)

    return run


@register("RandomCrop")
def build_random_crop(config: dict, weights: dict) -> Any:
    """At inference tf_keras resizes to the target (smart_resize); Keras 3 passes images on."""
    name = config.get("name", "")
    height, width = _size(config, name)
    if "keras_major" not in config:
        return lambda x: x
    channels_first = _channels_first(config)

    def run(x: np.ndarray) -> np.ndarray:
        images, single = _as_nhwc(_float_input(x), name, channels_first)
        return _from_nhwc(smart_resize(images, height, width), single, channels_first)

    return run


# MaxNumBoundingBoxes only touches bounding boxes; images pass unchanged.
register("MaxNumBoundingBoxes", mask="keep", noop=True)(
    lambda config, weights: (lambda x: x))


def _value_range(config: dict[str, Any]) -> tuple[np.float32, np.float32]:
    low, high = config.get("value_range", (0, 255))
    return F32(low), F32(high)


@register("AutoContrast")
def build_auto_contrast(config: dict, weights: dict) -> Any:
    """Stretch each image's per-channel range to the full value range (min/max over axes 1
    and 2, as Keras reduces them, also for channels_first); NaN results keep the input."""
    low, high = _value_range(config)
    to_255 = (low, high) != (F32(0), F32(255))

    def run(x: np.ndarray) -> np.ndarray:
        original = np.asarray(x)
        images = _float_input(original)
        single = images.ndim == 3
        if single:
            images = images[None]
        if to_255:
            images = (images - low) / (high - low) * F32(255)
        lo = np.min(images, axis=(1, 2), keepdims=True)
        hi = np.max(images, axis=(1, 2), keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = F32(255) / (hi - lo)
            out = np.clip(images * scale + (-lo * scale), F32(0), F32(255))
        if to_255:
            out = out / F32(255) * (high - low) + low
        out = out[0] if single else out
        return np.where(np.isnan(out), _float_input(original), out)

    return run
