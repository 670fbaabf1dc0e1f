from __future__ import annotations

import numpy as np
import pytest

from mlpcli.features import kmeans as km
from mlpcli.features.kmeans import assign, augment_points, kmeans, kmeans_plus_plus


def blobs(sizes: list[int], dim: int = 5, spread: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs around centers 20 apart: points (M, dim) float32 and their blob (M,)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((len(sizes), dim)) * 20
    truth = np.repeat(np.arange(len(sizes)), sizes)
    X = centers[truth] + spread * rng.standard_normal((len(truth), dim))
    return X.astype(np.float32), truth


def test_finds_planted_clusters():
    X, truth = blobs([120, 80, 150, 100, 90])
    result = kmeans(X, 5, np.random.default_rng(1))
    labels, _ = assign(augment_points(X), result.centroids)
    # Each found cluster is exactly one planted blob, and its centroid is that blob's mean.
    pairs = set(zip(labels.tolist(), truth.tolist()))
    assert len(pairs) == 5 and len({found for found, _ in pairs}) == 5
    for found, planted in pairs:
        np.testing.assert_allclose(result.centroids[found], X[truth == planted].mean(axis=0), atol=1e-4)
    expected_inertia = sum(((X[truth == b] - X[truth == b].mean(axis=0)) ** 2).sum() for b in range(5))
    assert result.inertia == pytest.approx(expected_inertia, rel=1e-4)
    assert result.centroids.dtype == np.float32 and result.iterations < 50


@pytest.mark.parametrize("seed", range(5))
def test_near_mean_seeding_finds_two_opposite_blobs(seed):
    rng = np.random.default_rng(seed)
    truth = np.repeat([0, 1], [70, 30])
    X = (np.where(truth[:, None] == 0, 10.0, -10.0) * [1, 0, 0] + rng.standard_normal((100, 3)) + 4)
    result = kmeans(X.astype(np.float32), 2, rng, init="near-mean")
    labels, _ = assign(augment_points(X.astype(np.float32)), result.centroids)
    assert len(set(zip(labels.tolist(), truth.tolist()))) == 2 and len(set(labels.tolist())) == 2


def test_is_deterministic_for_a_seed():
    X, _ = blobs([300, 200, 250], spread=8.0)
    first = kmeans(X, 12, np.random.default_rng(7), max_iter=5)
    second = kmeans(X, 12, np.random.default_rng(7), max_iter=5)
    other = kmeans(X, 12, np.random.default_rng(8), max_iter=5)
    np.testing.assert_array_equal(first.centroids, second.centroids)
    assert first.inertia == second.inertia and first.iterations == second.iterations
    assert not np.array_equal(first.centroids, other.centroids)


@pytest.mark.parametrize("seed", range(10))
def test_kmeans_plus_plus_seeds_every_blob_even_tiny_ones(seed):
    X, truth = blobs([2000, 4, 4, 4, 4], spread=0.1)
    seeds = kmeans_plus_plus(X, 5, np.random.default_rng(seed))
    seeded = {int(truth[np.flatnonzero((X == s).all(axis=1))[0]]) for s in seeds}
    assert seeded == {0, 1, 2, 3, 4}   # uniform seeding would land ~5 seeds in the large blob


def test_assign_matches_brute_force_distances():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((5000, 7)).astype(np.float32) * 3   # > BLOCK_ROWS: several blocks in threads
    centroids = rng.standard_normal((9, 7)).astype(np.float32) * 3
    labels, sqdist = assign(augment_points(X), centroids)
    brute = ((X[:, None, :].astype(np.float64) - centroids[None]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(labels, brute.argmin(axis=1))
    np.testing.assert_allclose(sqdist, brute.min(axis=1), rtol=1e-4, atol=1e-4)
    assert (sqdist >= 0).all()


def test_an_empty_cluster_restarts_at_the_farthest_points():
    X = np.array([[0, 0], [1, 0], [10, 0], [0, 7], [2, 2]], np.float32)
    centroids = np.array([[0, 0], [5, 5], [9, 9], [20, 20]], np.float32)
    labels = np.array([0, 0, 0, 0, 0])
    sqdist = (X ** 2).sum(axis=1)
    means = km._cluster_means(X, labels, sqdist, centroids)
    np.testing.assert_allclose(means[0], X.mean(axis=0))
    np.testing.assert_array_equal(means[1:], X[[2, 3, 4]])   # farthest first: 100, 49, 8


def test_duplicate_points_give_finite_centroids():
    X = np.repeat(np.array([[0, 0], [3, 4], [6, 1]], np.float32), 10, axis=0)
    result = kmeans(X, 5, np.random.default_rng(0))
    assert np.isfinite(result.centroids).all() and result.inertia == 0


def test_rejects_more_clusters_than_points_and_unknown_seeding():
    with pytest.raises(ValueError, match="k=4 for 3 points"):
        kmeans(np.zeros((3, 2), np.float32), 4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown k-means init 'forgy'"):
        kmeans(np.zeros((3, 2), np.float32), 2, np.random.default_rng(0), init="forgy")
