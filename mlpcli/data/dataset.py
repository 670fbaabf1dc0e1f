"""The in-memory dataset every source produces and every feature extractor consumes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Dataset:
    """Images with integer labels.

    images: (N, H, W, C) uint8, C = 1 (gray) or 3 (RGB)
    labels: (N,) int64, each in [0, len(classes))
    classes: class names, index = label
    """

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> Dataset:
        """The samples at `index` (an integer array), same classes."""
        return Dataset(self.images[index], self.labels[index], self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])
