"""Which augmentation pays on which features, and soft-threshold against triangle codes: short CIFAR-10 proxies.

    python benchmarks/augment_proxy.py [--data PATH] [--only augment|encoding] [--features pixels,hog_color,bow]
                                       [--variant NAME ...] [--limit 10000] [--seeds 0,1] [--set KEY=VALUE ...]

Each row trains a shipped config made into a short proxy — `--limit` training images (default 10,000, a fifth
of them held out for validation), a smaller network and fewer epochs for pixels and bag of words, the bag of
words as shipped when these were measured (2x2 quadrants, no copies, no test-time shifts) — with one
variant's overrides, and prints the validation accuracy of the best epoch (the mean over `--seeds`, each
seed drawing its own sample, split, weights and copies), the number of training images whose features were
extracted (a cost that does not depend on the machine's load) and the wall time (which does).

  augment    per feature set: no augmentation; the mirror images (data.flip); mirror images and 2 fixed
             augmented copies (data.augment.copies: shifts of up to 4 pixels, random flips), with reflected
             and with black borders; mirror images and 2 copies redrawn every epoch (data.augment.redraw);
             `--variant NAME` (repeatable) picks some of these, or the further ones in MORE (4 fixed copies,
             pad 2)
  encoding   bag of words: triangle codes (as shipped) against soft-threshold codes (bow.encoding) at
             several thresholds alpha, without augmentation; by name, the further ones in MORE_ENCODINGS
             (without the square root, with Coates & Ng's whitening eps_zca 0.1)

`--data` is a CIFAR-10 folder (`train/<class>/*.jpg`) or the .tgz of one (default
../shared/data/cifar10-train.tgz, extracted to /tmp/cifar10 unless that exists); without it the script prints
a note and exits 0. Runs and feature caches go to a temporary folder that is removed at the end.
`--set train.epochs=1 --limit 300` smoke-tests the script in a minute.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import yaml

from mlpcli import experiment
from mlpcli.config import load_config
from mlpcli.data import load_splits
from mlpcli.schema import to_dict
from mlpcli.seeding import generators

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-train.tgz"

PROXIES = {   # feature set -> (config, overrides that make it a short proxy)
    "pixels": ("configs/cifar10_pixels_quick.yaml", ["model.hidden=[1000]", "train.epochs=10"]),
    "hog_color": ("configs/cifar10_hog_color_quick.yaml", []),
    "bow": ("configs/cifar10_bow.yaml", ["model.hidden=[1000]", "train.epochs=10", "data.augment.copies=0",
                                         "data.shift_eval=0", "features.extractors=[{bow: {words: 1600, pool: 2, "
                                         "power: 0.5, eps_zca: 0.3}}]"]),   # as shipped when measured
}
AUGMENT = {
    "none": ["data.flip=false"],
    "mirror images": ["data.flip=true"],
    "mirror + 2 fixed copies": ["data.flip=true", "data.augment={copies: 2, pad: 4}"],
    "mirror + 2 fixed copies, black borders": ["data.flip=true", "data.augment={copies: 2, pad: 4, fill: zero}"],
    "mirror + 2 copies redrawn every epoch": ["data.flip=true", "data.augment={copies: 2, pad: 4, redraw: true}"],
}
MORE = {   # run only when named by --variant
    "mirror + 4 fixed copies": ["data.flip=true", "data.augment={copies: 4, pad: 4}"],
    "mirror + 2 fixed copies, pad 2": ["data.flip=true", "data.augment={copies: 2, pad: 2}"],
}
ENCODINGS = {   # bow options
    "triangle": {"encoding": "triangle"},
    "soft-threshold, alpha 0.1": {"encoding": "soft-threshold", "alpha": 0.1},
    "soft-threshold, alpha 0.25": {"encoding": "soft-threshold", "alpha": 0.25},
    "soft-threshold, alpha 0.5": {"encoding": "soft-threshold", "alpha": 0.5},
}
MORE_ENCODINGS = {   # run only when named by --variant
    "soft-threshold, alpha 0.25, power 1": {"encoding": "soft-threshold", "alpha": 0.25, "power": 1.0},
    "soft-threshold, alpha 0.25, eps_zca 0.1": {"encoding": "soft-threshold", "alpha": 0.25, "eps_zca": 0.1},
}


def bow_options(config: str, overrides: list[str], options: dict) -> str:
    """A features.extractors override: the config's extractors (after `overrides`) with `options` in its bow entry."""
    extractors = to_dict(load_config(ROOT / config, overrides).features)["extractors"]
    for entry in extractors:
        if "bow" in entry:
            entry["bow"] |= options
    return "features.extractors=" + yaml.safe_dump(extractors, default_flow_style=True, width=10_000).strip()


def picked(table: dict, more: dict, names: list[str] | None) -> dict:
    """`table`, or with `names` the entries of `table` and `more` of those names."""
    if names is None:
        return table
    every = {**table, **more}
    return {name: every[name] for name in names if name in every}


