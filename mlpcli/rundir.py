"""The run folder: resolved config, per-epoch metrics, summary, checkpoints and plots.

    RUN/config.yaml  RUN/metrics.jsonl  RUN/summary.json  RUN/checkpoints/{last,best}.npz  RUN/*.png
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

from mlpcli.atomic import write_text_atomic
from mlpcli.config import Config, dump_config
from mlpcli.errors import MlpError


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config = self.path / "config.yaml"
        self.metrics = self.path / "metrics.jsonl"
        self.summary = self.path / "summary.json"
        self.last = self.path / "checkpoints" / "last.npz"
        self.best = self.path / "checkpoints" / "best.npz"

    @classmethod
    def create(cls, cfg: Config, out: str | Path | None = None) -> RunDir:
        """A new run folder: `out`, or <output.dir>/<output.name>-<timestamp>; never an existing run."""
        if out is None:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            base = Path(cfg.output.dir) / f"{cfg.output.name}-{stamp}"
            path, n = base, 1
            while path.exists():
                n += 1
                path = base.with_name(f"{base.name}-{n}")
        else:
            path = Path(out)
            if path.exists() and (not path.is_dir() or any(path.iterdir())):
                raise MlpError(f"{path} already exists and is not empty; pick another --out, "
                               f"or continue that run with `mlp train --resume {path}`")
        run = cls(path)
        (run.path / "checkpoints").mkdir(parents=True, exist_ok=True)
        write_text_atomic(run.config, dump_config(cfg))
        return run

    def discard_if_unused(self) -> None:
        """Remove a run folder that holds nothing but its config (training failed before any epoch)."""
        checkpoints = self.path / "checkpoints"
        if self.metrics.exists() or (checkpoints.is_dir() and any(checkpoints.iterdir())):
            return
        self.config.unlink(missing_ok=True)
        for folder in (checkpoints, self.path):
            try:
                folder.rmdir()
            except OSError:
                return

    def append_metrics(self, row: dict) -> None:
        with open(self.metrics, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_metrics(self) -> list[dict]:
        """Complete metric rows (a torn last line from a crash is ignored)."""
        if not self.metrics.exists():
            return []
        rows = []
        for line in self.metrics.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return rows

    def keep_metrics(self, epochs: int) -> None:
        """Drop metric rows past epoch `epochs` (written after the checkpoint a resume starts from)."""
        rows = [row for row in self.read_metrics() if row["epoch"] <= epochs]
        write_text_atomic(self.metrics, "".join(json.dumps(row) + "\n" for row in rows))

    def write_summary(self, summary: dict) -> None:
        write_text_atomic(self.summary, json.dumps(summary, indent=2) + "\n")
