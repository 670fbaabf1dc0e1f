"""The feature store: one split's feature rows on disk, chunked, memory-mapped, and the feature cache.

    <root>/<key>/rows.npy       (R, D) feature rows: R = V·N, a block of N rows per view of the images
                                (the images, their mirror images, augmented copies: mlpcli.data.augment)
                 unreadable.npy (R,) bool, only when some images could not be read (data.on_error: skip)
                 state.npz      the fitted pipeline state (extractors, normalization), for a training split
                 info.json      rows, dim, dtype, bytes, the key's ingredients

Why memory-mapped .npy: it is NumPy's own format (no new dependency, readable by anyone with NumPy), rows are
plain offsets so workers on other processes or machines can write their shards into one file, and training
gathers its minibatches straight from the page cache without loading the file. Zarr would add chunk
compression, which float features barely profit from, and a dependency.

A store is built in a temporary folder beside its final place and renamed into place when complete, so a
killed extraction never leaves a store that looks finished. With a cache, stores live under
`cache_dir/features/` and are evicted least-recently-used first when they exceed `cache_max_gb`; without one,
under a temporary folder removed when the run ends.

A cache_dir can be any folder, so the cache removes only what it recognises as its own (`owns`): an entry
named as mlp names them (a store key is 32 hex digits) and, for a folder, holding only files named as a
store's are. Anything else under `features/` or `images/` is left alone, and `mlp cache info` lists it so.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlpcli.atomic import write_text_atomic
from mlpcli.errors import DataError
from mlpcli.npzfile import NpzReader, load_npz, save_npz
from mlpcli.parallel import available_memory
from mlpcli.readfile import open_regular, read_regular

ROWS, UNREADABLE, STATE, INFO = "rows.npy", "unreadable.npy", "state.npz", "info.json"
MAP_WHOLE_BYTES = 256 << 20   # a disk-read store up to this size is memory-mapped; a larger one read with pread
PREFETCH_BYTES = 8 << 20       # read at a time by MappedRows.prefetch
REMAP_BYTES = 256 << 20       # rewrite_blocks maps its file afresh after this much, so RSS stays bounded

KEY, RANDOM = "[0-9a-f]{32}", "[a-z0-9_]{8}"     # a store key (blake2b, 16 bytes); tempfile's random part
STORE_FILES = re.compile(rf"rows\.npy|unreadable\.npy|state\.npz|info\.json|\.(state\.npz|info\.json)\.{RANDOM}\.tmp")
# what mlp writes under cache_dir: folder → [(entry name, names of the files in it; None: the entry is a file)]
OWNED = {"features": [(re.compile(KEY), STORE_FILES),                              # a store
                      (re.compile(rf"\.{KEY}-{RANDOM}\.part"), STORE_FILES),      # a store being built
                      (re.compile(rf"{KEY}\.npz"), None)],                        # a store of round 1
         "images": [(re.compile(rf"folder-{KEY}|\.tmp-{RANDOM}"),                 # round 1's decoded images
                     re.compile(r"[a-z]+-(images|labels)\.npy|skipped\.npy"))]}


@dataclass
class Store:
    """A finished store at `path`: its rows (R, D), which rows are unreadable, and the fitted state."""

    path: Path

    @property
    def info(self) -> dict:
        """info.json's content; ValueError if it is not JSON, or nested too deeply to parse."""
        try:
            return json.loads(read_regular(self.path / INFO).decode("utf-8"))
        except RecursionError:
            raise ValueError(f"{self.path / INFO} is nested too deeply") from None

    def rows(self, in_memory: bool) -> np.ndarray | MappedRows:
        """The rows, read whole into memory, or gathered from the memory-mapped file on demand."""
        if in_memory:
            return np.load(self.path / ROWS, allow_pickle=False)
        rows = MappedRows(self.path / ROWS)
        rows.prefetch()
        return rows

    def intact(self) -> bool:
        """Whether the files hold what info.json promises (a cache file cut short, lengthened or rewritten since
        does not): rows.npy whole, (rows, dim) of its dtype; unreadable.npy, if any, whole, (rows,) bool;
        state.npz readable."""
        try:
            info = self.info
            return (_npy_whole(self.path / ROWS, (info["rows"], info["dim"]), np.dtype(info["dtype"]))
                    and (not (self.path / UNREADABLE).exists()
                         or _npy_whole(self.path / UNREADABLE, (info["rows"],), np.dtype(bool)))
                    and isinstance(self.state(), dict))
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def unreadable(self) -> np.ndarray | None:
        """(R,) bool: rows of images that could not be read; None when every image was read."""
        path = self.path / UNREADABLE
        return np.load(path, allow_pickle=False) if path.exists() else None

    def state(self) -> dict[str, np.ndarray]:
        return load_npz(self.path / STATE) if (self.path / STATE).exists() else {}

    @property
    def nbytes(self) -> int:
        return _folder_bytes(self.path)


