"""The `mnist` and `fashion-mnist` sources: IDX files (LeCun's format), raw or gzipped. No pickle.

`data.path` is the folder holding train-images-idx3-ubyte and train-labels-idx1-ubyte (and, for the
test split, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte), each optionally ending in .gz.
An IDX file is a magic number (two zero bytes, a type code, the number of dimensions), the dimensions as
big-endian uint32, then the values; only type 0x08 (unsigned bytes) is used by these datasets.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from mlpcli import budget
from mlpcli.data.convert import to_dataset
from mlpcli.data.dataset import Dataset
from mlpcli.data.download import Archive, dataset_path
from mlpcli.data.source import Source
from mlpcli.errors import DataError
from mlpcli.readfile import open_regular

MNIST_CLASSES = [str(digit) for digit in range(10)]
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
UBYTE = 0x08


def load_mnist(cfg, cache_dir: Path | None) -> dict[str, Dataset]:
    """MNIST digits: 60,000 training and 10,000 test images, 28x28 gray, classes "0".."9"."""
    return _load(cfg, "mnist", MNIST_CLASSES)


def load_fashion_mnist(cfg, cache_dir: Path | None) -> dict[str, Dataset]:
    """Fashion-MNIST (Zalando): 60,000 training and 10,000 test images, 28x28 gray, 10 clothing classes."""
    return _load(cfg, "fashion-mnist", FASHION_MNIST_CLASSES)


def _load(cfg, source: str, classes: list[str]) -> dict[str, Dataset]:
    root = dataset_path(source, cfg.path)
    splits = {"train": "train"}
    if find(root, "t10k-images-idx3-ubyte") or find(root, "t10k-labels-idx1-ubyte"):
        splits["test"] = "t10k"
    datasets = {}
    for split, prefix in splits.items():
        images_path = _require(root, f"{prefix}-images-idx3-ubyte")
        labels_path = _require(root, f"{prefix}-labels-idx1-ubyte")
        images, labels = read_idx(images_path, ndim=3), read_idx(labels_path, ndim=1)
        if len(images) != len(labels):
            raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
        datasets[split] = to_dataset(images[..., None], labels, classes, str(labels_path), cfg.size, cfg.mode)
    return datasets


def find(root: Path, name: str) -> Path | None:
    """`root/name` or `root/name.gz`, whichever exists."""
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _require(root: Path, name: str) -> Path:
    path = find(root, name)
    if path is None:
        raise DataError(f"missing file {root / name} (or {name}.gz); is data.path the folder of the IDX files?")
    return path


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """The uint8 array of `ndim` dimensions in IDX file `path` (gzipped if it ends in .gz). The header is
    checked first, and no more than the values it announces is read (a gzip bomb inflates no further)."""
    header = 4 + 4 * ndim
    try:
        with open_regular(path) as file:
            stream = gzip.GzipFile(fileobj=file) if path.suffix == ".gz" else file
            head = stream.read(header)
            shape = _check_header(path, head, ndim)
            size = math.prod(shape)              # Python integers: a lying header cannot wrap around
            if size > budget.available():
                raise DataError(f"{path}: its header {shape} announces {size:,} bytes, more than this machine's "
                                "free memory; the file is damaged (or far too large)")
            values = stream.read(size + 1)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"cannot read {path}: {err}") from None
    if len(values) != size:
        raise DataError(f"{path} has {header + len(values)}{'' if len(values) <= size else ' or more'} bytes but "
                        f"its header {shape} needs {header + size}; the file is truncated or damaged")
    return np.frombuffer(values, np.uint8).reshape(shape).copy()   # writable, owns its memory


def _check_header(path: Path, head: bytes, ndim: int) -> tuple[int, ...]:
    """The shape in IDX header `head` (4 + 4·ndim bytes), checked; DataError naming `path` otherwise."""
    if len(head) < 4 or head[0] != 0 or head[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    if head[2] != UBYTE:
        raise DataError(f"{path} holds IDX type 0x{head[2]:02x}; only unsigned bytes (0x08) are supported")
    if head[3] != ndim:
        raise DataError(f"{path} has {head[3]} dimensions, expected {ndim} "
                        f"({'images' if ndim == 3 else 'labels'}); are the file names swapped?")
    if len(head) < 4 + 4 * ndim:
        raise DataError(f"{path} is truncated (its header is incomplete)")
    return struct.unpack(f">{ndim}I", head[4:])


def _is_idx(path: Path) -> bool:
    return path.is_dir() and find(path, "train-images-idx3-ubyte") is not None


SOURCES = [
    Source("mnist", load_mnist, format="idx", detect=_is_idx,
           archive=Archive("mnist", "https://ossci-datasets.s3.amazonaws.com/mnist/",
                           (("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422),
                            ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", 28881),
                            ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", 1648877),
                            ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", 4542)))),
    Source("fashion-mnist", load_fashion_mnist, format="idx", detect=_is_idx,
           archive=Archive("fashion-mnist", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                           (("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d", 26421880),
                            ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe", 29515),
                            ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79", 4422102),
                            ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310", 5148)))),
]
