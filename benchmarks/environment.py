"""Where the benchmarks find CIFAR-10 and how they set up BLAS: shared by bench_train.py and bench_e2e.py."""

from __future__ import annotations

import os
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-train.tgz"
EXTRACTED = Path(tempfile.gettempdir()) / "cifar10"
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def clean_blas_env() -> None:
    """Re-run this process without OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, if either is set."""
    if any(key in os.environ for key in BLAS_ENV):
        env = {key: value for key, value in os.environ.items() if key not in BLAS_ENV}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


def find_images(data: Path) -> Path | None:
    """The folder holding train/<class>/*.jpg: `data` itself, or /tmp/cifar10 extracted from the .tgz `data`."""
    if (data / "train").is_dir():
        return data
    if not data.is_file():
        print(f"skipped: {data} not found (pass --data with a CIFAR-10 folder of JPEGs or its .tgz)")
        return None
    if (EXTRACTED / "train").is_dir():
        return EXTRACTED
    print(f"extracting {data} to {EXTRACTED.parent} ...")
    with tarfile.open(data, "r:gz") as tar:
        tar.extractall(EXTRACTED.parent, filter="data")
    return EXTRACTED
