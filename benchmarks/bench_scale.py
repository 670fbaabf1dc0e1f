"""Cost against dataset size: the generated shapes at N = 10k, 100k and 1M images, and a folder of real JPEGs.

    python benchmarks/bench_scale.py [--sizes 10000,100000,1000000] [--folder /tmp/cifar10-200k]
                                     [--cifar /tmp/cifar10] [--keep-blas-env]

Features: HOG (8-pixel cells, 2x2 blocks, 9 bins: 324 dims on 32x32 images) and a 10-bin hue histogram, 334
dims; network 334-100-N_classes, one epoch from the feature store read from the disk (features.load=disk).
Every stage runs as its own `mlp` (or Python) process from a cold cache, and reports wall time and peak
memory (the largest single process, and the process tree's summed RSS sampled every 50 ms):

  decode    every image of the train and validation splits read (generated, or JPEGs decoded) on the
            worker processes the feature pipeline uses, and dropped
  features  `mlp features`: decode + HOG + hue + the stores written and standardized
  epoch     `mlp train` of EPOCHS epochs on the stores just made: the median of the epochs' own times from
            metrics.jsonl (an epoch of 100k rows takes 0.25-0.35 s from run to run), in the exact shuffle
            (train.shuffle: rows) and in blocks (train.shuffle: blocks)

At 100k the epoch is also run with the store read whole into memory (features.load=memory), the in-memory
epoch the store path is compared against. With --folder (a folder of ≥ 200,000 JPEGs, made by
make_jpeg_folder.py) decode and features are run on real files, with the share of the two cores they kept
busy (CPU time / (wall time x cores)). With --cifar (the 50,000 CIFAR-10 training JPEGs), the cost of
`data.limit=2000` on configs/cifar10_hog_color_quick.yaml against the whole set, both from a cold cache.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

from timing import Ran, run_command

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 5       # epochs per measured run, of which the median is reported
FEATURES = [{"hog": {"orientations": 9, "pixels_per_cell": 8, "cells_per_block": 2}},
            {"color_hist": {"space": "hue", "bins": 10}}]


def config(data: dict, work: Path) -> Path:
    """A config file for the measured runs on `data` (a data section), caching under `work`."""
    path = work / "scale.yaml"
    path.write_text(yaml.safe_dump({
        "seed": 0, "data": {"val_fraction": 0.1, **data},
        "features": {"extractors": FEATURES, "load": "disk"},
        "model": {"hidden": [100]}, "reg": 1e-3, "optim": {"name": "momentum", "lr": 0.05},
        "train": {"epochs": EPOCHS, "batch_size": 200, "threads": 1, "patience": 0},
        "output": {"plots": False, "dir": str(work / "runs")}, "cache_dir": str(work / "cache")}))
    return path


def mlp(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlpcli", *args]


def decode_only(config_path: str) -> None:
    """(In a child process) read every train and validation image on the pipeline's worker processes."""
    from mlpcli.config import load_config
    from mlpcli.data import load_splits
    from mlpcli.parallel import ProcessPool

    cfg = load_config(config_path)
    with ProcessPool() as pool:
        for split in load_splits(cfg).values():
            step = cfg.features.chunk
            parts = [split.part(slice(start, start + step)) for start in range(0, len(split), step)]
            for _ in pool.map(_read_all, parts):
                pass


def _read_all(reader) -> int:
    import numpy as np

    return len(reader.read(np.arange(len(reader)))[0])


def stages(data: dict, work: Path, env: dict, memory_epoch: bool) -> dict[str, Ran | float]:
    """decode, features and epoch (and epoch from memory) of `data`, each in a fresh process."""
    work.mkdir(parents=True)
    path = config(data, work)
    measured = {"decode": run_command([sys.executable, __file__, "--decode", str(path)], REPO, env),
                "features": run_command(mlp("features", str(path), "-q"), REPO, env)}
    epochs = [("epoch", "disk", "rows"), ("epoch, blocks", "disk", "blocks"), ("epoch (memory)", "memory", "rows")]
    for label, load, shuffle in epochs[:3 if memory_epoch else 2]:
        run = work / f"run-{load}-{shuffle}"
        measured[label] = run_command(mlp("train", str(path), "-q", "--out", str(run), f"features.load={load}",
                                          f"train.shuffle={shuffle}"), REPO, env)
        measured[f"{label} seconds"] = statistics.median(json.loads(line)["seconds"]
                                                         for line in (run / "metrics.jsonl").read_text().splitlines())
    return measured


def gib(count: int) -> str:
    return f"{count / 2 ** 30:.2f} GiB"


