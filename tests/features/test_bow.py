from __future__ import annotations

import functools

import numpy as np
import pytest
from skimage import data

from mlpcli.errors import CheckpointError, ConfigError, DataError
from mlpcli.data.dataset import in_memory
from mlpcli.features.bow import BagOfWords, BowConfig, normalize_patches, random_patches


@functools.cache
def crops(size: int, count: int, gray: bool = False) -> np.ndarray:
    """`count` seeded random size×size crops of skimage's astronaut photo: (count, size, size, C) uint8."""
    photo = data.astronaut()
    if gray:
        photo = np.round(photo @ [0.299, 0.587, 0.114]).astype(np.uint8)[..., None]
    rng = np.random.default_rng(0)
    y, x = rng.integers(0, 512 - size, (2, count))
    return np.stack([photo[i:i + size, j:j + size] for i, j in zip(y, x)])


def split(images: np.ndarray):
    """A training split of images in memory (labels do not matter to a codebook)."""
    return in_memory(images, np.zeros(len(images), np.int64), ["any"])


def fitted(images: np.ndarray, **options) -> BagOfWords:
    bow = BagOfWords(BowConfig(**{"patches": 400, "words": 6, "iterations": 10, **options}))
    bow.fit(split(images), np.random.default_rng(0))
    return bow


def naive_codes(bow: BagOfWords, images: np.ndarray) -> np.ndarray:
    """The encoding by loops over images, patch positions and words, in float64."""
    cfg = bow.cfg
    codebook = bow.codebook.astype(np.float64)
    features = []
    for image in images.astype(np.float64):
        ys = range(0, image.shape[0] - cfg.patch + 1, cfg.stride)
        xs = range(0, image.shape[1] - cfg.patch + 1, cfg.stride)
        codes = np.zeros((len(ys), len(xs), 2 * cfg.words if cfg.encoding == "soft-threshold" else cfg.words))
        for i, y in enumerate(ys):
            for j, x in enumerate(xs):
                patch = image[y:y + cfg.patch, x:x + cfg.patch].ravel()
                patch = (patch - patch.mean()) / np.sqrt(patch.var() + cfg.eps_norm)
                if cfg.whiten:
                    patch = (patch - bow.zca_mean) @ bow.zca
                z = np.array([np.linalg.norm(patch - word) for word in codebook])
                if cfg.encoding == "hard":
                    codes[i, j, z.argmin()] = 1
                elif cfg.encoding == "triangle":
                    codes[i, j] = np.maximum(0, z.mean() - z)
                else:
                    for k, word in enumerate(codebook):
                        projection = patch @ word / np.linalg.norm(word)
                        codes[i, j, k] = max(0, projection - cfg.alpha)
                        codes[i, j, cfg.words + k] = max(0, -projection - cfg.alpha)
        cells = [cell.sum(axis=(0, 1)) for band in np.array_split(codes, cfg.pool, axis=0)
                 for cell in np.array_split(band, cfg.pool, axis=1)]
        features.append(np.concatenate(cells) ** cfg.power)
    return np.array(features)


@pytest.mark.parametrize("encoding", ["hard", "triangle", "soft-threshold"])
@pytest.mark.parametrize("pool, stride, patch, whiten, gray, power", [
    (1, 1, 4, True, False, 1.0), (2, 1, 4, True, False, 1.0), (2, 3, 5, True, False, 1.0),
    (3, 2, 3, False, False, 1.0), (2, 1, 4, True, True, 1.0), (2, 1, 4, True, False, 0.5)],
    ids=["pool1", "pool2", "stride3", "pool3-stride2-raw", "gray", "sqrt"])
def test_codes_equal_a_loop_over_patches(encoding, pool, stride, patch, whiten, gray, power):
    train, images = crops(16, 20, gray), crops(13, 30, gray)[10:]
    bow = fitted(train, encoding=encoding, pool=pool, stride=stride, patch=patch, whiten=whiten, power=power)
    ours = bow.transform(images)
    width = 2 * 6 if encoding == "soft-threshold" else 6
    assert ours.dtype == np.float32 and ours.shape == (len(images), pool ** 2 * width)
    np.testing.assert_allclose(ours, naive_codes(bow, images), rtol=2e-4, atol=2e-3)


def test_images_are_coded_independently_of_their_batch():
    bow = fitted(crops(16, 20))
    images = crops(12, 200)
    whole = bow.transform(images)
    np.testing.assert_array_equal(np.concatenate([bow.transform(images[:7]), bow.transform(images[7:])]), whole)
    np.testing.assert_array_equal(bow.transform(images[::-1]), whole[::-1])


