"""Fetching the official archives of the public datasets, and finding a dataset on disk.

`download("cifar10", "data")` fetches the archive with a progress bar, checks every file's size and MD5
against the official ones (the checksums are those torchvision's dataset classes publish), and unpacks it into
`data/cifar10`, the folder to point `data.path` at. Nothing half-written is left behind: files are
downloaded and unpacked inside a temporary folder that is renamed into place only when all is verified.
A server is read no further than a file's official size, and a transfer that brings less than
STALL_BYTES in STALL_SECONDS is given up.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from mlpcli.errors import DataError, quote

STALL_SECONDS = 60.0      # a download that brings less than STALL_BYTES in this many seconds has stalled
STALL_BYTES = 64 * 1024


@dataclass(frozen=True)
class Archive:
    """A dataset published as files under one URL: `files` are (file name, MD5 hex digest, size in bytes).

    Files ending in .tar.gz are unpacked; others (the gzipped IDX files) are kept as they are.
    """

    name: str
    base_url: str
    files: tuple[tuple[str, str, int], ...]


def download(name: str, dest_dir: str | Path, *, base_url: str | None = None, progress: bool = True) -> Path:
    """Fetch, verify and unpack dataset `name` into `dest_dir/name`; returns that folder (for `data.path`).

    `base_url` replaces the official location (a mirror). If the folder already exists it is returned
    as it is, without any download; a file of that name is an error.
    """
    archives = downloadable()
    if name not in archives:
        raise DataError(f"no download for dataset '{name}'; available: {', '.join(archives)}")
    archive = archives[name]
    if base_url is not None:
        _check_url(base_url)
        archive = Archive(archive.name, base_url, archive.files)
    return fetch(archive, dest_dir, progress=progress)


def fetch(archive: Archive, dest_dir: str | Path, *, progress: bool = True) -> Path:
    """Download `archive` into `dest_dir/archive.name`, verified and unpacked; see `download`."""
    target = Path(dest_dir).expanduser() / archive.name
    if target.is_dir():
        return target
    if os.path.lexists(target):
        raise DataError(f"{target} exists and is not a folder")
    created = [folder for folder in (target.parent, *target.parent.parents) if not folder.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{archive.name}-", suffix=".part", dir=target.parent))
    try:
        for filename, md5, size in archive.files:
            path = staging / filename
            _fetch_file(archive.base_url.rstrip("/") + "/" + filename, path, md5, size, progress)
            if filename.endswith(".tar.gz"):
                _unpack(path, staging)
                path.unlink()
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:          # deepest first: the folders made above, if a failure left them empty
            with contextlib.suppress(OSError):
                folder.rmdir()
    return target


def downloadable() -> dict[str, Archive]:
    """{source name: its official archive} for the sources that have one."""
    from mlpcli.data import SOURCES

    return {name: source.archive for name, source in SOURCES.items() if source.archive is not None}


def dataset_path(source: str, path: str | None) -> Path:
    """The existing file or folder `data.path` names for `source`, or a DataError saying how to get one."""
    archives = downloadable()
    if source in archives:
        hint = f"; `mlp data download {source} --dir data` fetches it into data/{source}"
    else:                               # a folder or file of the user's, perhaps named after a known dataset
        named = Path(path or "").name.lower()
        hint = next((f"; to get {name}, `mlp data download {name} --dir data` fetches its official files into "
                     f"data/{name}: read them with data.source={name} data.path=data/{name}"
                     for name in archives if named == name), "")
    if path is None:
        raise DataError(f"data.path is not set: point it at the {source} dataset{hint}")
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise DataError(f"data.path {path} does not exist{hint}")
    return resolved


def _check_url(url: str) -> None:
    """DataError unless `url` is an absolute http, https, ftp or file URL."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        parts = None
    if (parts is None or parts.scheme not in ("http", "https", "ftp", "file") or not (parts.netloc or parts.path)
            or any(char.isspace() or not char.isprintable() for char in url)):
        raise DataError(f"mirror {quote(url)} is not a URL; give the base URL of the files, "
                        "e.g. https://example.org/mnist/")


def _fetch_file(url: str, path: Path, md5: str, size: int, progress: bool) -> None:
    """Stream `url` into `path` with a progress bar, checking its size, its MD5 and the pace of the transfer."""
    digest = hashlib.md5()
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=STALL_SECONDS) as response, open(path, "wb") as out:
            announced = response.headers.get("Content-Length")
            if announced is not None and announced.strip() != str(size):
                raise DataError(f"download of {url} failed: its Content-Length is {quote(announced.strip())}, not "
                                f"the {size:,} bytes of the official file; check the mirror URL")
            window_start, window_bytes = time.monotonic(), 0
            with tqdm(total=size, unit="B", unit_scale=True, desc=path.name, disable=not progress) as bar:
                while block := response.read1(min(1 << 20, size + 1 - received)):   # one byte past size at most
                    received += len(block)
                    if received > size:
                        raise DataError(f"download of {url} failed: the server sends more than the {size:,} bytes "
                                        "of the official file; check the mirror URL")
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
                    if time.monotonic() - window_start >= STALL_SECONDS:
                        if received - window_bytes < STALL_BYTES:
                            raise TimeoutError
                        window_start, window_bytes = time.monotonic(), received
    except TimeoutError:                # no byte for STALL_SECONDS, or too few of them
        raise DataError(f"download of {url} stalled: less than {STALL_BYTES:,} bytes in {STALL_SECONDS:g} s, after "
                        f"{received:,} of {size:,} bytes; try again or pass a mirror URL") from None
    except urllib.error.HTTPError as err:
        raise DataError(f"download of {url} failed: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as err:  # a cut connection too
        reason = getattr(err, "reason", err)
        raise DataError(f"download of {url} failed: {reason}; check the network or pass a mirror URL") from None
    if received < size:
        raise DataError(f"download of {url} failed: the transfer stopped after {received:,} of {size:,} bytes; "
                        "try again")
    if digest.hexdigest() != md5:
        raise DataError(f"download of {url} is corrupt: MD5 {digest.hexdigest()}, expected {md5}; try again")


def _unpack(path: Path, into: Path) -> None:
    """Extract tar.gz `path` into folder `into`, refusing members that would land outside it."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            if hasattr(tarfile, "data_filter"):          # Python 3.10.12+, 3.11.4+
                tar.extractall(into, filter="data")
            else:
                _refuse_escapes(tar.getmembers(), into)
                tar.extractall(into)
    except (tarfile.TarError, OSError) as err:
        raise DataError(f"cannot unpack {path.name}: {err}") from None


def _refuse_escapes(members: list[tarfile.TarInfo], into: Path) -> None:
    """TarError for a member that is not a plain file or folder inside `into` (older Pythons' check)."""
    root = into.resolve()
    for member in members:
        target = (root / member.name).resolve()
        if root != target and root not in target.parents:
            raise tarfile.TarError(f"member {member.name!r} would be written outside the folder")
        if not (member.isfile() or member.isdir()):
            raise tarfile.TarError(f"member {member.name!r} is a link or special file")
