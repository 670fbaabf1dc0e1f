"""Checkpoints: one .npz holding everything a run needs to be evaluated or resumed, and no pickle.

Arrays: `meta` (UTF-8 JSON as uint8: format version, resolved config, class names, image shape, input
dimension, training progress), `params/<name>` (weights), `features/<name>` (fitted feature state),
`optim/<name>` (optimizer state) and `buffers/<name>` (batch norm's running averages).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlpcli.config import Config
from mlpcli.errors import CheckpointError, ConfigError
from mlpcli.npzfile import load_npz, save_npz
from mlpcli.schema import from_dict, to_dict

FORMAT_VERSION = 1
GROUPS = ("params", "features", "optim", "buffers")


@dataclass
class Checkpoint:
    config: Config
    classes: list[str]
    image_shape: tuple[int, ...]        # (H, W, C) of the images the features were fit on
    input_dim: int                      # D, the feature dimension
    params: dict[str, np.ndarray]       # "layer{i}.W" (D_i, D_i+1), "layer{i}.b" (D_i+1,)
    features: dict[str, np.ndarray]     # FeaturePipeline.state()
    optim: dict[str, np.ndarray] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)   # epoch, step, best metric, RNG state, ...
    buffers: dict[str, np.ndarray] = field(default_factory=dict)   # MLP.buffers: "norm{i}.running_mean", ...


def save(path: str | Path, ckpt: Checkpoint) -> None:
    """Write `ckpt` atomically; the same checkpoint always gives the same bytes."""
    meta = {
        "format_version": FORMAT_VERSION,
        "config": to_dict(ckpt.config),
        "classes": list(ckpt.classes),
        "image_shape": list(ckpt.image_shape),
        "input_dim": int(ckpt.input_dim),
        "progress": ckpt.progress,
    }
    arrays = {"meta": np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)}
    for group in GROUPS:
        arrays.update({f"{group}/{name}": value for name, value in getattr(ckpt, group).items()})
    save_npz(path, arrays)


def load(path: str | Path) -> Checkpoint:
    """Read and validate a checkpoint; CheckpointError naming the problem if it cannot be used."""
    path = Path(path)
    if path.is_dir():
        path = _checkpoint_in(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a readable .npz checkpoint (not a zip archive)")
    try:
        arrays = load_npz(path)
    except ValueError as err:
        if "Object arrays" in str(err):
            raise CheckpointError(f"{path}: holds object arrays, which mlpcli never writes or loads") from None
        raise CheckpointError(f"{path}: not a readable checkpoint ({err})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise CheckpointError(f"{path}: not a readable .npz checkpoint ({err})") from None
    if "meta" not in arrays:
        raise CheckpointError(f"{path}: not an mlpcli checkpoint (no 'meta' array)")
    try:
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: the 'meta' array is not valid JSON") from None
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version!r}; this mlpcli reads version {FORMAT_VERSION}")
    missing = [k for k in ("config", "classes", "image_shape", "input_dim") if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: meta lacks {', '.join(missing)}")
    try:
        config = from_dict(Config, meta["config"])
    except ConfigError as err:
        raise CheckpointError(f"{path}: its config is invalid: {err}") from None
    groups = {group: {} for group in GROUPS}
    for name, value in arrays.items():
        group, _, key = name.partition("/")
        if group not in groups or not key:
            raise CheckpointError(f"{path}: unexpected array '{name}'")
        groups[group][key] = value
    if not groups["params"]:
        raise CheckpointError(f"{path}: holds no weights (params/ arrays)")
    return Checkpoint(config, list(meta["classes"]), tuple(meta["image_shape"]), int(meta["input_dim"]),
                      groups["params"], groups["features"], groups["optim"], meta.get("progress", {}),
                      groups["buffers"])


def _checkpoint_in(run_dir: Path) -> Path:
    """best.npz of a run folder (or last.npz when there is no best yet)."""
    for name in ("best.npz", "last.npz"):
        candidate = run_dir / "checkpoints" / name
        if candidate.exists():
            return candidate
    raise CheckpointError(f"{run_dir}: no checkpoints/best.npz or checkpoints/last.npz in this folder")
