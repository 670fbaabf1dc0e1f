"""Bag of visual words: a k-means codebook of normalized, whitened patches, and pooled patch codes.

The single-layer pipeline of Coates & Ng (2011), "An Analysis of Single-Layer Networks in
Unsupervised Feature Learning":

  fit        sample random `patch`×`patch` patches (all channels) from the training images; normalize
             each (subtract its mean, divide by sqrt(variance + eps_norm), pixels on 0..255); ZCA-whiten
             them (optional); cluster them into `words` centroids with k-means, seeded near the mean.
  transform  take the dense patches of each image every `stride` pixels, normalize and whiten them
             alike, code each patch x from its distances z (Euclidean) to the centroids — "hard": one-hot
             nearest centroid; "triangle": f_k = max(0, mean(z) − z_k) — or, "soft-threshold" (Coates &
             Ng 2011, "The Importance of Encoding Versus Training with Sparse Coding and Vector
             Quantization"), from its projections on the centroids scaled to unit length d_k:
             f = [max(0, d_k·x − α), max(0, −d_k·x − α)] for every k (both signs, "polarity splitting");
             then sum the codes over each cell of a `pool`×`pool` grid of patch positions; optionally
             raise these sums to a `power` (0.5: the square-root "power normalization" of Perronnin et
             al. 2010).

Patches are vectors in (row, column, channel) order; features are (N, pool² · K), cells in row-major
order, each holding K = `words` values (soft-threshold: 2 · `words`, the positive parts, then the negative).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tqdm import tqdm

from mlpcli.data.dataset import Dataset
from mlpcli.errors import CheckpointError, ConfigError, DataError
from mlpcli.features.base import Extractor
from mlpcli.features.kmeans import BLOCK_ROWS, INIT_POINTS_PER_CLUSTER, augment_centroids, augment_points, kmeans
from mlpcli.limits import MAX_SIDE
from mlpcli.parallel import cores, single_threaded_blas
from mlpcli.schema import option

PATCH_BLOCK = 2000   # images read at a time while sampling the training patches


@dataclass
class BowConfig:
    patch: int = option(6, "side of the square patches, in pixels", min=1, max=256)
    stride: int = option(1, "step between the dense patches coded in each image, in pixels", min=1, max=MAX_SIDE)
    words: int = option(1600, "codebook size: the number of k-means centroids", min=1, max=100_000)
    encoding: str = option("triangle", "hard: count the nearest word; triangle: max(0, mean(z) - z_k) of the "
                           "distances z to the words (Coates, Lee & Ng 2011); soft-threshold: max(0, d_k·x - alpha) "
                           "and max(0, -d_k·x - alpha) of the projections on the unit-length words d_k (Coates & "
                           "Ng 2011; twice the features)", choices=["hard", "triangle", "soft-threshold"])
    alpha: float = option(0.25, "soft-threshold: the threshold α subtracted from the projections (Coates & Ng's "
                          "0.25 on whitened patches)", min=0.0)
    pool: int = option(2, "sum the codes over each cell of a pool x pool grid over the image (1: whole image)",
                       min=1, max=256)
    whiten: bool = option(True, "ZCA-whiten the normalized patches")
    patches: int = option(100_000, "random training patches the codebook is learned from", min=1, max=100_000_000)
    eps_norm: float = option(10.0, "added to each patch's variance before dividing by its square root "
                             "(pixels 0-255); must be positive", min=0.0)
    eps_zca: float = option(0.1, "added to the eigenvalues of the patch covariance when whitening; must be "
                            "positive; larger damps the low-variance (finest) patch directions", min=0.0)
    iterations: int = option(50, "at most this many k-means (Lloyd) iterations", min=1, max=10_000)
    power: float = option(1.0, "raise the pooled codes to this power: 0.5 (square root) damps the words that "
                          "occur everywhere against the rare ones", min=0.0)
    init: str = option("near-mean", "k-means start: near-mean (Coates & Ng's draws around the mean patch) "
                       "or k-means++", choices=["near-mean", "k-means++"])

    def __post_init__(self) -> None:
        reasons = {"eps_norm": "a flat patch has zero variance",
                   "eps_zca": "normalized patches have a singular covariance"}
        for key, reason in reasons.items():
            if getattr(self, key) <= 0:
                raise ConfigError(f"bow.{key}: must be positive, got {getattr(self, key)!r}: {reason} "
                                  f"(the default is {getattr(BowConfig, key)})")
        if self.patches < self.words:
            raise ConfigError(f"bow.patches: {self.patches} patches cannot make {self.words} words; "
                              f"sample at least bow.words patches")


class BagOfWords(Extractor):
    """Pooled patch codes: (N, H, W, C) uint8 -> (N, pool² · K) float32, K = words (soft-threshold: 2 · words)."""

    Config = BowConfig
    version = 2   # 2: near-mean k-means start

    def __init__(self, cfg: BowConfig) -> None:
        super().__init__(cfg)
        self.codebook: np.ndarray | None = None   # (words, d) float32, d = patch² · C
        self.zca: np.ndarray | None = None        # (d, d) whitening matrix
        self.zca_mean: np.ndarray | None = None   # (d,) mean patch, subtracted before whitening

    def fit(self, data: Dataset, rng: np.random.Generator, progress: bool = False) -> None:
        """Learn the whitening and the codebook from `patches` random patches of the training images."""
        cfg = self.cfg
        _grid(data.image_shape, cfg)
        X = normalize_patches(random_patches(data, cfg.patches, cfg.patch, rng, progress), cfg.eps_norm)
        if cfg.whiten:
            with single_threaded_blas():
                self.zca_mean, self.zca = zca_whitening(X, cfg.eps_zca)
                X = (X - self.zca_mean) @ self.zca
        # Seeds near the mean, as Coates & Ng do: k-means++ favours outlying patches (a fifth of the words
        # ended with < 5 of 100,000 patches), and logistic regression on its codes scored 68.4% instead
        # of 72.0% (CIFAR-10, 45,000 training images, 5,000 validation images).
        self.codebook = kmeans(X, cfg.words, rng, init=cfg.init, max_iter=cfg.iterations, progress=progress).centroids

    def transform(self, images: np.ndarray) -> np.ndarray:
        if self.codebook is None:
            raise RuntimeError("BagOfWords.transform before fit or load_state")
        cfg = self.cfg
        _check_images(images)
        rows, cols = _grid(images.shape[1:], cfg)
        d = cfg.patch ** 2 * images.shape[3]
        if self.codebook.shape[1] != d:
            raise DataError(f"bow: the codebook was learned on {self.codebook.shape[1] // cfg.patch ** 2}-channel "
                            f"images, these have {images.shape[3]}; convert them with data.mode")
        coder = _Coder(self, rows, cols)
        out = np.empty((len(images), cfg.pool ** 2 * coder.codes), np.float32)
        # One image per matrix product: its codes then never depend on the batch it came in.
        for i in range(len(images)):
            out[i] = coder.code(images[i:i + 1])
        if cfg.power != 1:
            np.power(np.maximum(out, 0, out=out), cfg.power, out=out)   # rounding can leave -1e-7 for a 0
        return out

    def output_dim(self, image_shape: tuple[int, int, int]) -> int:
        _grid(image_shape, self.cfg)
        return self.cfg.pool ** 2 * codes_per_cell(self.cfg)

    def transform_bytes(self, image_shape: tuple[int, int, int], images: int) -> int:
        cfg = self.cfg
        rows, cols = _grid(image_shape, cfg)
        d = cfg.patch ** 2 * image_shape[2]
        per_image = rows * cols * (4 * (3 * d + 2) + 8 * codes_per_cell(cfg) + 32)    # patches, whitened, augmented; codes
        coder = 4 * (d + 2) * cfg.words + 4 * d * d                          # the augmented codebook, whitening
        return per_image + coder + 4 * images * self.output_dim(image_shape)

    def fit_bytes(self, image_shape: tuple[int, int, int]) -> int:
        cfg = self.cfg
        d = cfg.patch ** 2 * image_shape[2]
        block = PATCH_BLOCK * image_shape[0] * image_shape[1] * image_shape[2]    # the images read at a time
        patches = 16 * cfg.patches * d + 32 * cfg.patches     # patches and whitened, augmented, float64 copies; labels
        seeds = 4 * min(cfg.patches, INIT_POINTS_PER_CLUSTER * cfg.words) * d + 24 * cfg.words * d
        distances = 8 * cores() * min(BLOCK_ROWS, cfg.patches) * cfg.words
        return block + patches + seeds + distances + 40 * d * d

    def state_spec(self, image_shape: tuple[int, int, int]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        d = self.cfg.patch ** 2 * image_shape[2]
        spec = {"codebook": ((self.cfg.words, d), np.dtype(np.float32))}
        if self.cfg.whiten:
            spec |= {"zca": ((d, d), np.dtype(np.float32)), "zca_mean": ((d,), np.dtype(np.float32))}
        return spec

    def state(self) -> dict[str, np.ndarray]:
        arrays = {"codebook": self.codebook}
        if self.cfg.whiten:
            arrays |= {"zca": self.zca, "zca_mean": self.zca_mean}
        return arrays

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        cfg = self.cfg
        expected = {"codebook", "zca", "zca_mean"} if cfg.whiten else {"codebook"}
        if set(state) != expected:
            raise CheckpointError(f"bow state has arrays {sorted(state)}, expected {sorted(expected)} "
                                  f"(whiten={cfg.whiten}); the checkpoint does not match this bow config")
        codebook = state["codebook"]
        channels = codebook.shape[1] // cfg.patch ** 2 if codebook.ndim == 2 else 0
        if codebook.shape != (cfg.words, channels * cfg.patch ** 2) or channels not in (1, 3):
            raise CheckpointError(f"bow codebook has shape {codebook.shape}, expected ({cfg.words}, "
                                  f"{cfg.patch ** 2} or {3 * cfg.patch ** 2}) for words={cfg.words}, patch={cfg.patch}")
        d = codebook.shape[1]
        if cfg.whiten and (state["zca"].shape != (d, d) or state["zca_mean"].shape != (d,)):
            raise CheckpointError(f"bow whitening arrays have shapes {state['zca'].shape} and "
                                  f"{state['zca_mean'].shape}, expected ({d}, {d}) and ({d},)")
        self.codebook = codebook.astype(np.float32)
        if cfg.whiten:
            self.zca, self.zca_mean = state["zca"].astype(np.float32), state["zca_mean"].astype(np.float32)


class _Coder:
    """Codes blocks of images with a fitted BagOfWords; thread-safe (read-only state)."""

    def __init__(self, bow: BagOfWords, rows: int, cols: int) -> None:
        cfg = bow.cfg
        self.cfg, self.zca = cfg, bow.zca
        self.zca_bias = bow.zca_mean @ bow.zca if cfg.whiten else None                 # (d,)
        self.words_aug = augment_centroids(bow.codebook)                               # (d + 2, words)
        norms = np.sqrt(np.einsum("kd,kd->k", bow.codebook, bow.codebook) + np.float32(1e-20))
        self.unit_words = (bow.codebook / norms[:, None]).T.copy()                     # (d, words)
        self.codes = codes_per_cell(cfg)
        self.rows, self.cols = rows, cols
        self.row_edges, self.col_edges = _cell_edges(rows, cfg.pool), _cell_edges(cols, cfg.pool)
        cell_row = np.repeat(np.arange(cfg.pool), np.diff(self.row_edges))
        cell_col = np.repeat(np.arange(cfg.pool), np.diff(self.col_edges))
        self.cell_of_position = (cell_row[:, None] * cfg.pool + cell_col).ravel()      # (rows · cols,)
        self.inverse_words = np.full(cfg.words, 1 / cfg.words, np.float32)

    def code(self, images: np.ndarray) -> np.ndarray:
        """Pooled codes (B, pool² · codes) of images (B, H, W, C)."""
        cfg = self.cfg
        X = normalize_patches(dense_patches(images, cfg.patch, cfg.stride), cfg.eps_norm)   # (B·P, d)
        if cfg.whiten:
            X = X @ self.zca
            X -= self.zca_bias
        if cfg.encoding == "soft-threshold":
            projections = X @ self.unit_words                                         # (B·P, words)
            alpha = np.float32(cfg.alpha)
            codes = np.concatenate([np.maximum(projections - alpha, 0), np.maximum(-projections - alpha, 0)], axis=1)
            return self._pool(codes.reshape(len(images), self.rows, self.cols, self.codes)).reshape(len(images), -1)
        sqdist = augment_points(X) @ self.words_aug                                   # (B·P, words)
        if cfg.encoding == "hard":
            return self._histograms(sqdist.argmin(axis=1), len(images))
        # Rounding can leave a tiny squared distance below zero; its magnitude is as good an estimate.
        z = np.sqrt(np.abs(sqdist, out=sqdist), out=sqdist)
        mean_z = z @ self.inverse_words                                               # (B·P,)
        # Σ_j max(0, mean_j − z_jk) = Σ_j mean_j − Σ_j min(mean_j, z_jk), summed over the patches j of a cell
        below = np.minimum(z, mean_z[:, None], out=z)
        pooled_mean = self._pool(mean_z.reshape(len(images), self.rows, self.cols, 1))
        return (pooled_mean - self._pool(below.reshape(len(images), self.rows, self.cols, cfg.words))).reshape(
            len(images), -1)

    def _pool(self, values: np.ndarray) -> np.ndarray:
        """Sums over the grid cells: (B, rows, cols, K) -> (B, pool, pool, K)."""
        cells = []
        for r0, r1 in zip(self.row_edges[:-1], self.row_edges[1:]):
            band = values[:, r0:r1].sum(axis=1)                                       # (B, cols, K)
            cells.append([band[:, c0:c1].sum(axis=1) for c0, c1 in zip(self.col_edges[:-1], self.col_edges[1:])])
        return np.array(cells, dtype=np.float32).transpose(2, 0, 1, 3)

    def _histograms(self, nearest: np.ndarray, n: int) -> np.ndarray:
        """Per-cell counts of the nearest words (B·P,) -> (B, pool² · words)."""
        cells, words = self.cfg.pool ** 2, self.cfg.words
        image = np.repeat(np.arange(n), self.rows * self.cols)
        slot = (image * cells + np.tile(self.cell_of_position, n)) * words + nearest
        return np.bincount(slot, minlength=n * cells * words).reshape(n, -1).astype(np.float32)


def random_patches(data: Dataset, count: int, patch: int, rng: np.random.Generator,
                   progress: bool = False) -> np.ndarray:
    """`count` patches at uniformly random images and positions of `data`: (count, patch² · C) float32,
    in the order drawn. Only the images drawn are read, a block at a time; patches of images that cannot be
    read (data.on_error: skip) are left out."""
    n, (height, width, channels) = len(data), data.image_shape
    index = rng.integers(n, size=count)
    y = rng.integers(height - patch + 1, size=count)
    x = rng.integers(width - patch + 1, size=count)
    out = np.empty((count, patch * patch * channels), np.float32)
    readable = np.ones(count, bool)
    wanted = np.unique(index)
    with tqdm(total=len(wanted), desc="bow: patches", unit="img", disable=None if progress else True,
              leave=False) as bar:
        for start in range(0, len(wanted), PATCH_BLOCK):
            block = wanted[start:start + PATCH_BLOCK]
            images, problems = data.read(block)
            mine = np.flatnonzero((index >= block[0]) & (index <= block[-1]))
            where = np.searchsorted(block, index[mine])
            windows = sliding_window_view(images, (patch, patch, channels), axis=(1, 2, 3))[:, :, :, 0]
            out[mine] = windows[where, y[mine], x[mine]].reshape(len(mine), -1)
            readable[mine[np.isin(where, list(problems))]] = False
            bar.update(len(block))
    return out[readable]


def dense_patches(images: np.ndarray, patch: int, stride: int) -> np.ndarray:
    """All patches every `stride` pixels, image by image, row-major: (N · rows · cols, patch² · C) float32."""
    channels = images.shape[3]
    windows = sliding_window_view(images, (patch, patch, channels), axis=(1, 2, 3))[:, ::stride, ::stride, 0]
    return windows.astype(np.float32).reshape(-1, patch * patch * channels)


def normalize_patches(X: np.ndarray, eps: float) -> np.ndarray:
    """Brightness and contrast normalization in place: (x − mean(x)) / sqrt(var(x) + eps) per row of X (M, d)."""
    X -= X.mean(axis=1, keepdims=True)
    X /= np.sqrt(np.einsum("ij,ij->i", X, X)[:, None] / X.shape[1] + eps)
    return X


def zca_whitening(X: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """ZCA whitening of rows X (M, d): the mean (d,) and W = V diag(1/sqrt(λ + eps)) Vᵀ (d, d), from
    the eigendecomposition of the covariance; (X − mean) @ W has covariance V diag(λ/(λ + eps)) Vᵀ."""
    mean = X.mean(axis=0, dtype=np.float64)
    centered = X - mean.astype(np.float32)
    cov = (centered.T @ centered).astype(np.float64) / max(len(X) - 1, 1)
    eigenvalues, V = np.linalg.eigh(cov)
    W = (V / np.sqrt(np.maximum(eigenvalues, 0) + eps)) @ V.T
    return mean.astype(np.float32), W.astype(np.float32)


def _check_images(images: np.ndarray) -> None:
    if images.ndim != 4 or images.dtype != np.uint8:
        raise DataError(f"bow: expected images of shape (N, H, W, C) and dtype uint8, "
                        f"got shape {images.shape} and dtype {images.dtype}")


def codes_per_cell(cfg: BowConfig) -> int:
    """Codes of a patch and of a pooling cell: the words (soft-threshold: twice, positive and negative parts)."""
    return 2 * cfg.words if cfg.encoding == "soft-threshold" else cfg.words


def _grid(image_shape: tuple[int, ...], cfg: BowConfig) -> tuple[int, int]:
    """Rows and columns of the dense patch grid of (H, W, C) images; DataError if they cannot give a pool grid."""
    height, width = image_shape[:2]
    if cfg.patch > min(height, width):
        raise DataError(f"bow: patch={cfg.patch} does not fit in the {height}x{width} images; "
                        f"use a patch of at most {min(height, width)}")
    rows, cols = (height - cfg.patch) // cfg.stride + 1, (width - cfg.patch) // cfg.stride + 1
    if cfg.pool > min(rows, cols):
        raise DataError(f"bow: pool={cfg.pool} is finer than the {rows}x{cols} grid of patch positions "
                        f"(patch={cfg.patch}, stride={cfg.stride}); use a pool of at most {min(rows, cols)}")
    return rows, cols


def _cell_edges(n: int, cells: int) -> np.ndarray:
    """Boundaries of `cells` near-equal runs of n positions, the longer runs first: (cells + 1,)."""
    size, extra = divmod(n, cells)
    return np.array([i * size + min(i, extra) for i in range(cells + 1)])
