"""Embedded datasets that need no download: generated `shapes` and scikit-image's `faces`.

`shapes` is generated lazily, image by image: image i is drawn from its own generator, seeded by
(data.shapes.seed, i), so any image can be made without the others — a split, a `data.limit` sample or a
million images cost only the images asked for, and the same index always gives the same pixels.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from mlpcli.data.convert import conform, to_dataset
from mlpcli.data.dataset import Dataset
from mlpcli.data.source import Source

SHAPE_NAMES = ["circle", "square", "triangle", "cross", "ring", "diamond"]
# per image: center x, y; radius; tilt; background r, g, b; foreground offset r, g, b (foreground = bg + offset mod 256)
PARAMS_LOW = np.array([-0.3, -0.3, 0.35, -0.3, 0, 0, 0, 80, 80, 80])
PARAMS_HIGH = np.array([0.3, 0.3, 0.6, 0.3, 255, 255, 255, 175, 175, 175])


def load_shapes(cfg, cache_dir: Path | None) -> dict[str, Dataset]:
    """Colored shapes on noisy backgrounds (cfg: DataConfig; options, seed included, in cfg.shapes): a
    balanced, shuffled set of labels, with each image made only when it is read."""
    opts = cfg.shapes
    labels = np.random.default_rng(opts.seed).permutation(np.repeat(np.arange(opts.classes), opts.per_class))
    reader = ShapesReader(np.arange(len(labels)), labels, opts.size, opts.noise, opts.seed, cfg.size, cfg.mode)
    return {"train": Dataset(reader, np.arange(len(labels)), labels, SHAPE_NAMES[:opts.classes])}


class ShapesReader:
    """Generates the shape images of source positions `ids` (n,), showing shapes `labels` (n,)."""

    def __init__(self, ids: np.ndarray, labels: np.ndarray, size: int, noise: float, seed: int,
                 resize: list[int] | None, mode: str | None) -> None:
        self.ids, self.labels, self.size, self.noise, self.seed = ids, labels, size, noise, seed
        self.resize, self.mode = resize, mode
        height, width = resize or (size, size)
        self.image_shape = (height, width, 1 if mode == "gray" else 3)

    def key(self, index: np.ndarray) -> str:
        digest = hashlib.blake2b(json.dumps(["shapes", 2, self.size, self.noise, self.seed, self.resize,
                                             self.mode]).encode(), digest_size=16)
        digest.update(np.ascontiguousarray(self.ids[index], np.int64).data)
        digest.update(np.ascontiguousarray(self.labels[index], np.int64).data)
        return digest.hexdigest()

    def __len__(self) -> int:
        return len(self.ids)

    def read(self, index: np.ndarray) -> tuple[np.ndarray, dict[int, str]]:
        rngs = [np.random.default_rng([self.seed, int(i)]) for i in self.ids[index]]
        return conform(render_shapes(self.labels[index], self.size, self.noise, rngs), self.resize, self.mode), {}

    def part(self, index: np.ndarray) -> ShapesReader:
        return ShapesReader(self.ids[index], self.labels[index], self.size, self.noise, self.seed, self.resize,
                            self.mode)


def render_shapes(labels: np.ndarray, size: int, noise: float, rngs: list[np.random.Generator]) -> np.ndarray:
    """Images (N, size, size, 3) uint8: shape `SHAPE_NAMES[label]` at a random place, scale, tilt and color,
    image n drawn from rngs[n] alone (10 uniform draws, then size²·3 normal ones)."""
    n = len(labels)
    uniform = np.empty((n, len(PARAMS_LOW)))
    speckle = np.empty((n, size, size, 3), np.float32)
    for row, rng in enumerate(rngs):
        uniform[row] = rng.random(len(PARAMS_LOW))
        speckle[row] = rng.standard_normal((size, size, 3), dtype=np.float32)
    params = (PARAMS_LOW + (PARAMS_HIGH - PARAMS_LOW) * uniform).astype(np.float32)
    axis = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    masks = np.zeros((n, size, size), bool)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        center, radius, tilt = params[rows, :2], params[rows, 2, None, None], params[rows, 3, None, None]
        dx, dy = axis[None, None, :] - center[:, 0, None, None], axis[None, :, None] - center[:, 1, None, None]
        cos, sin = np.cos(tilt), np.sin(tilt)
        u, v = dx * cos + dy * sin, dy * cos - dx * sin
        masks[rows] = _SHAPES[label](u, v, radius)
    background = params[:, None, None, 4:7]
    foreground = (background + params[:, None, None, 7:10]) % 256
    images = np.where(masks[..., None], foreground, background)
    speckle *= np.float32(noise * 255)
    images += speckle
    return np.clip(images, 0, 255).round().astype(np.uint8)


def _triangle(u: np.ndarray, v: np.ndarray, radius: np.ndarray) -> np.ndarray:
    inside = np.ones(u.shape, bool)
    for angle in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3):
        inside &= u * np.cos(angle) - v * np.sin(angle) <= radius / 2
    return inside


def _cross(u: np.ndarray, v: np.ndarray, radius: np.ndarray) -> np.ndarray:
    arm = radius / 3.5
    return ((abs(u) <= arm) & (abs(v) <= radius)) | ((abs(v) <= arm) & (abs(u) <= radius))


_SHAPES = [   # label → mask (n, S, S) of the shape, from rotated coordinates u, v (n, S, S) and radii (n, 1, 1)
    lambda u, v, r: np.hypot(u, v) <= r,                                          # circle
    lambda u, v, r: np.maximum(abs(u), abs(v)) <= r * 0.8,                        # square
    _triangle,
    _cross,
    lambda u, v, r: (np.hypot(u, v) <= r) & (np.hypot(u, v) >= r * 0.55),          # ring
    lambda u, v, r: abs(u) + abs(v) <= r,                                          # diamond
]


def load_faces(cfg, cache_dir: Path | None) -> dict[str, Dataset]:
    """scikit-image's LFW subset: 200 grayscale 25x25 images, 100 faces then 100 non-faces."""
    from skimage.data import lfw_subset

    images = (lfw_subset() * 255).round().astype(np.uint8)[..., None]     # (200, 25, 25, 1)
    labels = np.repeat(np.arange(2), 100)
    return {"train": to_dataset(images, labels, ["face", "non-face"], "faces", cfg.size, cfg.mode)}


SOURCES = [Source("shapes", load_shapes, reads_path=False), Source("faces", load_faces, reads_path=False)]
