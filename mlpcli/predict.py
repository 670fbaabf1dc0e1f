"""Classifying image files at scale: files, folders (walked recursively) and glob patterns, read in
batches so that a folder of 100,000 images streams through in bounded memory.

Only regular files are read (a FIFO or a device would block or never end); a file that cannot be read
is reported through a callback and skipped. Probabilities are rounded so that each row sums to exactly
1 at the printed precision.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from mlpcli.data.convert import read_image
from mlpcli.data.sources.folder import SUFFIXES
from mlpcli.errors import DataError
from mlpcli.predictor import Classifier, softmax

DECIMALS = 4      # of probabilities and scores in every output
BATCH = 256       # images decoded and classified at a time


def image_files(inputs: Iterable[str], skip: Callable[[str, str], None]) -> Iterator[str]:
    """The image files `inputs` name, in order: a file as it is; a folder's files with an image suffix
    (.png, .jpg, …), walked recursively in sorted order (a folder's own files before its subfolders')
    without following links to folders; a glob
    pattern (`*`, `?`, `[…]`, `**` for any depth) that names no existing file, expanded in sorted order.
    Inputs that name nothing go to `skip(input, reason)`."""
    for item in inputs:
        if os.path.lexists(item) or not glob.has_magic(item):
            yield from _files_at(item, skip)
            continue
        matches = sorted(glob.iglob(item, recursive=True))
        if not matches:
            skip(item, "no file matches this pattern")
        for match in matches:
            yield from _files_at(match, skip)


def _files_at(path: str, skip: Callable[[str, str], None]) -> Iterator[str]:
    if not os.path.isdir(path):
        yield path
        return
    for folder, subfolders, names in os.walk(path, onerror=lambda err: skip(err.filename, err.strerror)):
        subfolders.sort()
        yield from (os.path.join(folder, name) for name in sorted(names)
                    if os.path.splitext(name)[1].lower() in SUFFIXES)


def classify(classifier: Classifier, paths: Iterable[str], skip: Callable[[str, str], None],
             batch: int = BATCH) -> Iterator[tuple[str, np.ndarray]]:
    """(path, values) for each image in `paths` that can be read, in order: values (C,) are the class
    probabilities of a softmax model or the raw class scores of a hinge model, rounded to DECIMALS.
    Unreadable files go to `skip(path, message)`."""
    height, width, channels = classifier.image_shape
    mode = "gray" if channels == 1 else "rgb"
    probabilistic = classifier.config.loss.name == "softmax"
    pending: list[tuple[str, np.ndarray]] = []
    for path in [*paths, None]:
        if path is not None:
            try:
                pending.append((path, read_image(path, [height, width], mode)))
            except DataError as err:
                skip(path, str(err))
        if pending and (len(pending) == batch or path is None):
            scores = classifier.scores(np.stack([image for _, image in pending])).astype(np.float64)
            values = rounded_probabilities(softmax(scores)) if probabilistic else scores.round(DECIMALS)
            yield from zip((p for p, _ in pending), values)
            pending = []


def rounded_probabilities(probabilities: np.ndarray, decimals: int = DECIMALS) -> np.ndarray:
    """Probabilities (N, C) rounded to `decimals` so that each row still sums to exactly 1: every value
    is rounded down, then the units still missing go to the values that lost the most (largest remainder)."""
    scale = 10 ** decimals
    scaled = probabilities * scale
    units = np.floor(scaled)
    missing = np.clip(np.rint(scale - units.sum(axis=1)), 0, probabilities.shape[1]).astype(np.int64)
    rank = np.argsort(np.argsort(units - scaled, axis=1, kind="stable"), axis=1, kind="stable")
    units += rank < missing[:, None]
    return (units / scale).round(decimals)
