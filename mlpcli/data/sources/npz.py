"""The `npz` source: your own arrays in one NumPy .npz file, read with allow_pickle=False (no pickle).

Arrays in the file:
  X        (N, H, W) or (N, H, W, C) with C = 1 or 3: uint8 in 0..255, or float in [0, 1]
           (floats are scaled to uint8 by round(255 x))
  y        (N,) integer labels in 0..K-1
  classes  optional (K,) strings; default "0".."K-1" with K = 1 + the largest label
  X_test, y_test   optional: a test split, same rules

    np.savez("mine.npz", X=images, y=labels, classes=np.array(["cat", "dog"]))
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from mlpcli.data.convert import to_dataset
from mlpcli.data.dataset import Dataset
from mlpcli.data.download import dataset_path
from mlpcli.data.source import Source
from mlpcli.errors import DataError
from mlpcli.limits import MAX_CLASSES
from mlpcli.readfile import open_regular

SPLITS = {"train": ("X", "y"), "test": ("X_test", "y_test")}


def load(cfg, cache_dir: Path | None) -> dict[str, Dataset]:
    """The train (and, if present, test) split stored in the .npz file `data.path`."""
    path = dataset_path("npz", cfg.path)
    arrays = _read(path)
    for key in ("X", "y"):
        if key not in arrays:
            raise DataError(f"{path} has no array '{key}' (it has: {', '.join(arrays) or 'none'}); "
                            "save it with np.savez(path, X=images, y=labels)")
    splits = {split: keys for split, keys in SPLITS.items() if keys[0] in arrays or keys[1] in arrays}
    for images_key, labels_key in splits.values():
        if images_key not in arrays or labels_key not in arrays:
            raise DataError(f"{path}: '{images_key}' and '{labels_key}' go together; one of them is missing")
    classes = _classes(path, arrays, [arrays[labels_key] for _, labels_key in splits.values()])
    return {split: to_dataset(_images(path, images_key, arrays[images_key]), arrays[labels_key], classes,
                              f"{path} ({labels_key})", cfg.size, cfg.mode)
            for split, (images_key, labels_key) in splits.items()}


def _read(path: Path) -> dict[str, np.ndarray]:
    try:
        with open_regular(path) as file:
            if not zipfile.is_zipfile(file):
                raise DataError(f"cannot read {path}: not a .npz file (save one with np.savez(path, X=images, "
                                "y=labels))")
            file.seek(0)
            with np.load(file, allow_pickle=False) as npz:
                return {key: npz[key] for key in npz.files}
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise DataError(f"{path} holds an object array, which needs pickle; store labels as integers "
                            "and classes as a string array (np.array(names))") from None
        raise DataError(f"cannot read {path}: {err}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        why = (err.strerror if isinstance(err, OSError) else None) or err
        raise DataError(f"cannot read {path} as a .npz file: {why}") from None


def _images(path: Path, key: str, images: np.ndarray) -> np.ndarray:
    """(N, H, W, C) uint8 from the stored `images`."""
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[3] not in (1, 3):
        raise DataError(f"{path}: '{key}' has shape {images.shape}; expected (N, H, W) or (N, H, W, C) with C = 1 or 3")
    if images.dtype == np.uint8:
        return images
    if images.dtype.kind == "f":
        if images.size and not (np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1):
            raise DataError(f"{path}: float '{key}' must lie in [0, 1]; store pixels as uint8 (0..255) instead")
        return np.round(images * 255).astype(np.uint8)
    raise DataError(f"{path}: '{key}' has dtype {images.dtype}; store pixels as uint8 (0..255) or float in [0, 1]")


def _classes(path: Path, arrays: dict[str, np.ndarray], labels: list[np.ndarray]) -> list[str]:
    if "classes" in arrays:
        classes = arrays["classes"]
        if classes.ndim != 1 or classes.dtype.kind not in "US":
            raise DataError(f"{path}: 'classes' must be a 1-d array of strings, got {classes.dtype} {classes.shape}")
        try:
            return [name.decode() if isinstance(name, bytes) else str(name) for name in classes.tolist()]
        except UnicodeDecodeError as err:
            raise DataError(f"{path}: 'classes' holds bytes that are not UTF-8 text ({err.reason} at byte "
                            f"{err.start}); store the names as a str array") from None
    top = max((int(y.max()) for y in labels if y.size and y.dtype.kind in "iu"), default=0)
    if top >= MAX_CLASSES:
        raise DataError(f"{path}: label {top} would make {top + 1:,} classes, more than {MAX_CLASSES:,}; labels "
                        "count classes from 0 (add a 'classes' array of names)")
    return [str(label) for label in range(top + 1)]


SOURCES = [Source("npz", load, format="npz", detect=lambda path: path.is_file() and path.suffix.lower() == ".npz")]
