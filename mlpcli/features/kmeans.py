"""k-means in float32: k-means++ seeding, Lloyd iterations, squared distances as one GEMM.

Squared distances come from one matrix product of augmented rows,
[x, 1, ‖x‖²] · [−2c, ‖c‖², 1]ᵀ = ‖x‖² − 2x·c + ‖c‖², in blocks of rows so that memory stays bounded.
The blocks run in one worker thread per core (mlpcli.parallel): both cores then stay busy also in the
elementwise work that follows each product.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from mlpcli.parallel import map_row_blocks, single_threaded_blas

BLOCK_ROWS = 2048  # rows per distance block: a (2048, 1600) float32 block is 13 MB, two fit in L3
INIT_POINTS_PER_CLUSTER = 10  # k-means++ seeds from a random subset of this many points per cluster
NEAR_MEAN_SPREAD = 0.1  # "near-mean" seeds: std of the draws around the mean, in units of the data's std
INITS = ("k-means++", "near-mean")


@dataclass
class KMeans:
    """A k-means result: centroids (k, D) float32, Lloyd iterations run, and the inertia
    (sum of squared distances of the points to their nearest centroid) at the last assignment."""

    centroids: np.ndarray
    iterations: int
    inertia: float


def kmeans(X: np.ndarray, k: int, rng: np.random.Generator, *, init: str = "k-means++", max_iter: int = 50,
           tol: float = 1e-4, progress: bool = False) -> KMeans:
    """Cluster the rows of X (M, D) into k groups.

    Seeds (`init`): "k-means++" on a random subset of min(M, 10·k) rows; or "near-mean", k draws
    from N(mean, (0.1·s)² I) with s² the mean variance of the features, as Coates & Ng's run_kmeans
    draws N(0, 0.1² I), so that the first assignment splits the points by direction from the mean
    (on whitened patches this gives a better codebook, see BowConfig.init). Then Lloyd iterations run
    until the mean squared centroid shift falls to `tol` times the total variance of X, or `max_iter`.
    A cluster that loses all its points restarts at the point farthest from its centroid
    (deterministic: no random draw). `progress` shows the iterations on a terminal.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    if not 1 <= k <= len(X):
        raise ValueError(f"k-means needs 1 <= k <= number of points, got k={k} for {len(X)} points")
    if init not in INITS:
        raise ValueError(f"unknown k-means init {init!r}; use one of {', '.join(INITS)}")
    with single_threaded_blas(), tqdm(total=max_iter, desc=f"k-means ({k} words)", unit="iteration",
                                      disable=None if progress else True, leave=False) as bar:
        return _kmeans(X, k, rng, init, max_iter, tol, bar)


def _kmeans(X: np.ndarray, k: int, rng: np.random.Generator, init: str, max_iter: int, tol: float,
            bar: tqdm) -> KMeans:
    if init == "k-means++":
        subset = rng.choice(len(X), size=min(len(X), INIT_POINTS_PER_CLUSTER * k), replace=False)
        centroids = kmeans_plus_plus(X[np.sort(subset)], k, rng)
    else:
        mean, variance = X.mean(axis=0, dtype=np.float64), X.var(axis=0, dtype=np.float64).mean()
        centroids = (mean + NEAR_MEAN_SPREAD * np.sqrt(variance) * rng.standard_normal((k, X.shape[1])))
        centroids = centroids.astype(np.float32)
    X_aug = augment_points(X)
    threshold = tol * float(X.var(axis=0, dtype=np.float64).sum())
    for iteration in range(1, max_iter + 1):
        labels, sqdist = assign(X_aug, centroids)
        updated = _cluster_means(X, labels, sqdist, centroids)
        shift = float(((updated - centroids) ** 2).sum(axis=1).mean())
        centroids = updated
        bar.update()
        if shift <= threshold:
            break
    return KMeans(centroids, iteration, float(sqdist.sum(dtype=np.float64)))


def kmeans_plus_plus(X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k seeds (k, D) from rows of X (M, D): each next seed drawn with probability ∝ its squared
    distance to the nearest seed so far (Arthur & Vassilvitskii 2007)."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    sq_norms = np.einsum("ij,ij->i", X, X)
    seeds = np.empty((k, X.shape[1]), np.float32)
    seeds[0] = X[rng.integers(len(X))]
    closest = np.maximum(sq_norms - 2 * (X @ seeds[0]) + sq_norms_of(seeds[:1])[0], 0)   # (M,)
    for i in range(1, k):
        total = float(closest.sum(dtype=np.float64))
        if total > 0:
            index = int(np.searchsorted(np.cumsum(closest, dtype=np.float64), rng.random() * total, side="right"))
            index = min(index, len(X) - 1)
        else:  # every point coincides with a seed: any point will do
            index = int(rng.integers(len(X)))
        seeds[i] = X[index]
        np.minimum(closest, np.maximum(sq_norms - 2 * (X @ seeds[i]) + sq_norms_of(seeds[i:i + 1])[0], 0), out=closest)
    return seeds


def assign(X_aug: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of each point: labels (M,) int64 and squared distances (M,) float32.

    X_aug: (M, D + 2) from `augment_points`; centroids: (k, D).
    """
    C_aug = augment_centroids(centroids)
    labels = np.empty(len(X_aug), np.int64)
    sqdist = np.empty(len(X_aug), np.float32)

    def nearest(rows: slice) -> None:
        distances = X_aug[rows] @ C_aug                                          # (B, k)
        labels[rows] = distances.argmin(axis=1)
        sqdist[rows] = np.maximum(np.take_along_axis(distances, labels[rows, None], axis=1)[:, 0], 0)

    map_row_blocks(nearest, len(X_aug), BLOCK_ROWS)
    return labels, sqdist


def augment_points(X: np.ndarray) -> np.ndarray:
    """[X, 1, ‖x‖²]: (M, D) -> (M, D + 2) float32."""
    X_aug = np.empty((len(X), X.shape[1] + 2), np.float32)
    X_aug[:, :-2] = X
    X_aug[:, -2] = 1
    X_aug[:, -1] = np.einsum("ij,ij->i", X, X)
    return X_aug


def augment_centroids(centroids: np.ndarray) -> np.ndarray:
    """[−2C, ‖c‖², 1]ᵀ: (k, D) -> (D + 2, k) float32, so that augment_points(X) @ it = squared distances."""
    k = len(centroids)
    return np.concatenate([-2 * centroids, sq_norms_of(centroids)[:, None], np.ones((k, 1), np.float32)],
                          axis=1).astype(np.float32).T.copy()


def sq_norms_of(rows: np.ndarray) -> np.ndarray:
    """‖r‖² of each row: (M, D) -> (M,)."""
    return np.einsum("ij,ij->i", rows, rows)


def _cluster_means(X: np.ndarray, labels: np.ndarray, sqdist: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Mean of the points of each cluster (k, D); empty clusters move to the farthest points."""
    k = len(centroids)
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    present = sorted_labels[starts]
    counts = np.diff(np.r_[starts, len(labels)])
    means = np.empty_like(centroids)
    means[present] = np.add.reduceat(X[order], starts, axis=0) / counts[:, None]
    empty = np.setdiff1d(np.arange(k), present)
    if len(empty):
        farthest = np.argsort(-sqdist, kind="stable")[:len(empty)]
        means[empty] = X[farthest]
    return means
