from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage import data, transform
from skimage.color import rgb2gray
from skimage.feature import hog as skimage_hog

from mlpcli.errors import ConfigError, DataError
from mlpcli.features import hog
from mlpcli.features.hog import Hog, HogConfig
from mlpcli.schema import from_dict

PHOTOS = {"astronaut": data.astronaut, "chelsea": data.chelsea, "coffee": data.coffee, "rocket": data.rocket}


def crops(name: str, height: int, width: int, count: int = 3) -> np.ndarray:
    """`count` crops (count, height, width, 3) uint8 from a photo, at spread-out offsets."""
    photo = PHOTOS[name]()
    rows = np.linspace(0, photo.shape[0] - height, count).astype(int)
    cols = np.linspace(0, photo.shape[1] - width, count).astype(int)
    return np.stack([photo[r:r + height, c:c + width] for r, c in zip(rows, cols)])


@functools.cache
def thumbnails(size: tuple[int, int]) -> np.ndarray:
    """Every photo resized (anti-aliased) to `size`, as (4, H, W, 3) uint8: CIFAR-like images."""
    return np.stack([np.round(transform.resize(load(), size, anti_aliasing=True) * 255).astype(np.uint8)
                     for load in PHOTOS.values()])


def camera_crops(height: int, width: int) -> np.ndarray:
    """Crops (3, height, width, 1) uint8 of the gray `camera` photo."""
    photo = data.camera()
    return np.stack([photo[r:r + height, r:r + width, None] for r in (0, 150, 300)])


def reference(images: np.ndarray, cfg: HogConfig) -> np.ndarray:
    """skimage.feature.hog of each image, with the same options."""
    rows = []
    for image in images:
        channel_axis = -1
        if image.shape[-1] == 1:
            image, channel_axis = image[..., 0], None
        elif cfg.color == "gray":
            image, channel_axis = rgb2gray(image), None
        rows.append(skimage_hog(image, cfg.orientations, (cfg.pixels_per_cell,) * 2, (cfg.cells_per_block,) * 2,
                                cfg.block_norm, transform_sqrt=cfg.transform_sqrt, feature_vector=True,
                                channel_axis=channel_axis))
    return np.stack(rows)


IMAGES = {
    "cifar-like 32x32": lambda: thumbnails((32, 32)),
    "thumbnails 40x56": lambda: thumbnails((40, 56)),
    "astronaut 64x96": lambda: crops("astronaut", 64, 96),
    "chelsea 75x101": lambda: crops("chelsea", 75, 101),
    "coffee 90x70": lambda: crops("coffee", 90, 70),
    "rocket 70x130": lambda: crops("rocket", 70, 130),
    "coffee 48x64": lambda: crops("coffee", 48, 64),
    "camera gray 61x83": lambda: camera_crops(61, 83),
}
CASES = [
    ("cifar-like 32x32", {}),
    ("cifar-like 32x32", {"block_norm": "L1", "transform_sqrt": True}),
    ("thumbnails 40x56", {"pixels_per_cell": 6, "cells_per_block": 3, "orientations": 12}),
    ("astronaut 64x96", {"block_norm": "L1"}),
    ("astronaut 64x96", {"block_norm": "L1-sqrt", "transform_sqrt": True}),
    ("chelsea 75x101", {"block_norm": "L2"}),
    ("chelsea 75x101", {"block_norm": "L2-Hys", "transform_sqrt": True, "orientations": 7}),
    ("coffee 90x70", {"pixels_per_cell": 7, "cells_per_block": 1, "block_norm": "L2"}),
    ("rocket 70x130", {"orientations": 4, "pixels_per_cell": 5}),
    ("rocket 70x130", {"color": "gray"}),
    ("coffee 48x64", {"color": "gray", "transform_sqrt": True, "block_norm": "L1-sqrt"}),
    ("camera gray 61x83", {"block_norm": "L1", "orientations": 8}),
    ("camera gray 61x83", {"transform_sqrt": True, "pixels_per_cell": 10, "cells_per_block": 3}),
]


@pytest.mark.parametrize("images_name, options", CASES, ids=[f"{name} {opts}" for name, opts in CASES])
def test_equals_skimage_hog(images_name, options):
    images = IMAGES[images_name]()
    cfg = HogConfig(**options)
    ours = Hog(cfg).transform(images)
    expected = reference(images, cfg)
    assert ours.dtype == np.float32 and ours.shape == expected.shape
    assert np.abs(ours - expected).max() <= 1e-5


def synthetic_images() -> np.ndarray:
    """Gradients exactly on bin edges: ramps left/right/up/down, 45-degree diagonals, flat and checkered."""
    ramp = np.arange(24, dtype=np.uint8) * 10
    rows, cols = np.indices((24, 24))
    planes = [np.tile(ramp, (24, 1)), np.tile(ramp[::-1], (24, 1)), np.tile(ramp[:, None], (1, 24)),
              np.tile(ramp[::-1, None], (1, 24)), (rows + cols) * 5, (rows - cols + 23) * 5, (cols - rows + 23) * 5,
              np.full((24, 24), 77), ((rows + cols) % 2) * 255]
    return np.stack(planes).astype(np.uint8)[..., None]


