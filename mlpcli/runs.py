"""Run folders: reading their metrics and summary, and listing many runs as a sortable, filterable table.

A run folder holds config.yaml, metrics.jsonl (one JSON object per epoch), summary.json (written when
the run ends) and checkpoints/. Listing tolerates runs that are still going or were killed: they show
up with status "unfinished" and whatever their metrics say so far.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import yaml

from mlpcli.errors import MlpError
from mlpcli.rundir import RunDir

RUN_FILES = ("config.yaml", "metrics.jsonl", "summary.json")
SORT_KEYS = ("date", "name", "status", "epochs", "val_acc", "test_acc", "seconds")
BEST_FIRST = {"val_acc", "test_acc"}    # sorted descending; the other keys ascending
COLUMNS = (("run", "run"), ("date", "date"), ("status", "status"), ("epochs", "epochs"),
           ("features", "features"), ("model", "model"), ("val_acc", "val acc"), ("test_acc", "test acc"),
           ("seconds", "time"))
RIGHT_ALIGNED = {"epochs", "val_acc", "test_acc", "seconds"}


def read_summary(path: str | Path) -> dict:
    """The run summary in a summary.json file, or an MlpError naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MlpError(f"{path} not found: the run has not finished; continue it with "
                       f"`mlp train --resume {path.parent}`") from None
    except json.JSONDecodeError as err:
        raise MlpError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}); the file is damaged") from None


def list_runs(root: str | Path) -> list[dict]:
    """One record per run folder directly inside `root`, oldest first.

    Each record: run (folder name), name, date (ISO 8601), status ("completed", "early_stop",
    "interrupted", "unfinished" or "damaged"), epochs, features (list of names), model, val_acc,
    test_acc (fractions or None), seconds, path. Plain JSON-ready values.
    """
    root = Path(root)
    if not root.is_dir():
        raise MlpError(f"runs folder not found: {root} (runs are written to `output.dir`, by default runs/)")
    folders = [p for p in root.iterdir() if p.is_dir() and any((p / name).is_file() for name in RUN_FILES)]
    return sort_runs([_record(folder) for folder in folders], "date")


def _record(folder: Path) -> dict:
    try:
        summary = read_summary(folder / "summary.json")
        status = summary.get("stopped", "completed")
    except MlpError:
        summary = {}
        status = "damaged" if (folder / "summary.json").exists() else "unfinished"
    metrics = RunDir(folder).read_metrics()
    val_accs = [m["val_acc"] for m in metrics if m.get("val_acc") is not None]
    return {
        "run": folder.name,
        "name": summary.get("name", folder.name),
        "date": summary.get("started") or _started(folder),
        "status": status,
        "epochs": summary.get("epochs_run", len(metrics)),
        "features": summary.get("features") or _config_features(folder / "config.yaml"),
        "model": summary.get("model"),
        "val_acc": (summary.get("val") or {}).get("accuracy", max(val_accs, default=None)),
        "test_acc": (summary.get("test") or {}).get("accuracy"),
        "seconds": summary.get("seconds", sum(m.get("seconds", 0.0) for m in metrics) if metrics else None),
        "path": str(folder),
    }


def _started(folder: Path) -> str:
    """When an unfinished run started: the time its first file was written."""
    times = [(folder / name).stat().st_mtime for name in RUN_FILES if (folder / name).exists()]
    return datetime.fromtimestamp(min(times)).isoformat(timespec="seconds")


def _config_features(path: Path) -> list[str]:
    """Extractor names in a run's config.yaml, or [] when it cannot be read."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        return [name for item in raw["features"]["extractors"] for name in item]
    except (OSError, yaml.YAMLError, TypeError, KeyError):
        return []


def filter_runs(runs: list[dict], match: str) -> list[dict]:
    """The runs whose folder, name, features, model or status contain `match` (case-insensitive)."""
    needle = match.lower()
    return [run for run in runs
            if any(needle in str(run[key]).lower() for key in ("run", "name", "model", "status"))
            or any(needle in feature.lower() for feature in run["features"])]


def sort_runs(runs: list[dict], sort_by: str) -> list[dict]:
    """The runs ordered by `sort_by` (one of SORT_KEYS): accuracies best first, the rest ascending;
    runs without a value go last."""
    if sort_by not in SORT_KEYS:
        raise MlpError(f"cannot sort runs by '{sort_by}'; choose one of {', '.join(SORT_KEYS)}")
    present = [run for run in runs if run[sort_by] is not None]
    missing = [run for run in runs if run[sort_by] is None]
    return sorted(present, key=lambda run: run[sort_by], reverse=sort_by in BEST_FIRST) + missing


def format_runs(runs: list[dict]) -> str:
    """A plain-text table of run records, one line per run under a header."""
    if not runs:
        return "no runs"
    rows = [[title for _, title in COLUMNS]] + [[_cell(key, run[key]) for key, _ in COLUMNS] for run in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = []
    for row in rows:
        cells = [text.rjust(width) if key in RIGHT_ALIGNED else text.ljust(width)
                 for (key, _), text, width in zip(COLUMNS, row, widths)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _cell(key: str, value) -> str:
    if value is None or value == []:
        return "-"
    if key in ("val_acc", "test_acc"):
        return f"{value:.1%}"
    if key == "seconds":
        return format_duration(value)
    if key == "date":
        return value[:16].replace("T", " ")
    if key == "features":
        return "+".join(value)
    return str(value)


def format_duration(seconds: float) -> str:
    """12.3s, 4m05s or 1h02m."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"
