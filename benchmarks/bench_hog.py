"""HOG on CIFAR-sized 32x32 RGB images: mlpcli's batched Hog vs a loop over skimage vs OpenCV.

    python benchmarks/bench_hog.py [--n 5000] [--repeats 5] [--data PATH]

Settings shared by all three: 8x8-pixel cells, 2x2-cell blocks (stride one cell), 9 orientation bins
(skimage and mlpcli: L2-Hys; OpenCV: its own L2-Hys, Gaussian block window and bilinear votes, so only
its speed is comparable). mlpcli runs twice: with hard votes (equal to skimage) and with `interpolate`
(trilinear votes, closer to OpenCV's work). Each timing is the best of `--repeats` runs, all in one
process, so that the ratios hold on a machine shared with other work. Needs
../shared/data/cifar10-train.tgz (or `--data`); without it, prints a note and exits 0. OpenCV is
optional (`pip install 'opencv-python-headless<5'`).
"""

from __future__ import annotations

import argparse
import io
import sys
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from mlpcli.features.hog import Hog, HogConfig
from environment import DEFAULT_DATA
from timing import best_time



def load_images(archive: Path, n: int) -> np.ndarray:
    """`n` images evenly spaced through the archive (so all classes appear), as (n, 32, 32, 3) uint8."""
    with tarfile.open(archive, "r:gz") as tar:
        files = [tar.extractfile(m).read() for m in tar if m.isfile() and m.name.lower().endswith(".jpg")]
    picks = np.linspace(0, len(files) - 1, min(n, len(files))).round().astype(int)
    return np.stack([np.asarray(Image.open(io.BytesIO(files[i])).convert("RGB").resize((32, 32)))
                     for i in picks])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="number of images (default 5000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per method; the best counts")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CIFAR-10 training archive (.tgz)")
    args = parser.parse_args()
    if not args.data.exists():
        print(f"skipped: {args.data} not found (pass --data PATH to a CIFAR-10 .tgz of JPEGs)")
        return 0

    images = load_images(args.data, args.n)
    n = len(images)
    settings = HogConfig(orientations=9, pixels_per_cell=8, cells_per_block=2, block_norm="L2-Hys")
    ours, interpolating = Hog(settings), Hog(replace(settings, interpolate=True))
    methods = {"mlpcli Hog (batched)": lambda subset: ours.transform(subset),
               "mlpcli Hog interpolate": lambda subset: interpolating.transform(subset)}

    from skimage.feature import hog

    def skimage_loop(subset):
        return np.stack([hog(image, 9, (8, 8), (2, 2), "L2-Hys", channel_axis=-1) for image in subset])

    methods["skimage.feature.hog loop"] = skimage_loop
    try:
        import cv2
    except ImportError:
        cv2 = None
        print("note: OpenCV not installed; pip install 'opencv-python-headless<5' to compare with it")
    if cv2 is not None:
        descriptor = cv2.HOGDescriptor((32, 32), (16, 16), (8, 8), (8, 8), 9)
        methods["OpenCV HOGDescriptor loop"] = lambda subset: np.stack([descriptor.compute(im) for im in subset])

    # the skimage loop is slow: time it on a tenth of the images (per-image cost does not depend on n)
    sizes = {name: max(1, n // 10) if name.startswith("skimage") else n for name in methods}
    rates = {}
    for name, run in methods.items():
        subset = images[:sizes[name]]
        run(subset[:10])  # warm up (tables, imports)
        rates[name] = sizes[name] / best_time(lambda: run(subset), args.repeats)

    checked = images[:sizes["skimage.feature.hog loop"]]
    gap = np.abs(ours.transform(checked) - skimage_loop(checked)).max()
    print(f"HOG, {n} CIFAR-10 images 32x32 RGB, cells 8x8, blocks 2x2, 9 bins; best of {args.repeats} runs")
    print(f"max |mlpcli - skimage| over {len(checked)} images: {gap:.1e}")
    ours_rate = rates["mlpcli Hog (batched)"]
    print(f"{'method':28s} {'images':>7s} {'images/s':>10s} {'us/image':>9s} {'mlpcli speed-up':>16s}")
    for name, rate in rates.items():
        print(f"{name:28s} {sizes[name]:7d} {rate:10.0f} {1e6 / rate:9.1f} {ours_rate / rate:15.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
