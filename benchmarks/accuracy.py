"""Accuracy and cost of the shipped configs: the README's table, re-measured.

    python benchmarks/accuracy.py [CONFIG ...] [--data PATH] [--set KEY=VALUE ...]

Trains each CONFIG (default: configs/cifar10_*.yaml) on its own `data.path`, or on PATH with
`--data`, and prints one row per config: validation (and, with a test/ folder, test) accuracy,
feature time (fitting and extracting the features of every split, uncached), training time (the
epochs, validation included) and the total wall time. Runs and caches go to a temporary folder that
is removed at the end; the images are decoded once and shared by all configs. `--set` adds config
overrides, e.g. `--set train.epochs=1` for a smoke run. A config whose data is missing is skipped
with a note; without any data the script exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from mlpcli.config import load_config
from mlpcli.data import load_splits
from mlpcli.errors import MlpError
from mlpcli.experiment import extract_features
from mlpcli.rundir import RunDir
from mlpcli.seeding import generators
from mlpcli.train import train

ROOT = Path(__file__).resolve().parents[1]


def measure(config: Path, data: Path, overrides: list[str], tmp: Path) -> dict:
    """Train `config` on `data` with `overrides`; its accuracies, timings in seconds and the command."""
    cfg = load_config(config, [*overrides, f"data.path={data}", f"cache_dir={tmp / 'cache'}",
                               f"output.dir={tmp / 'runs'}", "output.plots=false"])
    started = time.perf_counter()
    rngs = generators(cfg.seed)
    splits = load_splits(cfg, rngs["data"])
    loaded = time.perf_counter()
    extract_features(cfg)    # the extraction `train` does, timed here; it fills the feature cache `train` reads
    featured = time.perf_counter()
    del splits
    run = RunDir.create(cfg)
    summary = train(cfg, run, progress=False).summary
    epochs = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    return {
        "config": config.name,
        "command": " ".join(["mlp train", _relative(config), *overrides]),
        "model": summary["model"],
        "val": summary["val"]["accuracy"],
        "test": summary["test"]["accuracy"] if "test" in summary else None,
        "epochs": f"{summary['best_epoch']}/{summary['epochs_run']}",
        "load": loaded - started,
        "features": featured - loaded,
        "training": sum(row["seconds"] for row in epochs),
        "total": time.perf_counter() - started,
    }


def _relative(path: Path) -> str:
    """`path` relative to the repository when inside it (as a user would type it from there)."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def table(rows: list[dict]) -> str:
    """The rows as a Markdown table."""
    with_test = any(row["test"] is not None for row in rows)
    head = ["config", "network", "val acc", *(["test acc"] if with_test else []), "best/run epochs",
            "features", "training", "total", "command"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["config"], row["model"], f"{row['val']:.2%}",
                 *([f"{row['test']:.2%}" if row["test"] is not None else "—"] if with_test else []),
                 row["epochs"], f"{row['features']:.1f} s", f"{row['training']:.1f} s", f"{row['total']:.1f} s", f"`{row['command']}`"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", type=Path, help="config files (default: configs/cifar10_*.yaml)")
    parser.add_argument("--data", type=Path, help="dataset path for every config (default: each config's data.path, "
                                                  "relative to the repository)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override applied to every config (repeatable)")
    args = parser.parse_args()
    configs = args.configs or sorted((ROOT / "configs").glob("cifar10_*.yaml"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="mlp-accuracy-") as tmp:
        for config in configs:
            data = args.data or ROOT / load_config(config).data.path
            if not data.exists():
                print(f"skipped {config.name}: {data} not found (pass --data PATH)")
                continue
            try:
                given = [f"data.path={args.data}"] if args.data else []
                row = measure(config, data, [*given, *args.overrides], Path(tmp))
            except MlpError as err:
                print(f"{config.name}: error: {err}", file=sys.stderr)
                return 1
            print(f"{row['config']}: val {row['val']:.2%}, load {row['load']:.1f} s, features {row['features']:.1f} s, "
                  f"training {row['training']:.1f} s, total {row['total']:.1f} s", flush=True)
            rows.append(row)
    if rows:
        print()
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
