"""Training speed on a busy machine: the default thread setting against train.threads=1, idle and under load.

    python benchmarks/bench_load.py [--config configs/cifar10_pixels_quick.yaml] [--data /tmp/cifar10] [--epochs 3]
                                    [--hogs 2] [--keep-blas-env]

Runs `mlp train CONFIG train.epochs=EPOCHS` (features cached by a first run, so only training is timed) with
the default train.threads and with train.threads=1, first on the otherwise idle machine, then with --hogs
competing CPU-bound processes (busy loops) running, and prints the median epoch time of each (from
metrics.jsonl), and each setting's time relative to the better one in the same condition.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {"default": [], "train.threads=1": ["train.threads=1"]}


def epoch_seconds(config: Path, data: Path, epochs: int, extra: list[str], work: Path, env: dict) -> float:
    """The median epoch time of one `mlp train` run."""
    out = Path(tempfile.mkdtemp(dir=work))
    cmd = [sys.executable, "-m", "mlpcli", "train", str(config), "-q", "--out", str(out / "run"), f"data.path={data}",
           f"cache_dir={work / 'cache'}", f"train.epochs={epochs}", "output.plots=false", *extra]
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    rows = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(row["seconds"] for row in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "cifar10_pixels_quick.yaml")
    parser.add_argument("--data", type=Path, default=Path("/tmp/cifar10"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--hogs", type=int, default=2, help="competing CPU-bound processes")
    parser.add_argument("--keep-blas-env", action="store_true", help="keep OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE")
    args = parser.parse_args()
    if not args.data.exists():
        print(f"skipped: {args.data} not found")
        return 0
    env = dict(os.environ)
    if not args.keep_blas_env:
        for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
            env.pop(name, None)
    results = {}
    with tempfile.TemporaryDirectory(prefix="mlp-load-") as tmp:
        work = Path(tmp)
        epoch_seconds(args.config, args.data, 1, [], work, env)           # fills the feature cache
        for condition in ("idle", f"{args.hogs} busy processes"):
            hogs = [] if condition == "idle" else [
                subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hogs)]
            try:
                for name, extra in SETTINGS.items():
                    results[condition, name] = epoch_seconds(args.config, args.data, args.epochs, extra, work, env)
            finally:
                for hog in hogs:
                    hog.kill()
                    hog.wait()
    print(f"{args.config.name}: median epoch seconds over {args.epochs} epochs, {os.cpu_count()} cores")
    print("| condition | setting | epoch s | vs the better setting |")
    print("|---|---|---:|---:|")
    for (condition, name), seconds in results.items():
        best = min(value for (c, _), value in results.items() if c == condition)
        print(f"| {condition} | {name} | {seconds:.2f} | {seconds / best:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