def experiments(only: str | None, features: list[str], variants: list[str] | None) -> list[tuple[str, str, str, list]]:
    """(feature set, variant, config, overrides) of every row asked for (`variants`: these alone)."""
    augment, encodings = picked(AUGMENT, MORE, variants), picked(ENCODINGS, MORE_ENCODINGS, variants)
    rows = []
    if only in (None, "augment"):
        rows += [(name, variant, PROXIES[name][0], [*PROXIES[name][1], *overrides])
                 for name in features for variant, overrides in augment.items()]
    if only in (None, "encoding") and "bow" in features:
        config, proxy = PROXIES["bow"]
        rows += [("bow", variant, config, [*proxy, "data.flip=false", bow_options(config, proxy, options)])
                 for variant, options in encodings.items()]
    return rows


def measure(config: str, overrides: list[str], seeds: list[int], tmp: Path) -> dict:
    """Train `config` with `overrides` once per seed; mean validation accuracy, featurized training images, time."""
    accuracies, featurized, epochs, started = [], 0, [], time.perf_counter()
    for seed in seeds:
        cfg = load_config(ROOT / config, [*overrides, f"seed={seed}", f"cache_dir={tmp / 'cache'}",
                                          f"output.dir={tmp / 'runs'}", "output.plots=false"])
        result = experiment.run(cfg)
        accuracies.append(result.summary["val"]["accuracy"])
        epochs.append(f"{result.best_epoch}/{result.epochs}")
        n = len(load_splits(cfg, generators(cfg.seed)["data"])["train"])
        augment = cfg.data.augment
        views = 1 + cfg.data.flip + augment.copies
        featurized += n * (views + (augment.copies * (result.epochs - 1) if augment.redraw else 0))
        shutil.rmtree(result.run.path)
    return {"val": sum(accuracies) / len(accuracies), "each": accuracies, "epochs": ", ".join(epochs),
            "featurized": featurized // len(seeds), "seconds": time.perf_counter() - started}


def cifar_folder(path: Path) -> Path | None:
    """The CIFAR-10 folder at `path`, or extracted from the .tgz at `path` to /tmp/cifar10; None if missing."""
    if path.is_dir():
        return path
    if not path.exists():
        return None
    target = Path("/tmp/cifar10")
    if not target.exists():
        with tempfile.TemporaryDirectory(dir="/tmp") as scratch, tarfile.open(path) as archive:
            archive.extractall(scratch, filter="data")
            (Path(scratch) / "cifar10").rename(target)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CIFAR-10 folder or .tgz")
    parser.add_argument("--only", choices=["augment", "encoding"], help="one of the two experiments")
    parser.add_argument("--features", default=",".join(PROXIES), help="feature sets, comma-separated")
    parser.add_argument("--variant", dest="variants", action="append", metavar="NAME",
                        help="a variant by name (repeatable; default: all but those in MORE)")
    parser.add_argument("--limit", type=int, default=10_000, help="training images (a fifth for validation)")
    parser.add_argument("--seeds", default="0", help="seeds to average over, comma-separated")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override applied to every row (repeatable)")
    args = parser.parse_args()
    folder = cifar_folder(args.data)
    if folder is None:
        print(f"skipped: {args.data} not found (pass --data PATH to a CIFAR-10 folder or .tgz)")
        return 0
    features = [name for name in args.features.split(",") if name]
    unknown = sorted(set(features) - set(PROXIES))
    if unknown:
        parser.error(f"unknown feature set(s) {', '.join(unknown)}; choose from {', '.join(PROXIES)}")
    known = [*AUGMENT, *MORE, *ENCODINGS, *MORE_ENCODINGS]
    unknown = sorted(set(args.variants or []) - set(known))
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {known}")
    seeds = [int(seed) for seed in args.seeds.split(",")]
    common = [f"data.path={folder}", f"data.limit={args.limit}", "data.val_fraction=0.2"]
    lines = ["| features | variant | val accuracy | per seed | best/run epochs | training images featurized | "
             "wall s | command |", "|---|---|---:|---|---|---:|---:|---|"]
    with tempfile.TemporaryDirectory(prefix="mlp-augment-proxy-") as tmp:
        for name, variant, config, overrides in experiments(args.only, features, args.variants):
            overrides = [*common, *overrides, *args.overrides]
            row = measure(config, overrides, seeds, Path(tmp))
            each = " ".join(f"{acc:.2%}" for acc in row["each"])
            command = " ".join(["mlp train", config, *(f"'{item}'" if " " in item else item for item in overrides)])
            print(f"{name:<9} {variant:<40} val {row['val']:.2%} ({each})  {row['featurized']:>7} images "
                  f"featurized  {row['seconds']:6.0f} s", flush=True)
            lines.append(f"| {name} | {variant} | {row['val']:.2%} | {each} | {row['epochs']} | "
                         f"{row['featurized']:,} | {row['seconds']:.0f} | `{command}` |")
    print()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
