"""End to end on CIFAR-10 JPEGs: `mlp train CONFIG` against a scikit-learn and a PyTorch pipeline.

    python benchmarks/bench_e2e.py [--data PATH] [--config configs/cifar10_hog_color_quick.yaml] [--repeats 2]

Each pipeline runs in its own process from a cold start: list the files, decode every JPEG, extract
features, standardize, train with the config's network, batch size, optimizer, epochs, patience and
validation split, and score the validation images. mlp runs `mlp train CONFIG data.path=... cache_dir=<an
empty temporary folder>`. The peers decode with OpenCV and compute OpenCV HOG (HOGDescriptor with the
config's cell, block and bin counts) and the config's hue or joint HSV histograms per grid cell
(cv2.calcHist) in a process pool over all cores, as mlp decodes in one (with `data.flip`, also of each
image's mirror, which joins the training part as in mlp); then scikit-learn trains
MLPClassifier through partial_fit epoch by epoch, and PyTorch trains the same network with
torch.optim.SGD. The three alternate, `--repeats` rounds, each round at every --threads count
(OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and MKL_NUM_THREADS in their environment); each keeps its best
wall time. Peak memory is taken twice: the largest single process (wait4's ru_maxrss over the process
and its pool workers) and the whole process tree's summed RSS, sampled every 50 ms from /proc.

Run alone it prints the end-to-end table; bench_train.py prints it after the epoch table. Needs the
CIFAR-10 JPEG folder (see bench_train.py for --data); scikit-learn, OpenCV and PyTorch are optional.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path
from typing import Callable

import numpy as np

from timing import run_command

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "configs" / "cifar10_hog_color_quick.yaml"
CHUNK = 500   # files per pool task
THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass
class Measured:
    seconds: float       # wall time
    max_rss: int         # bytes, the largest single process
    tree_rss: int        # bytes, the most the process tree held at once (sampled)
    result: dict         # what the pipeline reported (accuracy, epochs)


def ours(root: Path, config: Path, workdir: Path) -> tuple[list[str], Callable[[], dict]]:
    """The `mlp train` command with a cold cache in `workdir`, and a reader of its result."""
    cmd = [sys.executable, "-m", "mlpcli", "train", "-q", str(config), f"data.path={root}",
           f"cache_dir={workdir / 'cache'}", f"output.dir={workdir / 'runs'}"]

    def result() -> dict:
        summary = json.loads(next((workdir / "runs").glob("*/summary.json")).read_text())
        return {"accuracy": summary["val"]["accuracy"], "epochs": summary["epochs_run"]}

    return cmd, result


def peer(name: str, root: Path, config: Path, workdir: Path) -> tuple[list[str], Callable[[], dict]]:
    """The command running peer pipeline `name` (sklearn or torch), and a reader of its result."""
    path = workdir / "result.json"
    cmd = [sys.executable, __file__, "--peer", name, "--data", str(root), "--config", str(config), "--result", str(path)]
    return cmd, lambda: json.loads(path.read_text())


# ---- the peers' pipeline (runs in the child process) ----

def opencv_features(paths: list[str], extractors: list[tuple[str, dict]], flip: bool) -> np.ndarray:
    """Features (N, D) float32 of the image files `paths`: OpenCV HOG and color histograms, in config order;
    with `flip`, (2, N, D): also of the left-right mirror images."""
    import cv2
    cv2.setNumThreads(1)             # one image at a time per pool worker
    images = [cv2.imread(path, cv2.IMREAD_COLOR) for path in paths]
    if flip:
        return np.stack([opencv_image_features(images, extractors),
                         opencv_image_features([cv2.flip(image, 1) for image in images], extractors)])
    return opencv_image_features(images, extractors)


def opencv_image_features(images: list[np.ndarray], extractors: list[tuple[str, dict]]) -> np.ndarray:
    """Features (N, D) float32 of BGR images: OpenCV HOG and color histograms, in config order."""
    import cv2
    hogs = {}
    rows = []
    for image in images:
        hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
        parts = []
        for index, (name, options) in enumerate(extractors):
            if name == "hog":
                if index not in hogs:
                    h, w = image.shape[:2]
                    cell, block = options["pixels_per_cell"], options["pixels_per_cell"] * options["cells_per_block"]
                    hogs[index] = cv2.HOGDescriptor((w, h), (block, block), (cell, cell), (cell, cell),
                                                    options["orientations"])
                parts.append(hogs[index].compute(image))
            else:
                parts += color_histograms(hsv, options)
        rows.append(np.concatenate(parts))
    return np.asarray(rows, dtype=np.float32)


def color_histograms(hsv: np.ndarray, options: dict) -> list[np.ndarray]:
    """Normalized hue or joint HSV histograms of each grid cell of an OpenCV HSV image (hue 0-180)."""
    import cv2
    grid, bins = options["grid"], options["bins"]
    channels, sizes, ranges = ([0], [bins], [0, 180]) if options["space"] == "hue" else \
        ([0, 1, 2], [bins] * 3, [0, 180, 0, 256, 0, 256])
    h, w = hsv.shape[:2]
    parts = []
    for i in range(grid):
        for j in range(grid):
            cell = np.ascontiguousarray(hsv[i * h // grid:(i + 1) * h // grid, j * w // grid:(j + 1) * w // grid])
            histogram = cv2.calcHist([cell], channels, None, sizes, ranges).ravel()
            parts.append(histogram / histogram.sum())
    return parts


def peer_features(root: Path, cfg) -> tuple[np.ndarray, np.ndarray]:
    """Features (N, D) and labels (N,) of every JPEG under root/train/<class>/, in a pool over all cores;
    with data.flip, features (2, N, D): also of the mirror images."""
    if cfg.data.flip_eval or cfg.data.shift_eval:
        raise SystemExit("the peers score each image alone at evaluation; compare a config without data.flip_eval "
                         "and data.shift_eval")
    extractors = []
    for spec in cfg.features.extractors:
        if spec.name == "hog":
            extractors.append(("hog", {key: getattr(spec.cfg, key)
                                       for key in ("orientations", "pixels_per_cell", "cells_per_block")}))
        elif spec.name == "color_hist" and spec.cfg.space in ("hue", "hsv"):
            extractors.append(("color_hist", {"space": spec.cfg.space, "bins": spec.cfg.bins, "grid": spec.cfg.grid}))
        else:
            raise SystemExit(f"the peers mirror hog and color_hist (hue, hsv) only, not {spec.name} {spec.cfg}")
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    paths, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(str(p) for p in (root / "train" / name).iterdir() if p.suffix.lower() == ".jpg")
        paths += files
        labels += [label] * len(files)
    chunks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
    with Pool(os.cpu_count()) as pool:
        parts = pool.starmap(opencv_features, [(chunk, extractors, cfg.data.flip) for chunk in chunks])
    return np.concatenate(parts, axis=-2), np.array(labels, dtype=np.int64)


def split(X: np.ndarray, y: np.ndarray, cfg) -> tuple[np.ndarray, ...]:
    """Seeded random train/validation split with the config's fraction, standardized on the train part;
    with data.flip (X of shape (2, N, D)) the mirror images join the train part, as in mlp."""
    order = np.random.default_rng(cfg.seed).permutation(len(y))
    n_val = int(round(len(y) * cfg.data.val_fraction))
    val, train = order[:n_val], order[n_val:]
    if cfg.data.flip:
        X_train, y_train, X_val = np.concatenate([X[0, train], X[1, train]]), np.tile(y[train], 2), X[0, val]
    else:
        X_train, y_train, X_val = X[train], y[train], X[val]
    mean, std = X_train.mean(axis=0), X_train.std(axis=0) + 1e-6
    return (X_train - mean) / std, y_train, (X_val - mean) / std, y[val]


def train_sklearn(X, y, Xv, yv, cfg) -> dict:
    """MLPClassifier with the config's network and SGD settings, one partial_fit per epoch, with patience.
    (partial_fit keeps its first learning rate: scikit-learn has no per-epoch step schedule.)"""
    from sklearn.neural_network import MLPClassifier
    batch = cfg.train.batch_size
    clf = MLPClassifier(tuple(cfg.model.hidden), solver="sgd", batch_size=batch, learning_rate_init=cfg.optim.lr,
                        momentum=cfg.optim.momentum, nesterovs_momentum=cfg.optim.nesterov,
                        alpha=2 * cfg.reg * batch,     # its α·W/batch term equals mlp's 2λW gradient
                        random_state=cfg.seed)
    classes = np.unique(y)
    return _epochs(cfg, lambda epoch: clf.partial_fit(X, y, classes=classes), lambda: clf.score(Xv, yv))


def train_torch(X, y, Xv, yv, cfg) -> dict:
    """The same network in PyTorch: Linear/ReLU, cross-entropy, SGD with momentum, weight decay 2λ on weights."""
    import torch
    from mlpcli.nn.optim import learning_rate
    torch.manual_seed(cfg.seed)
    net = torch_net([X.shape[1], *cfg.model.hidden, int(y.max()) + 1])
    optimizer = torch_sgd(net, cfg)
    X, y, Xv, yv = map(torch.from_numpy, (X, y, Xv, yv))
    batch = cfg.train.batch_size

    def epoch(index):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(cfg.optim, index, cfg.train.epochs)
        order = torch.randperm(len(y))
        for start in range(0, len(y), batch):
            rows = order[start:start + batch]
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(X[rows]), y[rows]).backward()
            optimizer.step()

    def score():
        with torch.no_grad():
            return float((net(Xv).argmax(dim=1) == yv).float().mean())

    return _epochs(cfg, epoch, score)


def torch_net(sizes: list[int]):
    """Linear → ReLU → … → Linear for layer widths `sizes`."""
    import torch
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(fan_in, fan_out), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


def torch_sgd(net, cfg):
    """SGD with mlp's momentum form (v ← μv + g), weight decay 2λ on the weights only (λ·ΣW² as in mlp)."""
    import torch
    weights = [p for name, p in net.named_parameters() if name.endswith("weight")]
    biases = [p for name, p in net.named_parameters() if name.endswith("bias")]
    return torch.optim.SGD([{"params": weights, "weight_decay": 2 * cfg.reg}, {"params": biases, "weight_decay": 0}],
                           lr=cfg.optim.lr, momentum=cfg.optim.momentum, nesterov=cfg.optim.nesterov)


