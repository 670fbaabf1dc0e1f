"""Training speed: mlp's trainer against PyTorch and scikit-learn on identical networks, then end to end.

    python benchmarks/bench_train.py [--data PATH] [--epochs 3] [--threads 2,1] [--skip-e2e] [--e2e-repeats 2]

Prints the machine, its measured sgemm rate, the epoch table and the end-to-end table (bench_e2e.py).

Epoch table: (a) 3072-500-10 on raw pixels, (b) 334-500-10 on HOG + hue histogram, (c) 1600-1000-500-10
on 40x40 gray pixels of CIFAR-10 (45,000 training, 5,000 validation images); ReLU, softmax cross-entropy,
batch 200, SGD with momentum 0.9, L2 2λW on the weights, float32 everywhere. An epoch is one shuffled pass
of minibatch steps plus scoring the validation images, for every trainer. mlp's epoch time is the `seconds`
its own trainer writes to metrics.jsonl; the peers run one epoch each from train()'s per-epoch `log` hook,
so the trainers alternate epoch by epoch in one process, on the same features, and each keeps its best
epoch. GFLOP/s counts the GEMMs an epoch needs (forward; dW and dX, no dX for the first layer; the
validation forward), 2 flops per multiply-add.

BLAS: this environment may set OPENBLAS_CORETYPE=Haswell and OPENBLAS_L2_SIZE (for old OpenBLAS builds);
they make numpy's OpenBLAS run AVX2 kernels at about half the speed of its own choice on AVX-512 CPUs.
Unless --keep-blas-env is given, the benchmark re-runs itself without both, which changes numpy's
OpenBLAS only: mlp and scikit-learn (both numpy) get the kernel OpenBLAS picks for the CPU, PyTorch keeps
its MKL/oneDNN, which these variables do not touch.

Threads: every table is measured at each of the --threads counts (default: all cores, then 1), set for
numpy's BLAS and PyTorch alike, in this process and (through OPENBLAS/OMP/MKL_NUM_THREADS) in the
end-to-end child processes. On a machine shared with other work, OpenBLAS's and OpenMP's worker threads
wait for one another on every product, and a busy neighbour turns that into long stalls; one thread
shows the trainers without that effect.

Needs the CIFAR-10 JPEGs: --data names a folder holding train/<class>/*.jpg, or a .tgz of one (default
../shared/data/cifar10-train.tgz, extracted to /tmp/cifar10 unless that exists). Without it the benchmark
prints a note and exits 0. The peers are optional: pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from environment import BLAS_ENV, DEFAULT_DATA, clean_blas_env, find_images
from timing import best_time

REPO = Path(__file__).resolve().parents[1]

COMMON = ["data.source=folder", "data.val_fraction=0.1", "seed=0", "train.batch_size=200", "train.patience=0",
          "optim.name=momentum", "optim.lr=0.01", "optim.momentum=0.9", "reg=0.001", "output.plots=false"]
NETS = {
    "(a) 3072-500-10, raw pixels": ["features.extractors=[{pixels: {}}]", "model.hidden=[500]"],
    "(b) 334-500-10, HOG + hue histogram": [
        "features.extractors=[{hog: {orientations: 9, pixels_per_cell: 8, cells_per_block: 2}},"
        " {color_hist: {space: hue, bins: 10}}]", "model.hidden=[500]"],
    "(c) 1600-1000-500-10, 40x40 gray pixels": ["features.extractors=[{pixels: {gray: true, size: [40, 40]}}]",
                                                "model.hidden=[1000, 500]"],
}
SKLEARN_NETS = 2   # scikit-learn runs (a) and (b) only: (c) would take minutes per epoch


def sgemm_rates() -> dict[str, float]:
    """GFLOP/s of float32 2048x2048 products: numpy (OpenBLAS) and PyTorch, best of several."""
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((2, 2048, 2048), dtype=np.float32)
    out = np.empty_like(A)
    flops = 2 * 2048 ** 3
    rates = {"numpy": flops / best_time(lambda: np.matmul(A, B, out=out), 20) / 1e9}
    torch = _import("torch")
    if torch is not None:
        tA, tB, tout = torch.from_numpy(A), torch.from_numpy(B), torch.from_numpy(out)
        rates["torch"] = flops / best_time(lambda: torch.mm(tA, tB, out=tout), 20) / 1e9
    return rates


def epoch_flops(sizes: list[int], n_train: int, n_val: int) -> float:
    """GEMM flops of one epoch: forward, dW and dX (not for the first layer) per training sample, forward
    per validation sample."""
    products = [fan_in * fan_out for fan_in, fan_out in zip(sizes[:-1], sizes[1:])]
    return 2.0 * (n_train * (3 * sum(products) - products[0]) + n_val * sum(products))


class TorchEpochs:
    """The same network in PyTorch, trained one epoch per call like mlp's trainer does it."""

    def __init__(self, sizes, cfg, X, y, Xv, yv) -> None:
        import torch
        from bench_e2e import torch_net, torch_sgd
        self.torch, self.cfg = torch, cfg
        torch.manual_seed(cfg.seed)
        self.net = torch_net(sizes)
        self.optimizer = torch_sgd(self.net, cfg)
        self.X, self.y, self.Xv, self.yv = map(torch.from_numpy, (X, y, Xv, yv))

    def epoch(self, lr: float) -> None:
        torch, n, batch = self.torch, len(self.y), self.cfg.train.batch_size
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        order = torch.randperm(n)
        loss_sum, correct = 0.0, 0            # the bookkeeping mlp's trainer does every step
        for start in range(0, n, batch):
            rows = order[start:start + batch]
            xb, yb = self.X[rows], self.y[rows]
            self.optimizer.zero_grad(set_to_none=True)
            scores = self.net(xb)
            loss = torch.nn.functional.cross_entropy(scores, yb)
            loss.backward()
            self.optimizer.step()
            loss_sum += loss.item() * len(rows)
            correct += int((scores.argmax(dim=1) == yb).sum())
        with torch.no_grad():
            (self.net(self.Xv).argmax(dim=1) == self.yv).float().mean().item()


