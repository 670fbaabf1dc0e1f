from __future__ import annotations

import numpy as np
import pytest

from mlpcli.config import load_config
from mlpcli.errors import CheckpointError
from mlpcli.features import pixels
from mlpcli.features.pipeline import FeaturePipeline


def images(n: int, seed: int, shape=(6, 5, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def pipeline(overrides=(), cache_dir=None) -> FeaturePipeline:
    cfg = load_config(None, ["features.extractors=[pixels]", *overrides])
    return FeaturePipeline(cfg.features, cfg.model.dtype, cache_dir, progress=False)


def test_standardization_is_fit_on_training_images_only():
    pipe = pipeline()
    train = pipe.fit_transform(images(50, 0), np.random.default_rng(0))
    assert train.dtype == np.float32 and train.shape == (50, 90)
    np.testing.assert_allclose(train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(train.std(axis=0), 1, atol=1e-4)
    other = images(20, 1)
    expected = (other.reshape(20, -1) / 255 - pipe.mean) / pipe.std
    np.testing.assert_allclose(pipe.transform(other), expected, rtol=1e-5, atol=1e-5)


def test_chunks_on_all_cores_give_the_same_features_as_one_pass():
    whole = pipeline(["features.chunk=1000"]).fit_transform(images(30, 0), np.random.default_rng(0))
    chunked = pipeline(["features.chunk=7"]).fit_transform(images(30, 0), np.random.default_rng(0))
    np.testing.assert_array_equal(whole, chunked)


def test_mirror_appends_the_features_of_the_mirror_images():
    batch = images(9, 0)
    pipe = pipeline(["features.chunk=4"])
    both = pipe.fit_transform(batch, np.random.default_rng(0), mirror=True)
    assert both.shape == (18, 90)
    np.testing.assert_allclose(both.mean(axis=0), 0, atol=1e-5)       # standardized over images and mirrors
    np.testing.assert_array_equal(both[:9], pipe.transform(batch))
    np.testing.assert_array_equal(both[9:], pipe.transform(np.ascontiguousarray(batch[:, :, ::-1])))
    np.testing.assert_array_equal(pipe.transform(batch, mirror=True), both)


def test_extractors_are_concatenated_in_order():
    pipe = pipeline(["features.extractors=[{pixels: {gray: true}}, {pixels: {}}]", "features.normalize=none"])
    batch = images(4, 0)
    features = pipe.transform(batch)
    assert features.shape == (4, 30 + 90)
    np.testing.assert_allclose(features[:, :30], (batch / 255 @ pixels.LUMA).reshape(4, -1), rtol=1e-6)
    np.testing.assert_allclose(features[:, 30:], batch.reshape(4, -1) / 255, rtol=1e-6)


def test_state_round_trip_reproduces_features():
    fitted = pipeline()
    fitted.fit_transform(images(40, 0), np.random.default_rng(0))
    restored = pipeline()
    restored.load_state(fitted.state())
    np.testing.assert_array_equal(restored.transform(images(5, 2)), fitted.transform(images(5, 2)))


def test_missing_state_is_a_checkpoint_error():
    with pytest.raises(CheckpointError, match="normalize.mean"):
        pipeline().load_state({})


def test_images_of_another_size_are_refused():
    pipe = pipeline()
    pipe.fit_transform(images(10, 0), np.random.default_rng(0))
    with pytest.raises(CheckpointError, match="differ in size"):
        pipe.transform(images(3, 0, shape=(7, 5, 3)))


def test_cache_serves_the_second_extraction(tmp_path, monkeypatch):
    batch = images(30, 0)
    first = pipeline(cache_dir=tmp_path).fit_transform(batch, np.random.default_rng(0))
    assert len(list((tmp_path / "features").glob("*.npz"))) == 1

    def fail(self, images):
        raise AssertionError("extracted again instead of reading the cache")

    monkeypatch.setattr(pixels.Pixels, "transform", fail)
    again = pipeline(cache_dir=tmp_path)
    np.testing.assert_array_equal(again.fit_transform(batch, np.random.default_rng(0)), first)
    assert again.mean is not None


def test_cache_is_keyed_by_the_feature_config(tmp_path):
    batch = images(10, 0)
    plain = pipeline(cache_dir=tmp_path).fit_transform(batch, np.random.default_rng(0))
    gray = pipeline(["features.extractors=[{pixels: {gray: true}}]"], tmp_path).fit_transform(
        batch, np.random.default_rng(0))
    assert plain.shape[1] == 90 and gray.shape[1] == 30
    assert len(list((tmp_path / "features").glob("*.npz"))) == 2


def test_column_stats_in_row_blocks_equal_numpy():
    from mlpcli.features.pipeline import column_stats

    X = (np.random.default_rng(0).standard_normal((1000, 7)) * 3 + 5).astype(np.float32)
    mean, std = column_stats(X, rows=97)
    np.testing.assert_allclose(mean, X.mean(axis=0, dtype=np.float64), rtol=1e-12)
    np.testing.assert_allclose(std, X.std(axis=0, dtype=np.float64), rtol=1e-12)


def test_cache_is_keyed_by_the_extractor_version(tmp_path, monkeypatch):
    batch = images(10, 0)
    pipeline(cache_dir=tmp_path).fit_transform(batch, np.random.default_rng(0))
    monkeypatch.setattr(pixels.Pixels, "version", pixels.Pixels.version + 1)
    again = pipeline(cache_dir=tmp_path)
    again.fit_transform(batch, np.random.default_rng(0))
    assert again.cache_hits == 0
    assert len(list((tmp_path / "features").glob("*.npz"))) == 2
