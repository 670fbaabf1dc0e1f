"""The extractor interface: images in, one float32 feature row per image out."""

from __future__ import annotations

import numpy as np

from mlpcli.data.dataset import Dataset


class Extractor:
    """A feature extractor; subclasses set `Config` (an options dataclass) and implement `transform`,
    `output_dim` and `transform_bytes`.

    Extractors that learn from data (a codebook, whitening) override `fit`, `state` and `load_state`,
    so that a checkpoint can carry what they learned as plain arrays, and `state_spec` and `fit_bytes`,
    so that a checkpoint can be checked and a run's memory estimated before anything is computed.
    """

    Config: type
    version = 1   # part of the feature cache key: bump it when the same options start giving other features

    def __init__(self, cfg) -> None:
        self.cfg = cfg

    def fit(self, data: Dataset, rng: np.random.Generator, progress: bool = False) -> None:
        """Learn from the training split `data` (images read by index, mlpcli.data.dataset), reading only
        the images it needs; most extractors have nothing to learn."""

    def transform(self, images: np.ndarray) -> np.ndarray:
        """Features (N, D) float32 for images (N, H, W, C) uint8."""
        raise NotImplementedError

    def output_dim(self, image_shape: tuple[int, int, int]) -> int:
        """D of `transform` for images of shape (H, W, C); DataError if it cannot take such images."""
        raise NotImplementedError

    def transform_bytes(self, image_shape: tuple[int, int, int], images: int) -> int:
        """At most how many bytes `transform` allocates for `images` images of shape (H, W, C), its output
        included (an estimate from the arrays it makes, checked against measurements in the tests)."""
        raise NotImplementedError

    def fit_bytes(self, image_shape: tuple[int, int, int]) -> int:
        """At most how many bytes `fit` allocates for training images of shape (H, W, C), the images aside."""
        return 0

    def state_spec(self, image_shape: tuple[int, int, int]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Name → (shape, dtype) of every array `state()` holds once fit on images of shape (H, W, C)."""
        return {}

    def state(self) -> dict[str, np.ndarray]:
        """What `fit` learned, as named arrays."""
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what `fit` learned from `state()` output."""
