from __future__ import annotations

import functools

import matplotlib.colors
import numpy as np
import pytest
from skimage import data, transform

from mlpcli.errors import ConfigError, DataError
from mlpcli.features import color
from mlpcli.features.color import ColorHist, ColorHistConfig, rgb_to_hsv


@functools.cache
def photos(size: tuple[int, int]) -> np.ndarray:
    """Five skimage photos resized to `size`, (5, H, W, 3) uint8, plus flat gray and saturated patches."""
    loads = (data.astronaut, data.chelsea, data.coffee, data.rocket, data.immunohistochemistry)
    images = np.stack([np.round(transform.resize(load(), size, anti_aliasing=True) * 255).astype(np.uint8)
                       for load in loads])
    images[0, :4, :4] = 128                 # gray: no chroma, hue 0
    images[1, :4, :4] = (255, 0, 0)         # pure red, green, blue: hue exactly 0, 1/3, 2/3
    images[2, :4, :4] = (0, 255, 0)
    images[3, :4, :4] = (0, 0, 255)
    images[4, :4, :4] = (0, 255, 255)       # cyan: two channels tie for the largest
    return images


def color_histogram_hsv(im, nbin=10, xmin=0, xmax=255, normalized=True):
    """The CS231n notebooks' hue histogram (features.py), verbatim in substance."""
    bins = np.linspace(xmin, xmax, nbin + 1)
    hsv = matplotlib.colors.rgb_to_hsv(im / xmax) * xmax
    imhist, bin_edges = np.histogram(hsv[:, :, 0], bins=bins, density=normalized)
    return imhist * np.diff(bin_edges)


def naive_joint(image: np.ndarray, space: str, bins: int, grid: int) -> np.ndarray:
    """Per cell (np.array_split rows and columns), np.histogramdd of the pixels over [0, 255]³ / pixels."""
    values = image.astype(np.float64) if space == "rgb" else matplotlib.colors.rgb_to_hsv(image / 255) * 255
    edges = [np.linspace(0, 255, bins + 1)] * 3
    cells = []
    for band in np.array_split(values, grid, axis=0):
        for cell in np.array_split(band, grid, axis=1):
            counts, _ = np.histogramdd(cell.reshape(-1, 3), bins=edges)
            cells.append(counts.ravel() / (cell.shape[0] * cell.shape[1]))
    return np.concatenate(cells)


@pytest.mark.parametrize("bins", [10, 7, 32])
@pytest.mark.parametrize("size", [(32, 32), (45, 61)])
def test_hue_histogram_equals_cs231n(bins, size):
    images = photos(size)
    ours = ColorHist(ColorHistConfig(space="hue", bins=bins)).transform(images)
    expected = np.stack([color_histogram_hsv(image, nbin=bins) for image in images])
    assert ours.dtype == np.float32 and ours.shape == (len(images), bins)
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("space, bins, grid", [("rgb", 4, 1), ("rgb", 6, 2), ("hsv", 5, 1), ("hsv", 3, 3),
                                               ("rgb", 8, 3)])
def test_joint_histograms_equal_histogramdd_per_cell(space, bins, grid):
    images = photos((45, 61))
    ours = ColorHist(ColorHistConfig(space=space, bins=bins, grid=grid)).transform(images)
    expected = np.stack([naive_joint(image, space, bins, grid) for image in images])
    assert ours.shape == (len(images), grid * grid * bins ** 3)
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-7)


def test_hue_grid_cells_are_histograms_of_their_own_pixels():
    images = photos((32, 32))
    ours = ColorHist(ColorHistConfig(bins=9, grid=2)).transform(images).reshape(len(images), 4, 9)
    for i, image in enumerate(images):
        quarters = [image[:16, :16], image[:16, 16:], image[16:, :16], image[16:, 16:]]
        expected = [color_histogram_hsv(q, nbin=9) for q in quarters]
        np.testing.assert_allclose(ours[i], expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ours.sum(-1), 1, rtol=1e-6)


def test_a_batch_split_into_slices_equals_images_one_by_one(monkeypatch):
    images = photos((32, 32))
    monkeypatch.setattr(color, "PIXELS_PER_SLICE", 2 * 32 * 32)  # slices of 2 images: 5 = 2 + 2 + 1
    extractor = ColorHist(ColorHistConfig(space="hsv", bins=4, grid=2))
    batch = extractor.transform(images)
    one_by_one = np.concatenate([extractor.transform(image[None]) for image in images])
    np.testing.assert_array_equal(batch, one_by_one)


def test_rgb_to_hsv_is_matplotlibs_bit_for_bit():
    rng = np.random.default_rng(0)
    levels = np.arange(0, 256, 5, dtype=np.uint8)  # a lattice with every kind of tie, plus random colors
    lattice = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
    colors = np.concatenate([lattice, rng.integers(0, 256, (100_000, 3), dtype=np.uint8)])
    np.testing.assert_array_equal(np.stack(rgb_to_hsv(colors), axis=-1), matplotlib.colors.rgb_to_hsv(colors / 255))


def test_values_on_bin_edges_fall_as_in_np_histogram():
    edges = np.linspace(0, 255, 8)
    values = np.concatenate([edges, np.nextafter(edges, -1)[1:], np.nextafter(edges, 300)[:-1]])
    counts = np.bincount(color._bin(values, edges), minlength=7)
    np.testing.assert_array_equal(counts, np.histogram(values, bins=edges)[0])


def test_gray_images_are_rejected_with_a_hint():
    with pytest.raises(DataError, match="grayscale .* remove color_hist from features"):
        ColorHist(ColorHistConfig()).transform(np.zeros((2, 8, 8, 1), np.uint8))


def test_a_grid_finer_than_the_image_is_rejected():
    with pytest.raises(DataError, match="grid=9 is finer than the 8x12 images; use a grid of at most 8"):
        ColorHist(ColorHistConfig(grid=9)).transform(np.zeros((2, 8, 12, 3), np.uint8))


def test_joint_histograms_with_too_many_bins_are_refused_up_front():
    ColorHist(ColorHistConfig(space="hue", bins=256))
    with pytest.raises(ConfigError, match="color_hist.bins: 40 bins per channel make 64000 features per cell for "
                                          "space rgb; use at most 32"):
        ColorHist(ColorHistConfig(space="rgb", bins=40))
