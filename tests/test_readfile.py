"""Files that are not regular (a FIFO waits for a writer when opened for reading) are refused at once, wherever
mlp reads a file it was pointed at or found in a folder: each case runs `mlp` as a process under a timeout."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mlpcli.readfile import open_regular, read_regular


def mlp(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlpcli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=60)


@pytest.mark.parametrize("fifo, args, message", [
    ("x.npz", ["train", "-q", "data.source=npz", "data.path=x.npz"], "not a regular file"),
    ("cifar/batches.meta", ["train", "-q", "data.source=cifar10", "data.path=cifar"], "not a regular file"),
    (f"cache/features/{'0' * 32}/info.json", ["cache", "info", "--dir", "cache"], None),
])
def test_a_fifo_where_a_file_is_read_is_refused_without_waiting(tmp_path, fifo, args, message):
    (tmp_path / fifo).parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(tmp_path / fifo)
    done = mlp(*args, cwd=tmp_path)
    assert "Traceback" not in done.stderr
    if message is None:          # the cache lists it as a damaged store
        assert done.returncode == 0 and " damaged" in done.stdout, done.stdout
    else:
        assert done.returncode == 1 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_open_regular_refuses_folders_and_fifos_and_reads_files(tmp_path):
    (tmp_path / "file").write_bytes(b"abc")
    os.mkfifo(tmp_path / "fifo")
    assert read_regular(tmp_path / "file") == b"abc" and read_regular(tmp_path / "file", limit=1) == b"ab"
    with pytest.raises(IsADirectoryError):
        open_regular(tmp_path)
    with pytest.raises(OSError, match="not a regular file"):
        open_regular(tmp_path / "fifo")
    with pytest.raises(FileNotFoundError):
        open_regular(tmp_path / "missing")
