"""A folder of images as model input rows, decoded with Pillow (`pip install 'tfless[images]'`).

Each image is decoded, converted and resized the way `keras.utils.load_img(path,
color_mode=..., target_size=..., interpolation=...)` followed by `img_to_array` does it
(same mode conversions, PIL resampling filters, float32 values 0..255), then multiplied by
`scale`. Defaults come from the model's image input: size from its height/width axes,
color mode from its channel count (1 grayscale, 3 rgb, 4 rgba), channels-last unless the
input looks channels-first (C, H, W). Every chunk carries the files' paths as a `path`
column so predictions can be matched to images.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, MissingExtra
from .chunk import Chunk

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
COLOR_MODES = {"grayscale": 1, "rgb": 3, "rgba": 4}
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:
        raise MissingExtra("pillow", "images", "scoring a folder of images") from exc
    return Image


@dataclass(frozen=True)
class ImageLayout:
    """How decoded images become the model's input: size, channels and axis order."""

    height: int
    width: int
    color_mode: str
    channels_first: bool
    scale: float
    interpolation: str


def image_layout(spec: Any, image_size: tuple[int, int] | None = None, scale: float | None = None,
                 color_mode: str | None = None, interpolation: str = "nearest") -> ImageLayout:
    """The layout for one model input spec (shape with the batch axis), with overrides."""
    shape = tuple(spec.shape[1:])
    if len(shape) != 3:
        raise InputError(f"input '{spec.name}' has shape {tuple(spec.shape)}; a folder of images "
                         "needs an image input of shape (height, width, channels)")
    channels_first = shape[0] in (1, 3, 4) and shape[2] not in (1, 3, 4)
    c, h, w = (shape[0], shape[1], shape[2]) if channels_first else (shape[2], shape[0], shape[1])
    if color_mode is None:
        by_channels = {v: k for k, v in COLOR_MODES.items()}
        if c not in by_channels:
            raise InputError(f"input '{spec.name}' has {c} channels; images give 1 (grayscale), "
                             "3 (rgb) or 4 (rgba); pass --color-mode")
        color_mode = by_channels[c]
    if color_mode not in COLOR_MODES:
        raise InputError(f"--color-mode {color_mode!r}: use one of {sorted(COLOR_MODES)}")
    if c is not None and COLOR_MODES[color_mode] != c:
        raise InputError(f"--color-mode {color_mode} gives {COLOR_MODES[color_mode]} channels but "
                         f"input '{spec.name}' of shape {tuple(spec.shape)} takes {c}")
    if image_size is not None:
        if h is not None and w is not None and (h, w) != tuple(image_size):
            raise InputError(f"--image-size {image_size[0]}x{image_size[1]} does not fit input "
                             f"'{spec.name}' of shape {tuple(spec.shape)} ({h}x{w})")
        h, w = image_size
    if h is None or w is None:
        raise InputError(f"input '{spec.name}' of shape {tuple(spec.shape)} has a free image "
                         "size; pass --image-size HEIGHTxWIDTH")
    if interpolation not in INTERPOLATIONS:
        raise InputError(f"--interpolation {interpolation!r}: use one of {list(INTERPOLATIONS)}")
    return ImageLayout(int(h), int(w), color_mode, channels_first,
                       1.0 if scale is None else float(scale), interpolation)


def parse_image_size(text: str) -> tuple[int, int]:
    """'224x224' or '224' (square) -> (height, width)."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError as exc:
        raise InputError(f"--image-size {text!r}: write HEIGHTxWIDTH, e.g. 224x224") from exc
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) != 2 or min(dims) < 1:
        raise InputError(f"--image-size {text!r}: write HEIGHTxWIDTH, e.g. 224x224")
    return dims[0], dims[1]


def parse_scale(text: str) -> float:
    """'1/255', '0.00392' or '1' -> a float."""
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            return float(num) / float(den)
        return float(text)
    except (ValueError, ZeroDivisionError) as exc:
        raise InputError(f"--scale {text!r}: give a number or a fraction such as 1/255") from exc


def load_image(path: Path, layout: ImageLayout) -> np.ndarray:
    """One image as float32 (H, W, C) (or (C, H, W)), like load_img + img_to_array."""
    Image = _pil()
    try:
        with Image.open(path) as img:
            img.load()
            mode = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}[layout.color_mode]
            keep = ("L", "I;16", "I") if mode == "L" else (mode,)
            if img.mode not in keep:
                img = img.convert(mode)
            size = (layout.width, layout.height)
            if img.size != size:
                filt = getattr(Image.Resampling, layout.interpolation.upper())
                img = img.resize(size, filt)
            arr = np.asarray(img, dtype=np.float32)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"{path}: cannot read as an image: {' '.join(str(exc).split())}") from exc
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if layout.scale != 1.0:
        arr = arr * np.float32(layout.scale)
    return np.ascontiguousarray(arr.transpose(2, 0, 1)) if layout.channels_first else arr


def image_chunks(files: Sequence[Path], model: Any, chunk_rows: int, *,
                 image_size: tuple[int, int] | None = None, scale: float | None = None,
                 color_mode: str | None = None, interpolation: str = "nearest",
                 columns: Any = None) -> Iterator[Chunk]:
    """Chunks of decoded images as {input name: (n, ...) array, 'path': paths}."""
    specs = list(model.inputs)
    if len(specs) != 1:
        raise InputError(f"a folder of images feeds a one-input model; this model has "
                         f"{len(specs)} inputs {[s.name for s in specs]}")
    spec = specs[0]
    if columns is not None and columns.spec_text is not None:
        raise InputError("--columns does not apply to a folder of images (the images are the "
                         f"input '{spec.name}')")
    layout = image_layout(spec, image_size, scale, color_mode, interpolation)
    for start in range(0, len(files), chunk_rows):
        part = files[start:start + chunk_rows]
        arrays = np.stack([load_image(f, layout) for f in part])
        paths = np.array([str(f) for f in part])
        where = f"{part[0].parent} images {start}-{start + len(part) - 1}"
        yield Chunk({spec.name: arrays, "path": paths}, where, start, len(part))
