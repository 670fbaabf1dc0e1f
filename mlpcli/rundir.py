"""The run folder: resolved config, per-epoch metrics, summary, checkpoints and plots.

    RUN/config.yaml  RUN/metrics.jsonl  RUN/summary.json  RUN/checkpoints/{last,best}.npz  RUN/*.png
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from mlpcli.atomic import write_text_atomic
from mlpcli.config import Config, dump_config
from mlpcli.errors import MlpError
from mlpcli.readfile import read_regular


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
        run = cls(new_folder(out, Path(cfg.output.dir), cfg.output.name, "mlp train --resume", _holds_only_leftovers))
        try:
            (run.path / "checkpoints").mkdir(parents=True, exist_ok=True)
            write_text_atomic(run.config, dump_config(cfg))
        except BaseException:
            run.discard_if_unused()
            raise
        return run

    @classmethod
    def existing(cls, path: str | Path) -> RunDir:
        """The run folder at `path`; MlpError unless it holds the config.yaml of a run."""
        run = cls(path)
        if not run.config.is_file():
            raise MlpError(f"{run.path} is not a run folder (it has no config.yaml); "
                           "run folders are written by `mlp train`")
        return run

    def discard_if_unused(self) -> None:
        """Remove what a new run wrote when it ended before its first checkpoint/last.npz: nothing there
        can be resumed, so the folder is removed (if only our files are in it)."""
        if self.last.exists():
            return
        for path in (self.config, self.metrics, self.best):
            path.unlink(missing_ok=True)
        for folder in (self.path / "checkpoints", self.path):
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
        """The metric rows of epochs 1, 2, … in order, up to the first row that is torn (a crash while
        appending), malformed or out of sequence; what follows such a row is not read."""
        if not self.metrics.exists():
            return []
        rows = []
        for line in read_regular(self.metrics).decode("utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                break
            if not isinstance(row, dict) or row.get("epoch") != len(rows) + 1:
                break
            rows.append(row)
        return rows

    def begin(self, cfg: Config, epochs: int) -> None:
        """Make the folder that of a run of `cfg` training on from epoch `epochs`; called just before training
        first writes to it, so a run that fails before (while preparing, or in its first epoch) leaves the
        folder as it was. The rows after that epoch are dropped (keep_metrics), summary.json is removed (the
        run is unfinished until it writes one again), then config.yaml is rewritten if it says otherwise (the
        train.epochs of an extended run)."""
        self.keep_metrics(epochs)
        self.summary.unlink(missing_ok=True)
        text = dump_config(cfg)
        if read_regular(self.config).decode("utf-8", errors="replace") != text:
            write_text_atomic(self.config, text)

    def keep_metrics(self, epochs: int) -> None:
        """Keep the rows of epochs 1..`epochs` (a resume drops those written after its checkpoint);
        MlpError if some of them are missing."""
        rows = self.read_metrics()
        if len(rows) < epochs:
            raise MlpError(f"{self.metrics} has {len(rows)} readable epoch rows but the checkpoint has done {epochs} "
                           "epochs: the run's history is lost or damaged; restore the file, or start a new run")
        if len(rows) > epochs or (epochs == 0 and self.metrics.exists()):
            write_text_atomic(self.metrics, "".join(json.dumps(row) + "\n" for row in rows[:epochs]))

    def write_summary(self, summary: dict) -> None:
        write_text_atomic(self.summary, json.dumps(summary, indent=2) + "\n")


def _holds_only_leftovers(folder: Path) -> bool:
    """Whether `folder` holds nothing but what a run killed while starting leaves: an empty checkpoints/
    folder and temporary files of unfinished atomic writes (.*.tmp)."""
    for entry in folder.iterdir():
        if entry.name == "checkpoints" and entry.is_dir() and not entry.is_symlink():
            if not _holds_only_leftovers(entry):
                return False
        elif not (entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.is_file()):
            return False
    return True


def new_folder(out: str | Path | None, parent: Path, name: str, resume_command: str,
               reusable: Callable[[Path], bool] = lambda folder: not any(folder.iterdir())) -> Path:
    """The path of a new folder: `out`, which must be absent or `reusable` (default: empty), or
    <parent>/<name>-<timestamp> (with -2, -3, ... if that exists). `resume_command` continues what an
    `out` in use holds."""
    if out is not None:
        path = Path(out)
        if path.exists() and (not path.is_dir() or not reusable(path)):
            raise MlpError(f"{path} already exists and is not empty; pick another --out, or continue it with "
                           f"`{resume_command} {path}`")
        return path
    base = parent / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path
