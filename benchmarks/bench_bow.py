"""Bag of visual words at CIFAR-10 scale: codebook (k-means) plus encoding, against the machine's GEMM rate.

    python benchmarks/bench_bow.py [--n 60000] [--repeats 1] [--data PATH] [--accuracy [--train N] [--val N]]

Runs BagOfWords with its defaults (Coates & Ng 2011: 6x6 patches, stride 1, 1600 words, triangle
codes, ZCA whitening, 2x2 pooling: 6400 features) on `--n` CIFAR-10 training images; the archive
holds 50,000, so for n > 50,000 the first n - 50,000 images are used twice (60,000 stands for
CIFAR-10's train plus test set). Prints the codebook time (patch sampling, whitening, k-means) and the
encoding time, each the best of `--repeats` runs, and the achieved GFLOP/s of the encoding's matrix
products next to measured sgemm rates. `--accuracy` also fits a new codebook on `--train` images
(10,000) and scores scikit-learn's LogisticRegression on their standardized features against
`--val` others (5,000).
Needs ../shared/data/cifar10-train.tgz (or `--data`); without it, prints a note and exits 0.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from mlpcli.config import FeaturesConfig
from mlpcli.features import parse_extractors
from mlpcli.features.bow import BowConfig
from mlpcli.data.dataset import in_memory
from mlpcli.features.pipeline import FeaturePipeline
from mlpcli.features.store import StoreRoot
from mlpcli.parallel import ProcessPool
from mlpcli.parallel import single_threaded_blas
from mlpcli.schema import to_dict
from environment import DEFAULT_DATA
from timing import best_run, best_time

LOGISTIC_C = 1e-2  # inverse L2 strength; of 1e-4, 1e-3, 1e-2 the best on 10,000 / 5,000 images


def load_cifar(archive: Path) -> tuple[np.ndarray, np.ndarray]:
    """All images of the archive (N, 32, 32, 3) uint8 and their labels (N,), class folders sorted."""
    with tarfile.open(archive, "r:gz") as tar:
        members = sorted((m for m in tar if m.isfile() and m.name.lower().endswith(".jpg")), key=lambda m: m.name)
        files = [tar.extractfile(m).read() for m in members]
    folders = [Path(m.name).parent.name for m in members]
    classes = sorted(set(folders))
    images = np.stack([np.asarray(Image.open(io.BytesIO(f)).convert("RGB")) for f in files])
    return images, np.array([classes.index(c) for c in folders])


def sgemm_rates(shape: tuple[int, int, int], repeats: int) -> tuple[float, float, float]:
    """GFLOP/s of float32 products `shape` = (m, k, n) run as the encoder runs them (one thread per core,
    single-threaded BLAS): per second of wall time and per second of CPU time; and of a 2048³ product
    on BLAS's own threads, per second of wall time."""
    rng = np.random.default_rng(0)
    m, k, n = shape
    A, B = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)
    cores, count = os.cpu_count() or 1, 200

    def per_core_products():
        with single_threaded_blas(), ThreadPoolExecutor(cores) as pool:
            list(pool.map(lambda _: [A @ B for _ in range(count)], range(cores)))

    wall, cpu, _ = best_run(per_core_products, repeats)
    flops = 2 * m * k * n * count * cores
    S = rng.standard_normal((2048, 2048), dtype=np.float32)
    square = 2 * 2048 ** 3 / best_time(lambda: S @ S, 5 * repeats) / 1e9
    return flops / wall / 1e9, flops / cpu / 1e9, square


def stratified_split(labels: np.ndarray, train: int, val: int, rng: np.random.Generator):
    """Disjoint index arrays with `train` and `val` samples, each class equally represented."""
    classes = np.unique(labels)
    picks = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    per_train, per_val = train // len(classes), val // len(classes)
    return (np.concatenate([p[:per_train] for p in picks]),
            np.concatenate([p[per_train:per_train + per_val] for p in picks]))


def bow_pipeline(cfg: BowConfig) -> FeaturePipeline:
    """A feature pipeline of one BagOfWords extractor (its `extractors[0]`), without standardization or
    cache: its transform encodes in chunks on all cores, as `mlp` does."""
    features = FeaturesConfig(parse_extractors([{"bow": to_dict(cfg)}], "features"), normalize="none", cache=False)
    return FeaturePipeline(features, progress=False)


def encode(pipeline: FeaturePipeline, data, pool: ProcessPool) -> np.ndarray:
    """The features of `data` (N, D), extracted as `mlp` does: chunks on the worker processes, into a store."""
    stores = StoreRoot(None)
    try:
        return pipeline.store(data, stores, pool).rows(in_memory=True)
    finally:
        stores.close()


