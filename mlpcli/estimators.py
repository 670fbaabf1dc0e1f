"""scikit-learn estimators over mlpcli: `MLPClassifier`, the hand-written network trained by `mlp train`'s own
loop, and one transformer per feature extractor (`Pixels`, `ColorHist`, `HOG`, `BagOfWords`), for Pipelines
and grid searches on image arrays:

    model = Pipeline([("hog", HOG()), ("mlp", MLPClassifier(hidden=(256,), random_state=0))])
    model.fit(images, labels).score(test_images, test_labels)      # images (N, H, W, C) uint8

Their parameters mirror the config keys (mlpcli.estimator_base.with_parameters reads defaults, help and
choices from the schema), and random_state=s draws from the same streams as a run with seed=s. scikit-learn
is optional (mlpcli.estimator_base).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from contextlib import contextmanager

import numpy as np
from tqdm import tqdm

from mlpcli import budget
from mlpcli.arrays import InputError, as_images, as_labels, as_rows
from mlpcli.config import Config
from mlpcli.data.dataset import in_memory
from mlpcli.errors import ConfigError, DataError
from mlpcli.estimator_base import (BaseEstimator, ClassifierMixin, Parameter, TransformerMixin, check_fitted,
                                   config_parameter, renamed_error, resolve_seed, with_parameters)
from mlpcli.features import EXTRACTORS
from mlpcli.features.pipeline import column_stats
from mlpcli.nn.model import MLP
from mlpcli.nn.optim import OPTIMIZERS
from mlpcli.parallel import cores, map_row_blocks, split_products
from mlpcli.predictor import batched_scores, softmax
from mlpcli.schema import from_dict
from mlpcli.seeding import generators
from mlpcli.train import Minibatches, Progress, train_epoch

NETWORK_KEYS = {      # MLPClassifier parameter → the config key it mirrors
    "hidden": "model.hidden", "activation": "model.activation", "loss": "loss.name", "reg": "reg",
    "optimizer": "optim.name", "lr": "optim.lr", "epochs": "train.epochs", "batch_size": "train.batch_size",
    "normalize": "features.normalize", "norm": "model.norm", "dropout": "model.dropout",
    "input_dropout": "model.input_dropout", "init": "model.init", "init_std": "model.init_std",
    "leaky_slope": "model.leaky_slope", "elu_alpha": "model.elu_alpha", "maxout_pieces": "model.maxout_pieces",
    "norm_momentum": "model.norm_momentum", "norm_eps": "model.norm_eps", "dtype": "model.dtype",
    "delta": "loss.delta", "momentum": "optim.momentum", "nesterov": "optim.nesterov", "rho": "optim.rho",
    "beta1": "optim.beta1", "beta2": "optim.beta2", "eps": "optim.eps", "schedule": "optim.schedule",
    "decay": "optim.decay", "step_every": "optim.step_every", "min_lr": "optim.min_lr", "threads": "train.threads",
}
RANDOM_STATE = Parameter(None, "seed of the random streams: None (fresh each fit), an int s (the streams of a "
                                "run with seed=s), or a numpy Generator or RandomState to draw a seed from")
VERBOSE = Parameter(False, "report progress on stderr")
IMAGE_PARAMETERS = {
    "image_shape": Parameter(None, "read 2-D input (N, D) as images of this shape: (H, W) or (H, W, C), one entry "
                                   "may be -1 (None: give images (N, H, W[, C]) instead)"),
    "pixel_max": Parameter(None, "the value of a white pixel (None: 255 for integer arrays, 1.0 for floats)"),
    "verbose": VERBOSE,
}
BLOCK = 256   # images per transform task on the worker threads


def _name(estimator) -> str:
    return type(estimator).__name__


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """The hand-written multilayer perceptron as a scikit-learn classifier: feature rows X (N, D) → labels.

    Training runs `mlp train`'s own epoch loop (mlpcli.train.train_epoch): the same initialization, minibatch
    shuffling, dropout masks and learning-rate schedule, so with random_state=s it learns the weights of a run
    with seed=s on the same features. Features are standardized with the training rows' statistics first
    (normalize='standard'), as a run's are. Unlike a run it holds out no validation split and trains all
    `epochs` epochs (no early stopping); `partial_fit` trains one epoch per call.

    Attributes after fit: classes_ (C,), n_features_in_ (D), network_ (mlpcli.nn.model.MLP), mean_ and scale_
    (D,) (None with normalize='none'), n_iter_ (epochs trained), loss_curve_ (training loss per epoch).
    """

    def fit(self, X, y) -> MLPClassifier:
        """Train a new network on feature rows X (N, D) with labels y (N,) for `epochs` epochs."""
        cfg = self._config()
        X = as_rows(X, _name(self), cfg.model.dtype)
        y = as_labels(y, len(X), _name(self))
        classes = np.unique(y)
        if len(classes) < 2:
            raise InputError(f"y has one class only ({_plain(classes[0])!r}); a classifier needs at least two classes")
        self._start(cfg, X, classes)
        self._train(self._batches(X, y), cfg.train.epochs)
        return self

    def partial_fit(self, X, y, classes=None) -> MLPClassifier:
        """Train one epoch on X (N, D), y (N,), going on from the previous call (or fit). The first call builds the
        network from the parameters as they are then, standardizes with this batch's statistics, and needs
        `classes`: every label any call will see. Each call is one epoch of the learning-rate schedule (use
        schedule='constant' for an open-ended stream)."""
        first = not hasattr(self, "network_")
        cfg = self._config() if first else self._cfg
        X = as_rows(X, _name(self), cfg.model.dtype)
        y = as_labels(y, len(X), _name(self))
        if classes is not None:
            classes = np.unique(as_labels(classes, None, _name(self), "classes"))
            if len(classes) < 2:
                raise InputError(f"classes={classes.tolist()} has fewer than two labels; give every class label of "
                                 "all the partial_fit calls, e.g. classes=np.unique(y_all)")
        if first:
            if classes is None:
                raise InputError("classes: the first partial_fit call needs every class label of all the calls, "
                                 "e.g. classes=np.unique(y_all)")
            _check_known(y, classes, "classes")
            self._start(cfg, X, classes)
        else:
            self._check_width(X)
            if classes is not None and not np.array_equal(classes, self.classes_):
                raise InputError(f"classes={classes.tolist()} differs from the first partial_fit call's "
                                 f"{self.classes_.tolist()}; call fit to start over")
            _check_known(y, self.classes_, "classes_")
        self._train(self._batches(X, y), 1)
        return self

    def decision_function(self, X) -> np.ndarray:
        """Class scores (N, C) for feature rows X (N, D), as the trained network gives them (no dropout, batch
        norm's running averages); with two classes (N,): the second class's score minus the first's."""
        scores = self._scores(X)
        return scores[:, 1] - scores[:, 0] if len(self.classes_) == 2 else scores

    def predict(self, X) -> np.ndarray:
        """The class label (N,) of each feature row of X (N, D): the highest-scoring class."""
        best = self._scores(X).argmax(axis=1)
        return self.classes_[best]

    @property
    def predict_proba(self):
        """predict_proba(X): class probabilities (N, C), the softmax of the scores (softmax loss only: a hinge
        model's scores are no probabilities, and it has no predict_proba; use decision_function)."""
        if self.loss != "softmax":
            raise AttributeError(f"predict_proba: a loss={self.loss!r} model gives scores, not probabilities; use "
                                 "decision_function")
        return self._probabilities

    def _probabilities(self, X) -> np.ndarray:
        return softmax(self._scores(X).astype(np.float64))

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "network_")

    def _start(self, cfg: Config, X: np.ndarray, classes: np.ndarray) -> None:
        """A new network, optimizer, shuffling stream and standardization of Config `cfg` for rows X (N, D) and
        `classes` (C,), C ≥ 2."""
        slots = len(OPTIMIZERS[cfg.optim.name].slots)
        rows = max(3 * min(cfg.train.batch_size, len(X)), budget.EVAL_BATCH)   # a training batch's activations
        _within_memory(budget.network(cfg, X.shape[1], len(classes), "the weights, gradients and optimizer state",
                                      copies=3 + slots, rows=rows),
                       "fit", {key: name for name, key in NETWORK_KEYS.items()})
        rngs = generators(cfg.seed)
        self.classes_ = classes
        self.n_features_in_ = X.shape[1]
        self.mean_ = self.scale_ = None
        if cfg.features.normalize == "standard":     # as FeaturePipeline.fit standardizes a run's features
            mean, std = column_stats(X)
            self.mean_ = mean.astype(cfg.model.dtype)
            self.scale_ = np.where(std > 1e-8, std, 1.0).astype(cfg.model.dtype)
        self.network_ = MLP.from_config(X.shape[1], len(classes), cfg.model, cfg.loss, cfg.reg, rngs["init"],
                                        rngs["dropout"])
        self._optimizer = OPTIMIZERS[cfg.optim.name](self.network_.params, cfg.optim)
        self._shuffle = rngs["shuffle"]
        self._progress = Progress(rng_state=self._shuffle.bit_generator.state)
        self._cfg = cfg
        self.n_iter_, self.loss_curve_ = 0, []

    def _config(self) -> Config:
        """The run config the parameters describe (validated), with the seed random_state resolves to."""
        flat = {key: _plain(getattr(self, name)) for name, key in NETWORK_KEYS.items()}
        flat["seed"] = resolve_seed(self.random_state)
        nested: dict = {}
        for key, value in flat.items():
            *sections, name = key.split(".")
            node = nested
            for section in sections:
                node = node.setdefault(section, {})
            node[name] = value
        try:
            return from_dict(Config, nested)
        except ConfigError as err:
            raise renamed_error(err, {key: name for name, key in NETWORK_KEYS.items()}) from None

    def _batches(self, X: np.ndarray, y: np.ndarray) -> Minibatches:
        return Minibatches(self._standardized(X), np.searchsorted(self.classes_, y), None, self._cfg.train.batch_size)

    def _train(self, batches: Minibatches, epochs: int) -> None:
        """`epochs` more epochs over `batches`."""
        cfg = self._cfg
        advice = f"lower the learning rate (lr={cfg.optim.lr:g}) or the batch size (batch_size={cfg.train.batch_size})"
        # as mlp train's steps: products split across train.threads threads (one per core), BLAS single-threaded
        with split_products(cfg.train.threads or os.cpu_count() or 1), np.errstate(over="ignore", invalid="ignore"):
            for _ in range(epochs):
                stats = train_epoch(self.network_, self._optimizer, batches, self._shuffle, self._progress,
                                    cfg.train.epochs, advice)
                self.n_iter_ = self._progress.epoch
                self.loss_curve_.append(stats.loss)
                if self.verbose:
                    print(f"{_name(self)} epoch {self.n_iter_}/{cfg.train.epochs}  loss {stats.loss:.4f}  "
                          f"train {stats.accuracy:.2%}  lr {stats.lr:.3g}", file=sys.stderr)

    def _scores(self, X) -> np.ndarray:
        """Class scores (N, C) of feature rows X (N, D)."""
        check_fitted(self, "network_")
        X = as_rows(X, _name(self), self.network_.dtype)
        self._check_width(X)
        with np.errstate(over="ignore", invalid="ignore"):
            return batched_scores(self.network_, self._standardized(X))

    def _check_width(self, X: np.ndarray) -> None:
        if X.shape[1] != self.n_features_in_:
            raise InputError(f"X has {X.shape[1]} features, but {_name(self)} is expecting {self.n_features_in_} "
                             "features as input.")

    def _standardized(self, X: np.ndarray) -> np.ndarray:
        """X (N, D) in the network's dtype, standardized as a run's feature rows are. Training and scoring only
        read it, so with normalize='none' rows already in that dtype are used as they are, without a copy."""
        if self.mean_ is None:
            return np.asarray(X, dtype=self.network_.dtype)
        rows = np.array(X, dtype=self.network_.dtype)
        rows -= self.mean_
        rows /= self.scale_
        return rows


