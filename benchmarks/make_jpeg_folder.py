"""Write a large folder of real JPEGs for benchmarks/bench_scale.py: random variants of the CIFAR-10 training images.

    python benchmarks/make_jpeg_folder.py --cifar /tmp/cifar10 --out /tmp/cifar10-200k [--copies 4] [--seed 0]

Each of the 50,000 training JPEGs (--cifar: the folder holding train/<class>/*.jpg, see ../shared/data) gives
`--copies` new 32x32 images: a random crop of the image padded by 4 pixels (edge-replicated), a left-right
flip with probability 1/2, and color jitter (brightness, contrast and saturation each scaled by a factor in
[0.8, 1.2]), saved as JPEG (quality 90) to OUT/train/<class>/<name>-<k>.jpg. Image k of a file is drawn from
a generator seeded by (seed, the file's index, k), so the folder is the same on every run and machine;
files are written on all cores. 4 copies make 200,000 images (about 0.9 GB).
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

PAD, JITTER, QUALITY = 4, 0.2, 90


def variants(task: tuple[int, Path, Path, int, int]) -> int:
    """Write the `copies` variants of one source image; how many were written."""
    index, source, out_dir, copies, seed = task
    with Image.open(source) as image:
        pixels = np.asarray(image.convert("RGB"))
    padded = np.pad(pixels, ((PAD, PAD), (PAD, PAD), (0, 0)), mode="edge")
    height, width = pixels.shape[:2]
    for k in range(copies):
        rng = np.random.default_rng([seed, index, k])
        top, left = rng.integers(0, 2 * PAD + 1, size=2)
        crop = padded[top:top + height, left:left + width]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        picture = Image.fromarray(np.ascontiguousarray(crop))
        for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            picture = enhance(picture).enhance(float(rng.uniform(1 - JITTER, 1 + JITTER)))
        picture.save(out_dir / f"{source.stem}-{k}.jpg", quality=QUALITY)
    return copies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cifar", type=Path, required=True, help="folder with train/<class>/*.jpg")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    train = args.cifar / "train" if (args.cifar / "train").is_dir() else args.cifar
    sources = sorted(train.glob("*/*.jpg"))
    if not sources:
        print(f"no JPEGs under {train}/<class>/; extract ../shared/data/cifar10-train.tgz first", file=sys.stderr)
        return 1
    for name in {path.parent.name for path in sources}:
        (args.out / "train" / name).mkdir(parents=True, exist_ok=True)
    tasks = [(i, path, args.out / "train" / path.parent.name, args.copies, args.seed) for i, path in enumerate(sources)]
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        written = sum(pool.map(variants, tasks, chunksize=500))
    print(f"wrote {written} images to {args.out / 'train'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