def _epochs(cfg, epoch, score) -> dict:
    """Run `epoch(i)` then `score()` until the config's epochs or patience run out; best validation accuracy."""
    best, best_epoch = -1.0, 0
    for index in range(cfg.train.epochs):
        epoch(index)
        accuracy = score()
        if accuracy > best:
            best, best_epoch = accuracy, index
        elif cfg.train.patience and index - best_epoch >= cfg.train.patience:
            return {"accuracy": best, "epochs": index + 1}
    return {"accuracy": best, "epochs": cfg.train.epochs}


def run_peer(name: str, root: Path, config: Path, result: Path) -> None:
    from mlpcli.config import load_config
    cfg = load_config(config)
    X, y = peer_features(root, cfg)
    trainer = {"sklearn": train_sklearn, "torch": train_torch}[name]
    result.write_text(json.dumps(trainer(*split(X, y, cfg), cfg)))


# ---- the table ----

def available_peers() -> list[str]:
    peers = []
    for name, modules in {"sklearn": ("sklearn", "cv2"), "torch": ("torch", "cv2")}.items():
        try:
            for module in modules:
                __import__(module)
            peers.append(name)
        except ImportError:
            print(f"note: {name} pipeline skipped ({' and '.join(modules)} needed: pip install -e '.[bench]')")
    return peers


