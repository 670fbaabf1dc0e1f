"""What dropout (of the hidden units or of the inputs), batch norm and layer norm cost a training step and a
scoring pass.

    python benchmarks/bench_gates.py [--sizes 3072,1000,500,10] [--batch 200] [--steps 50] [--threads 1]

For each variant of the same network (plain, dropout 0.5, input dropout 0.2, batch norm, layer norm,
batch norm + dropout 0.5) it times a training step (`MLP.loss_and_grads` and a momentum update) on a
batch of random float32 features, and scoring 1,000 samples (`MLP.scores`), each the best of --repeats
runs of --steps steps, and prints milliseconds and the ratio to the plain network. No data set needed:
the cost of these gates does not depend on the values. The matrix products dominate the plain step, so
the ratios say how much of a step the new gates add on top of them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import best_time  # noqa: E402

from mlpcli.config import load_config  # noqa: E402
from mlpcli.nn.model import MLP  # noqa: E402
from mlpcli.nn.optim import OPTIMIZERS  # noqa: E402

VARIANTS = {
    "plain": [],
    "dropout 0.5": ["model.dropout=0.5"],
    "input dropout 0.2": ["model.input_dropout=0.2"],
    "batch norm": ["model.norm=batch"],
    "layer norm": ["model.norm=layer"],
    "batch norm + dropout 0.5": ["model.norm=batch", "model.dropout=0.5"],
}
SCORED = 1000


def time_variant(overrides: list[str], sizes: list[int], batch: int, steps: int, repeats: int) -> tuple[float, float]:
    """(ms per training step, ms per scoring pass of SCORED samples) of the network `sizes` with `overrides`."""
    *hidden, classes = sizes[1:]
    cfg = load_config(None, [f"model.hidden={hidden}", *overrides])
    rng = np.random.default_rng(0)
    model = MLP.from_config(sizes[0], classes, cfg.model, cfg.loss, cfg.reg, rng, np.random.default_rng(1))
    optimizer = OPTIMIZERS[cfg.optim.name](model.params, cfg.optim)
    X = rng.standard_normal((batch, sizes[0]), dtype=np.float32)
    y = rng.integers(0, classes, batch)
    X_scored = rng.standard_normal((SCORED, sizes[0]), dtype=np.float32)

    def train_steps():
        for _ in range(steps):
            model.loss_and_grads(X, y)
            optimizer.step(model.grads, 1e-3)

    def score():
        for _ in range(steps):
            model.scores(X_scored)

    return (1000 * best_time(train_steps, repeats) / steps, 1000 * best_time(score, repeats) / steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3072,1000,500,10", help="layer widths D,H1,...,C (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=200, help="training batch (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=50, help="steps per timed run (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs, the best kept (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="BLAS threads (default: BLAS's own)")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    if len(sizes) < 3:
        parser.error("--sizes needs an input width, at least one hidden layer and the classes")
    print(f"network {'-'.join(map(str, sizes))}, batch {args.batch}, float32, "
          f"{args.threads or 'default'} BLAS threads, best of {args.repeats} x {args.steps} steps")
    print(f"{'variant':<26} {'train ms/step':>13} {'x plain':>8} {'score ms/' + str(SCORED):>15} {'x plain':>8}")
    with threadpool_limits(args.threads, user_api="blas"):
        base = None
        for name, overrides in VARIANTS.items():
            step, score = time_variant(overrides, sizes, args.batch, args.steps, args.repeats)
            base = base or (step, score)
            print(f"{name:<26} {step:>13.2f} {step / base[0]:>8.2f} {score:>15.2f} {score / base[1]:>8.2f}")


if __name__ == "__main__":
    main()
