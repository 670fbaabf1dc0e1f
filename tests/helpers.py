"""Small helpers shared by the tests."""

from __future__ import annotations

import hashlib
import re
import subprocess
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def folder_digest(folder: Path) -> dict[str, str]:
    """The sha256 of every file under `folder`, by its path in the folder."""
    return {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def traced_peak(call) -> int:
    """The most bytes Python and numpy held at once during `call()`, above what they held before."""
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@dataclass
class Finished:
    code: int           # exit code
    stderr: str
    peak_kib: int       # the process's own high-water resident memory (VmHWM), KiB


def run_with_peak(cmd: list[str], cwd: Path | None = None, preexec_fn=None) -> Finished:
    """Run `cmd` to its end, polling its own peak RSS (VmHWM) every 5 ms. Not wait4's ru_maxrss: Linux
    counts in it the memory of the process the child was forked from (a pytest grown to 500 MB)."""
    with tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True, cwd=cwd,
                                   preexec_fn=preexec_fn)
        peak, status = 0, Path(f"/proc/{process.pid}/status")
        while process.poll() is None:
            try:
                found = re.search(r"^VmHWM:\s+(\d+) kB", status.read_text(), re.MULTILINE)
            except OSError:       # ended between poll() and the read
                found = None
            peak = max(peak, int(found.group(1))) if found else peak
            time.sleep(0.005)
        err.seek(0)
        return Finished(process.returncode, err.read(), peak)
