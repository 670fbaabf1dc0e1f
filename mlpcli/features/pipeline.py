"""The feature pipeline: extractors run in chunks, concatenated, standardized, optionally cached on disk.

Everything it learns (extractor state such as a codebook, and the normalization statistics) is named
arrays, so a checkpoint can carry it and `mlp eval` reproduces the features without the training data.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mlpcli.errors import CheckpointError
from mlpcli.npzfile import load_npz, save_npz
from mlpcli.parallel import map_row_blocks
from mlpcli.schema import to_dict


class FeaturePipeline:
    """images (N, H, W, C) uint8 → features (N, D) in `dtype`.

    cfg: FeaturesConfig; cache_dir: where extracted features are cached (None: no cache).
    """

    def __init__(self, cfg, dtype: str = "float32", cache_dir: Path | None = None, progress: bool = True) -> None:
        self.cfg = cfg
        self.dtype = np.dtype(dtype)
        self.extractors = [spec.build() for spec in cfg.extractors]
        self.names = [spec.name for spec in cfg.extractors]
        self.cache_dir = Path(cache_dir) / "features" if cache_dir is not None and cfg.cache else None
        self.progress = progress
        self.cache_hits = 0                   # extractions served from the cache so far
        self.mean: np.ndarray | None = None   # (D,) normalization statistics, set by fit
        self.std: np.ndarray | None = None

    def fit_transform(self, images: np.ndarray, rng: np.random.Generator, mirror: bool = False) -> np.ndarray:
        """Fit extractors and normalization on training images; their features (N, D), or with `mirror`
        (2N, D): those of the images, then those of their left-right mirror images (data.flip)."""
        key = self._key("fit", images, json.dumps(rng.bit_generator.state, default=str) + f" mirror={mirror}")
        cached = self._cache_load(key)
        if cached is not None:
            self.load_state(cached)
            return cached["features"]
        for extractor in self.extractors:
            extractor.fit(images, rng)
        raw = self._extract(images, "features (fit)", mirror)
        if self.cfg.normalize == "standard":
            mean, std = column_stats(raw)
            self.mean, self.std = mean.astype(self.dtype), np.where(std > 1e-8, std, 1.0).astype(self.dtype)
        features = self._normalize(raw)
        self._cache_save(key, {**self.state(), "features": features})
        return features

    def transform(self, images: np.ndarray, mirror: bool = False) -> np.ndarray:
        """Features (N, D) of images with the fitted state; with `mirror`, (2N, D) as in fit_transform."""
        key = self._key("transform", images, self._state_digest() + f" mirror={mirror}")
        cached = self._cache_load(key)
        if cached is not None:
            return cached["features"]
        features = self._normalize(self._extract(images, "features", mirror))
        self._cache_save(key, {"features": features})
        return features

    def state(self) -> dict[str, np.ndarray]:
        """Fitted state as named arrays: 'extractor{i}.{key}', 'normalize.mean', 'normalize.std'."""
        arrays = {f"extractor{i}.{key}": value
                  for i, extractor in enumerate(self.extractors) for key, value in extractor.state().items()}
        if self.mean is not None:
            arrays["normalize.mean"], arrays["normalize.std"] = self.mean, self.std
        return arrays

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore `state()` output; CheckpointError if something is missing."""
        for i, extractor in enumerate(self.extractors):
            prefix = f"extractor{i}."
            extractor.load_state({k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
        if self.cfg.normalize == "standard":
            missing = [k for k in ("normalize.mean", "normalize.std") if k not in arrays]
            if missing:
                raise CheckpointError(f"feature state lacks {', '.join(missing)}")
            self.mean = arrays["normalize.mean"].astype(self.dtype)
            self.std = arrays["normalize.std"].astype(self.dtype)

    def _extract(self, images: np.ndarray, label: str, mirror: bool = False) -> np.ndarray:
        """Concatenated raw extractor outputs (N, D), or with `mirror` (2N, D) with those of the mirror
        images after; computed `cfg.chunk` images at a time, one chunk per core at once (mlpcli.parallel).
        The mirror images are views made chunk by chunk, never a second copy of the images."""
        n = len(images)
        if n == 0:
            return np.empty((0, 0), dtype=self.dtype)

        def features_of(block: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
            return np.concatenate([extractor.transform(block) for extractor in self.extractors], axis=1, out=out)

        out = np.empty((2 * n if mirror else n, features_of(images[:1]).shape[1]), dtype=self.dtype)
        with tqdm(total=len(out), desc=label, unit="img", disable=None if self.progress and n > self.cfg.chunk else True,
                  leave=False) as bar:
            def extract(rows: slice) -> None:
                block = images[rows]
                features_of(block, out[rows])
                if mirror:
                    features_of(block[:, :, ::-1], out[rows.start + n:rows.stop + n])
                bar.update((rows.stop - rows.start) * (2 if mirror else 1))

            map_row_blocks(extract, n, self.cfg.chunk)
        return out

    def _normalize(self, raw: np.ndarray) -> np.ndarray:
        if self.mean is None:
            return raw
        if raw.shape[1] != len(self.mean):
            raise CheckpointError(f"features have {raw.shape[1]} dimensions but the normalization expects "
                                  f"{len(self.mean)}; the images differ in size from the training images")
        raw -= self.mean
        raw /= self.std
        return raw

    def _key(self, kind: str, images: np.ndarray, extra: str) -> str | None:
        if self.cache_dir is None:
            return None
        digest = hashlib.blake2b(digest_size=16)
        versions = [f"{type(extractor).__name__} {extractor.version}" for extractor in self.extractors]
        for part in (kind, str(images.shape), json.dumps(to_dict(self.cfg)), str(self.dtype), *versions, extra):
            digest.update(part.encode())
        digest.update(np.ascontiguousarray(images).data)
        return digest.hexdigest()

    def _state_digest(self) -> str:
        digest = hashlib.blake2b(digest_size=16)
        for name, value in sorted(self.state().items()):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(value).data)
        return digest.hexdigest()

    def _cache_load(self, key: str | None) -> dict[str, np.ndarray] | None:
        if key is None:
            return None
        try:
            arrays = load_npz(self.cache_dir / f"{key}.npz")
        except (OSError, ValueError, zipfile.BadZipFile):
            return None
        self.cache_hits += 1
        return arrays

    def _cache_save(self, key: str | None, arrays: dict[str, np.ndarray]) -> None:
        if key is not None:
            try:
                save_npz(self.cache_dir / f"{key}.npz", arrays)
            except OSError:
                pass  # a cache that cannot be written only costs time


def column_stats(X: np.ndarray, rows: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (D,) float64 of the columns of X (N, D), accumulated over blocks of
    rows so that no float64 copy of X is ever made."""
    total = np.zeros(X.shape[1])
    for start in range(0, len(X), rows):
        total += X[start:start + rows].sum(axis=0, dtype=np.float64)
    mean = total / max(len(X), 1)
    squares = np.zeros(X.shape[1])
    for start in range(0, len(X), rows):
        deviation = X[start:start + rows] - mean               # (rows, D) float64
        squares += np.einsum("nd,nd->d", deviation, deviation)
    return mean, np.sqrt(squares / max(len(X), 1))
