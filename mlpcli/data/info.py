"""`mlp data info PATH`: what a dataset on disk holds — its format, classes, counts, image sizes and modes.

Image folders are described from the file headers alone (PIL reads them without decoding pixels), so
this is quick even for tens of thousands of files; the array formats are loaded whole.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from mlpcli.config import DataConfig
from mlpcli.data import SOURCES, detect
from mlpcli.data.dataset import Dataset
from mlpcli.data.sources import folder
from mlpcli.errors import DataError


def describe(path: str | Path) -> dict:
    """A summary of the dataset at `path`, as plain data:

    format      the source format (folder | cifar10 | cifar100 | idx | npz)
    sources     the `data.source` values that read it
    classes     class names (for idx: the label numbers)
    splits      {split: {"images": count, "per_class": {class: count}}}
    sizes       {"<height>x<width>": image count}, most common first
    modes       {PIL mode ("RGB", "L", ...): image count}
    unreadable  error messages of files whose header cannot be read (folders only)
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path} does not exist")
    kind = detect(path)
    readers = [name for name, source in SOURCES.items() if source.format == kind]
    if kind == "folder":
        summary = _describe_folder(path)
    else:
        summary = _describe_arrays(SOURCES[readers[0]].load(DataConfig(source=readers[0], path=str(path)), None))
    return {"path": str(path), "format": kind, "sources": readers, **summary}


def _describe_folder(root: Path) -> dict:
    listing = folder.scan(root)
    headers = [h for chunk in folder.parallel_map(folder.read_headers, listing.paths, "reading headers") for h in chunk]
    readable = [h for h in headers if not isinstance(h, str)]
    return {"classes": listing.classes,
            "splits": {split: _counts(listing.labels[listing.splits == index], listing.classes)
                       for index, split in enumerate(listing.split_names)},
            "sizes": dict(Counter(f"{h}x{w}" for h, w, _ in readable).most_common()),
            "modes": dict(Counter(mode for _, _, mode in readable).most_common()),
            "unreadable": [h for h in headers if isinstance(h, str)]}


def _describe_arrays(datasets: dict[str, Dataset]) -> dict:
    classes = next(iter(datasets.values())).classes
    total = sum(len(dataset) for dataset in datasets.values())
    _, height, width, channels = next(iter(datasets.values())).images.shape
    return {"classes": classes,
            "splits": {split: _counts(dataset.labels, classes) for split, dataset in datasets.items()},
            "sizes": {f"{height}x{width}": total},
            "modes": {"RGB" if channels == 3 else "L": total}}


def _counts(labels: np.ndarray, classes: list[str]) -> dict:
    per_class = np.bincount(labels, minlength=len(classes))
    return {"images": int(len(labels)), "per_class": dict(zip(classes, per_class.tolist()))}
