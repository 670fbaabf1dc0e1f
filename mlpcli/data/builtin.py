"""Embedded datasets that need no download: generated `shapes` and scikit-image's `faces`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlpcli.data.convert import to_dataset
from mlpcli.data.dataset import Dataset

SHAPE_NAMES = ["circle", "square", "triangle", "cross", "ring", "diamond"]


def load_shapes(cfg, cache_dir: Path | None) -> dict[str, Dataset]:
    """Colored shapes on noisy backgrounds (cfg: DataConfig; options, seed included, in cfg.shapes)."""
    opts = cfg.shapes
    rng = np.random.default_rng(opts.seed)
    labels = rng.permutation(np.repeat(np.arange(opts.classes), opts.per_class))
    images = render_shapes(labels, opts.size, opts.noise, rng)
    return {"train": to_dataset(images, labels, SHAPE_NAMES[:opts.classes], "shapes", cfg.size, cfg.mode)}


def render_shapes(labels: np.ndarray, size: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Images (N, size, size, 3) uint8: shape `SHAPE_NAMES[label]` at a random place, scale, tilt and color."""
    n = len(labels)
    axis = np.linspace(-1.0, 1.0, size)
    x, y = axis[None, None, :], axis[None, :, None]                        # broadcast to (N, S, S)
    center = rng.uniform(-0.3, 0.3, size=(n, 2))
    radius = rng.uniform(0.35, 0.6, size=n)[:, None, None]
    tilt = rng.uniform(-0.3, 0.3, size=n)[:, None, None]                    # small: keeps square ≠ diamond
    dx, dy = x - center[:, 0, None, None], y - center[:, 1, None, None]
    u, v = dx * np.cos(tilt) + dy * np.sin(tilt), -dx * np.sin(tilt) + dy * np.cos(tilt)
    dist = np.hypot(u, v)
    arm = radius / 3.5
    triangle = np.ones((n, size, size), dtype=bool)
    for angle in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3):
        triangle &= u * np.cos(angle) - v * np.sin(angle) <= radius / 2
    masks = np.stack([
        dist <= radius,                                                     # circle
        np.maximum(abs(u), abs(v)) <= radius * 0.8,                         # square
        triangle,                                                           # triangle
        ((abs(u) <= arm) & (abs(v) <= radius)) | ((abs(v) <= arm) & (abs(u) <= radius)),  # cross
        (dist <= radius) & (dist >= radius * 0.55),                         # ring
        abs(u) + abs(v) <= radius,                                          # diamond
    ])[labels, np.arange(n)]                                                # (N, S, S)
    background = rng.uniform(0, 255, size=(n, 1, 1, 3))
    foreground = (background + rng.uniform(80, 175, size=(n, 1, 1, 3))) % 256
    images = np.where(masks[..., None], foreground, background)
    images += rng.normal(0.0, noise * 255, size=images.shape)
    return np.clip(images, 0, 255).round().astype(np.uint8)


def load_faces(cfg, cache_dir: Path | None) -> dict[str, Dataset]:
    """scikit-image's LFW subset: 200 grayscale 25x25 images, 100 faces then 100 non-faces."""
    from skimage.data import lfw_subset

    images = (lfw_subset() * 255).round().astype(np.uint8)[..., None]     # (200, 25, 25, 1)
    labels = np.repeat(np.arange(2), 100)
    return {"train": to_dataset(images, labels, ["face", "non-face"], "faces", cfg.size, cfg.mode)}