@pytest.mark.parametrize("orientations", [2, 4, 8, 9])
@pytest.mark.parametrize("transform_sqrt", [False, True])
def test_equals_skimage_on_gradients_that_lie_on_bin_edges(orientations, transform_sqrt):
    images = synthetic_images()
    cfg = HogConfig(orientations=orientations, pixels_per_cell=6, cells_per_block=2, transform_sqrt=transform_sqrt)
    assert np.abs(Hog(cfg).transform(images) - reference(images, cfg)).max() <= 1e-5


def test_color_uses_the_strongest_channel_not_the_gray_image():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    strongest = Hog(HogConfig(pixels_per_cell=4)).transform(images)
    gray_first = Hog(HogConfig(pixels_per_cell=4, color="gray")).transform(images)
    assert np.abs(strongest - reference(images, HogConfig(pixels_per_cell=4))).max() <= 1e-5
    assert np.abs(strongest - gray_first).max() > 0.05


def test_a_batch_split_into_slices_equals_images_one_by_one(monkeypatch):
    images = np.concatenate([thumbnails((32, 32)), crops("coffee", 32, 32)])
    monkeypatch.setattr(hog, "PIXELS_PER_SLICE", 3 * 32 * 32)  # slices of 3 images: 7 = 3 + 3 + 1
    extractor = Hog(HogConfig())
    batch = extractor.transform(images)
    one_by_one = np.concatenate([extractor.transform(image[None]) for image in images])
    np.testing.assert_array_equal(batch, one_by_one)


def test_feature_length_follows_cells_and_blocks():
    images = np.zeros((2, 50, 70, 3), np.uint8)  # 6 x 8 cells of 8 pixels, 4 x 6 blocks of 3 x 3 cells
    features = Hog(HogConfig(cells_per_block=3, orientations=5)).transform(images)
    assert features.shape == (2, 4 * 6 * 3 * 3 * 5)
    assert not features.any()  # a flat image has no gradient


def test_images_smaller_than_a_block_are_rejected_with_the_needed_size():
    with pytest.raises(DataError, match=r"20x40 images are too small.*24x24"):
        Hog(HogConfig(cells_per_block=3)).transform(np.zeros((1, 20, 40, 3), np.uint8))


@pytest.mark.parametrize("images", [np.zeros((2, 32, 32, 4), np.uint8), np.zeros((2, 32, 32, 3), np.float32),
                                    np.zeros((32, 32, 3), np.uint8)])
def test_other_arrays_than_uint8_gray_or_rgb_batches_are_rejected(images):
    with pytest.raises(DataError, match=r"hog: expected images of shape \(N, H, W, 1 or 3\)"):
        Hog(HogConfig()).transform(images)


def test_options_are_validated_by_name():
    assert from_dict(HogConfig, {"block_norm": "L1", "pixels_per_cell": 6}) == HogConfig(block_norm="L1",
                                                                                            pixels_per_cell=6)
    with pytest.raises(ConfigError, match="hog.block_norm: 'L2Hys' \\(str\\) is not one of .*did you mean 'L2-Hys'"):
        from_dict(HogConfig, {"block_norm": "L2Hys"}, "hog")
    with pytest.raises(ConfigError, match="hog.orientations: 0 is out of range"):
        from_dict(HogConfig, {"orientations": 0}, "hog")


def trilinear_reference(image: np.ndarray, cfg: HogConfig) -> np.ndarray:
    """Dalal & Triggs' trilinear-vote HOG of one image (H, W, C) uint8, pixel by pixel: each gradient
    (of the channel with the largest magnitude) shared between the two orientation bins and the four
    cells whose centers surround it, in proportion to closeness; then skimage's block normalization."""
    planes = np.sqrt(image.astype(np.float64)) if cfg.transform_sqrt else image.astype(np.float64)
    height, width, _ = image.shape
    cell, bins, span = cfg.pixels_per_cell, cfg.orientations, 360 if cfg.signed else 180
    rows, cols = height // cell, width // cell
    histograms = np.zeros((rows, cols, bins))
    for r in range(height):
        for c in range(width):
            d_row = planes[r + 1, c] - planes[r - 1, c] if 0 < r < height - 1 else np.zeros(image.shape[2])
            d_col = planes[r, c + 1] - planes[r, c - 1] if 0 < c < width - 1 else np.zeros(image.shape[2])
            k = int(np.argmax(np.hypot(d_row, d_col)))
            magnitude = np.hypot(d_row[k], d_col[k])
            position = np.degrees(np.arctan2(d_row[k], d_col[k])) % span / (span / bins) - 0.5
            y, x = (r + 0.5) / cell - 0.5, (c + 0.5) / cell - 0.5
            for cell_row in (int(np.floor(y)), int(np.floor(y)) + 1):
                for cell_col in (int(np.floor(x)), int(np.floor(x)) + 1):
                    for b in (int(np.floor(position)), int(np.floor(position)) + 1):
                        share = (1 - abs(y - cell_row)) * (1 - abs(x - cell_col)) * (1 - abs(position - b))
                        if 0 <= cell_row < rows and 0 <= cell_col < cols:
                            histograms[cell_row, cell_col, b % bins] += magnitude * share
    return hog._normalize_blocks(histograms[None] / cell ** 2, cfg.cells_per_block, cfg.block_norm)[0]