class SklearnEpochs:
    """MLPClassifier with the same network and SGD settings; partial_fit is one epoch."""

    def __init__(self, sizes, cfg, X, y, Xv, yv) -> None:
        from sklearn.neural_network import MLPClassifier
        batch = cfg.train.batch_size
        self.clf = MLPClassifier(tuple(sizes[1:-1]), solver="sgd", batch_size=batch, learning_rate_init=cfg.optim.lr,
                                 momentum=cfg.optim.momentum, nesterovs_momentum=False, alpha=2 * cfg.reg * batch,
                                 random_state=cfg.seed)
        self.data, self.classes = (X, y, Xv, yv), np.arange(sizes[-1])

    def epoch(self, lr: float) -> None:
        X, y, Xv, yv = self.data
        self.clf.partial_fit(X, y, classes=self.classes)
        self.clf.score(Xv, yv)


def epoch_row(label: str, overrides: list[str], root: Path, epochs: int, peers: dict) -> dict:
    """Best epoch seconds of mlp and each peer on one network, trained alternately in this process."""
    from mlpcli.config import load_config
    from mlpcli.nn.optim import learning_rate
    from mlpcli.rundir import RunDir
    from mlpcli.train import prepared, train
    cfg = load_config(None, [*COMMON, *overrides, f"data.path={root}", f"train.epochs={epochs}",
                             "features.load=memory"])
    with prepared(cfg, progress=False) as (prep, _):      # fills the feature cache the run below reads
        X, y = prep.features["train"].rows, prep.features["train"].labels
        Xv, yv = prep.features["val"].rows, prep.features["val"].labels
        classes = prep.classes
    sizes = [X.shape[1], *cfg.model.hidden, len(classes)]
    trainers = {name: make(sizes, cfg, X, y, Xv, yv) for name, make in peers.items()}
    times = {name: [] for name in trainers}
    done = [0]

    def after_our_epoch(line: str) -> None:
        lr = learning_rate(cfg.optim, done[0], epochs)
        done[0] += 1
        for name, trainer in trainers.items():
            times[name].append(best_time(lambda: trainer.epoch(lr), 1))

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="mlp-bench-") as out:
        run = RunDir.create(cfg, Path(out) / "run")
        train(cfg, run, progress=False, log=after_our_epoch)
        times["mlp"] = [row["seconds"] for row in run.read_metrics()]
    flops = epoch_flops(sizes, len(y), len(yv))
    return {"label": label, "sizes": sizes, "flops": flops, "load": (load, os.getloadavg()[0]),
            "seconds": {name: min(values) for name, values in times.items()}}


def epoch_rows(root: Path, epochs: int, limit: int | None) -> list[dict]:
    """One row per network, at the current thread setting."""
    peers = {}
    if _import("torch") is not None:
        peers["torch"] = TorchEpochs
    if _import("sklearn") is not None:
        peers["sklearn"] = SklearnEpochs
    rows = []
    for index, (label, overrides) in enumerate(NETS.items()):
        chosen = {name: make for name, make in peers.items() if name != "sklearn" or index < SKLEARN_NETS}
        rows.append(epoch_row(label, overrides + [f"data.limit={limit}"] * bool(limit), root, epochs, chosen))
    return rows


