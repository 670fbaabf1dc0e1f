"""Histogram of oriented gradients (Dalal & Triggs 2005), computed for a whole batch of images at once.

The output equals `skimage.feature.hog(image, ..., feature_vector=True)` with the same options
(`channel_axis=-1` for color images): the same centered-difference gradients, the same hard binning
of unsigned orientations into a per-cell mean magnitude, the same block normalizations. With
`interpolate`, each gradient votes as in Dalal & Triggs' paper instead: trilinearly, into the two
nearest orientation bins and the four nearest cells (without their Gaussian window over each block).
With `signed`, the bins span 0-360 degrees instead of 0-180 (Felzenszwalb et al.'s contrast-sensitive
orientations): bins i and i + n of 2n signed bins hold what bin i of n unsigned ones holds.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from mlpcli.errors import DataError
from mlpcli.features.base import Extractor
from mlpcli.limits import MAX_SIDE
from mlpcli.schema import option

BLOCK_NORMS = ["L1", "L1-sqrt", "L2", "L2-Hys"]
EPS = 1e-5  # skimage's guard in every block normalization
PIXELS_PER_SLICE = 1 << 16  # images are processed in slices of about this many pixels, to stay in cache
SLICE_BYTES_PER_PIXEL = 100  # what transform allocates per pixel of a slice, plus 20 per channel (measured: at
SLICE_BYTES_PER_CHANNEL = 20  # most 148 per RGB pixel, 112 per gray pixel)


@dataclass
class HogConfig:
    orientations: int = option(9, "orientation bins over 0-180 degrees (unsigned gradients), or 0-360 if signed",
                               min=1, max=180)
    signed: bool = option(False, "signed gradients: bins over 0-360 degrees, telling a dark-to-light edge from "
                          "light-to-dark (false: skimage's 0-180)")
    pixels_per_cell: int = option(8, "side of a square cell, in pixels", min=1, max=MAX_SIDE)
    cells_per_block: int = option(2, "side of a square normalization block, in cells (Dalal-Triggs: 2)", min=1,
                                  max=64)
    block_norm: str = option("L2-Hys", "normalization of each block's concatenated histograms", choices=BLOCK_NORMS)
    transform_sqrt: bool = option(False, "take the square root of intensities first (power-law compression)")
    color: str = option("max_gradient", "color images: per pixel the channel with the strongest gradient, "
                        "or gray first (skimage's rgb2gray, as in the CS231n notebooks)",
                        choices=["max_gradient", "gray"])
    interpolate: bool = option(False, "trilinear votes, as Dalal & Triggs: each gradient split between its two "
                               "nearest orientation bins and four nearest cells (false: skimage's hard votes)")


class Hog(Extractor):
    """HOG descriptor of each image: (N, H, W, C) uint8 -> (N, D) float32, no fitted state.

    D = blocks_down · blocks_across · cells_per_block² · orientations, with
    blocks = cells - cells_per_block + 1 and cells = image side // pixels_per_cell (rest cropped).
    """

    Config = HogConfig

    def transform(self, images: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        n, height, width = _check_images(images)
        cells = (height // cfg.pixels_per_cell, width // cfg.pixels_per_cell)
        out = np.empty((n, self.output_dim(images.shape[1:])), np.float32)
        step = max(1, PIXELS_PER_SLICE // (height * width))
        for start in range(0, n, step):
            histograms = self._cell_histograms(images[start:start + step], cells)
            out[start:start + step] = _normalize_blocks(histograms, cfg.cells_per_block, cfg.block_norm)
        return out

    def output_dim(self, image_shape: tuple[int, int, int]) -> int:
        cfg = self.cfg
        height, width, _ = image_shape
        blocks = [side // cfg.pixels_per_cell - cfg.cells_per_block + 1 for side in (height, width)]
        if min(blocks) < 1:
            side = cfg.pixels_per_cell * cfg.cells_per_block
            raise DataError(f"hog: {height}x{width} images are too small for pixels_per_cell={cfg.pixels_per_cell} "
                            f"and cells_per_block={cfg.cells_per_block} (one block needs {side}x{side} pixels); "
                            "lower those options or enlarge the images with data.size")
        return blocks[0] * blocks[1] * cfg.cells_per_block ** 2 * cfg.orientations

    def transform_bytes(self, image_shape: tuple[int, int, int], images: int) -> int:
        height, width, channels = image_shape
        slice_images = max(1, PIXELS_PER_SLICE // (height * width))
        scratch = (SLICE_BYTES_PER_PIXEL + SLICE_BYTES_PER_CHANNEL * channels) * slice_images * height * width
        blocks = 32 * slice_images * self.output_dim(image_shape)     # block normalization: 4 float64 copies
        return scratch + blocks + 4 * images * self.output_dim(image_shape)

    def _cell_histograms(self, images: np.ndarray, cells: tuple[int, int]) -> np.ndarray:
        """Mean gradient magnitude per cell and orientation bin: (B, H, W, C) uint8 -> (B, rows, cols, bins)."""
        cfg = self.cfg
        planes = _planes(images, cfg.color, cfg.transform_sqrt)                 # (C, B·H·W)
        d_row, d_col = _gradients(planes, images.shape[1:3])
        if planes.dtype == np.int32:  # integer gradients in [-255, 255]: look their bins up in a table
            magnitude2 = d_row * d_row + d_col * d_col  # exact, so it ranks channels as skimage's hypot does
            d_row *= 511
            d_row += d_col
            magnitude2, table_index = _strongest(magnitude2, d_row)
            table_index += 255 * 511 + 255
            magnitude = np.sqrt(magnitude2, dtype=np.float32)
            if cfg.interpolate:
                votes = [table.take(table_index) for table in _integer_gradient_votes(cfg.orientations, cfg.signed)]
            else:
                bins = _integer_gradient_bins(cfg.orientations, cfg.signed).take(table_index)
        else:
            if len(planes) > 1 and not cfg.interpolate:  # skimage ranks channels by hypot: a rounded
                magnitude, d_row, d_col = _strongest(np.hypot(d_row, d_col), d_row, d_col)  # squared sum could
            else:                                                                            # break ties otherwise
                magnitude2, d_row, d_col = _strongest(d_row * d_row + d_col * d_col, d_row, d_col)
                magnitude = np.sqrt(magnitude2)
            if cfg.interpolate:
                votes = _orientation_votes(d_row, d_col, cfg.orientations, cfg.signed)
            else:
                bins = _orientation_bins(d_row, d_col, cfg.orientations, cfg.signed)
        if cfg.interpolate:
            return _interpolated_histograms(magnitude, votes, images.shape[:3], cfg)
        slot = _slot_of_pixel(len(images), images.shape[1:3], cfg.pixels_per_cell, cfg.orientations)
        slot = slot + bins
        size = len(images) * cells[0] * cells[1] * (cfg.orientations + 1)
        sums = np.bincount(slot, magnitude, minlength=size + cfg.orientations + 1)
        sums = sums[:size].reshape(len(images), cells[0], cells[1], cfg.orientations + 1)
        return sums[..., :cfg.orientations] / (cfg.pixels_per_cell ** 2)


def _check_images(images: np.ndarray) -> tuple[int, int, int]:
    if images.ndim != 4 or images.shape[3] not in (1, 3) or images.dtype != np.uint8:
        raise DataError(f"hog: expected images of shape (N, H, W, 1 or 3) and dtype uint8, "
                        f"got shape {images.shape} and dtype {images.dtype}")
    return images.shape[:3]


def _planes(images: np.ndarray, color: str, transform_sqrt: bool) -> np.ndarray:
    """The flattened planes HOG sees, (C, B·H·W): int32 while gradients stay integer, else float64 (as skimage)."""
    if color == "gray" and images.shape[3] == 3:
        from skimage.color import rgb2gray
        planes = rgb2gray(images).reshape(1, -1)
    elif transform_sqrt:
        planes = images.transpose(3, 0, 1, 2).reshape(images.shape[3], -1).astype(np.float64)
    else:
        return images.transpose(3, 0, 1, 2).reshape(images.shape[3], -1).astype(np.int32)
    return np.sqrt(planes) if transform_sqrt else planes


def _gradients(planes: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Centered differences along rows and columns, zero on each image's border: (C, B·H·W) twice."""
    height, width = size
    d_row = np.empty_like(planes)
    d_col = np.empty_like(planes)
    np.subtract(planes[:, 2 * width:], planes[:, :-2 * width], out=d_row[:, width:-width])
    np.subtract(planes[:, 2:], planes[:, :-2], out=d_col[:, 1:-1])
    by_row = d_row.reshape(len(planes), -1, height, width)
    by_row[:, :, 0] = by_row[:, :, -1] = 0
    by_col = d_col.reshape(len(planes), -1, width)
    by_col[:, :, 0] = by_col[:, :, -1] = 0
    return d_row, d_col