def e2e_table(root: Path, config: Path, repeats: int, thread_counts: list[int]) -> list[str]:
    """Interleaved cold-start runs of mlp and the peers at each thread count; the table's lines."""
    runs = {"mlp train": lambda work: ours(root, config, work)}
    for name in available_peers():
        runs[f"{name} pipeline"] = lambda work, name=name: peer(name, root, config, work)
    best: dict[tuple[str, int], Measured] = {}
    loads = [os.getloadavg()[0]]
    for _ in range(repeats):
        for threads in thread_counts:
            env = os.environ | dict.fromkeys(THREAD_ENV, str(threads))
            for label, command in runs.items():
                with tempfile.TemporaryDirectory(prefix="mlp-e2e-") as work:
                    cmd, result = command(Path(work))
                    ran = run_command(cmd, REPO, env)
                    measured = Measured(ran.seconds, ran.max_rss, ran.tree_rss, result())
                loads.append(os.getloadavg()[0])
                key = (label, threads)
                if key not in best or measured.seconds < best[key].seconds:
                    best[key] = measured
    shown = config.relative_to(REPO) if config.is_relative_to(REPO) else config
    lines = [f"End to end, cold cache: {shown} (best of {repeats}; 1-min load average {min(loads):.1f}-{max(loads):.1f} "
             f"on {os.cpu_count()} cores)", "",
             "| pipeline | threads | wall s | vs mlp | val accuracy | epochs | peak RSS, largest process | "
             "peak RSS, process tree |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (label, threads), m in best.items():
        base = best[("mlp train", threads)].seconds
        lines.append(f"| {label} | {threads} | {m.seconds:.1f} | {m.seconds / base:.2f}x | {m.result['accuracy']:.2%} | "
                     f"{m.result['epochs']} | {m.max_rss / 2**20:.0f} MiB | {m.tree_rss / 2**20:.0f} MiB |")
    return lines


def main() -> int:
    import argparse
    from environment import DEFAULT_DATA, clean_blas_env, find_images
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CIFAR-10 .tgz of JPEGs, or its extracted folder")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="the mlp config to run")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of the three pipelines; the best counts")
    parser.add_argument("--threads", type=lambda text: [int(n) for n in text.split(",")], default=[os.cpu_count(), 1],
                        help="comma-separated BLAS/OpenMP thread counts (default: all cores, then 1)")
    parser.add_argument("--keep-blas-env", action="store_true", help="keep OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE")
    parser.add_argument("--peer", choices=["sklearn", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        run_peer(args.peer, args.data, args.config, args.result)
        return 0
    if not args.keep_blas_env:
        clean_blas_env()
    root = find_images(args.data)
    if root is None:
        return 0
    print("\n".join(e2e_table(root, args.config.resolve(), args.repeats, args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
