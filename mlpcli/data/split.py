"""Seeded, stratified sampling and train/validation splits."""

from __future__ import annotations

import numpy as np

from mlpcli.data.dataset import Dataset


def stratified_pick(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of round(fraction·n_c) random samples of each class c (at least 1 if fraction > 0)."""
    picked = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        count = int(round(fraction * len(members)))
        count = max(count, 1) if fraction > 0 else 0
        picked.append(rng.permutation(members)[:count])
    return np.sort(np.concatenate(picked)) if picked else np.array([], dtype=np.int64)


def limit(data: Dataset, count: int, rng: np.random.Generator) -> Dataset:
    """A stratified sample of at most `count` samples, in their original order."""
    if count >= len(data):
        return data
    index = stratified_pick(data.labels, count / len(data), rng)
    return data.subset(index[:count])


def train_val_split(data: Dataset, val_fraction: float, rng: np.random.Generator) -> tuple[Dataset, Dataset]:
    """(train, val) with a stratified `val_fraction` of each class in val."""
    val = stratified_pick(data.labels, val_fraction, rng)
    train = np.setdiff1d(np.arange(len(data)), val, assume_unique=True)
    return data.subset(train), data.subset(val)
