"""Shared fixtures: a tiny, fast config on generated shapes, written as a YAML file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

TINY = {
    "seed": 3,
    "data": {"source": "shapes", "shapes": {"classes": 3, "per_class": 30, "size": 16}, "val_fraction": 0.25},
    "features": {"extractors": [{"pixels": {}}]},
    "model": {"hidden": [16]},
    "optim": {"lr": 0.05},
    "train": {"epochs": 4, "batch_size": 16, "patience": 0},
    "output": {"plots": False},
    "cache_dir": None,
}


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    """A config file that trains in well under a second."""
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path
