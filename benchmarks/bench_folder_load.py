"""The 50,000 CIFAR-10 JPEGs as a `folder` source: listing them, and which kind of pool decodes them fastest.

    python benchmarks/bench_folder_load.py [--folder /tmp/cifar10] [--repeats 3]

First part: decoding every image through the folder reader, in chunks on a process pool over all cores (as
the feature pipeline's workers do), a thread pool over all cores, and one core, rounds interleaved, best of
`--repeats`. Second part: `folder.load` (the listing and the header sample that picks the size and mode; no
image is decoded), best of `--repeats`. "cores busy" is the CPU time of the process and its workers divided
by the wall time. The folder is the extracted
../shared/data/cifar10-train.tgz (`tar -xzf ../shared/data/cifar10-train.tgz -C /tmp`); without it, prints
a note and exits 0. Run on a quiet machine: other work on the two cores shows up in every figure.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from mlpcli.config import DataConfig
from mlpcli.data.sources import folder

CHUNK = 500   # images per task


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished workers."""
    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def timed(run) -> tuple[float, float]:
    """(wall seconds, cores busy) of one call of `run()`."""
    start, cpu = time.perf_counter(), cpu_seconds()
    run()
    wall = time.perf_counter() - start
    return wall, (cpu_seconds() - cpu) / wall


def compare_pools(root: Path, repeats: int) -> None:
    train = folder.load(DataConfig(source="folder", path=str(root)), None)["train"]
    chunks = [train.part(slice(start, start + CHUNK)) for start in range(0, len(train), CHUNK)]
    cores = os.cpu_count() or 1
    pools = {f"process pool x{cores}": lambda: ProcessPoolExecutor(cores),
             f"thread pool x{cores}": lambda: ThreadPoolExecutor(cores),
             "one core": lambda: ThreadPoolExecutor(1)}
    best = {name: (float("inf"), 0.0) for name in pools}
    for _ in range(repeats):
        for name, pool in pools.items():
            def decode_all():
                with pool() as executor:
                    return sum(executor.map(decode, chunks))
            best[name] = min(best[name], timed(decode_all))
    print(f"decode pass, {len(train)} images:")
    for name, (wall, busy) in best.items():
        print(f"  {name:18s} {wall:5.2f} s  {wall / len(train) * 1e6:4.0f} us/image  {busy:.2f} cores busy")


def decode(reader) -> int:
    return len(reader.read(np.arange(len(reader)))[0])


def listing(root: Path, repeats: int) -> None:
    best = min(timed(lambda: folder.load(DataConfig(source="folder", path=str(root)), None)) for _ in range(repeats))
    print(f"folder.load (listing, header sample; nothing decoded): {best[0]:5.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=Path("/tmp/cifar10"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not args.folder.is_dir():
        print(f"{args.folder} not found; extract ../shared/data/cifar10-train.tgz there first")
        sys.exit(0)
    compare_pools(args.folder, args.repeats)
    listing(args.folder, args.repeats)


if __name__ == "__main__":
    main()