def test_soft_threshold_codes_of_one_patch_keep_one_sign_of_each_projection_beyond_alpha():
    """Images of one patch each: their codes are that patch's, [max(0, p − α), max(0, −p − α)] for its
    projections p on the unit-length words."""
    images = crops(4, 30)
    zeros = []
    for alpha in (0.0, 0.25, 1.0):
        bow = fitted(crops(16, 20), encoding="soft-threshold", alpha=alpha, patch=4, pool=1)
        codes = bow.transform(images)
        np.testing.assert_allclose(codes, naive_codes(bow, images), rtol=2e-4, atol=2e-3)
        positive, negative = codes[:, :6], codes[:, 6:]
        assert (np.minimum(positive, negative) == 0).all() and (codes >= 0).all()
        zeros.append(np.count_nonzero(codes == 0))
        bow.codebook *= 3            # the words are scaled to unit length: their length does not matter
        np.testing.assert_allclose(bow.transform(images), codes, rtol=1e-4, atol=1e-4)
    assert zeros[0] < zeros[1] < zeros[2]        # a larger threshold leaves more codes at 0


def test_hard_codes_count_every_patch_once():
    bow = fitted(crops(16, 20), encoding="hard", pool=2, stride=2)
    codes = bow.transform(crops(16, 5))
    np.testing.assert_array_equal(codes.sum(axis=1), 36)   # (16 - 6) // 2 + 1 = 6 positions per side


def test_whitened_patches_have_unit_covariance_off_the_mean_direction():
    cfg = BowConfig(patch=3, eps_zca=1e-6)
    X = normalize_patches(random_patches(split(crops(24, 60)), 20000, cfg.patch, np.random.default_rng(1)), cfg.eps_norm)
    bow = BagOfWords(BowConfig(patch=3, words=4, patches=20000, eps_zca=1e-6, iterations=1))
    bow.fit(split(crops(24, 60)), np.random.default_rng(1))
    white = (X - bow.zca_mean).astype(np.float64) @ bow.zca
    d = X.shape[1]
    # Normalized patches have zero mean, so the all-ones direction carries no variance to scale up.
    np.testing.assert_allclose(np.cov(white, rowvar=False), np.eye(d) - 1 / d, atol=2e-2)
    np.testing.assert_allclose(np.cov(X, rowvar=False) @ np.ones(d), 0, atol=1e-3)


def test_fit_is_deterministic_for_a_seed():
    first, second = fitted(crops(16, 20)), fitted(crops(16, 20))
    np.testing.assert_array_equal(first.codebook, second.codebook)
    np.testing.assert_array_equal(first.zca, second.zca)
    other = BagOfWords(BowConfig(patches=400, words=6, iterations=10))
    other.fit(split(crops(16, 20)), np.random.default_rng(1))
    assert not np.array_equal(other.codebook, first.codebook)


@pytest.mark.parametrize("whiten", [True, False])
def test_state_round_trip_gives_identical_codes(whiten):
    bow = fitted(crops(16, 20), whiten=whiten)
    state = bow.state()
    assert all(isinstance(a, np.ndarray) and a.dtype == np.float32 for a in state.values())
    restored = BagOfWords(bow.cfg)
    restored.load_state({name: array.copy() for name, array in state.items()})
    images = crops(16, 8)
    np.testing.assert_array_equal(restored.transform(images), bow.transform(images))


def test_mismatched_state_is_a_checkpoint_error():
    state = fitted(crops(16, 20)).state()
    with pytest.raises(CheckpointError, match="zca_mean"):
        BagOfWords(BowConfig(words=6)).load_state({k: v for k, v in state.items() if k != "zca_mean"})
    with pytest.raises(CheckpointError, match="whiten=False"):
        BagOfWords(BowConfig(words=6, whiten=False)).load_state(state)
    with pytest.raises(CheckpointError, match=r"shape \(6, 108\), expected \(8, 36 or 108\)"):
        BagOfWords(BowConfig(words=8)).load_state(state)
    with pytest.raises(CheckpointError, match="whitening arrays"):
        BagOfWords(BowConfig(words=6)).load_state({**state, "zca": state["zca"][:3]})


def test_bad_options_and_images_are_named():
    with pytest.raises(ConfigError, match="bow.eps_norm: must be positive"):
        BowConfig(eps_norm=0.0)
    with pytest.raises(ConfigError, match="bow.patches"):
        BowConfig(words=50, patches=10)
    with pytest.raises(DataError, match="patch=6 does not fit in the 5x5 images"):
        fitted(crops(5, 4))
    with pytest.raises(DataError, match="pool=4 is finer than the 3x3 grid"):
        fitted(crops(16, 4), pool=4, stride=5)
    with pytest.raises(DataError, match="learned on 3-channel images, these have 1"):
        fitted(crops(16, 20)).transform(crops(16, 2, gray=True))
