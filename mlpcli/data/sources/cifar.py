"""The `cifar10` and `cifar100` sources: the official "python version" batches of Krizhevsky (2009).

That format IS pickle (Python 2 cPickle files). Unpickling untrusted pickle can run arbitrary code, so
the files are read by `SafeUnpickler`, which refuses every global except the three numpy constructors an
array needs (ndarray, dtype and numpy's `_reconstruct`); a file naming anything else is rejected
before anything runs.

Layout (`data.path` is the folder, or the folder holding `cifar-10-batches-py` / `cifar-100-python`):
  cifar-10:  data_batch_1 .. data_batch_5, test_batch, batches.meta (label_names)
  cifar-100: train, test (fine_labels), meta (fine_label_names)
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from mlpcli.data.convert import to_dataset
from mlpcli.data.dataset import Dataset, in_memory
from mlpcli.data.download import Archive, dataset_path
from mlpcli.data.source import Source
from mlpcli.errors import DataError
from mlpcli.readfile import open_regular

CIFAR10 = {"folder": "cifar-10-batches-py", "train": [f"data_batch_{i}" for i in range(1, 6)],
           "test": ["test_batch"], "meta": "batches.meta", "names": "label_names", "labels": "labels"}
CIFAR100 = {"folder": "cifar-100-python", "train": ["train"], "test": ["test"], "meta": "meta",
            "names": "fine_label_names", "labels": "fine_labels"}


def _reconstruct(cls: type, shape: tuple, typecode: bytes) -> np.ndarray:
    """numpy's pickle constructor for arrays: an empty ndarray that the pickle then fills."""
    return np.ndarray(shape, dtype=typecode)


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that builds only plain data and numpy arrays; any other global is refused."""

    ALLOWED = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
               ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
               ("numpy._core.multiarray", "_reconstruct"): _reconstruct}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return self.ALLOWED[module, name]


def unpickle(path: Path) -> dict[str, object]:
    """The dict stored in a CIFAR batch file, keys decoded to str; DataError if missing or not CIFAR."""
    try:
        with open_regular(path) as file:
            batch = SafeUnpickler(file, encoding="bytes").load()
    except FileNotFoundError:
        raise DataError(f"missing file {path}; is data.path the CIFAR python-version folder?") from None
    except Exception as err:  # a damaged or hostile pickle can fail in any way; none of it has run code
        raise DataError(f"{path} is not a CIFAR python-version batch: {err}") from None
    if not isinstance(batch, dict):
        raise DataError(f"{path} is not a CIFAR python-version batch (it holds a {type(batch).__name__})")
    return {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in batch.items()}


def load_cifar10(cfg, cache_dir: Path | None) -> dict[str, Dataset]:
    """CIFAR-10: 50,000 training and 10,000 test images, 32x32 RGB, 10 classes."""
    return _load(cfg, "cifar10", CIFAR10)


def load_cifar100(cfg, cache_dir: Path | None) -> dict[str, Dataset]:
    """CIFAR-100 with its 100 fine labels: 50,000 training and 10,000 test images, 32x32 RGB."""
    return _load(cfg, "cifar100", CIFAR100)


def _load(cfg, source: str, layout: dict) -> dict[str, Dataset]:
    root = dataset_path(source, cfg.path)
    if (root / layout["folder"]).is_dir():
        root = root / layout["folder"]
    classes = _class_names(root / layout["meta"], layout["names"])
    return {split: _read_split(root, layout[split], layout["labels"], classes, cfg) for split in ("train", "test")}


def _class_names(path: Path, key: str) -> list[str]:
    names = unpickle(path).get(key)
    if not isinstance(names, list) or not names:
        raise DataError(f"{path} has no list of class names under '{key}'")
    return [name.decode("utf-8") if isinstance(name, bytes) else str(name) for name in names]


def _read_split(root: Path, files: list[str], label_key: str, classes: list[str], cfg) -> Dataset:
    parts = []
    for name in files:
        path = root / name
        batch = unpickle(path)
        data, labels = batch.get("data"), batch.get(label_key)
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise DataError(f"{path}: 'data' must be a uint8 array of shape (N, 3072) (32x32 RGB rows)")
        if labels is None:
            raise DataError(f"{path} has no '{label_key}'")
        images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # (N, 32, 32, 3)
        parts.append(to_dataset(images, np.asarray(labels), classes, str(path), cfg.size, cfg.mode))
    return in_memory(np.concatenate([part.images for part in parts]), np.concatenate([part.labels for part in parts]),
                     classes)


SOURCES = [
    Source("cifar10", load_cifar10, format="cifar10",
           archive=Archive("cifar10", "https://www.cs.toronto.edu/~kriz/",
                           (("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", 170498071),)),
           detect=lambda path: (path / CIFAR10["folder"]).is_dir() or (path / CIFAR10["meta"]).is_file()),
    Source("cifar100", load_cifar100, format="cifar100",
           archive=Archive("cifar100", "https://www.cs.toronto.edu/~kriz/",
                           (("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85", 169001437),)),
           detect=lambda path: (path / CIFAR100["folder"]).is_dir() or (path / CIFAR100["meta"]).is_file()),
]
