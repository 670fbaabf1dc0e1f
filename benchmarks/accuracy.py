"""Accuracy and cost of the shipped configs: the README's table, re-measured.

    python benchmarks/accuracy.py [CONFIG ...] [--data PATH] [--set KEY=VALUE ...] [--keep-blas-env]

Runs `mlp train CONFIG` for each CONFIG (default: configs/cifar10_*.yaml) in its own process, on the
config's `data.path` or on PATH with `--data`, from a cold feature cache, and prints one row per config:
validation (and, with a test/ folder, test) accuracy; the wall time of the whole command (start-up,
decoding, features, epochs, evaluation, checkpoints); the epochs' share of it; and the peak RSS of the
largest process and of the process tree (feature workers included). Runs and caches go to a temporary
folder that is removed at the end. `--set` adds config overrides, e.g. `--set train.epochs=1` for a smoke
run. A config whose data is missing is skipped with a note; without any data the script exits 0.
As bench_train.py, it unsets OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE (BENCHMARKS.md) unless told not to.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from timing import run_command

from mlpcli.config import load_config

ROOT = Path(__file__).resolve().parents[1]
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def measure(config: Path, overrides: list[str], tmp: Path, env: dict[str, str]) -> dict:
    """`mlp train config overrides` in a fresh process with an empty cache: accuracies, seconds, peak RSS."""
    run = tmp / config.stem
    command = ["mlp", "train", _relative(config), *overrides]
    cmd = [sys.executable, "-m", "mlpcli", "train", str(config), *overrides, f"cache_dir={tmp / 'cache'}",
           "output.plots=false", "--out", str(run), "-q"]
    ran = run_command(cmd, ROOT, env)
    summary = json.loads((run / "summary.json").read_text())
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {
        "config": config.name,
        "command": " ".join(command),
        "model": summary["model"],
        "val": summary["val"]["accuracy"],
        "test": summary["test"]["accuracy"] if "test" in summary else None,
        "epochs": f"{summary['best_epoch']}/{summary['epochs_run']}",
        "total": ran.seconds,
        "training": sum(row["seconds"] for row in epochs),
        "max_rss": ran.max_rss,
        "tree_rss": ran.tree_rss,
    }


def _relative(path: Path) -> str:
    """`path` relative to the repository when inside it (as a user would type it from there)."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def table(rows: list[dict]) -> str:
    """The rows as a Markdown table."""
    with_test = any(row["test"] is not None for row in rows)
    head = ["config", "network", "val acc", *(["test acc"] if with_test else []), "best/run epochs",
            "end to end", "of which epochs", "peak RSS, largest process", "peak RSS, process tree", "command"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["config"], row["model"], f"{row['val']:.2%}",
                 *([f"{row['test']:.2%}" if row["test"] is not None else "—"] if with_test else []),
                 row["epochs"], f"{row['total']:.0f} s", f"{row['training']:.0f} s",
                 f"{row['max_rss'] / 2**20:.0f} MiB", f"{row['tree_rss'] / 2**20:.0f} MiB", f"`{row['command']}`"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", type=Path, help="config files (default: configs/cifar10_*.yaml)")
    parser.add_argument("--data", type=Path, help="dataset path for every config (default: each config's data.path, "
                                                  "relative to the repository)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override applied to every config (repeatable)")
    parser.add_argument("--keep-blas-env", action="store_true", help="keep OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE")
    args = parser.parse_args()
    configs = args.configs or sorted((ROOT / "configs").glob("cifar10_*.yaml"))
    env = {k: v for k, v in os.environ.items() if args.keep_blas_env or k not in BLAS_ENV}
    rows = []
    with tempfile.TemporaryDirectory(prefix="mlp-accuracy-") as tmp:
        for config in configs:
            data = args.data or ROOT / load_config(config).data.path
            if not data.exists():
                print(f"skipped {config.name}: {data} not found (pass --data PATH)")
                continue
            given = [f"data.path={args.data.resolve()}"] if args.data else []
            try:
                row = measure(config.resolve(), [*given, *args.overrides], Path(tmp), env)
            except RuntimeError as err:
                print(f"{config.name}: {err}", file=sys.stderr)
                return 1
            print(f"{row['config']}: val {row['val']:.2%}, end to end {row['total']:.0f} s "
                  f"(epochs {row['training']:.0f} s), peak RSS {row['max_rss'] / 2**20:.0f} MiB "
                  f"(tree {row['tree_rss'] / 2**20:.0f} MiB)", flush=True)
            rows.append(row)
    if rows:
        print()
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
