"""Deterministic, atomic .npz files: same arrays, same bytes; a crash never leaves a half-written file.
And a reader that treats a .npz as hostile input.

`numpy.savez` stamps every member with the current time, so two identical saves differ; here every member
gets a fixed timestamp, and the file is written atomically (mlpcli.atomic).

`numpy.load` trusts the file: a member that claims 64 GiB is allocated, an encrypted one raises
RuntimeError. `NpzReader` checks the zip directory first (member names, compression, encryption),
then reads a member's .npy header alone and checks its declared size against it, so the caller can
compare shapes and dtypes with what it expects before any data is read; the data is then read in
bounded blocks, exactly as long as the header says, with the zip's CRC checked.
"""

from __future__ import annotations

import math
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from mlpcli.atomic import atomic_write

EPOCH = (1980, 1, 1, 0, 0, 0)        # the time stamp of every member save_npz writes,
MODE = 0o644 << 16                   # and its permission bits (numpy.savez gives 0o600)
MAX_MEMBERS = 10_000
MAX_HEADER = 10_000                  # bytes of a .npy header (numpy's own default limit)
READABLE = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}
UNREADABLE_FLAGS = 0x1 | 0x20 | 0x40     # encrypted, patched data, strong encryption
BLOCK = 1 << 24                      # bytes read at a time
# what zipfile, zlib and numpy raise on a malformed archive, member or header
_MALFORMED = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, struct.error, OverflowError,
              NotImplementedError, RuntimeError)


class NpzError(ValueError):
    """A .npz file, or one of its members, that cannot be read safely; the message says why."""


@dataclass(frozen=True)
class Header:
    """What a member's .npy header announces."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int                      # bytes before the data


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Write `arrays` (name → array, no object arrays) to `path` atomically, with reproducible bytes."""
    with atomic_write(path) as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=EPOCH)
            info.external_attr = MODE
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(arrays[name], order="C"), allow_pickle=False)


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """All arrays of the .npz at `path`, each checked by NpzReader (NpzError, a ValueError, if one fails, or
    if together they announce more bytes than the memory available)."""
    from mlpcli.budget import available

    with NpzReader(path) as npz:
        headers = {name: npz.header(name) for name in npz.members}
        total = sum(math.prod(header.shape) * header.dtype.itemsize for header in headers.values())
        if total > available():
            raise NpzError(f"its arrays announce {total:,} bytes, more than the memory available")
        return {name: npz.read(name, header) for name, header in headers.items()}


class NpzReader:
    """The members of a .npz file, read as hostile input; NpzError for anything malformed.

    Opening checks the zip directory: at most MAX_MEMBERS members, each named `<name>.npy` once, stored
    or deflated, not encrypted. `members` maps each name (without .npy) to its zip entry.
    """

    def __init__(self, path: str | Path | BinaryIO) -> None:
        if not zipfile.is_zipfile(path):
            raise NpzError("not a readable .npz file (not a zip archive)")
        try:
            self._zip = zipfile.ZipFile(path)
            infos = self._zip.infolist()
        except _MALFORMED as err:
            raise NpzError(f"not a readable .npz file ({_reason(err)})") from None
        try:
            self.members = _members(infos)
        except NpzError:
            self._zip.close()
            raise

    def __enter__(self) -> NpzReader:
        return self

    def __exit__(self, *exc) -> None:
        self._zip.close()

    def saved_by_save_npz(self) -> bool:
        """Whether every member has the time stamp and permission bits save_npz gives it."""
        return all(info.date_time == EPOCH and info.external_attr == MODE for info in self.members.values())

    def header(self, name: str) -> Header:
        """Member `name`'s .npy header, after checking that the member's declared (uncompressed) size is
        exactly header plus data, and that it holds no Python objects."""
        info = self.members[name]
        try:
            with self._zip.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(member, MAX_HEADER)
                elif version == (2, 0):
                    shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(member, MAX_HEADER)
                else:
                    raise NpzError(f"member '{name}' is .npy version {version}; versions 1.0 and 2.0 are read")
                offset = member.tell()
        except NpzError:
            raise
        except ValueError as err:            # numpy's verdict on the magic string or the header
            raise NpzError(f"member '{name}' is not a .npy array ({_reason(err)})") from None
        except _MALFORMED as err:
            raise NpzError(f"member '{name}' cannot be read ({_reason(err)})") from None
        if dtype.hasobject:
            raise NpzError(f"member '{name}' holds Python objects, which are never read")
        if any(side < 0 for side in shape):
            raise NpzError(f"member '{name}' has a negative shape {shape}")
        size = offset + math.prod(shape) * dtype.itemsize
        if info.file_size != size:
            raise NpzError(f"member '{name}' declares {info.file_size:,} bytes, but its header announces "
                           f"{dtype} {shape}, {size:,} bytes")
        return Header(tuple(shape), dtype, fortran_order, offset)

    def read(self, name: str, header: Header, out: np.ndarray | None = None) -> np.ndarray:
        """Member `name`'s array as `header` announces it (from `header(name)`), read into `out` if given
        (a C-contiguous array of that shape and dtype)."""
        flat = np.empty(math.prod(header.shape), header.dtype) if out is None else out.reshape(-1)
        view = memoryview(flat).cast("B") if flat.size else memoryview(b"")
        try:
            with self._zip.open(self.members[name]) as member:
                member.read(header.offset)
                done = 0
                while done < len(view):
                    count = member.readinto(view[done:done + BLOCK])
                    if not count:
                        raise NpzError(f"member '{name}' ends after {done:,} of its {len(view):,} bytes of data")
                    done += count
                member.read(1)                # at the end: zipfile checks the CRC
        except NpzError:
            raise
        except _MALFORMED as err:
            raise NpzError(f"member '{name}' cannot be read ({_reason(err)})") from None
        if out is not None:
            return out
        return flat.reshape(header.shape[::-1]).T if header.fortran_order else flat.reshape(header.shape)


def _members(infos: list[zipfile.ZipInfo]) -> dict[str, zipfile.ZipInfo]:
    """{name without .npy: entry}; NpzError for too many, duplicate, non-.npy, compressed or encrypted."""
    if len(infos) > MAX_MEMBERS:
        raise NpzError(f"{len(infos):,} members; at most {MAX_MEMBERS:,} are read")
    members = {}
    for info in infos:
        name = info.filename
        if not name.endswith(".npy") or len(name) > 4 + 255:
            raise NpzError(f"member {name[:80]!r} is not a .npy array")
        if name[:-4] in members:
            raise NpzError(f"member '{name}' appears twice")
        if info.compress_type not in READABLE:
            raise NpzError(f"member '{name}' uses compression method {info.compress_type}; "
                           "only stored (0) and deflate (8) are read")
        if info.flag_bits & UNREADABLE_FLAGS:
            raise NpzError(f"member '{name}' is encrypted or patched (zip flags {info.flag_bits:#x})")
        members[name[:-4]] = info
    return members


def _reason(err: BaseException) -> str:
    return " ".join(str(err).split())[:200] or type(err).__name__