def epoch_table(rows: list[dict], epochs: int, rates: dict[int, dict]) -> list[str]:
    """The epoch table's lines; `rows` carry their thread count, `rates` the sgemm rates per thread count."""
    lines = [f"Seconds per epoch (best of {epochs}, trainers alternating epoch by epoch); GFLOP/s of the epoch's GEMMs; "
             "machine sgemm (float32 2048^3): "
             + "; ".join(f"{threads} thread{'s' * (threads > 1)}: " + ", ".join(f"{name} {rate:.0f} GFLOP/s"
                                                                             for name, rate in r.items())
                         for threads, r in rates.items()),
             "", "| network | threads | mlp s | PyTorch s | mlp / PyTorch | scikit-learn s | mlp / sklearn | "
             "mlp GFLOP/s | PyTorch GFLOP/s | load |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        s = row["seconds"]
        cell = lambda name: f"{s[name]:.3f}" if name in s else "-"                                   # noqa: E731
        ratio = lambda name: f"{s['mlp'] / s[name]:.2f}x" if name in s else "-"                      # noqa: E731
        rate = lambda name: f"{row['flops'] / s[name] / 1e9:.0f}" if name in s else "-"               # noqa: E731
        lines.append(f"| {row['label']} | {row['threads']} | {cell('mlp')} | {cell('torch')} | {ratio('torch')} | "
                     f"{cell('sklearn')} | {ratio('sklearn')} | {rate('mlp')} | {rate('torch')} | "
                     f"{row['load'][0]:.1f}-{row['load'][1]:.1f} |")
    return lines


def use_threads(threads: int) -> None:
    """numpy's BLAS and PyTorch in this process to `threads` (bench_e2e sets its children's environment)."""
    from threadpoolctl import threadpool_limits
    threadpool_limits(threads, user_api="blas")
    torch = _import("torch")
    if torch is not None:
        torch.set_num_threads(threads)


def machine() -> list[str]:
    """What the numbers were measured on."""
    from threadpoolctl import threadpool_info
    model = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")), "?")
    blas = [f"{i['internal_api']} {i['version']} ({i['architecture']} kernels, {i['num_threads']} threads by default)"
            for i in threadpool_info() if i["user_api"] == "blas"]
    lines = [f"Machine: {model}, {os.cpu_count()} cores; Python {platform.python_version()}, numpy {np.__version__} "
             f"with {', '.join(blas)}"]
    torch, sklearn = _import("torch"), _import("sklearn")
    if torch is not None:
        lines.append(f"PyTorch {torch.__version__} ({torch.get_num_threads()} threads)")
    if sklearn is not None:
        lines.append(f"scikit-learn {sklearn.__version__}")
    kept = [f"{key}={os.environ[key]}" for key in BLAS_ENV if key in os.environ]
    lines.append(f"OpenBLAS environment: {' '.join(kept) if kept else 'OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset'}")
    return lines


def _import(name: str):
    try:
        return __import__(name)
    except ImportError:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CIFAR-10 JPEG folder or its .tgz")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per network and trainer; the best counts")
    parser.add_argument("--threads", type=lambda text: [int(n) for n in text.split(",")],
                        default=[os.cpu_count(), 1],
                        help="comma-separated BLAS/OpenMP thread counts to measure at (default: all cores, then 1)")
    parser.add_argument("--limit", type=int, help="epoch table on this many images only (a quick check)")
    parser.add_argument("--skip-e2e", action="store_true", help="only the sgemm and epoch tables")
    parser.add_argument("--e2e-repeats", type=int, default=2, help="rounds of the end-to-end pipelines")
    parser.add_argument("--config", type=Path, help="end-to-end config (default configs/cifar10_hog_color_quick.yaml)")
    parser.add_argument("--keep-blas-env", action="store_true", help="keep OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE")
    args = parser.parse_args()
    if not args.keep_blas_env:
        clean_blas_env()
    root = find_images(args.data)
    if root is None:
        return 0
    sys.path.insert(0, str(Path(__file__).parent))
    print("\n".join(machine()), flush=True)
    rates, rows = {}, []
    for threads in args.threads:
        use_threads(threads)
        rates[threads] = sgemm_rates()
        for row in epoch_rows(root, args.epochs, args.limit):
            rows.append(row | {"threads": threads})
    print("\n" + "\n".join(epoch_table(rows, args.epochs, rates)), flush=True)
    if not args.skip_e2e:
        from bench_e2e import DEFAULT_CONFIG, e2e_table
        config = (args.config or DEFAULT_CONFIG).resolve()
        print("\n" + "\n".join(e2e_table(root, config, args.e2e_repeats, args.threads)), flush=True)
    print(f"\n1-min load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