def accuracy(images: np.ndarray, labels: np.ndarray, cfg: BowConfig, train: int, val: int) -> tuple[float, float]:
    """Validation accuracy of logistic regression on standardized BoW features, and its fit time in seconds;
    the codebook is learned on the `train` images alone."""
    from sklearn.linear_model import LogisticRegression

    train_index, val_index = stratified_split(labels, train, val, np.random.default_rng(0))
    pipeline = bow_pipeline(cfg)
    pipeline.extractors[0].fit(in_memory(images[train_index], labels[train_index], []), np.random.default_rng(0))
    X_train, X_val = pipeline.transform(images[train_index]), pipeline.transform(images[val_index])
    mean, std = X_train.mean(axis=0), X_train.std(axis=0) + 1e-8
    started = time.perf_counter()
    model = LogisticRegression(C=LOGISTIC_C, max_iter=300).fit((X_train - mean) / std, labels[train_index])
    return float((model.predict((X_val - mean) / std) == labels[val_index]).mean()), time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60_000, help="number of images (default 60000)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of each step; the best counts")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CIFAR-10 training archive (.tgz)")
    parser.add_argument("--patches", type=int, help="codebook patches (default: BowConfig's)")
    parser.add_argument("--accuracy", action="store_true", help="also score logistic regression on the features")
    parser.add_argument("--train", type=int, default=10_000, help="--accuracy: training images (default 10000)")
    parser.add_argument("--val", type=int, default=5_000, help="--accuracy: validation images (default 5000)")
    args = parser.parse_args()
    if not args.data.exists():
        print(f"skipped: {args.data} not found (pass --data PATH to a CIFAR-10 .tgz of JPEGs)")
        return 0

    images, labels = load_cifar(args.data)
    timed = images[np.arange(args.n) % len(images)]
    cfg = BowConfig() if args.patches is None else BowConfig(patches=args.patches)
    pipeline = bow_pipeline(cfg)
    data = in_memory(timed, np.zeros(len(timed), np.int64), [])
    fit_time, fit_cpu, _ = best_run(lambda: pipeline.extractors[0].fit(data, np.random.default_rng(0)), args.repeats)
    with ProcessPool() as pool:
        encode_time, encode_cpu, features = best_run(lambda: encode(pipeline, data, pool), args.repeats)

    positions = (32 - cfg.patch) // cfg.stride + 1
    d = cfg.patch ** 2 * 3
    rows = args.n * positions ** 2
    flops = 2 * rows * (d + 2) * cfg.words + (2 * rows * d * d if cfg.whiten else 0)
    shaped, shaped_cpu, square = sgemm_rates((positions ** 2, d + 2, cfg.words), args.repeats)

    print(f"bag of words: {args.n} CIFAR-10 images 32x32 RGB ({len(images)} distinct), {cfg.words} words, "
          f"{cfg.encoding} codes, patch {cfg.patch}, stride {cfg.stride}, pool {cfg.pool}, whiten {cfg.whiten}, "
          f"{cfg.patches} codebook patches, {os.cpu_count()} cores; best of {args.repeats}")
    print(f"features         {features.shape[0]} x {features.shape[1]} float32")
    print(f"{'':16s} {'wall':>7s}   {'CPU':>7s}")
    print(f"codebook         {fit_time:7.1f} s {fit_cpu:7.1f} s")
    print(f"encoding         {encode_time:7.1f} s {encode_cpu:7.1f} s   {flops / 1e12:.1f} TFLOP in products: "
          f"{flops / encode_time / 1e9:.0f} GFLOP/s, {flops / encode_cpu / 1e9:.0f} GFLOP per CPU-second")
    print(f"total            {fit_time + encode_time:7.1f} s {fit_cpu + encode_cpu:7.1f} s   "
          f"(CPU / cores = {(fit_cpu + encode_cpu) / (os.cpu_count() or 1):.1f} s: about the wall time on free cores)")
    print(f"sgemm rates      ({positions ** 2}x{d + 2}) @ ({d + 2}x{cfg.words}) on one thread per core: "
          f"{shaped:.0f} GFLOP/s, {shaped_cpu:.0f} GFLOP per CPU-second; 2048^3 on BLAS threads: {square:.0f} GFLOP/s")
    print(f"products alone   {flops / shaped / 1e9:7.1f} s {flops / shaped_cpu / 1e9:7.1f} s   "
          f"({flops / shaped_cpu / 1e9 / encode_cpu:.0%} of the encoding's CPU time)")
    if args.accuracy:
        acc, seconds = accuracy(images, labels, cfg, args.train, args.val)
        print(f"accuracy         {acc:.3f} (logistic regression, C={LOGISTIC_C:g}, {args.train} training / "
              f"{args.val} validation images, stratified; fit in {seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
