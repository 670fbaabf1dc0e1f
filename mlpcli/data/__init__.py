"""Dataset sources (name → Source descriptor, one module each under data/sources/) and the train/val/test
splits a run works on."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import numpy as np

from mlpcli.data import sources
from mlpcli.data.dataset import Dataset, class_names_problem
from mlpcli.data.source import Source
from mlpcli.data.split import limit, train_val_split
from mlpcli.errors import DataError
from mlpcli.seeding import generators

SOURCES: dict[str, Source] = {source.name: source for module in pkgutil.iter_modules(sources.__path__)
                              for source in importlib.import_module(f"{sources.__name__}.{module.name}").SOURCES}


def load_splits(cfg, rng: np.random.Generator | None = None) -> dict[str, Dataset]:
    """The run's splits {"train", "val", maybe "test"} for Config `cfg`; every source already gives
    images of one size and mode (`data.size`, `data.mode`) and labels checked against its classes.

    `rng` drives the `limit` sample and the validation split; by default the run's "data" stream, so the
    same config always yields the same splits.
    """
    rng = rng if rng is not None else generators(cfg.seed)["data"]
    cache_dir = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else None
    try:
        splits = SOURCES[cfg.data.source].load(cfg.data, cache_dir)
    except DataError as error:
        raise DataError(f"{error}{_other_format(cfg.data)}") from None
    problem = class_names_problem(splits["train"].classes)
    if problem:          # refused now: a checkpoint could not carry them, after the whole training
        where = cfg.data.path if SOURCES[cfg.data.source].reads_path else f"data.source {cfg.data.source}"
        raise DataError(f"{where}: its list of classes {problem}")
    train = splits["train"]
    if cfg.data.limit is not None:
        train = limit(train, cfg.data.limit, rng)
    train, val = train_val_split(train, cfg.data.val_fraction, rng)
    if len(np.unique(train.labels)) < 2:
        raise DataError(f"the training split of '{cfg.data.source}' has fewer than 2 classes; "
                        "a classifier needs at least two")
    return {"train": train, "val": val, **({"test": splits["test"]} if "test" in splits else {})}


def detect(path: Path) -> str:
    """The format of the dataset at `path` (folder | cifar10 | cifar100 | idx | npz), from its file names
    alone: the first source format that recognizes it, a plain folder last."""
    formats = {source.format: source.detect for source in SOURCES.values() if source.detect is not None}
    for kind, recognizes in sorted(formats.items(), key=lambda item: item[0] == "folder"):
        if recognizes(path):
            return kind
    raise DataError(f"{path} is a file but not a .npz; datasets are .npz files or folders")


def _other_format(data) -> str:
    """For a source that failed to load: " (PATH holds KIND data, which data.source NAME reads)" when data.path
    holds another source's format (the official CIFAR-10 batches under a config written for a folder of
    images), else ""."""
    source = SOURCES[data.source]
    if not (source.reads_path and data.path):
        return ""
    path = Path(data.path).expanduser()
    try:
        kind = detect(path) if path.exists() else source.format
    except (DataError, OSError):
        return ""
    readers = [name for name, other in SOURCES.items() if other.format == kind]
    if kind == source.format:
        return ""
    return f" ({path} holds {kind} data, which data.source {' or '.join(readers)} reads)"
