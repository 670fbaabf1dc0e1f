"""Color histograms: the hue histogram of the CS231n notebooks, and joint RGB or HSV histograms.

Every channel is read on a 0-255 scale (HSV as matplotlib's rgb_to_hsv times 255, as CS231n's
`color_histogram_hsv` does) and cut into `bins` equal bins over [0, 255], the last one closed, as
`np.histogram` does. Each image, or each cell of a grid over it, gets a histogram that sums to 1.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from mlpcli.errors import ConfigError, DataError
from mlpcli.features.base import Extractor
from mlpcli.schema import option

PIXELS_PER_SLICE = 1 << 16  # images are processed in slices of about this many pixels, to bound memory
SLICE_BYTES_PER_PIXEL = 112  # what transform allocates per pixel of a slice, the counts aside (measured: 91)
MAX_JOINT_BINS = 32  # per channel: 32³ = 32768 features per cell already


@dataclass
class ColorHistConfig:
    space: str = option("hue", "hue: histogram of HSV hue (CS231n's color_histogram_hsv); "
                        "rgb, hsv: joint histogram of the three channels", choices=["hue", "rgb", "hsv"])
    bins: int = option(10, "bins per channel: hue gives `bins` features per cell, rgb and hsv bins³", min=1, max=256)
    grid: int = option(1, "one histogram per cell of a grid x grid split of each image (1: the whole image)", min=1,
                       max=1024)

    def __post_init__(self) -> None:
        if self.space != "hue" and self.bins > MAX_JOINT_BINS:
            raise ConfigError(f"color_hist.bins: {self.bins} bins per channel make {self.bins ** 3} features per "
                              f"cell for space {self.space}; use at most {MAX_JOINT_BINS}")


class ColorHist(Extractor):
    """Normalized color histograms: (N, H, W, 3) uint8 -> (N, grid² · K) float32, K = bins or bins³.

    Cells are in row-major order; within a joint histogram the first channel varies slowest.
    Gray images (C = 1) carry no color and are rejected.
    """

    Config = ColorHistConfig

    def output_dim(self, image_shape: tuple[int, int, int]) -> int:
        _check_shape(image_shape, self.cfg.grid)
        return self.cfg.grid ** 2 * self._per_cell()

    def transform_bytes(self, image_shape: tuple[int, int, int], images: int) -> int:
        height, width = image_shape[:2]
        step = max(1, PIXELS_PER_SLICE // (height * width))
        counts = 16 * step * self.output_dim(image_shape)                  # int64 counts, float64 fractions
        return SLICE_BYTES_PER_PIXEL * step * height * width + counts + 4 * images * self.output_dim(image_shape)

    def _per_cell(self) -> int:
        return self.cfg.bins if self.cfg.space == "hue" else self.cfg.bins ** 3

    def transform(self, images: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        n, height, width = _check_images(images, cfg.grid)
        per_cell = self._per_cell()
        cell_of_pixel, cell_sizes = _grid(height, width, cfg.grid)
        out = np.empty((n, cfg.grid ** 2 * per_cell), np.float32)
        step = max(1, PIXELS_PER_SLICE // (height * width))
        for start in range(0, n, step):
            batch = images[start:start + step]
            index = np.zeros(batch.shape[:3], np.intp)                       # (B, H, W) joint bin
            for bins in _channel_bins(batch, cfg.space, cfg.bins):
                index *= cfg.bins
                index += bins
            slot = (np.arange(len(batch))[:, None, None] * cfg.grid ** 2 + cell_of_pixel) * per_cell + index
            counts = np.bincount(slot.ravel(), minlength=len(batch) * cfg.grid ** 2 * per_cell)
            counts = counts.reshape(len(batch), cfg.grid ** 2, per_cell)
            out[start:start + step] = (counts / cell_sizes[:, None]).reshape(len(batch), -1)
        return out


def _check_images(images: np.ndarray, grid: int) -> tuple[int, int, int]:
    if images.ndim == 4 and images.shape[3] == 1:
        _check_shape(images.shape[1:], grid)
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise DataError(f"color_hist: expected RGB images of shape (N, H, W, 3) and dtype uint8, "
                        f"got shape {images.shape} and dtype {images.dtype}")
    _check_shape(images.shape[1:], grid)
    return images.shape[:3]


def _check_shape(image_shape: tuple[int, int, int], grid: int) -> None:
    """DataError unless images of shape (H, W, C) have color and at least `grid` pixels on a side."""
    if image_shape[2] == 1:
        raise DataError("color_hist: the images are grayscale (1 channel) and have no color to count; "
                        "remove color_hist from features for this dataset")
    if grid > min(image_shape[:2]):
        raise DataError(f"color_hist: grid={grid} is finer than the {image_shape[0]}x{image_shape[1]} images; "
                        f"use a grid of at most {min(image_shape[:2])}")


def _channel_bins(images: np.ndarray, space: str, bins: int) -> list[np.ndarray]:
    """Bin index (B, H, W) of each pixel in each counted channel: [hue], or [h, s, v], or [r, g, b]."""
    edges = np.linspace(0, 255, bins + 1)
    if space == "rgb":
        table = _bin(np.arange(256), edges)
        return [table.take(images[..., c]) for c in range(3)]
    hsv = rgb_to_hsv(images)
    return [_bin(channel * 255, edges) for channel in hsv[:1 if space == "hue" else 3]]


def rgb_to_hsv(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue, saturation and value in [0, 1] of uint8 RGB images (..., 3), each (...) float64:
    bit for bit matplotlib's rgb_to_hsv(images / 255), with masks as arithmetic to stay fast."""
    red, green, blue = np.moveaxis(images, -1, 0).copy()                # contiguous planes are faster
    largest = np.maximum(np.maximum(red, green), blue)
    unit = _unit_scale()                                             # v -> v / 255, as images / 255 gives
    value = unit.take(largest)
    delta = value - unit.take(np.minimum(np.minimum(red, green), blue))
    saturation = delta / (value + (value == 0))                      # 0 where value is 0 (delta is 0 too)
    # the largest channel picks the hue sector; on ties blue wins over green over red, as in matplotlib
    is_blue = blue == largest
    is_green = (green == largest) & ~is_blue
    is_red = ~(is_blue | is_green)
    first = blue * is_green + green * is_red + red * is_blue         # sector + (first - second) / delta
    second = red * is_green + blue * is_red + green * is_blue
    has_chroma = delta > 0
    sector = (4.0 * is_blue + 2.0 * is_green) * has_chroma
    hue = sector + (unit.take(first) - unit.take(second)) / (delta + ~has_chroma)
    hue /= 6.0
    hue += hue < 0  # hue % 1.0: hue is in (-1/6, 1), and x + 1 rounds as numpy's remainder does
    return hue, saturation, value


@functools.cache
def _unit_scale() -> np.ndarray:
    """v / 255 for every uint8 value v, a (256,) float64 table."""
    return np.arange(256) / 255


def _bin(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Index of the bin holding each value in [edges[0], edges[-1]]: edges[i] <= value < edges[i+1], the
    last bin closed (as np.histogram). A scaled floor, then corrected by one where rounding misplaced it."""
    last = len(edges) - 2
    bins = np.minimum((values * ((last + 1) / (edges[-1] - edges[0]))).astype(np.intp), last)
    bins -= values < edges.take(bins)
    bins += values >= np.append(edges[1:-1], np.inf).take(bins)
    return bins


@functools.cache
def _grid(height: int, width: int, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell of each pixel (H, W) in a grid x grid split (row-major, cut as np.array_split cuts), and the
    pixels per cell (grid²,)."""
    row = np.concatenate([np.full(len(part), i) for i, part in enumerate(np.array_split(np.arange(height), grid))])
    col = np.concatenate([np.full(len(part), i) for i, part in enumerate(np.array_split(np.arange(width), grid))])
    cell = row[:, None] * grid + col[None, :]
    return cell, np.bincount(cell.ravel(), minlength=grid * grid)
