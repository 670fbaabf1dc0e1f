"""A trained classifier rebuilt from a checkpoint alone: feature pipeline + network."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlpcli import checkpoint
from mlpcli.errors import DataError
from mlpcli.features.pipeline import FeaturePipeline
from mlpcli.nn.model import MLP


class Classifier:
    def __init__(self, ckpt: checkpoint.Checkpoint, progress: bool = False) -> None:
        self.checkpoint = ckpt
        self.config = ckpt.config
        self.classes = ckpt.classes
        self.image_shape = tuple(ckpt.image_shape)
        self.pipeline = FeaturePipeline(self.config.features, self.config.model.dtype, progress=progress)
        self.pipeline.load_state(ckpt.features)
        cfg = self.config
        self.model = MLP.from_config(ckpt.input_dim, len(self.classes), cfg.model, cfg.loss, cfg.reg,
                                     np.random.default_rng(0))
        self.model.load_params(ckpt.params)

    @classmethod
    def from_checkpoint(cls, path: str | Path, progress: bool = False) -> Classifier:
        return cls(checkpoint.load(path), progress)

    def scores(self, images: np.ndarray, batch: int = 1000) -> np.ndarray:
        """Class scores (N, C) for images (N, H, W, C) uint8 of the training image shape."""
        if tuple(images.shape[1:]) != self.image_shape:
            raise DataError(f"images are {images.shape[1:]} but this model was trained on {self.image_shape}; "
                            "set data.size/data.mode to match")
        return self.scores_of_features(self.pipeline.transform(images), batch)

    def scores_of_features(self, features: np.ndarray, batch: int = 1000) -> np.ndarray:
        """Class scores (N, C) for features (N, D)."""
        return batched_scores(self.model, features, batch)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Predicted labels (N,)."""
        return self.scores(images).argmax(axis=1)


def batched_scores(model: MLP, features: np.ndarray, batch: int = 1000) -> np.ndarray:
    """model.scores over features (N, D) in batches, as one (N, C) array."""
    parts = [model.scores(features[i:i + batch]).copy() for i in range(0, len(features), batch)]
    return np.concatenate(parts) if parts else np.empty((0, 0))


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax probabilities (N, C) of scores (N, C)."""
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
