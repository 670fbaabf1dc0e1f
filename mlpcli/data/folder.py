"""The `folder` source: image files sorted into one folder per class.

    root/<class>/*.png|jpg|jpeg|bmp|gif|tif|tiff          (any letter case)
    root/train/<class>/...  and optionally  root/test/<class>/...   (the same classes in both)

Class names are the sorted folder names. Every image is converted to one color mode and one size:
`data.mode` if given, else rgb if any image is in color (gray only if all are); `data.size` if given,
else the most common [height, width] (ties go to the size met first in sorted file order). Only
those two choices need a pass over the file headers; PIL reads headers without decoding pixels.

Decoding runs in a process pool over all cores, with a progress bar. Processes, not threads: PIL holds
the GIL for most of the per-file work on small images, so on 2 cores the 50,000 CIFAR-10 JPEGs decode in
1.5 s with processes (2 cores busy) but 2.5 s with threads, no faster than one core
(benchmarks/bench_folder_load.py).

The decoded arrays are cached as .npy files under `cache_dir/images/`, keyed by a hash of the file
list, file sizes and modification times and the size/mode/on_error policy, so a second run reads them
back instead of decoding (0.6 s for those 50,000 images). With `data.on_error: skip`, unreadable
images are left out and a `warnings.warn` (UserWarning) gives their count, on cached runs too.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from mlpcli.config import DataConfig
from mlpcli.data.convert import GRAY_PIL_MODES, read_image
from mlpcli.data.dataset import Dataset
from mlpcli.data.download import dataset_path
from mlpcli.errors import DataError

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff"}
CHUNK = 500  # images per pool task: large enough to amortize the hand-off, small enough for a smooth bar
CACHE_FORMAT = 1  # bump when the cached arrays change meaning


@dataclass
class Listing:
    """The image files under a folder dataset, in a fixed order: split, then class, then file name."""

    root: Path
    classes: list[str]
    paths: list[Path]
    labels: np.ndarray  # (N,) int64
    splits: np.ndarray  # (N,) index into split_names
    split_names: list[str]


def load(cfg: DataConfig, cache_dir: Path | None) -> dict[str, Dataset]:
    """The train (and, with a test/ folder, test) splits of the image folder `data.path`."""
    listing = scan(dataset_path("folder", cfg.path))
    cache = _cache_folder(Path(cache_dir).expanduser(), listing, cfg) if cache_dir is not None else None
    cached = _read_cache(cache, listing) if cache is not None and cache.is_dir() else None
    if cached is not None:
        return cached
    datasets, skipped = decode(listing, cfg)
    if cache is not None:
        _write_cache(cache, datasets, skipped)
    return datasets


def scan(root: Path) -> Listing:
    """The files of folder dataset `root`; DataError for a missing class, an empty class folder or a
    single class."""
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; the folder source reads root/<class>/<image files>")
    subdirs = _subfolders(root)
    if subdirs and set(subdirs) <= {"train", "test"}:
        if "train" not in subdirs:
            raise DataError(f"{root} has a test/ folder but no train/ folder")
        split_roots = {split: root / split for split in ("train", "test") if split in subdirs}
    else:
        split_roots = {"train": root}
    files = {split: _class_files(folder) for split, folder in split_roots.items()}
    classes = sorted(files["train"])
    if len(classes) < 2:
        raise DataError(f"{split_roots['train']} has {len(classes)} class folder(s) ({', '.join(classes) or 'none'}); "
                        "a classifier needs at least two, as <class>/<image files>")
    if "test" in files and sorted(files["test"]) != classes:
        only_train = sorted(set(classes) - set(files["test"]))
        only_test = sorted(set(files["test"]) - set(classes))
        raise DataError(f"{root}: train/ and test/ must have the same class folders; only in train: "
                        f"{', '.join(only_train) or '-'}; only in test: {', '.join(only_test) or '-'}")
    paths, labels, splits = [], [], []
    for split_index, (split, by_class) in enumerate(files.items()):
        for label, name in enumerate(classes):
            if not by_class[name]:
                raise DataError(f"class folder {split_roots[split] / name} has no image files "
                                f"({', '.join(sorted(SUFFIXES))})")
            paths += by_class[name]
            labels += [label] * len(by_class[name])
            splits += [split_index] * len(by_class[name])
    return Listing(root, classes, paths, np.array(labels, np.int64), np.array(splits, np.int64), list(files))


def read_headers(paths: list[Path]) -> list[tuple[int, int, str] | str]:
    """(height, width, PIL mode) of each image file read from its header alone, or the error message."""
    out = []
    for path in paths:
        try:
            with Image.open(path) as image:
                out.append((image.height, image.width, image.mode))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            out.append(f"cannot read image {path}: {err}")
    return out


def decode(listing: Listing, cfg: DataConfig) -> tuple[dict[str, Dataset], list[str]]:
    """All images of `listing` decoded in parallel to one size and mode (see the module docstring);
    returns the splits and the messages of the images skipped as unreadable."""
    size, mode = cfg.size, cfg.mode
    if size is None or mode is None:
        headers = [h for chunk in parallel_map(read_headers, listing.paths, "reading headers") for h in chunk]
        _check([h for h in headers if isinstance(h, str)], cfg)
        readable = [h for h in headers if not isinstance(h, str)]
        if not readable:
            raise DataError(f"no readable image under {listing.root}; first error: {headers[0]}")
        size = size or list(Counter((h, w) for h, w, _ in readable).most_common(1)[0][0])
        mode = mode or ("rgb" if any(m not in GRAY_PIL_MODES for _, _, m in readable) else "gray")
    chunks = parallel_map(partial(_decode_chunk, size=size, mode=mode), listing.paths, "decoding")
    images = np.concatenate([chunk_images for chunk_images, _ in chunks])
    starts = np.cumsum([0] + [len(chunk_images) for chunk_images, _ in chunks])
    failed = {start + j: message for start, (_, chunk_failed) in zip(starts, chunks)
              for j, message in chunk_failed.items()}
    _check([failed[i] for i in sorted(failed)], cfg)
    keep = np.ones(len(images), bool)
    keep[list(failed)] = False
    for label, name in enumerate(listing.classes):
        for index, split in enumerate(listing.split_names):
            if not (keep & (listing.labels == label) & (listing.splits == index)).any():
                raise DataError(f"class '{name}' of the {split} split has no readable image left after skipping")
    selected = {split: keep & (listing.splits == index) for index, split in enumerate(listing.split_names)}
    datasets = {split: Dataset(images[mask], listing.labels[mask], listing.classes) for split, mask in selected.items()}
    skipped = [failed[i] for i in sorted(failed)]
    _warn_skipped(skipped, listing.root)
    return datasets, skipped


def parallel_map(fn, paths: list[Path], desc: str) -> list:
    """[fn(chunk) for chunk in chunks of `paths`], run on all cores with a progress bar."""
    chunks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
    workers = max(1, min(os.cpu_count() or 1, len(chunks)))
    results = []
    with tqdm(total=len(paths), desc=desc, unit="img", disable=None) as bar, \
            ProcessPoolExecutor(workers) as pool:
        for chunk, result in zip(chunks, pool.map(fn, chunks)):
            results.append(result)
            bar.update(len(chunk))
    return results


def _decode_chunk(paths: list[Path], size: list[int], mode: str) -> tuple[np.ndarray, dict[int, str]]:
    """The images of `paths` (len(paths), H, W, C) uint8, zeros where unreadable, and
    {index in paths: error message} for those."""
    images = np.zeros((len(paths), size[0], size[1], 1 if mode == "gray" else 3), np.uint8)
    failed = {}
    for i, path in enumerate(paths):
        try:
            images[i] = read_image(path, size, mode)
        except DataError as err:
            failed[i] = str(err)
    return images, failed


def _check(errors: list[str], cfg: DataConfig) -> None:
    """DataError for the first unreadable image, unless data.on_error is skip."""
    if errors and cfg.on_error == "raise":
        more = f" ({len(errors) - 1} more unreadable)" if len(errors) > 1 else ""
        raise DataError(f"{errors[0]}{more}; delete or fix it, or set data.on_error=skip to leave such images out")


def _warn_skipped(skipped: list[str], root: Path) -> None:
    if skipped:
        warnings.warn(f"skipped {len(skipped)} unreadable image(s) under {root} (data.on_error=skip); "
                      f"first: {skipped[0]}")


def _subfolders(folder: Path) -> list[str]:
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir() and not entry.name.startswith("."))


def _class_files(folder: Path) -> dict[str, list[Path]]:
    """{class folder name: its image files sorted by name} for the class folders of `folder`."""
    return {name: sorted(Path(entry.path) for entry in os.scandir(folder / name)
                         if entry.is_file() and not entry.name.startswith(".")
                         and os.path.splitext(entry.name)[1].lower() in SUFFIXES)
            for name in _subfolders(folder)}


def _cache_folder(cache_dir: Path, listing: Listing, cfg: DataConfig) -> Path:
    """cache_dir/images/folder-<hash of the files, their sizes and mtimes, and the conversion policy>."""
    digest = hashlib.sha256()
    digest.update(json.dumps([CACHE_FORMAT, listing.split_names, listing.classes, cfg.size, cfg.mode,
                              cfg.on_error]).encode())
    for path, label, split in zip(listing.paths, listing.labels.tolist(), listing.splits.tolist()):
        stat = path.stat()
        entry = f"{path.relative_to(listing.root)}\0{label}\0{split}\0{stat.st_size}\0{stat.st_mtime_ns}\n"
        digest.update(entry.encode())
    return cache_dir / "images" / f"folder-{digest.hexdigest()[:32]}"


def _read_cache(cache: Path, listing: Listing) -> dict[str, Dataset] | None:
    """The datasets cached in `cache`, or None (and the broken cache removed) if it cannot be read."""
    try:
        datasets = {split: Dataset(np.load(cache / f"{split}-images.npy", allow_pickle=False),
                                   np.load(cache / f"{split}-labels.npy", allow_pickle=False), listing.classes)
                    for split in listing.split_names}
        skipped = np.load(cache / "skipped.npy", allow_pickle=False).tolist()
    except (OSError, ValueError, EOFError):
        shutil.rmtree(cache, ignore_errors=True)
        return None
    _warn_skipped(skipped, listing.root)
    return datasets


def _write_cache(cache: Path, datasets: dict[str, Dataset], skipped: list[str]) -> None:
    """Store the decoded arrays in `cache`, atomically: written to a temporary folder, then renamed."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache.parent))
    except OSError as err:
        warnings.warn(f"cannot write the image cache under {cache.parent}: {err}")
        return
    try:
        for split, dataset in datasets.items():
            np.save(staging / f"{split}-images.npy", dataset.images)
            np.save(staging / f"{split}-labels.npy", dataset.labels)
        np.save(staging / "skipped.npy", np.array(skipped, dtype=str))
        staging.rename(cache)
    except OSError as err:
        if not cache.is_dir():  # a concurrent run that finished first is fine
            warnings.warn(f"cannot write the image cache {cache}: {err}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
