"""Dataset sources (name → loader) and the train/val/test splits a run works on."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlpcli.data import builtin, cifar, folder, idx, npz
from mlpcli.data.dataset import Dataset
from mlpcli.data.split import limit, train_val_split
from mlpcli.errors import DataError
from mlpcli.seeding import generators

# name → load(cfg: DataConfig, cache_dir: Path | None) -> {"train": Dataset, maybe "test": Dataset}
SOURCES = {
    "shapes": builtin.load_shapes,
    "faces": builtin.load_faces,
    "folder": folder.load,
    "cifar10": cifar.load_cifar10,
    "cifar100": cifar.load_cifar100,
    "mnist": idx.load_mnist,
    "fashion-mnist": idx.load_fashion_mnist,
    "npz": npz.load,
}


def load_splits(cfg, rng: np.random.Generator | None = None) -> dict[str, Dataset]:
    """The run's splits {"train", "val", maybe "test"} for Config `cfg`.

    `rng` drives the `limit` sample and the validation split; by default the run's "data" stream, so the
    same config always yields the same splits.
    """
    rng = rng if rng is not None else generators(cfg.seed)["data"]
    cache_dir = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else None
    splits = SOURCES[cfg.data.source](cfg.data, cache_dir)
    if cfg.data.size is not None or cfg.data.mode is not None:
        from mlpcli.data.convert import conform
        splits = {name: Dataset(conform(ds.images, cfg.data.size, cfg.data.mode), ds.labels, ds.classes)
                  for name, ds in splits.items()}
    train = splits["train"]
    if cfg.data.limit is not None:
        train = limit(train, cfg.data.limit, rng)
    train, val = train_val_split(train, cfg.data.val_fraction, rng)
    splits = {"train": train, "val": val, **({"test": splits["test"]} if "test" in splits else {})}
    for name, ds in splits.items():
        check_labels(ds, f"{cfg.data.source} {name} split")
    if len(np.unique(train.labels)) < 2:
        raise DataError(f"the training split of '{cfg.data.source}' has fewer than 2 classes; "
                        "a classifier needs at least two")
    return splits


def check_labels(ds: Dataset, what: str) -> None:
    """DataError unless every label of `ds` indexes its class list."""
    if len(ds) and (ds.labels.min() < 0 or ds.labels.max() >= len(ds.classes)):
        bad = ds.labels[(ds.labels < 0) | (ds.labels >= len(ds.classes))][0]
        raise DataError(f"{what}: label {bad} is out of range for {len(ds.classes)} classes")