class MappedRows:
    """Rows of a .npy file on disk: `take` gathers a minibatch, slicing reads a block.

    A file up to MAP_WHOLE_BYTES is read through one memory map (at most the file stays resident). A larger
    one is read with pread: through a memory map, each page fault on a cached file maps the large folio
    around the page (1-2 MiB on Linux 6.18), so random minibatches made the whole store resident, and
    renewing the map to drop it made every gather fault again (10-20 µs a fault, 1-2 µs a pread).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
        self.shape, self.dtype = mapped.shape, mapped.dtype
        self._row_bytes = self.shape[1] * self.dtype.itemsize
        if mapped.nbytes <= MAP_WHOLE_BYTES or not mapped.flags.c_contiguous:
            self._map, self._file = mapped, None
        else:
            self._map, self._file, self._offset = None, open(path, "rb", buffering=0), mapped.offset

    def __len__(self) -> int:
        return self.shape[0]

    def __reduce__(self):
        return MappedRows, (self.path,)        # another process opens the file itself

    def prefetch(self) -> None:
        """Read the file once from start to end on a background thread, into the kernel's page cache, if it takes
        at most half the available memory and is not cached already: read row by row, an uncached store costs a
        disk read per row (a 1M-row epoch after the cache was dropped took 9.2-9.5 s, with this 4.5 s; 3.5 s
        cached). posix_fadvise(WILLNEED) would read only a readahead window. The page cache is not this
        process's memory."""
        if self._file is None:
            return
        size = os.fstat(self._file.fileno()).st_size
        if size > available_memory() // 2 or _cached(self._file.fileno(), size):
            return
        handle = os.open(self.path, os.O_RDONLY)

        def read_through() -> None:
            buffer = bytearray(PREFETCH_BYTES)
            try:
                while os.readv(handle, [buffer]) > 0:
                    pass
            finally:
                os.close(handle)

        threading.Thread(target=read_through, name="store-prefetch", daemon=True).start()

    @property
    def by_row(self) -> bool:
        """Whether a gather reads the disk row by row (pread) rather than through a memory map."""
        return self._file is not None

    def take(self, index: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Rows `index` (n,) into `out` (n, D), C-contiguous. Read row by row, runs of consecutive rows among
        them (train.shuffle: blocks) take one pread each."""
        if self._map is not None:
            return np.take(self._map, index, axis=0, out=out)
        ranks = np.argsort(index, kind="stable")
        ordered = index[ranks]
        starts = np.flatnonzero(np.diff(ordered, prepend=-2) != 1)
        if len(starts) > len(index) // 2:                      # scattered rows: straight into place
            for row, i in zip(out, index.tolist()):
                self._read(row, i)
            return out
        runs = np.empty_like(out)
        for start, stop in zip(starts.tolist(), [*starts[1:].tolist(), len(index)]):
            self._read(runs[start:stop], int(ordered[start]))
        out[ranks] = runs
        return out

    def __getitem__(self, rows: slice) -> np.ndarray:
        if self._map is not None:
            return np.array(self._map[rows])
        start, stop, step = rows.indices(self.shape[0])
        block = np.empty((max(0, stop - start), self.shape[1]), self.dtype)
        if len(block):
            self._read(block, start)
        return block[::step]

    def _read(self, out: np.ndarray, start: int) -> None:
        """Rows start.. into `out` (k, D) or (D,), contiguous, with one pread."""
        if os.preadv(self._file.fileno(), [out], self._offset + start * self._row_bytes) != out.nbytes:
            raise DataError(f"{self.path} is shorter than its header says; clear the cache (mlp cache clear)")

    def __del__(self) -> None:
        if getattr(self, "_file", None) is not None:
            self._file.close()


def _cached(handle: int, size: int, probes: int = 64) -> bool:
    """Whether `probes` bytes spread over the open file `handle` (of `size` bytes) are all in the page cache
    (read with RWF_NOWAIT, which refuses to wait for the disk); False where that flag does not exist."""
    if not hasattr(os, "RWF_NOWAIT"):
        return False
    byte = bytearray(1)
    try:
        for offset in np.linspace(0, size - 1, probes).astype(np.int64).tolist():
            os.preadv(handle, [byte], offset, os.RWF_NOWAIT)
    except BlockingIOError:
        return False
    return True


class StackedRows:
    """The first `count` rows of each of several row arrays (in memory or MappedRows), one after the other,
    read as one (R, D) array: `take` gathers a minibatch from whichever array holds each row."""

    def __init__(self, parts: list[tuple[np.ndarray | MappedRows, int]]) -> None:
        self.parts = parts
        self.starts = np.cumsum([0] + [count for _, count in parts])
        self.shape, self.dtype = (int(self.starts[-1]), parts[0][0].shape[1]), parts[0][0].dtype

    def __len__(self) -> int:
        return self.shape[0]

    def take(self, index: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Rows `index` (n,) into `out` (n, D)."""
        part_of = np.searchsorted(self.starts, index, side="right") - 1
        for i, (rows, _) in enumerate(self.parts):
            mine = np.flatnonzero(part_of == i)
            if len(mine):
                local = index[mine] - self.starts[i]
                out[mine] = take_rows(rows, local, np.empty((len(mine), self.shape[1]), self.dtype))
        return out


def _npy_whole(path: Path, shape: tuple, dtype: np.dtype) -> bool:
    """Whether the .npy file at `path` holds a C-order array of `shape` and `dtype`, with nothing missing or
    left over."""
    with open_regular(path) as f:
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}[np.lib.format.read_magic(f)]
        found, fortran, found_dtype = read_header(f)
        size = f.tell() + int(np.prod(found)) * found_dtype.itemsize
        return (tuple(found) == tuple(shape) and not fortran and found_dtype == dtype
                and os.fstat(f.fileno()).st_size == size)


