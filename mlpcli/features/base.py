"""The extractor interface: images in, one float32 feature row per image out."""

from __future__ import annotations

import numpy as np

from mlpcli.data.dataset import Dataset


class Extractor:
    """A feature extractor; subclasses set `Config` (an options dataclass) and implement `transform`.

    Extractors that learn from data (a codebook, whitening) override `fit`, `state` and `load_state`,
    so that a checkpoint can carry what they learned as plain arrays.
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

    def state(self) -> dict[str, np.ndarray]:
        """What `fit` learned, as named arrays."""
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what `fit` learned from `state()` output."""
