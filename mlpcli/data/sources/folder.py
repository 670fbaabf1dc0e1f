"""The `folder` source: image files sorted into one folder per class, read by index.

    root/<class>/*.png|jpg|jpeg|bmp|gif|tif|tiff          (any letter case)
    root/train/<class>/...  and optionally  root/test/<class>/...   (the same classes in both)

Class names are the sorted folder names. Every entry with an image suffix that is not a folder is an image;
one that is not a readable regular file (a FIFO, a link that loops or dangles) counts as unreadable.
Listing a folder reads names only: no image is opened until the feature pipeline reads it, chunk by
chunk, in worker processes (mlpcli.features.pipeline), so a split, a `data.limit` sample or a `mlp eval` pays
only for its own images.

Every image is converted to one color mode and one size: `data.mode` if given, else rgb if any image is in
color (gray only if all are); `data.size` if given, else the most common [height, width]. Without them, the
choice is made from the headers of up to HEADER_SAMPLE files spread evenly over the sorted file list (all files
of a smaller folder); PIL reads headers without decoding pixels.

An unreadable image stops with an error naming the file, or with `data.on_error: skip` is left out of training
and evaluation (its features row is marked unreadable), with a warning that counts such images.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from mlpcli.data.convert import GRAY_PIL_MODES, read_image
from mlpcli.data.dataset import Dataset
from mlpcli.data.download import dataset_path
from mlpcli.data.source import Source
from mlpcli.errors import DataError
from mlpcli.parallel import ignore_interrupts
from mlpcli.readfile import open_regular

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff"}
CHUNK = 500           # files per pool task of `parallel_map`
HEADER_SAMPLE = 2000  # files whose headers choose the default size and mode
KEY_FORMAT = 2        # bump when the same files start giving other pixels
READ_AHEAD = 64       # files the kernel is asked to start reading before their turn to be decoded


@dataclass
class Listing:
    """The image files under a folder dataset, in a fixed order: split, then class, then file name."""

    root: Path
    classes: list[str]
    paths: list[str]     # file paths as strings: cheaper than Path objects to make, sort and send to workers
    labels: np.ndarray  # (N,) int64
    splits: np.ndarray  # (N,) index into split_names
    split_names: list[str]


def load(cfg, cache_dir: Path | None) -> dict[str, Dataset]:
    """The train (and, with a test/ folder, test) splits of the image folder `data.path` (cfg: DataConfig)."""
    listing = scan(dataset_path("folder", cfg.path))
    size, mode = cfg.size, cfg.mode
    if size is None or mode is None:
        sample_size, sample_mode = _common_size_and_mode(listing, cfg.on_error)
        size, mode = size or sample_size, mode or sample_mode
    reader = FileReader(listing.paths, size, mode, cfg.on_error, listing.root)
    return {split: Dataset(reader, np.flatnonzero(listing.splits == index), listing.labels[listing.splits == index],
                           listing.classes)
            for index, split in enumerate(listing.split_names)}


class FileReader:
    """Decodes image files by index, each converted to `size` = [height, width] and `mode` ("rgb", "gray")."""

    def __init__(self, paths: list[str], size: list[int], mode: str, on_error: str, root: Path) -> None:
        self.paths, self.size, self.mode, self.on_error, self.root = paths, list(size), mode, on_error, root
        self.image_shape = (size[0], size[1], 1 if mode == "gray" else 3)

    def key(self, index: np.ndarray) -> str:
        """A hash of the files at `index` (names, sizes, modification times, in order) and the conversion:
        changes when they do, and not when other files of the folder do."""
        digest = hashlib.blake2b(json.dumps([KEY_FORMAT, self.size, self.mode, self.on_error]).encode(),
                                 digest_size=16)
        for i in index:
            path = self.paths[i]
            try:
                info = os.stat(path)
                digest.update(os.fsencode(path) + f"\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
            except OSError:
                digest.update(os.fsencode(path) + b"\0missing\n")
        return digest.hexdigest()

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, index: np.ndarray) -> tuple[np.ndarray, dict[int, str]]:
        images = np.zeros((len(index), *self.image_shape), np.uint8)
        problems = {}
        paths = [self.paths[i] for i in index]
        for path in paths[:READ_AHEAD]:
            _will_need(path)
        for row, path in enumerate(paths):
            if row + READ_AHEAD < len(paths):
                _will_need(paths[row + READ_AHEAD])
            try:
                images[row] = read_image(path, self.size, self.mode)
            except DataError as err:
                if self.on_error == "raise":
                    raise DataError(f"{err}; delete or fix it, or set data.on_error=skip to leave such images "
                                    "out") from None
                problems[row] = str(err)
        return images, problems

    def part(self, index: np.ndarray) -> FileReader:
        return FileReader([self.paths[i] for i in index], self.size, self.mode, self.on_error, self.root)


def _will_need(path: str) -> None:
    """Ask the kernel to start reading the regular file `path` into its cache, without waiting: with a cold
    cache (files not read for a while), decoding then finds the file in memory instead of waiting for the
    disk (cores were 30% idle on 200,000 JPEGs). Anything that fails is left to the decoding to report."""
    try:
        with open_regular(path) as f:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_WILLNEED)
    except OSError:
        pass


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


def read_headers(paths: list[str]) -> list[tuple[int, int, str] | str]:
    """(height, width, PIL mode) of each image file read from its header alone, or the error message."""
    out = []
    for path in paths:
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):
                raise OSError("not a regular file")
            with Image.open(path) as image:
                out.append((image.height, image.width, image.mode))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            out.append(f"cannot read image {path}: {err}")
    return out


def parallel_map(fn, paths: list[str], desc: str) -> list:
    """[fn(chunk) for chunk in chunks of `paths`], run on all cores with a progress bar."""
    chunks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
    workers = max(1, min(os.cpu_count() or 1, len(chunks)))
    results = []
    with tqdm(total=len(paths), desc=desc, unit="img", disable=None) as bar, \
            ProcessPoolExecutor(workers, initializer=ignore_interrupts) as pool:
        for chunk, result in zip(chunks, pool.map(fn, chunks)):
            results.append(result)
            bar.update(len(chunk))
    return results


def _common_size_and_mode(listing: Listing, on_error: str) -> tuple[list[int], str]:
    """The most common [height, width] among the headers of up to HEADER_SAMPLE files spread evenly over the
    listing, and rgb if any of them is in color (else gray)."""
    count = len(listing.paths)
    picked = np.unique(np.linspace(0, count - 1, min(count, HEADER_SAMPLE)).round().astype(int))
    headers = read_headers([listing.paths[i] for i in picked])
    problems = [h for h in headers if isinstance(h, str)]
    if problems and on_error == "raise":
        more = f" ({len(problems) - 1} more unreadable)" if len(problems) > 1 else ""
        raise DataError(f"{problems[0]}{more}; delete or fix it, or set data.on_error=skip to leave such images out")
    readable = [h for h in headers if not isinstance(h, str)]
    if not readable:
        raise DataError(f"no readable image under {listing.root}; first error: {headers[0]}")
    size = list(Counter((h, w) for h, w, _ in readable).most_common(1)[0][0])
    mode = "rgb" if any(m not in GRAY_PIL_MODES for _, _, m in readable) else "gray"
    return size, mode


def _subfolders(folder: Path) -> list[str]:
    """Names of the visible subfolders of `folder` (links followed; a link that loops or dangles is skipped)."""
    return sorted(entry.name for entry in os.scandir(folder) if _is_dir(entry) and not entry.name.startswith("."))


def _class_files(folder: Path) -> dict[str, list[str]]:
    """{class folder name: the paths of its image files, sorted by name} for the class folders of `folder`
    (strings, not Path objects: making 50,000 Paths took 0.44 s of a 2,000-image run, and each worker
    process would parse them again)."""
    return {name: [entry.path for entry in sorted(os.scandir(folder / name), key=lambda entry: entry.name)
                   if not entry.name.startswith(".") and os.path.splitext(entry.name)[1].lower() in SUFFIXES
                   and not _is_dir(entry)]
            for name in _subfolders(folder)}


def _is_dir(entry: os.DirEntry) -> bool:
    """Whether `entry` is a folder or a link to one (a link that loops or dangles is not)."""
    try:
        return entry.is_dir()
    except OSError:
        return False


SOURCES = [Source("folder", load, format="folder", detect=Path.is_dir)]   # data info tries it last
