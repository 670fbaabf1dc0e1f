"""The feature pipeline: images read chunk by chunk, turned into features by the extractors (concatenated),
written into an on-disk store (mlpcli.features.store), standardized with statistics of the training split.

Extraction streams: a worker process reads a chunk of images (decoding files or generating shapes), extracts
the features of each of their views (the images, and for data.flip / flip_eval / augment their mirror images
and augmented copies: mlpcli.data.augment) and writes them into the store by row range, a block of rows per
view, so at no point are all images or all feature rows of a split in memory. The standardization statistics
are computed from the stored rows in fixed blocks, and the rows standardized in place, so the stored bytes do
not depend on how the work was split between processes or machines.

Everything it learns (extractor state such as a codebook, and the normalization statistics) is named arrays,
so a checkpoint can carry it and `mlp eval` reproduces the features without the training data.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mlpcli.data.augment import Images, View
from mlpcli.data.dataset import Dataset, ImageReader, in_memory
from mlpcli.errors import CheckpointError, DataError
from mlpcli.features.store import MappedRows, Store, StoreRoot, rewrite_blocks
from mlpcli.parallel import ProcessPool, single_threaded_blas
from mlpcli.schema import to_dict

STATS_ROWS = 1024      # rows per block of the statistics and normalization passes (bounds their memory)
TASKS_PER_SPLIT = 16   # a split is cut into at least this many tasks (when chunks allow), to keep the cores even
IMAGES = (Images(),)   # the views of a split without mirror images or copies: the images alone


class FeaturePipeline:
    """images (N, H, W, C) uint8 → features (N, D) in `dtype`; cfg: FeaturesConfig."""

    def __init__(self, cfg, dtype: str = "float32", progress: bool = True) -> None:
        self.cfg = cfg
        self.dtype = np.dtype(dtype)
        self.extractors = [spec.build() for spec in cfg.extractors]
        self.names = [spec.name for spec in cfg.extractors]
        self.progress = progress
        self.cache_hits = 0                   # stores found ready so far
        self.mean: np.ndarray | None = None   # (D,) normalization statistics, set by fit
        self.std: np.ndarray | None = None

    def fit(self, data: Dataset, rng: np.random.Generator, stores: StoreRoot, pool: ProcessPool | None = None,
            views: tuple[View, ...] = IMAGES, state: dict[str, np.ndarray] | None = None) -> Store:
        """Fit the extractors on the training split `data`, and the normalization on the features of its
        `views`; the store of those standardized features: (V·N, D) rows, a block of N rows per view.

        With `state` (a resumed run's), that fitted state is restored instead, and the store of the fit that
        made it is reused when it is still there."""
        key = self._key("fit", data, json.dumps(rng.bit_generator.state, default=str), views)
        store = stores.open(key)
        if state is not None:
            self.load_state(state)
            if store is not None and _digest(store.state()) == _digest(state):
                self.cache_hits += 1
                return store
            return self.store(data, stores, pool, views)
        if store is not None:
            self.cache_hits += 1
            self.load_state(store.state())
            return store
        for extractor in self.extractors:
            extractor.fit(data, rng, self.progress)
        writer, unreadable = self._extract(data, stores, key, pool, views, "features (fit)")
        try:
            if self.cfg.normalize == "standard":
                mean, std = column_stats(MappedRows(writer.rows_path), ~unreadable)
                self.mean, self.std = mean.astype(self.dtype), np.where(std > 1e-8, std, 1.0).astype(self.dtype)
                rewrite_blocks(writer.rows_path, self._normalize, STATS_ROWS)
            return writer.finish(unreadable, self.state())
        except BaseException:
            writer.discard()
            raise

    def store(self, data: Dataset, stores: StoreRoot, pool: ProcessPool | None = None,
              views: tuple[View, ...] = IMAGES) -> Store:
        """The store of the standardized features of a split's `views` with the fitted state, as `fit` gives."""
        key = self._key("transform", data, _digest(self.state()), views)
        store = stores.open(key)
        if store is not None:
            self.cache_hits += 1
            return store
        writer, unreadable = self._extract(data, stores, key, pool, views, "features", normalize=True)
        return writer.finish(unreadable, None)

    def transform(self, images: np.ndarray, views: tuple[View, ...] = IMAGES) -> np.ndarray:
        """Standardized features (V·N, D) of the `views` of images (N, H, W, C) in memory, with the fitted state."""
        rows = np.arange(len(images))
        return self._normalize(np.concatenate([self._features(view(images, rows)) for view in views]))

    def fit_transform(self, images: np.ndarray, rng: np.random.Generator,
                      views: tuple[View, ...] = IMAGES) -> np.ndarray:
        """`fit` on images in memory (N, H, W, C); the standardized features (V·N, D) of their `views`."""
        stores = StoreRoot(None)
        try:
            data = in_memory(images, np.zeros(len(images), np.int64), [""])
            return self.fit(data, rng, stores, views=views).rows(in_memory=True)
        finally:
            stores.close()

    def dims(self, image_shape: tuple[int, ...]) -> list[int]:
        """The output width of each extractor for images of `image_shape` (H, W, C); DataError if one cannot
        take such images."""
        return [extractor.output_dim(image_shape) for extractor in self.extractors]

    def state_spec(self, image_shape: tuple[int, int, int]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Name → (shape, dtype) of every array `state()` holds once fit on images of shape (H, W, C)."""
        spec = {f"extractor{i}.{key}": value
                for i, extractor in enumerate(self.extractors) for key, value in extractor.state_spec(image_shape).items()}
        if self.cfg.normalize == "standard":
            spec["normalize.mean"] = spec["normalize.std"] = ((sum(self.dims(image_shape)),), self.dtype)
        return spec

    def state(self) -> dict[str, np.ndarray]:
        """Fitted state as named arrays: 'extractor{i}.{key}', 'normalize.mean', 'normalize.std'."""
        arrays = {f"extractor{i}.{key}": value
                  for i, extractor in enumerate(self.extractors) for key, value in extractor.state().items()}
        if self.mean is not None:
            arrays["normalize.mean"], arrays["normalize.std"] = self.mean, self.std
        return arrays

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore `state()` output; CheckpointError if something is missing."""
        for i, extractor in enumerate(self.extractors):
            prefix = f"extractor{i}."
            extractor.load_state({k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
        if self.cfg.normalize == "standard":
            missing = [k for k in ("normalize.mean", "normalize.std") if k not in arrays]
            if missing:
                raise CheckpointError(f"feature state lacks {', '.join(missing)}")
            self.mean = arrays["normalize.mean"].astype(self.dtype)
            self.std = arrays["normalize.std"].astype(self.dtype)

    def _extract(self, data: Dataset, stores: StoreRoot, key: str, pool: ProcessPool | None,
                 views: tuple[View, ...], label: str, normalize: bool = False):
        """Write the (raw, or with `normalize` standardized) features of the `views` of `data` into a new store;
        returns the writer and the (V·N,) unreadable mask. A split larger than features.chunk is cut into tasks
        of at most that many images, and at least TASKS_PER_SPLIT of them, for the worker processes."""
        n = len(data)
        dim = sum(self.dims(data.image_shape))
        writer = stores.create(key, len(views) * n, dim, self.dtype,
                               {"split": data.key, "features": self.names, "views": [view.name for view in views]})
        chunk = self.cfg.chunk           # a split of one chunk runs here; a larger one on the worker processes
        step = max(1, n if n <= chunk else min(chunk, -(-n // TASKS_PER_SPLIT)))
        tasks = [Chunk(data.part(slice(start, min(start + step, n))), start, n, views) for start in range(0, n, step)]
        job = ChunkJob(self, writer.rows_path, normalize)
        unreadable = np.zeros(len(views) * n, bool)
        problems: list[str] = []
        try:
            with tqdm(total=n, desc=label, unit="img", disable=None if self.progress else True, leave=False) as bar:
                for task, found in zip(tasks, (pool or ProcessPool(1)).map(job, tasks)):
                    for row, message in sorted(found.items()):
                        unreadable[task.start + row::n] = True      # the image's row in every view
                        problems.append(message)
                    bar.update(len(task))
            _check_readable(data, unreadable[:n], problems)
        except BaseException:
            writer.discard()
            raise
        return writer, unreadable

    def _features(self, images: np.ndarray) -> np.ndarray:
        """Concatenated raw extractor outputs (N, D) in `dtype`; DataError naming the extractor if any is
        not finite (an option that overflows, such as a huge bow.power)."""
        with np.errstate(over="ignore", invalid="ignore"):      # a non-finite result is reported below
            parts = [extractor.transform(images) for extractor in self.extractors]
        for name, part in zip(self.names, parts):
            if not np.isfinite(part).all():
                raise DataError(f"the {name} extractor gave non-finite features (inf or NaN) for "
                                f"{np.count_nonzero(~np.isfinite(part).all(axis=1))} image(s); check its options "
                                f"(features.extractors: {name})")
        return np.concatenate(parts, axis=1).astype(self.dtype, copy=False)

    def _normalize(self, raw: np.ndarray) -> np.ndarray:
        if self.mean is None:
            return raw
        if raw.shape[1] != len(self.mean):
            raise CheckpointError(f"features have {raw.shape[1]} dimensions but the normalization expects "
                                  f"{len(self.mean)}; the images differ in size from the training images")
        raw -= self.mean
        raw /= self.std
        return raw

    def _key(self, kind: str, data: Dataset, extra: str, views: tuple[View, ...]) -> str:
        digest = hashlib.blake2b(digest_size=16)
        versions = [f"{type(extractor).__name__} {extractor.version}" for extractor in self.extractors]
        for part in (kind, data.key, json.dumps(to_dict(self.cfg)), str(self.dtype), *versions, extra,
                     *(view.key for view in views)):
            digest.update(part.encode())
        return digest.hexdigest()


@dataclass
class Chunk:
    """A task: the images of rows start.. of a split of `split` images (a picklable reader of just them), and
    the views whose features the store holds, a block of `split` rows each."""

    reader: ImageReader
    start: int
    split: int
    views: tuple[View, ...]

    def __len__(self) -> int:
        return len(self.reader)


@dataclass
class ChunkJob:
    """Extracts one Chunk into the store file at `rows_path` (in a worker process): {row: problem} back."""

    pipeline: FeaturePipeline
    rows_path: Path
    normalize: bool

    def __call__(self, chunk: Chunk) -> dict[int, str]:
        count = len(chunk)
        images, problems = chunk.reader.read(np.arange(count))
        positions = np.arange(chunk.start, chunk.start + count)
        rows = np.load(self.rows_path, mmap_mode="r+")
        for block, view in enumerate(chunk.views):
            with single_threaded_blas():
                features = self.pipeline._features(view(images, positions))
            if self.normalize:
                self.pipeline._normalize(features)
            offset = block * chunk.split + chunk.start
            rows[offset:offset + count] = features
        rows.flush()
        return problems


def _digest(state: dict[str, np.ndarray]) -> str:
    """A hash of a fitted state's names, dtypes, shapes and values."""
    digest = hashlib.blake2b(digest_size=16)
    for name, value in sorted(state.items()):
        digest.update(f"{name} {value.dtype} {value.shape}".encode())
        digest.update(np.ascontiguousarray(value).data)
    return digest.hexdigest()


def _check_readable(data: Dataset, unreadable: np.ndarray, problems: list[str]) -> None:
    """Warn about skipped images; DataError if a class has none left."""
    if not problems:
        return
    for label, name in enumerate(data.classes):
        members = data.labels == label
        if members.any() and unreadable[members].all():
            raise DataError(f"class '{name}' has no readable image left after skipping {len(problems)} unreadable "
                            f"one(s); first: {problems[0]}")
    warnings.warn(f"skipped {len(problems)} unreadable image(s) (data.on_error=skip); first: {problems[0]}")


def column_stats(X: np.ndarray, rows: np.ndarray | None = None, block: int = STATS_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (D,) float64 of the columns of X (N, D) over the rows where `rows` (N,)
    is True (all by default), accumulated over blocks of rows: no float64 copy of X is ever made, and a
    memory-mapped X is read a block at a time."""
    total, count = np.zeros(X.shape[1]), 0
    for start in range(0, len(X), block):
        part = _kept(X, rows, start, block)
        total += part.sum(axis=0, dtype=np.float64)
        count += len(part)
    mean = total / max(count, 1)
    squares = np.zeros(X.shape[1])
    for start in range(0, len(X), block):
        deviation = _kept(X, rows, start, block) - mean               # (block, D) float64
        squares += np.einsum("nd,nd->d", deviation, deviation)
    return mean, np.sqrt(squares / max(count, 1))


def _kept(X: np.ndarray, rows: np.ndarray | None, start: int, block: int) -> np.ndarray:
    part = np.asarray(X[start:start + block])
    return part if rows is None else part[rows[start:start + block]]
