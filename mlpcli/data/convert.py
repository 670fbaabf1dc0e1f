"""From raw decoded data to a clean Dataset: one image size, one color mode, labels checked.

Every source ends in `to_dataset`, so `data.size` and `data.mode` mean the same for all of them.
Resizing uses PIL's bilinear filter (antialiased when shrinking); gray is ITU-R 601 luma computed
exactly as PIL's "L" conversion, so an image converted here or by `read_image` gets the same pixels.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
from PIL import Image

from mlpcli.data.dataset import Dataset, in_memory
from mlpcli.errors import DataError

RESAMPLE = Image.Resampling.BILINEAR
GRAY_PIL_MODES = {"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


def conform(images: np.ndarray, size: list[int] | None, mode: str | None) -> np.ndarray:
    """Images (N, H, W, C) uint8 converted to `mode` ("rgb", "gray" or None: keep) and resized to
    `size` = [height, width] (None: keep); returns (N, height, width, 3 or 1) uint8."""
    if mode == "gray" and images.shape[3] == 3:
        images = luma(images)
    elif mode == "rgb" and images.shape[3] == 1:
        images = np.repeat(images, 3, axis=3)
    if size is None or tuple(size) == images.shape[1:3]:
        return images
    height, width = size
    out = np.empty((len(images), height, width, images.shape[3]), np.uint8)
    for i, image in enumerate(images):
        pil = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
        out[i] = np.asarray(pil.resize((width, height), RESAMPLE)).reshape(height, width, -1)
    return out


def luma(images: np.ndarray) -> np.ndarray:
    """Gray images (N, H, W, 1) uint8 from RGB (N, H, W, 3): PIL's fixed-point 601 luma, bit for bit."""
    rgb = images.astype(np.uint32)
    y = (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16
    return y.astype(np.uint8)[..., None]


def read_image(path: str | Path, size: list[int] | None = None, mode: str | None = None) -> np.ndarray:
    """One image file decoded to (H, W, C) uint8, converted to `mode` and resized to `size` = [height, width].

    With mode None, grayscale files (PIL modes 1, L, I, F, ...) give C = 1 and all others C = 3.
    Raises DataError naming the file if it is missing, not a regular file (a FIFO would block, a device never
    end), not an image, or truncated.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise DataError(f"cannot read image {path}: not a regular file")
    except OSError as err:
        raise DataError(f"cannot read image {path}: {err.strerror}") from None
    try:
        with Image.open(path) as image:
            image.load()
            gray = mode == "gray" or (mode is None and image.mode in GRAY_PIL_MODES)
            image = image.convert("L" if gray else "RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot read image {path}: {err}") from None
    if size is not None and image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), RESAMPLE)
    pixels = np.asarray(image)
    return pixels[:, :, None] if gray else pixels


def to_dataset(images: np.ndarray, labels: np.ndarray, classes: list[str], where: str,
               size: list[int] | None, mode: str | None) -> Dataset:
    """A Dataset from images (N, H, W, C) uint8 and integer labels (N,) read from `where` (a file or
    folder, named in errors), with images conformed to `size` and `mode`.

    Raises DataError if the counts differ, a label is outside [0, len(classes)), or fewer than two
    classes occur (a classifier cannot learn from one).
    """
    labels = np.asarray(labels)
    if len(labels) != len(images):
        raise DataError(f"{where}: {len(images)} images but {len(labels)} labels; the file is damaged or mismatched")
    if labels.dtype.kind not in "iu":
        raise DataError(f"{where}: labels must be integers, got {labels.dtype}")
    labels = labels.astype(np.int64)
    outside = labels[(labels < 0) | (labels >= len(classes))]
    if outside.size:
        raise DataError(f"{where}: label {outside[0]} is out of range for {len(classes)} classes "
                        f"(labels must be in 0..{len(classes) - 1})")
    present = np.unique(labels)
    if len(present) < 2:
        only = f"only class '{classes[present[0]]}'" if len(present) else "no images"
        raise DataError(f"{where}: {only}; a classifier needs images of at least two classes")
    return in_memory(conform(images, size, mode), labels, classes)
