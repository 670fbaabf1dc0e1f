"""Reading a file named by a user or found in a folder, as hostile input: regular files only.

Opening a FIFO for reading waits for a writer, and a device may never end: a run folder whose metrics.jsonl is a
FIFO made `mlp runs` hang. Files are therefore opened without blocking and read only if they are regular.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO


def open_regular(path: str | Path) -> BinaryIO:
    """The regular file at `path` opened for reading in binary, without waiting: IsADirectoryError for a folder,
    OSError "not a regular file" for a FIFO, device or socket, and the usual OSErrors (FileNotFoundError, ...)."""
    mode = os.stat(path).st_mode             # before opening: opening a device can itself do something
    if stat.S_ISREG(mode):
        f = open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb")
        mode = os.fstat(f.fileno()).st_mode  # what was opened, if the path was replaced in between
        if stat.S_ISREG(mode):
            return f
        f.close()
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
    raise OSError(errno.EINVAL, "not a regular file", str(path))


def read_regular(path: str | Path, limit: int | None = None) -> bytes:
    """The bytes of the regular file at `path` (errors as `open_regular`); with `limit`, at most limit + 1 of
    them, so that a larger file shows."""
    with open_regular(path) as f:
        return f.read() if limit is None else f.read(limit + 1)
