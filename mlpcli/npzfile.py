"""Deterministic, atomic .npz files: same arrays, same bytes; a crash never leaves a half-written file.

`numpy.savez` stamps every member with the current time, so two identical saves differ; here every member
gets a fixed timestamp, and the file is written atomically (mlpcli.atomic).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from mlpcli.atomic import atomic_write

_EPOCH = (1980, 1, 1, 0, 0, 0)


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Write `arrays` (name → array, no object arrays) to `path` atomically, with reproducible bytes."""
    with atomic_write(path) as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(arrays[name], order="C"), allow_pickle=False)


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """All arrays of the .npz at `path`, read without pickle (raises OSError/ValueError on a bad file)."""
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}
