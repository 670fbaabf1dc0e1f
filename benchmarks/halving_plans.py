"""What successive halving would have found, replayed exactly on a finished sweep without pruning.

    python benchmarks/halving_plans.py SWEEP_DIR [--within 0.5]

A trial paused at a rung and continued ends with the same bytes as one trained straight through (issue 14),
so the validation accuracy it has after e epochs is the one the full sweep's trial logged at epoch e: every
pruning decision, and the configuration halving ends with, can be computed from the full sweep's
metrics.jsonl files without training anything. The script prints:

- each configuration's metric (best val_acc so far, mean over its seeds) after every epoch, with its rank;
- what `--prune halving` ends with for eta 2, 3, 4 and min_epochs 1, 2, 3: the best configuration it keeps,
  its distance to the full search's best, and the trial-epochs it trains (against the full search's);
- the cheapest plan of all (any rung epochs, any number kept at each rung, even ones no rule would choose)
  whose survivors include a configuration within `--within` points of the full search's best, found by
  exhaustive search: a lower bound on what any successive halving of this search costs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mlpcli.rundir import RunDir
from mlpcli.sweep.folder import SweepDir
from mlpcli.sweep.trial import metric_at


def curves(sweep: SweepDir) -> dict[int, list[float]]:
    """Configuration index -> its val_acc (best so far, mean over seeds) after epochs 1, 2, ..."""
    by_config: dict[int, list[RunDir]] = {}
    for record in sweep.read_trials().values():
        if record["status"] != "completed":
            raise SystemExit(f"trial {record['trial']} is {record['status']}: replay a finished sweep without pruning")
        by_config.setdefault(record["config"], []).append(RunDir(sweep.path / record["run"]))
    epochs = min(len(run.read_metrics()) for runs in by_config.values() for run in runs)
    return {config: [sum(metric_at(run, "val_acc", e) for run in runs) / len(runs) for e in range(1, epochs + 1)]
            for config, runs in sorted(by_config.items())}


def halving(curve: dict[int, list[float]], points: list[int], eta: int, seeds: int) -> tuple[list[int], int]:
    """The configurations left by mlp's successive halving with rungs `points`, and the trial-epochs it trains."""
    alive, done, spent, epochs = list(curve), 0, 0, len(next(iter(curve.values())))
    for rung in points:
        spent += len(alive) * seeds * (rung - done)
        done = rung
        alive = sorted(alive, key=lambda c: (-curve[c][rung - 1], c))[:max(1, len(alive) // eta)]
    return alive, spent + len(alive) * seeds * (epochs - done)


def cheapest_plan(curve: dict[int, list[float]], good: set[int],
                  seeds: int) -> tuple[int, list[tuple[int, int]]] | None:
    """(trial-epochs, [(rung epoch, configurations kept), ...]) of the cheapest plan ending with a `good`
    configuration among its survivors; branch and bound over every plan."""
    epochs = len(next(iter(curve.values())))
    best: list = [seeds * len(curve) * epochs + 1, None]

    def search(alive: list[int], done: int, spent: int, plan: list[tuple[int, int]]) -> None:
        finish = spent + len(alive) * seeds * (epochs - done)
        if good & set(alive) and finish < best[0]:
            best[:] = [finish, plan]
        for rung in range(done + 1, epochs):
            cost = spent + len(alive) * seeds * (rung - done)
            if cost + seeds * (epochs - rung) >= best[0]:
                break
            order = sorted(alive, key=lambda c: (-curve[c][rung - 1], c))
            for keep in range(1, len(alive)):
                if good & set(order[:keep]):
                    search(order[:keep], rung, cost, plan + [(rung, keep)])

    search(list(curve), 0, 0, [])
    return None if best[1] is None else (best[0], best[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", help="folder of a finished `mlp sweep` without pruning")
    parser.add_argument("--within", type=float, default=0.5, help="points from the full search's best (default 0.5)")
    args = parser.parse_args()
    sweep = SweepDir(Path(args.sweep))
    curve = curves(sweep)
    seeds = len(sweep.read_trials()) // len(curve)
    epochs = len(next(iter(curve.values())))
    final = {c: values[-1] for c, values in curve.items()}
    top = max(final.values())
    good = {c for c, value in final.items() if value >= top - args.within / 100}
    full = len(curve) * seeds * epochs
    print(f"{len(curve)} configurations x {seeds} seeds, {epochs} epochs: the full search trains {full} trial-epochs; "
          f"best {top:.2%}; within {args.within} points: {sorted(good)}\n")
    print("config  " + "  ".join(f"epoch {e:<2}" for e in range(1, epochs + 1)) + "   (val_acc, rank)")
    for c in sorted(curve, key=lambda c: -final[c]):
        ranks = [1 + sum(curve[o][e] > curve[c][e] for o in curve) for e in range(epochs)]
        print(f"{c:>6}  " + "  ".join(f"{v:6.2%} {r:>2}" for v, r in zip(curve[c], ranks)))
    print("\n| eta | min_epochs | rungs | best kept | vs full search | trial-epochs | of the full search's |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    for eta in (2, 3, 4):
        for first in (1, 2, 3):
            points, rung = [], first
            while rung < epochs:
                points.append(rung)
                rung *= eta
            alive, spent = halving(curve, points, eta, seeds)
            kept = max(final[c] for c in alive)
            print(f"| {eta} | {first} | {', '.join(map(str, points))} | {kept:.2%} | {100 * (kept - top):+.2f} | "
                  f"{spent} | {spent / full:.2f} |")
    found = cheapest_plan(curve, good, seeds)
    if found is None:
        print("\nno plan that prunes at all keeps a configuration within reach of the best")
    else:
        spent, plan = found
        print(f"\ncheapest plan keeping one of {sorted(good)}: {spent} trial-epochs ({spent / full:.2f} of the full "
              f"search's); rungs (epoch, kept): {plan}")


if __name__ == "__main__":
    main()
