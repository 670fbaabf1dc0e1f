"""A trained classifier rebuilt from a checkpoint alone: feature pipeline + network."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlpcli import checkpoint
from mlpcli.data.augment import evaluation_views
from mlpcli.data.dataset import Dataset
from mlpcli.errors import CheckpointError, DataError, MlpError
from mlpcli.features.pipeline import FeaturePipeline
from mlpcli.features.store import StoreRoot
from mlpcli.nn.model import MLP
from mlpcli.parallel import ProcessPool


class Classifier:
    """A trained run's features and network, rebuilt from its checkpoint alone: images in, class scores out.

    `classes` (C,) names the classes, `config` is the run's config, `image_shape` (H, W, C) the images it takes.
    """

    def __init__(self, ckpt: checkpoint.Checkpoint, progress: bool = False) -> None:
        self.checkpoint = ckpt
        self.config = ckpt.config
        self.classes = ckpt.classes
        self.image_shape = tuple(ckpt.image_shape)
        self.pipeline = FeaturePipeline(self.config.features, self.config.model.dtype, progress=progress)
        self.progress = progress
        self.pipeline.load_state(ckpt.features)
        cfg = self.config
        self.model = MLP.from_config(ckpt.input_dim, len(self.classes), cfg.model, cfg.loss, cfg.reg,
                                     np.random.default_rng(0))
        self.model.load_params(ckpt.params)
        self.model.load_buffers(ckpt.buffers)

    @classmethod
    def from_checkpoint(cls, path: str | Path, progress: bool = False) -> Classifier:
        """The classifier saved in `path`: a checkpoint .npz, or a run folder (its best.npz)."""
        return cls(checkpoint.load(path), progress)

    def scores(self, images: np.ndarray, batch: int = 1000) -> np.ndarray:
        """Class scores (N, C) for images (N, H, W, C) uint8 of the training image shape (with data.flip_eval or
        data.shift_eval, the mean over each image's views: its mirror image, its shifted copies)."""
        images = self._images(images)
        views = evaluation_views(self.config, self.image_shape)
        with np.errstate(over="ignore", invalid="ignore"):      # non-finite scores are refused below
            return _finite(batched_scores(self.model, self.pipeline.transform(images, views), batch, len(views)))

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Predicted labels (N,): indices into `classes`."""
        return self.scores(images).argmax(axis=1)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (N, C) of a softmax model; MlpError for a hinge model, whose scores are not
        probabilities (use `scores`)."""
        if self.config.loss.name != "softmax":
            raise MlpError(f"this model was trained with loss.name={self.config.loss.name}, whose class scores are "
                           "not probabilities; use scores() instead")
        return softmax(self.scores(images).astype(np.float64))

    def features(self, images: np.ndarray) -> np.ndarray:
        """The standardized features (N, D) the network sees for images (N, H, W, C) uint8 (the images
        alone: no mirror images)."""
        return self.pipeline.transform(self._images(images))

    def scores_of(self, data: Dataset) -> tuple[np.ndarray, np.ndarray]:
        """(class scores (n, C), readable (N,) bool) of a split read by index, streamed through a feature store
        (the config's cache, or a temporary one) chunk by chunk: n = the images that could be read."""
        if data.image_shape != self.image_shape:
            raise DataError(f"images are {data.image_shape} but this model was trained on {self.image_shape}; "
                            "set data.size/data.mode to match")
        cfg = self.config
        stores = StoreRoot(cfg.cache_dir if cfg.features.cache else None, cfg.cache_max_gb)
        try:
            with ProcessPool() as pool:
                views = evaluation_views(cfg, self.image_shape)
                store = self.pipeline.store(data, stores, pool, views)
                rows, unreadable = store.rows(in_memory=False), store.unreadable()
                with np.errstate(over="ignore", invalid="ignore"):
                    scores = _finite(batched_scores(self.model, rows, views=len(views)))
        finally:
            stores.close()
        readable = np.ones(len(data), bool) if unreadable is None else ~unreadable[:len(data)]
        return scores[readable], readable

    def _images(self, images) -> np.ndarray:
        """`images` as an array (N, H, W, C) uint8 of the training image shape (integers 0..255 converted, as
        from a nested list); DataError naming what is expected otherwise."""
        expected = f"this model takes images (N, {', '.join(map(str, self.image_shape))}) uint8"
        try:
            images = np.asarray(images)
        except (TypeError, ValueError) as err:
            raise DataError(f"images cannot be read as an array ({str(err).rstrip('.')}); {expected}") from None
        if images.ndim != 4:
            one = " (images[None] for one image)" if images.shape == self.image_shape else ""
            raise DataError(f"images have {images.ndim} dimension(s) (shape {images.shape}); {expected}{one}")
        if images.shape[1:] != self.image_shape:
            raise DataError(f"images are {images.shape[1:]} but this model was trained on {self.image_shape}; "
                            "resize or convert them to match")
        if images.dtype != np.uint8 and images.dtype.kind in "iu" and np.array_equal(images.astype(np.uint8), images):
            images = images.astype(np.uint8)        # integers 0..255, as from a nested list
        if images.dtype != np.uint8:
            raise DataError(f"images have dtype {images.dtype}; {expected} (integers 0..255 are converted)")
        return images


def _finite(scores: np.ndarray) -> np.ndarray:
    """`scores` (N, C); CheckpointError if any is nan or infinite: only weights or feature statistics beyond
    what training produces (the images are bytes) can make them so."""
    bad = int(np.count_nonzero(~np.isfinite(scores).all(axis=1)))
    if bad:
        raise CheckpointError(f"the checkpoint's weights or feature statistics give non-finite class scores for "
                              f"{bad} of {len(scores)} images: they are out of range, the checkpoint is damaged")
    return scores


def batched_scores(model: MLP, features: np.ndarray, batch: int = 1000, views: int = 1) -> np.ndarray:
    """model.scores over features (N, D) in batches, as one (N, C) array. With `views` V > 1, features are
    (V·N, D), a block of N rows per view of the same N images (data.flip_eval: the images, then their mirror
    images; data.shift_eval: their shifted copies), and the scores (N, C) are the mean of each image's views'
    scores."""
    parts = [model.scores(features[i:i + batch]).copy() for i in range(0, max(len(features), 1), batch)]
    scores = np.concatenate(parts)
    if views > 1 and len(scores):
        scores = scores.reshape(views, len(scores) // views, -1).sum(axis=0) / views
    return scores


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax probabilities (N, C) of scores (N, C)."""
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