@pytest.mark.parametrize("images_name, options", [
    ("cifar-like 32x32", {}),
    ("cifar-like 32x32", {"pixels_per_cell": 4, "transform_sqrt": True, "block_norm": "L1"}),
    ("coffee 48x64", {"pixels_per_cell": 6, "cells_per_block": 3, "orientations": 12}),
    ("camera gray 61x83", {"pixels_per_cell": 10, "orientations": 7, "block_norm": "L2"}),
    ("cifar-like 32x32", {"signed": True, "orientations": 18, "transform_sqrt": True}),
    ("camera gray 61x83", {"signed": True, "orientations": 5, "pixels_per_cell": 10}),
])
def test_interpolated_votes_equal_a_pixel_by_pixel_reference(images_name, options):
    images = IMAGES[images_name]()[:2]
    cfg = HogConfig(interpolate=True, **options)
    expected = np.stack([trilinear_reference(image, cfg) for image in images])
    ours = Hog(cfg).transform(images)
    assert ours.shape == expected.shape
    assert np.abs(ours - expected).max() <= 1e-5
    assert np.abs(ours - Hog(HogConfig(**options)).transform(images)).max() > 0.01   # not the hard votes


def test_an_interpolated_vote_is_shared_by_closeness():
    image = np.zeros((1, 16, 16, 1), np.uint8)
    image[0, 5:] = 100     # a horizontal edge: rows 4 and 5 have gradients of 100 at 90 degrees
    cfg = HogConfig(orientations=4, pixels_per_cell=8, interpolate=True)
    histograms = Hog(cfg)._cell_histograms(image, (2, 2))[0]          # (2 cell rows, 2 cell cols, 4 bins)
    # 90 degrees lies halfway between the centers of bins 1 (67.5) and 2 (112.5). Rows 4 and 5 (centers
    # 4.5 and 5.5) are 0.0625 and 0.1875 cells below the upper cells' centers (3.5): shares 0.9375 and
    # 0.8125 up, 0.0625 and 0.1875 down. Across, the 16 columns give the two cells 14 shares (each of the
    # four outermost columns on either side loses its share to a cell off the grid): 7 each.
    upper, lower = 100 * 0.5 * (0.9375 + 0.8125) * 7 / 64, 100 * 0.5 * (0.0625 + 0.1875) * 7 / 64
    expected = np.zeros((2, 2, 4))
    expected[0, :, 1:3], expected[1, :, 1:3] = upper, lower
    np.testing.assert_allclose(histograms, expected, rtol=1e-6)


@pytest.mark.parametrize("interpolate", [False, True])
@pytest.mark.parametrize("images_name", ["cifar-like 32x32", "camera gray 61x83"])
@given(orientations=st.integers(1, 12), pixels_per_cell=st.integers(3, 10), transform_sqrt=st.booleans())
@settings(max_examples=15, deadline=None)
def test_signed_bins_folded_in_half_are_the_unsigned_bins(interpolate, images_name, orientations, pixels_per_cell,
                                                          transform_sqrt):
    # Signed bin i and bin i + n of 2n bins over 0-360 degrees cover the angles that unsigned bin i of n
    # over 0-180 covers: a gradient and its opposite.
    images = IMAGES[images_name]()[:2]
    options = {"pixels_per_cell": pixels_per_cell, "transform_sqrt": transform_sqrt, "interpolate": interpolate}
    cells = (images.shape[1] // pixels_per_cell, images.shape[2] // pixels_per_cell)
    signed = Hog(HogConfig(orientations=2 * orientations, signed=True, **options))._cell_histograms(images, cells)
    unsigned = Hog(HogConfig(orientations=orientations, **options))._cell_histograms(images, cells)
    folded = signed[..., :orientations] + signed[..., orientations:]
    np.testing.assert_allclose(folded, unsigned, rtol=1e-5, atol=1e-4)
    assert np.abs(signed[..., :orientations] - unsigned).max() > 0.1 * unsigned.max()   # a half is not all


def test_a_gradient_and_its_opposite_fall_in_different_signed_bins():
    rows, cols = np.indices((16, 16))
    rising = ((rows + cols) * 5).astype(np.uint8)[None, ..., None]     # brighter down and right: 45 degrees
    falling = 150 - rising                                              # the opposite: 225 degrees
    for interpolate in (False, True):   # 45 and 225 degrees: inside bins 0 and 2 of 4, and their centers
        cfg = HogConfig(orientations=4, signed=True, pixels_per_cell=8, interpolate=interpolate)
        there, back = (Hog(cfg)._cell_histograms(images, (2, 2))[0].sum((0, 1)) for images in (rising, falling))
        assert there.argmax() == 0 and back.argmax() == 2
        np.testing.assert_allclose(there, np.roll(back, 2), rtol=1e-6, atol=1e-4)
