"""Loading the 50,000 CIFAR-10 JPEGs as a `folder` source: cold (decoding) and cached, and which pool decodes.

    python benchmarks/bench_folder_load.py [--folder /tmp/cifar10] [--repeats 3]

First part: the decode pass alone through a process pool on all cores, a thread pool on all cores, and one
core, rounds interleaved, best of `--repeats`. Second part: `folder.load` into a fresh cache (cold: scan,
header pass, decode, cache write) and again (cached), best of `--repeats`. "cores busy" is the CPU time of
the process and its workers divided by the wall time. The folder is the extracted
../shared/data/cifar10-train.tgz (`tar -xzf ../shared/data/cifar10-train.tgz -C /tmp`); without it, prints
a note and exits 0. Run on a quiet machine: other work on the two cores shows up in every figure.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from pathlib import Path

from mlpcli.config import DataConfig
from mlpcli.data import folder


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
    listing = folder.scan(root)
    decode = partial(folder._decode_chunk, size=[32, 32], mode="rgb")
    cores = os.cpu_count() or 1
    pools = {f"process pool x{cores}": lambda workers: ProcessPoolExecutor(cores),
             f"thread pool x{cores}": lambda workers: ThreadPoolExecutor(cores),
             "one core": lambda workers: ThreadPoolExecutor(1)}
    best = {name: (float("inf"), 0.0) for name in pools}
    default = folder.ProcessPoolExecutor
    try:
        for _ in range(repeats):
            for name, pool in pools.items():
                folder.ProcessPoolExecutor = pool
                best[name] = min(best[name], timed(lambda: folder.parallel_map(decode, listing.paths, "decoding")))
    finally:
        folder.ProcessPoolExecutor = default
    print(f"decode pass, {len(listing.paths)} images:")
    for name, (wall, busy) in best.items():
        print(f"  {name:18s} {wall:5.2f} s  {wall / len(listing.paths) * 1e6:4.0f} us/image  {busy:.2f} cores busy")


def cold_and_cached(root: Path, repeats: int) -> None:
    print("folder.load (no data.size/mode: header pass to pick them):")
    for phase in ("cold", "cached"):
        best = (float("inf"), 0.0)
        for _ in range(repeats):
            cache = Path(tempfile.mkdtemp(prefix="mlpcli-bench-"))
            try:
                cfg = DataConfig(source="folder", path=str(root))
                if phase == "cached":
                    folder.load(cfg, cache)
                best = min(best, timed(lambda: folder.load(cfg, cache)))
            finally:
                shutil.rmtree(cache)
        print(f"  {phase:6s} {best[0]:5.2f} s  {best[1]:.2f} cores busy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=Path("/tmp/cifar10"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not args.folder.is_dir():
        print(f"{args.folder} not found; extract ../shared/data/cifar10-train.tgz there first")
        sys.exit(0)
    compare_pools(args.folder, args.repeats)
    cold_and_cached(args.folder, args.repeats)


if __name__ == "__main__":
    main()
