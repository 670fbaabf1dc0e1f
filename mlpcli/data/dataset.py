"""The dataset every source produces and every feature extractor consumes: images read by index.

A `Dataset` holds its labels but not its images: a reader decodes (or generates, or slices) them when asked,
so choosing splits, a `data.limit` sample or a validation split costs nothing, and the feature pipeline reads a
split chunk by chunk. `reader.part(index)` is a small, picklable reader of just those images, which a worker
process (or a Dask worker) can read on its own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import numpy as np

from mlpcli.errors import DataError, quote
from mlpcli.limits import MAX_CLASSES
from mlpcli.schema import BAD_TEXT

MAX_CLASS_NAME = 255    # characters of a class name


def class_names_problem(names: object) -> str | None:
    """What is wrong with `names` as the classes of a dataset or checkpoint ("is ...", "holds ...", "... names
    a class twice"), or None: a list of 2 to MAX_CLASSES distinct names, each printable text of 1 to
    MAX_CLASS_NAME characters (what a checkpoint's JSON meta and every table can carry)."""
    if not isinstance(names, list) or not 2 <= len(names) <= MAX_CLASSES:
        return f"is {quote(names)}; expected a list of 2 to {MAX_CLASSES:,} class names"
    for name in names:
        if not isinstance(name, str) or not 0 < len(name) <= MAX_CLASS_NAME or BAD_TEXT.search(name):
            return f"holds {quote(name)}; a class name is printable text of 1 to {MAX_CLASS_NAME} characters"
    if len(set(names)) != len(names):
        return f"{quote(names)} names a class twice"
    return None


class ImageReader(Protocol):
    """Images of one source, by their position in it."""

    image_shape: tuple[int, int, int]    # (H, W, C) of every image read

    def __len__(self) -> int:
        """The number of images."""

    def key(self, index: np.ndarray) -> str:
        """Identity of the images at positions `index` (n,) and their conversion, for caches: it looks at
        those images alone, so that a `data.limit` sample of a large folder does not pay for the rest."""

    def read(self, index: np.ndarray) -> tuple[np.ndarray, dict[int, str]]:
        """(images (n, H, W, C) uint8, {row: why it cannot be read}) at positions `index` (n,): an image that
        cannot be read is all zeros and listed (data.on_error: skip), or raises DataError (raise)."""

    def part(self, index: np.ndarray) -> ImageReader:
        """A reader of the images at `index` alone, as positions 0..n-1: small enough to send to a worker."""


@dataclass
class Dataset:
    """A split: images at positions `index` of `reader`, with integer labels.

    index:   (N,) int64, positions in the reader
    labels:  (N,) int64, each in [0, len(classes))
    classes: class names, index = label
    """

    reader: ImageReader
    index: np.ndarray
    labels: np.ndarray
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.reader.image_shape)

    @cached_property
    def key(self) -> str:
        """Identity of this split's images, for caches (asked of the reader once)."""
        return self.reader.key(self.index)

    def subset(self, rows: np.ndarray) -> Dataset:
        """The samples at `rows` (an integer array of positions in this split), same classes."""
        return Dataset(self.reader, self.index[rows], self.labels[rows], self.classes)

    def read(self, rows: slice | np.ndarray = slice(None)) -> tuple[np.ndarray, dict[int, str]]:
        """(images (n, H, W, C) uint8, {row: why it cannot be read}) of this split's samples `rows`."""
        return self.reader.read(self.index[rows])

    def part(self, rows: slice) -> ImageReader:
        """A picklable reader of this split's samples `rows`, as positions 0..n-1."""
        return self.reader.part(self.index[rows])

    @property
    def images(self) -> np.ndarray:
        """All of this split's images (N, H, W, C) uint8, read at once: for small splits (pictures, tests).
        DataError if one cannot be read."""
        images, problems = self.read()
        if problems:
            raise DataError(f"{len(problems)} image(s) of this split cannot be read; first: {next(iter(problems.values()))}")
        return images


class ArrayReader:
    """Images held in memory, (N, H, W, C) uint8: the array formats (CIFAR batches, IDX, npz) and tests."""

    def __init__(self, images: np.ndarray, key: str | None = None) -> None:
        self.images = images
        self.image_shape = tuple(images.shape[1:])
        self.identity = key or _digest_of(images)

    def __len__(self) -> int:
        return len(self.images)

    def key(self, index: np.ndarray) -> str:
        return positions_key(self.identity, index)

    def read(self, index: np.ndarray) -> tuple[np.ndarray, dict[int, str]]:
        return self.images[index], {}

    def part(self, index: np.ndarray) -> ArrayReader:
        return ArrayReader(self.images[index], self.identity)


def in_memory(images: np.ndarray, labels: np.ndarray, classes: list[str]) -> Dataset:
    """A Dataset of images (N, H, W, C) uint8 already in memory, with labels (N,)."""
    return Dataset(ArrayReader(images), np.arange(len(images)), np.asarray(labels, np.int64), list(classes))


def positions_key(identity: str, index: np.ndarray) -> str:
    """A cache key for positions `index` (n,) of a reader whose images are all identified by `identity`."""
    digest = hashlib.blake2b(identity.encode(), digest_size=16)
    digest.update(np.ascontiguousarray(index, dtype=np.int64).data)
    return digest.hexdigest()


def _digest_of(images: np.ndarray) -> str:
    digest = hashlib.blake2b(str(images.shape).encode(), digest_size=16)
    digest.update(np.ascontiguousarray(images).data)
    return digest.hexdigest()