with_parameters(MLPClassifier, {**{name: config_parameter(Config, key) for name, key in NETWORK_KEYS.items()},
                                "random_state": RANDOM_STATE, "verbose": VERBOSE},
                {name: f"config key {key}" for name, key in NETWORK_KEYS.items()})


def _within_memory(needs: list[budget.Need], task: str, names: dict[str, str]) -> None:
    """budget.require as an InputError naming the estimator's parameters ({config key: parameter}) instead of
    the config keys: refused before anything large is allocated."""
    try:
        budget.require(needs, task)
    except ConfigError as err:
        message = str(err)
        for key, name in names.items():
            message = message.replace(key, name)
        raise InputError(message) from None


def _check_known(y: np.ndarray, classes: np.ndarray, what: str) -> None:
    """InputError unless every label of y (N,) is among `classes` (C,), which `what` names."""
    unknown = ~np.isin(y, classes)
    if unknown.any():
        raise InputError(f"y has label {_plain(y[unknown][0])!r}, which is not among {what} {classes.tolist()}")


def _plain(value):
    """A parameter value as plain config data: tuples as lists, numpy scalars as Python numbers."""
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    return value.item() if isinstance(value, np.generic) else value


class ImageFeatures(TransformerMixin, BaseEstimator):
    """Base of the image transformers: images → feature rows (N, D) float32 of one extractor (`extractor`,
    a name in mlpcli.features.EXTRACTORS), computed in blocks of images on one thread per core.

    Input: images (N, H, W, C) with C = 1 or 3, or gray (N, H, W); or rows (N, D) with image_shape set,
    each row read as one image. Pixel values run from 0 to pixel_max and are mapped onto 0..255 (uint8),
    as every image mlp reads. Attributes after fit: extractor_ (the fitted extractor), image_shape_
    (H, W, C), n_features_in_ (H·W·C).
    """

    extractor: str

    def fit(self, X, y=None) -> ImageFeatures:
        """Check the images X and fit the extractor on them (only `BagOfWords` learns something)."""
        images = as_images(X, self.image_shape, self.pixel_max, _name(self))
        rng = generators(resolve_seed(getattr(self, "random_state", None)))["features"]
        with self._errors_named():
            extractor = EXTRACTORS[self.extractor](from_dict(EXTRACTORS[self.extractor].Config, self._options()))
            width = extractor.output_dim(images.shape[1:])
            _within_memory([budget.Need("fitting", extractor.fit_bytes(images.shape[1:]), ("its parameters",))],
                           f"{_name(self)}.fit", {})
            extractor.fit(in_memory(images, np.zeros(len(images)), [""]), rng, self.verbose)
        self.extractor_, self.image_shape_, self.n_features_in_ = extractor, images.shape[1:], int(images[0].size)
        self._width = width
        return self

    def transform(self, X) -> np.ndarray:
        """Features (N, D) float32 of images X (as fit takes them)."""
        check_fitted(self, "extractor_")
        images = as_images(X, self.image_shape, self.pixel_max, _name(self), width=self.n_features_in_)
        if images.shape[1:] != self.image_shape_:
            raise InputError(f"images have shape {images.shape[1:]}, but {_name(self)} was fitted on "
                             f"{self.image_shape_}")
        scratch = cores() * self.extractor_.transform_bytes(self.image_shape_, min(BLOCK, len(images)))
        _within_memory([budget.Need("the features", 4 * len(images) * self._width, ("the number of images",)),
                        budget.Need("extracting them", scratch, ("its parameters",))], f"{_name(self)}.transform", {})
        out = np.empty((len(images), self._width), np.float32)
        with tqdm(total=len(images), desc=self.extractor, unit="img", disable=not self.verbose, leave=False) as bar, \
                np.errstate(over="ignore", invalid="ignore"):      # a non-finite result is reported below
            def work(rows: slice) -> None:
                out[rows] = self.extractor_.transform(images[rows])
                bar.update(rows.stop - rows.start)

            with self._errors_named():
                map_row_blocks(work, len(images), BLOCK)
        broken = ~np.isfinite(out).all(axis=1)
        if broken.any():
            raise InputError(f"{_name(self)} gave non-finite features (inf or NaN) for {np.count_nonzero(broken)} "
                             "image(s); check its parameters")
        return out

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names of the output features: "<class name><i>", e.g. hog0, hog1, …"""
        check_fitted(self, "extractor_")
        return np.array([f"{_name(self).lower()}{i}" for i in range(self._width)], dtype=object)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "extractor_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True            # pixel values
        tags.input_tags.three_d_array = True            # gray images (N, H, W)
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    def _options(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(EXTRACTORS[self.extractor].Config)}

    @contextmanager
    def _errors_named(self):
        """Within: the extractor's config and data errors become InputErrors that name this estimator's
        parameters (hog.orientations → orientations)."""
        try:
            yield
        except (ConfigError, DataError) as err:
            if isinstance(err, InputError):
                raise
            prefix = f"{self.extractor}."
            raise renamed_error(err, {prefix + name: name for name in self._options()}) from None


def _image_transformer(extractor: str, **extra: Parameter):
    """Class decorator: an ImageFeatures subclass over `extractor`, its options as parameters."""
    def decorate(cls: type) -> type:
        cls.extractor = extractor
        config = EXTRACTORS[extractor].Config
        options = {f.name: config_parameter(config, f.name) for f in dataclasses.fields(config)}
        return with_parameters(cls, {**options, **IMAGE_PARAMETERS, **extra},
                               {name: f"the {extractor} option {name}" for name in options})
    return decorate


@_image_transformer("pixels")
class Pixels(ImageFeatures):
    """Raw pixels as features (the `pixels` extractor): (N, H·W·C) float32 in [0, 1], optionally gray and resized."""


@_image_transformer("color_hist")
class ColorHist(ImageFeatures):
    """Color histograms of RGB images (the `color_hist` extractor): hue (CS231n's), or joint RGB or HSV, per
    cell of a grid, each summing to 1."""


@_image_transformer("hog")
class HOG(ImageFeatures):
    """Histograms of oriented gradients (the `hog` extractor): skimage's HOG, or Dalal & Triggs' interpolated
    votes, computed for a whole batch of images at once (about 20x skimage's speed, image by image)."""


@_image_transformer("bow", random_state=RANDOM_STATE)
class BagOfWords(ImageFeatures):
    """Bag of visual words (the `bow` extractor, Coates & Ng 2011): fit learns a k-means codebook of normalized,
    whitened random patches; transform codes every dense patch and pools the codes over a grid."""