def take_rows(rows: np.ndarray | MappedRows | StackedRows, index: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Rows `index` (n,) of `rows` (R, D) — in memory, on disk or stacked — into `out` (n, D)."""
    if isinstance(rows, np.ndarray):
        return np.take(rows, index, axis=0, out=out)
    return rows.take(index, out)


def reads_by_row(rows: np.ndarray | MappedRows | StackedRows) -> bool:
    """Whether gathering rows of `rows` reads the disk row by row, and `rows` holds nothing in memory (so it
    goes to another process as file names)."""
    parts = [part for part, _ in rows.parts] if isinstance(rows, StackedRows) else [rows]
    return all(isinstance(part, MappedRows) for part in parts) and any(part.by_row for part in parts)


def _allocate(path: Path) -> None:
    """Reserve the disk space of the (sparse) file at `path` now: workers write it through memory maps, and a
    write into a memory map that finds the disk full kills the process (SIGBUS) instead of raising an error."""
    with open(path, "r+b") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
        except OSError as err:
            if err.errno in (errno.EOPNOTSUPP, errno.EINVAL):     # a file system without it: write as we go
                return
            raise OSError(err.errno, err.strerror, str(path)) from None


def rewrite_blocks(path: Path, fn, block: int) -> None:
    """Replace every block of `block` rows of the .npy file at `path` by fn(rows) (in place allowed),
    mapping the file afresh every REMAP_BYTES so the resident memory stays bounded."""
    rows = np.load(path, mmap_mode="r+", allow_pickle=False)
    done = 0
    for start in range(0, len(rows), block):
        rows[start:start + block] = fn(np.array(rows[start:start + block]))
        done += rows[start:start + block].nbytes
        if done > REMAP_BYTES:
            rows.flush()
            rows, done = np.load(path, mmap_mode="r+", allow_pickle=False), 0
    rows.flush()


class StoreRoot:
    """A folder of stores: `cache_dir/features` (kept, size-limited) or a temporary folder (removed by close)."""

    def __init__(self, cache_dir: str | None, max_gb: float | None = None) -> None:
        self.temporary = cache_dir is None
        self.path = Path(tempfile.mkdtemp(prefix="mlp-features-")) if self.temporary else \
            Path(cache_dir).expanduser() / "features"
        self.max_bytes = None if max_gb is None else int(max_gb * 2 ** 30)
        self.in_use: set[str] = set()

    def open(self, key: str) -> Store | None:
        """The finished store `key`, marked as just used; None if there is none, or if it is damaged (then
        removed, to be built again, if mlp wrote it)."""
        store = Store(self.path / key)
        try:
            os.utime(store.path / INFO)
        except OSError:
            return None
        if not store.intact():
            if owns(store.path, "features"):
                shutil.rmtree(store.path, ignore_errors=True)
            return None
        self.in_use.add(key)
        return store

    def create(self, key: str, rows: int, dim: int, dtype: np.dtype, about: dict) -> StoreWriter:
        """A writer building store `key` of (rows, dim) rows in a temporary folder beside its final place."""
        self.path.mkdir(parents=True, exist_ok=True)
        return StoreWriter(self, key, rows, dim, np.dtype(dtype), about)

    def evict(self) -> None:
        """Remove least-recently-used stores (never those in use; round 1's files and damaged stores count as
        stores, what mlp did not write does not) until the cache fits in max_bytes."""
        if self.max_bytes is None or not self.path.is_dir():
            return
        entries = cache_contents(str(self.path.parent))
        total = sum(entry["bytes"] for entry in entries)
        for entry in entries:
            if total <= self.max_bytes:
                break
            if entry["key"] in self.in_use or entry["status"] == "unfinished":    # being built, maybe elsewhere
                continue
            path = self.path / entry["key"]
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            total -= entry["bytes"]

    def close(self) -> None:
        """Remove a temporary root and everything in it."""
        if self.temporary:
            shutil.rmtree(self.path, ignore_errors=True)


class StoreWriter:
    """Builds one store: `rows` is the memory-mapped (R, D) file that workers write into by row range."""

    def __init__(self, root: StoreRoot, key: str, rows: int, dim: int, dtype: np.dtype, about: dict) -> None:
        self.root, self.key, self.about = root, key, about
        self.building = Path(tempfile.mkdtemp(prefix=f".{key}-", suffix=".part", dir=root.path))
        self.rows_path = self.building / ROWS
        self.shape, self.dtype = (rows, dim), dtype
        try:
            np.lib.format.open_memmap(self.rows_path, mode="w+", dtype=dtype, shape=(rows, dim)).flush()
            _allocate(self.rows_path)
        except BaseException:
            self.discard()
            raise

    def finish(self, unreadable: np.ndarray | None, state: dict[str, np.ndarray] | None) -> Store:
        """Write the rest and move the store into place; the finished Store."""
        if unreadable is not None and unreadable.any():
            np.save(self.building / UNREADABLE, unreadable)
        if state is not None:
            save_npz(self.building / STATE, state)
        info = {"rows": self.shape[0], "dim": self.shape[1], "dtype": self.dtype.name, "created": time.time(),
                **self.about}
        write_text_atomic(self.building / INFO, json.dumps(info, indent=1))
        final = self.root.path / self.key
        try:
            self.building.rename(final)
        except OSError:                  # another process finished the same store first: theirs is as good
            if not (final / INFO).exists():
                raise
            shutil.rmtree(self.building, ignore_errors=True)
        self.root.in_use.add(self.key)
        self.root.evict()
        return Store(final)

    def discard(self) -> None:
        shutil.rmtree(self.building, ignore_errors=True)


def cache_contents(cache_dir: str) -> list[dict]:
    """The stores in cache_dir/features, least recently used first: key, rows, dim, dtype, features, bytes,
    last used (seconds since the epoch); unfinished, damaged or round 1's (old format) ones as such. What mlp
    did not write there is not among them (`foreign`)."""
    found = []
    for folder in _entries(cache_dir, "features", owned=True):
        entry = {"key": folder.name, "bytes": _folder_bytes(folder)}
        try:
            store = Store(folder)
            info = store.info
            entry |= {"rows": int(info["rows"]), "dim": int(info["dim"]), "dtype": str(info["dtype"]),
                      "features": [str(name) for name in info.get("features", [])],
                      "last_used": (folder / INFO).stat().st_mtime,
                      "status": "ready" if store.intact() else "damaged"}
        except (OSError, ValueError, KeyError, TypeError):
            status = "unfinished" if folder.name.endswith(".part") else "damaged" if folder.is_dir() else "old format"
            entry |= {"last_used": folder.stat().st_mtime, "status": status}
        found.append(entry)
    return sorted(found, key=lambda entry: entry["last_used"])


def foreign(cache_dir: str) -> list[str]:
    """The names in cache_dir/features of what mlp did not write: the cache leaves them alone."""
    return [path.name for path in _entries(cache_dir, "features", owned=False)]


def clear_cache(cache_dir: str) -> int:
    """Remove every feature store (and round 1's decoded images) under cache_dir, and nothing mlp did not
    write; the bytes freed."""
    freed = 0
    for path in _entries(cache_dir, "features", owned=True) + _entries(cache_dir, "images", owned=True):
        freed += _folder_bytes(path)
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return freed


def owns(path: Path, folder: str) -> bool:
    """Whether mlp wrote `path`, an entry of cache_dir/`folder` ("features" or "images"), as OWNED names them:
    a folder (not a link) holding only files named as mlp names them there, or a file that is round 1's .npz
    store (its features written by save_npz)."""
    for name, files in OWNED[folder]:
        if not name.fullmatch(path.name):
            continue
        try:
            mode = path.lstat().st_mode
            if files is None:
                if not stat.S_ISREG(mode):
                    return False
                with open_regular(path) as f, NpzReader(f) as npz:
                    return "features" in npz.members and npz.saved_by_save_npz()
            return stat.S_ISDIR(mode) and all(files.fullmatch(name) and not stat.S_ISDIR((path / name).lstat().st_mode)
                                              for name in os.listdir(path))
        except (OSError, ValueError):
            return False
    return False


def _entries(cache_dir: str, folder: str, owned: bool) -> list[Path]:
    """The entries of cache_dir/`folder` that mlp wrote (owned) or did not (not owned), sorted by name."""
    root = Path(cache_dir).expanduser() / folder
    return [path for path in (sorted(root.iterdir()) if root.is_dir() else []) if owns(path, folder) == owned]


def _folder_bytes(folder: Path) -> int:
    """Bytes of the files in `folder` (or of `folder` itself, a file)."""
    if not folder.is_dir():
        return folder.stat().st_size
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())
