"""Small helpers shared by the tests."""

from __future__ import annotations

import hashlib
import tracemalloc
from pathlib import Path


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def traced_peak(call) -> int:
    """The most bytes Python and numpy held at once during `call()`, above what they held before."""
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