def scale_table(sizes: list[int], root: Path, env: dict) -> list[str]:
    rows, results = [], {}
    for n in sizes:
        data = {"source": "shapes", "shapes": {"classes": 4, "per_class": n // 4, "size": 32}}
        results[n] = stages(data, root / f"shapes-{n}", env, memory_epoch=n == 100_000)
        r = results[n]
        rows.append(f"| {n:,} | {r['decode'].seconds:.1f} | {r['features'].seconds:.1f} | {r['epoch seconds']:.2f} | "
                    f"{r['epoch, blocks seconds']:.2f} | "
                    f"{gib(max(x.max_rss for x in r.values() if isinstance(x, Ran)))} | "
                    f"{gib(max(x.tree_rss for x in r.values() if isinstance(x, Ran)))} |")
    lines = ["| images | decode s | decode + features s | epoch s (disk store, exact shuffle) | "
             "epoch s (disk store, `train.shuffle: blocks`) | peak RSS, largest process | peak RSS, tree |",
             "|---:|---:|---:|---:|---:|---:|---:|", *rows]
    if 100_000 in results and 1_000_000 in results:
        big, small = results[1_000_000], results[100_000]
        lines += ["", f"time(1M) / time(100k): decode {big['decode'].seconds / small['decode'].seconds:.2f}, "
                      f"decode + features {big['features'].seconds / small['features'].seconds:.2f}, "
                      f"epoch {big['epoch seconds'] / small['epoch seconds']:.2f}, "
                      f"epoch in blocks {big['epoch, blocks seconds'] / small['epoch, blocks seconds']:.2f}"]
    if 100_000 in results:
        r = results[100_000]
        lines.append(f"epoch at 100k: from the disk store {r['epoch seconds']:.2f} s, from memory "
                     f"{r['epoch (memory) seconds']:.2f} s: {r['epoch seconds'] / r['epoch (memory) seconds']:.2f}x")
    return lines


def folder_table(folder: Path, root: Path, env: dict) -> list[str]:
    r = stages({"source": "folder", "path": str(folder)}, root / "folder", env, memory_epoch=False)
    cores = os.cpu_count() or 1
    lines = ["| stage | wall s | CPU s | cores busy | peak RSS, largest process | peak RSS, tree |",
             "|---|---:|---:|---:|---:|---:|"]
    for stage, label in (("decode", "decode"), ("features", "features"), ("epoch", f"mlp train, {EPOCHS} epochs"),
                         ("epoch, blocks", f"mlp train, {EPOCHS} epochs, blocks")):
        x = r[stage]
        lines.append(f"| {label} | {x.seconds:.1f} | {x.cpu:.1f} | {x.cpu / (x.seconds * cores):.0%} | "
                     f"{gib(x.max_rss)} | {gib(x.tree_rss)} |")
    return lines


def limit_lines(cifar: Path, root: Path, env: dict, repeats: int = 3) -> list[str]:
    """`mlp features` of configs/cifar10_hog_color_quick.yaml on all 50,000 images and with data.limit=2000, each from
    an empty cache, `repeats` times in turn; the medians."""
    shipped = REPO / "configs" / "cifar10_hog_color_quick.yaml"
    seconds: dict[str, list[float]] = {"all": [], "limit": []}
    for repeat in range(repeats):
        for label, extra in (("all", []), ("limit", ["data.limit=2000"])):
            work = root / f"limit-{label}-{repeat}"
            work.mkdir(parents=True)
            ran = run_command(mlp("features", str(shipped), "-q", f"data.path={cifar}", f"cache_dir={work / 'cache'}",
                                  *extra), REPO, env)
            seconds[label].append(ran.seconds)
    full, small = statistics.median(seconds["all"]), statistics.median(seconds["limit"])
    return [f"cifar10_hog_color decode + features from a cold cache, median of {repeats}: all images {full:.1f} s "
            f"({', '.join(f'{x:.1f}' for x in seconds['all'])}), data.limit=2000 {small:.2f} s "
            f"({', '.join(f'{x:.2f}' for x in seconds['limit'])}): {small / full:.3f} of it"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--folder", type=Path, help="a folder of JPEGs (make_jpeg_folder.py)")
    parser.add_argument("--cifar", type=Path, help="the CIFAR-10 JPEG folder, for the data.limit comparison")
    parser.add_argument("--keep-blas-env", action="store_true", help="keep OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE")
    parser.add_argument("--decode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.decode:
        decode_only(args.decode)
        return 0
    env = dict(os.environ)
    if not args.keep_blas_env:
        for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
            env.pop(name, None)
    with tempfile.TemporaryDirectory(prefix="mlp-scale-") as tmp:
        lines = scale_table([int(n) for n in args.sizes.split(",")], Path(tmp), env)
        if args.folder:
            lines += ["", f"Folder {args.folder}:", *folder_table(args.folder, Path(tmp), env)]
        if args.cifar:
            lines += ["", *limit_lines(args.cifar, Path(tmp), env)]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