def _strongest(strength: np.ndarray, *values: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per pixel, the largest `strength` over channels (axis 0) and `values` of that channel.

    Ties keep the first channel, as skimage's argmax does.
    """
    best, chosen = strength[0], [v[0] for v in values]
    for c in range(1, len(strength)):
        stronger = strength[c] > best
        chosen = [_select(stronger, v[c], w) for v, w in zip(values, chosen)]
        best = np.maximum(best, strength[c])
    return best, *chosen


def _select(mask: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """np.where(mask, a, b), exactly, as arithmetic: np.where slows down several-fold on large random masks."""
    return a * mask + b * ~mask


def _orientation_bins(d_row: np.ndarray, d_col: np.ndarray, orientations: int, signed: bool) -> np.ndarray:
    """Bin of each gradient's orientation, unsigned decided exactly as skimage decides it.

    Bin i holds angles in [span/n · i, span/n · (i+1)) degrees, span 180 (unsigned) or 360 (signed); bin n
    holds the rare angle that float rounding leaves outside every range (skimage then counts it nowhere).
    """
    span = 360.0 if signed else 180.0
    degrees = np.rad2deg(np.arctan2(d_row, d_col))                  # in [-180, 180]
    angle = degrees + (degrees < 0) * span                          # degrees % span, but ten times faster,
    angle -= (angle == span) * span                                 # and rounded the same way
    step = span / orientations
    bins = np.zeros(angle.shape, np.uint8)
    for i in range(1, orientations + 1):
        bins += angle >= step * i
    return bins


@functools.lru_cache(maxsize=8)
def _integer_gradient_bins(orientations: int, signed: bool) -> np.ndarray:
    """Orientation bin of every integer gradient in [-255, 255]², flat, at (d_row + 255) · 511 + d_col + 255."""
    d = np.arange(-255, 256, dtype=np.float64)
    return _orientation_bins(d[:, None], d[None, :], orientations, signed).ravel()


def _orientation_votes(d_row: np.ndarray, d_col: np.ndarray, orientations: int,
                       signed: bool) -> tuple[np.ndarray, np.ndarray]:
    """The bins whose centers surround each gradient's orientation: the lower one, cyclically
    (uint8; the upper one is the next), and the upper one's share, 1 − its distance in bins (float32)."""
    span = 2 * np.pi if signed else np.pi
    angle = np.arctan2(d_row, d_col)
    angle += (angle < 0) * span                         # in [0, span]; span votes as 0 does
    position = angle * (orientations / span) + 0.5      # in bins from the center of the bin before bin 0
    above = position.astype(np.intp)                    # that bin's number + 1, in [0, orientations]
    lower = ((np.arange(orientations + 1) - 1) % orientations).astype(np.uint8)
    return lower.take(above), (position - above).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _integer_gradient_votes(orientations: int, signed: bool) -> tuple[np.ndarray, np.ndarray]:
    """_orientation_votes of every integer gradient in [-255, 255]², flat, as _integer_gradient_bins."""
    d = np.arange(-255, 256, dtype=np.float64)
    return tuple(table.ravel() for table in _orientation_votes(d[:, None], d[None, :], orientations, signed))


def _interpolated_histograms(magnitude: np.ndarray, votes: tuple[np.ndarray, ...], shape: tuple[int, int, int],
                             cfg: HogConfig) -> np.ndarray:
    """Trilinear cell histograms (B, rows, cols, bins) of gradient magnitudes (B·H·W,): each shared between
    two orientation bins by `votes` (lower bin, upper bin's share; _orientation_votes), then between
    the four cells whose centers surround its pixel, in proportion to closeness."""
    n, height, width = shape
    bins, cell = cfg.orientations, cfg.pixels_per_cell
    lower, upper_share = votes
    by_pixel = np.zeros((n, height, width * bins), np.float32)
    flat, first = by_pixel.reshape(-1), np.arange(0, len(magnitude) * bins, bins)
    flat[first + lower] = magnitude * (1 - upper_share)
    flat[first + ((np.arange(bins) + 1) % bins).take(lower)] += magnitude * upper_share   # the next bin, cyclically
    by_rows = np.matmul(_cell_shares(height, cell), by_pixel)                          # (B, rows, W·bins)
    by_cells = np.matmul(_cell_shares(width, cell), by_rows.reshape(-1, width, bins))  # (B·rows, cols, bins)
    return by_cells.reshape(n, height // cell, width // cell, bins) / (cell * cell)


@functools.lru_cache(maxsize=8)
def _cell_shares(length: int, cell: int) -> np.ndarray:
    """Bilinear share of each pixel for each cell along one axis, (cells, length) float32: 1 − the
    distance between the pixel's center and the cell's, in cells, or 0 when that is over one."""
    centers = (np.arange(length) + 0.5) / cell - 0.5
    distance = np.abs(centers[None, :] - np.arange(length // cell)[:, None])
    return np.maximum(0, 1 - distance).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _slot_of_pixel(n: int, size: tuple[int, int], cell: int, orientations: int) -> np.ndarray:
    """First histogram slot of each pixel's cell, (n·H·W,): ((image · rows + row) · cols + col) · (bins + 1).

    Pixels right of or below the last whole cell get the slot after all cells' slots, which is discarded.
    """
    rows, cols = size[0] // cell, size[1] // cell
    row, col = np.arange(size[0]) // cell, np.arange(size[1]) // cell
    slot = (np.arange(n)[:, None, None] * (rows * cols) + row[:, None] * cols + col) * (orientations + 1)
    discarded = n * rows * cols * (orientations + 1)
    slot[:, row >= rows, :] = discarded
    slot[:, :, col >= cols] = discarded
    return slot.ravel()


def _normalize_blocks(histograms: np.ndarray, block: int, method: str) -> np.ndarray:
    """Overlapping block descriptors, (B, rows, cols, bins) -> (B, D) in skimage's order."""
    windows = sliding_window_view(histograms, (block, block), axis=(1, 2))  # (B, r, c, bins, block, block)
    n, r, c = windows.shape[:3]
    blocks = windows.transpose(0, 1, 2, 4, 5, 3).reshape(n, r, c, -1)
    if method == "L1":
        out = blocks / (np.abs(blocks).sum(-1, keepdims=True) + EPS)
    elif method == "L1-sqrt":
        out = np.sqrt(blocks / (np.abs(blocks).sum(-1, keepdims=True) + EPS))
    else:
        out = blocks / np.sqrt((blocks ** 2).sum(-1, keepdims=True) + EPS ** 2)
        if method == "L2-Hys":
            out = np.minimum(out, 0.2)
            out /= np.sqrt((out ** 2).sum(-1, keepdims=True) + EPS ** 2)
    return out.reshape(n, -1)
