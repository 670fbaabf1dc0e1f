"""`mlp sweep` against a shell loop of `mlp train`, with successive halving, on a Dask cluster, and against
Optuna driving scikit-learn's MLPClassifier — the same 16 configurations × 2 seeds.

    python benchmarks/bench_sweep.py --data PATH [--config configs/cifar10_hog_color_quick.yaml] [--limit 20000]
                                     [--epochs N] [--seeds 2] [--work DIR]

The space: optim.lr in {0.01, 0.02, 0.05, 0.1} × reg in {0.001, 0.003} × model.hidden in {[256], [512]},
each configuration with `--seeds` seeds, on the config with data.limit=LIMIT. Every method starts from
an empty cache_dir of its own, so each decodes the images and extracts the features itself:

- loop:     `mlp train CONFIG <overrides> seed=S` once per trial, one after the other (BLAS's own threads),
            as a shell loop would;
- sweep:    `mlp sweep` on the local executor (one worker process per core, one BLAS thread each; the
            start of its local cluster is timed);
- halving:  the same with `--prune halving` (eta 3: rungs at 1, 3, then train.epochs epochs);
- dask:     the same sweep with `--scheduler` on a cluster this script starts first (`dask scheduler` and
            `dask worker --nworkers <cores> --nthreads 1` on 127.0.0.1; the start is not timed);
- sklearn:  Optuna's GridSampler over the same 16 configurations driving MLPClassifier (solver sgd,
            momentum 0.9, alpha = 2·reg, the config's batch size and epochs, a constant learning rate:
            it has no cosine schedule) on mlp's features of each seed, two trials at once (n_jobs=2);
            features are read from the sweep's cache and not timed.

It prints a Markdown table for BENCHMARKS.md: wall time, time against the loop, the best configuration's
validation accuracy (mean over seeds), and the epochs trained. Targets (issue 14): sweep ≤ 0.5× the loop,
halving ≤ 0.25× with its best within 0.5 points of the full search's, dask ≤ 1.1× the sweep.
Smoke it with a tiny config: --config a shapes config --limit 400 --epochs 2.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LRS, REGS, HIDDEN = [0.01, 0.02, 0.05, 0.1], [0.001, 0.003], [[256], [512]]
SPACE = [f"optim.lr={','.join(map(str, LRS))}", f"reg={','.join(map(str, REGS))}",
         "model.hidden=" + ",".join(json.dumps(h).replace(" ", "") for h in HIDDEN)]
MLP = [sys.executable, "-m", "mlpcli"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "cifar10_hog_color_quick.yaml"))
    parser.add_argument("--data", help="data.path (the CIFAR-10 JPEG folder)")
    parser.add_argument("--limit", type=int, default=20000, help="data.limit (default 20000)")
    parser.add_argument("--epochs", type=int, help="train.epochs (default: the config's)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--work", help="folder for runs, sweeps and caches (default: a temporary folder)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_sweep-")).absolute()
    base = [f"data.limit={args.limit}"] + ([f"data.path={args.data}"] if args.data else []) + \
        ([f"train.epochs={args.epochs}"] if args.epochs else []) + ["output.plots=false"]
    rows = {}
    rows["loop"] = loop(args.config, base, args.seeds, work / "loop")
    rows["sweep"] = sweep(args.config, base, args.seeds, work / "sweep", [])
    rows["halving"] = sweep(args.config, base, args.seeds, work / "halving", ["--prune", "halving"])
    address, procs = start_cluster(work / "cluster")
    try:
        rows["dask"] = sweep(args.config, base, args.seeds, work / "dask", ["--scheduler", address])
    finally:
        stop(procs)
    rows["sklearn"] = sklearn_optuna(args.config, base, args.seeds, work / "sweep" / "cache")
    print(table(rows, args))


def loop(config: str, base: list[str], seeds: int, folder: Path) -> dict:
    """The 16 × seeds runs as a shell loop of `mlp train` would do them."""
    cache = folder / "cache"
    start, best, epochs = time.perf_counter(), {}, 0
    for (lr, reg, hidden), s in itertools.product(itertools.product(LRS, REGS, HIDDEN), range(seeds)):
        overrides = [f"optim.lr={lr}", f"reg={reg}", f"model.hidden={json.dumps(hidden)}", f"cache_dir={cache}",
                     f"output.dir={folder / 'runs'}", f"seed={_seed(config, base) + s}"]
        out = folder / "runs" / f"{lr}-{reg}-{hidden[0]}-{s}"
        subprocess.run([*MLP, "train", config, *base, *overrides, "--out", str(out), "-q"], check=True,
                       stdout=subprocess.DEVNULL)
        summary = json.loads((out / "summary.json").read_text())
        best.setdefault((lr, reg, hidden[0]), []).append(summary["val"]["accuracy"])
        epochs += summary["epochs_run"]
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "best": max(sum(v) / len(v) for v in best.values()), "epochs": epochs,
            "trials": sum(len(v) for v in best.values())}


def sweep(config: str, base: list[str], seeds: int, folder: Path, extra: list[str]) -> dict:
    start = time.perf_counter()
    done = subprocess.run([*MLP, "sweep", config, *base, *SPACE, f"cache_dir={folder / 'cache'}", "--seeds",
                           str(seeds), "--out", str(folder / "sweep"), "--json", "-q", *extra],
                          check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    result = json.loads(done.stdout)
    finished = [c for c in result["configurations"] if "pruned" not in c["status"] and c["mean"] is not None]
    return {"seconds": seconds, "best": max(c["mean"] for c in finished),
            "epochs": sum(t["epochs"] for t in result["trials"]), "trials": len(result["trials"])}


def sklearn_optuna(config: str, base: list[str], seeds: int, cache: Path) -> dict:
    """Optuna's grid over the same configurations, each trial fitting MLPClassifier on every seed's features."""
    import optuna
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from mlpcli.config import load_config
    from mlpcli.train import prepared

    cfgs = [load_config(config, [*base, f"cache_dir={cache}", f"seed={_seed(config, base) + s}"]) for s in range(seeds)]
    data = []
    for cfg in cfgs:                     # mlp's features of each seed's split, from the sweep's cache
        with prepared(cfg, None, progress=False) as (prep, _):
            train, val = prep.features["train"], prep.features["val"]
            data.append((np.asarray(train.rows[:]), train.training_rows()[0], np.asarray(val.rows[:]), val.labels))
    train = cfgs[0].train

    def objective(trial) -> float:
        lr, reg = trial.suggest_categorical("lr", LRS), trial.suggest_categorical("reg", REGS)
        hidden = HIDDEN[trial.suggest_categorical("hidden", list(range(len(HIDDEN))))]
        scores = []
        for s, (X, y, Xv, yv) in enumerate(data):
            clf = MLPClassifier(hidden_layer_sizes=tuple(hidden), solver="sgd", momentum=0.9, nesterovs_momentum=False,
                                alpha=2 * reg, batch_size=train.batch_size, learning_rate_init=lr,
                                max_iter=train.epochs, tol=0.0, n_iter_no_change=train.epochs + 1, random_state=s)
            clf.fit(X, y)
            scores.append(clf.score(Xv, yv))
        return sum(scores) / len(scores)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)   # max_iter is the epoch budget, as asked
    grid = {"lr": LRS, "reg": REGS, "hidden": list(range(len(HIDDEN)))}
    study = optuna.create_study(sampler=optuna.samplers.GridSampler(grid, seed=0), direction="maximize")
    start = time.perf_counter()
    study.optimize(objective, n_trials=len(LRS) * len(REGS) * len(HIDDEN), n_jobs=2)
    return {"seconds": time.perf_counter() - start, "best": study.best_value,
            "epochs": len(study.trials) * seeds * train.epochs, "trials": len(study.trials) * seeds}


def start_cluster(folder: Path) -> tuple[str, list[subprocess.Popen]]:
    """A Dask scheduler and one worker process per core on 127.0.0.1, started with Dask's own commands."""
    from distributed import Client

    folder.mkdir(parents=True, exist_ok=True)
    dask, info = str(Path(sys.executable).with_name("dask")), folder / "scheduler.json"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": folder}
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(info)], **quiet)]
    try:
        while not info.exists() or not info.read_text().strip():
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        procs.append(subprocess.Popen([dask, "worker", address, "--nworkers", str(os.cpu_count()), "--nthreads", "1",
                                       "--no-dashboard", "--host", "127.0.0.1", "--local-directory", str(folder)], **quiet))
        with Client(address) as client:
            client.wait_for_workers(os.cpu_count(), timeout=120)
        return address, procs
    except BaseException:
        stop(procs)
        raise


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in reversed(procs):
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def table(rows: dict[str, dict], args) -> str:
    names = {"loop": "shell loop of `mlp train`", "sweep": "`mlp sweep` (local, 2 workers)",
             "halving": "`mlp sweep --prune halving`", "dask": "`mlp sweep --scheduler` (2-worker Dask cluster)",
             "sklearn": "Optuna + scikit-learn MLPClassifier (training only)"}
    loop = rows["loop"]["seconds"]
    lines = [f"{len(LRS) * len(REGS) * len(HIDDEN)} configurations x {args.seeds} seeds, {Path(args.config).name}, "
             f"data.limit={args.limit}", "",
             "| method | wall time | vs loop | best val acc (mean of seeds) | trials | epochs trained |",
             "|---|---:|---:|---:|---:|---:|"]
    for key, row in rows.items():
        lines.append(f"| {names[key]} | {row['seconds']:.1f} s | {row['seconds'] / loop:.2f}x | {row['best']:.2%} | "
                     f"{row['trials']} | {row['epochs']} |")
    lines.append("")
    lines.append(f"dask against the local executor: {rows['dask']['seconds'] / rows['sweep']['seconds']:.2f}x; "
                 f"halving's best {100 * (rows['halving']['best'] - rows['sweep']['best']):+.2f} points against the "
                 f"full search's")
    return "\n".join(lines)


def _seed(config: str, base: list[str]) -> int:
    from mlpcli.config import load_config

    return load_config(config, base).seed


if __name__ == "__main__":
    main()
