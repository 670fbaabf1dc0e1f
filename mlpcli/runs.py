"""Run folders as records: listing many runs as a sortable, filterable table that fits the terminal,
with a column for each config key that differs among them, and comparing a few runs side by side.

A run folder holds config.yaml, metrics.jsonl (one JSON object per epoch), summary.json (written when
the run ends) and checkpoints/. Every file is read as hostile input: runs that are still going or were
killed show up as "unfinished" with whatever their metrics say so far; a summary that is not what
`mlp train` writes, or a missing or unreadable config.yaml, makes the run "damaged", never an error. A sweep folder (with trials.jsonl) lists
the trial runs in its runs/ folder.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path

from mlpcli.config import load_config
from mlpcli.errors import MlpError
from mlpcli.metrics import macro_f1
from mlpcli.readfile import read_regular
from mlpcli.rundir import RunDir
from mlpcli.schema import flatten, to_dict
from mlpcli.table import Column, elide, format_table, printable

RUN_FILES = ("config.yaml", "metrics.jsonl", "summary.json")
SUMMARY_LIMIT = 64 * 2 ** 20        # bytes; a summary of 1,000 classes is about 10 MB
SORT_KEYS = ("date", "name", "status", "epochs", "val_acc", "test_acc", "seconds")
BEST_FIRST = {"val_acc", "test_acc"}    # sorted descending; the other keys ascending
NOT_COMPARED = {"output.name", "output.dir"}    # where a run went, not what it did
COLUMNS = {      # record key → column; `drop`: left out first when the terminal is narrow (highest first)
    "run": Column("run", elide=True, min_width=20),
    "date": Column("date", drop=6),
    "status": Column("status"),
    "epochs": Column("epochs", right=True, drop=5),
    "features": Column("features", elide=True, drop=3),
    "model": Column("model", elide=True, drop=4),
    "val_acc": Column("val acc", right=True),
    "test_acc": Column("test acc", right=True, drop=1),
    "seconds": Column("time", right=True, drop=2),
}
COMPARED = (("status", "status"), ("epochs", "epochs"), ("best_epoch", "best epoch"), ("val_acc", "val acc"),
            ("val_loss", "val loss"), ("macro_f1", "val macro F1"), ("test_acc", "test acc"),
            ("test_loss", "test loss"), ("seconds", "time"))     # record key, row title of `mlp compare`


def read_summary(path: str | Path) -> dict:
    """The run summary in a summary.json file, as `mlp train` writes it; MlpError naming the file (and the
    first field that is missing or of another kind) otherwise."""
    summary = _summary_object(path)
    problem = summary_problem(summary)
    if problem:
        raise MlpError(f"{path}: not a run summary ({problem}); the file is damaged")
    return summary


def summary_problem(summary: dict) -> str | None:
    """What makes a summary other than one `mlp train` writes (its first wrong or missing field), or None:
    run facts of their kind, and a val (and maybe a test) split with accuracy, loss and a confusion matrix
    of the classes."""
    checks = {"name": _text, "started": _local_time, "seconds": _nonnegative, "epochs_run": _count,
              "best_epoch": _count, "stopped": _text, "model": _text, "features": _names, "classes": _names}
    for key, check in checks.items():
        if check(summary.get(key)) is None:
            return _wrong(summary, key)
    for split in ("val", "test"):
        if split == "test" and split not in summary:
            continue
        scores = summary.get(split)
        if not isinstance(scores, dict):
            return _wrong(summary, split)
        for key, check in (("accuracy", _fraction), ("loss", _nonnegative), ("confusion", _confusion)):
            value = check(scores.get(key))
            if value is None or (key == "confusion" and len(value) != len(summary["classes"])):
                return _wrong(scores, key, f"{split}.")
    return None


def _wrong(holder: dict, key: str, prefix: str = "") -> str:
    if key not in holder:
        return f'no "{prefix}{key}"'
    return f'"{prefix}{key}" is {elide(repr(holder[key]), 40)}'


def _summary_object(path: str | Path) -> dict:
    """The JSON object in a summary.json file, or an MlpError naming the file."""
    path = Path(path)
    try:
        if path.stat().st_size > SUMMARY_LIMIT:
            raise MlpError(f"{path}: {path.stat().st_size} bytes is too large for a run summary; the file is damaged")
        summary = json.loads(read_regular(path).decode("utf-8"))
    except FileNotFoundError:
        raise MlpError(f"{path} not found: the run has not finished; continue it with "
                       f"`mlp train --resume {path.parent}`") from None
    except json.JSONDecodeError as err:
        raise MlpError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}); the file is damaged") from None
    except (OSError, UnicodeDecodeError, RecursionError) as err:
        raise MlpError(f"{path}: cannot be read ({type(err).__name__}); the file is damaged") from None
    if not isinstance(summary, dict):
        raise MlpError(f"{path}: holds a JSON {type(summary).__name__}, not a run summary object; the file is damaged")
    return summary


def read_metrics(folder: str | Path) -> list[dict]:
    """The epoch rows of a run's metrics.jsonl ([] if it cannot be read, e.g. a folder by that name), each
    value checked: the epoch its row number, an accuracy a fraction, the other values finite non-negative
    numbers; a value that is not (text, a bool, NaN) is None. Keys other than METRICS are left out."""
    try:
        rows = RunDir(folder).read_metrics()
    except OSError:
        return []
    return [{"epoch": epoch, **{key: check(row[key]) for key, check in METRICS.items() if key in row}}
            for epoch, row in enumerate(rows, 1)]


def list_runs(root: str | Path) -> list[dict]:
    """One record per run folder directly inside `root` (or a sweep folder's runs/), oldest first.

    Each record: run (folder name), name, date (ISO 8601, local time), status ("completed",
    "early_stop", "interrupted", "unfinished" or "damaged"), epochs, features (list of names), model,
    val_acc, test_acc, macro_f1 (of the validation split; fractions or None), val_loss, test_loss,
    best_epoch, seconds, path, and config: the resolved config as {dotted key: value} (None if
    config.yaml cannot be read). Plain JSON-ready values.
    """
    root = Path(root)
    if not root.is_dir():
        raise MlpError(f"runs folder not found: {root} (runs are written to `output.dir`, by default runs/)")
    if (root / "trials.jsonl").is_file():
        root = root / "runs"
        if not root.is_dir():
            return []
    folders = [p for p in root.iterdir() if p.is_dir() and any((p / name).is_file() for name in RUN_FILES)]
    return sort_runs([run_record(folder) for folder in folders], "date")


def run_record(folder: str | Path) -> dict:
    """The record (see `list_runs`) of one run folder; MlpError if it holds none of the run files."""
    folder = Path(folder)
    if not folder.is_dir() or not any((folder / name).is_file() for name in RUN_FILES):
        raise MlpError(f"{folder} is not a run folder (it has no {', '.join(RUN_FILES)})")
    status = "unfinished"
    try:
        summary = _summary_object(folder / "summary.json")
    except MlpError:
        summary = {}
        if (folder / "summary.json").exists():
            status = "damaged"
    else:
        status = "damaged" if summary_problem(summary) else summary["stopped"] or "completed"
    metrics = read_metrics(folder)
    val_accs = [m["val_acc"] for m in metrics if m.get("val_acc") is not None]
    config = _flat_config(folder / "config.yaml")
    facts = {
        "name": _text(summary.get("name")),
        "date": _local_time(summary.get("started")),
        "epochs": _count(summary.get("epochs_run")),
        "best_epoch": _count(summary.get("best_epoch")),
        "features": _names(summary.get("features")),
        "model": _text(summary.get("model")),
        "val_acc": _split_score(summary, "val", "accuracy"),
        "test_acc": _split_score(summary, "test", "accuracy"),
        "seconds": _nonnegative(summary.get("seconds")),
    }
    if config is None:
        status = "damaged"
    steps = [m.get("seconds") for m in metrics]
    return {
        "run": printable(folder.name),
        "name": facts["name"] or printable(folder.name),
        "date": facts["date"] or _started(folder),
        "status": status,
        "epochs": facts["epochs"] if facts["epochs"] is not None else len(metrics),
        "features": facts["features"] or _config_features(config),
        "model": facts["model"],
        "val_acc": facts["val_acc"] if facts["val_acc"] is not None else max(val_accs, default=None),
        "test_acc": facts["test_acc"],
        "val_loss": _split_score(summary, "val", "loss"),
        "test_loss": _split_score(summary, "test", "loss"),
        "macro_f1": _split_f1(summary, "val"),
        "best_epoch": facts["best_epoch"],
        "seconds": facts["seconds"] if facts["seconds"] is not None else (sum(s or 0.0 for s in steps) if steps else None),
        "path": printable(str(folder)),
        "config": config,
    }


def _text(value) -> str | None:
    return value if isinstance(value, str) else None


def _count(value) -> int | None:
    """A non-negative int (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _nonnegative(value) -> float | None:
    """A finite non-negative number as a float, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def _fraction(value) -> float | None:
    value = _nonnegative(value)
    return value if value is not None and value <= 1 else None


METRICS = {"train_loss": _nonnegative, "train_acc": _fraction, "val_loss": _nonnegative, "val_acc": _fraction,
           "lr": _nonnegative, "seconds": _nonnegative, "train_data_loss": _nonnegative,
           "val_data_loss": _nonnegative, "l2": _nonnegative}     # metrics.jsonl key → its check


def _names(value) -> list[str] | None:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    return None


def _split_score(summary: dict, split: str, name: str) -> float | None:
    """A split's accuracy (a fraction) or loss (a non-negative number) in a summary, else None."""
    scores = summary.get(split)
    value = scores.get(name) if isinstance(scores, dict) else None
    return _fraction(value) if name == "accuracy" else _nonnegative(value)


def _split_f1(summary: dict, split: str) -> float | None:
    """Macro F1 of a split, from its confusion matrix (summaries of every version have one)."""
    scores = summary.get(split)
    confusion = _confusion(scores.get("confusion")) if isinstance(scores, dict) else None
    return None if confusion is None else round(macro_f1(confusion), 6)


def _confusion(value) -> list | None:
    """A square, non-empty matrix of counts (as lists) that int64 holds, else None."""
    if isinstance(value, list) and value and all(
            isinstance(row, list) and len(row) == len(value)
            and all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2 ** 62 for n in row) for row in value):
        return value
    return None


def _local_time(value) -> str | None:
    """An ISO 8601 time as local time to the second (None if it is not one)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
        return (moment.astimezone() if moment.tzinfo else moment).replace(tzinfo=None).isoformat(timespec="seconds")
    except (ValueError, OverflowError):       # not a time; a time zone shifts it out of datetime's years
        return None


def _started(folder: Path) -> str | None:
    """When an unfinished run started: the time its first file was written."""
    times = []
    for name in RUN_FILES:
        try:
            times.append((folder / name).stat().st_mtime)
        except OSError:
            pass
    return datetime.fromtimestamp(min(times)).isoformat(timespec="seconds") if times else None


def _flat_config(path: Path) -> dict | None:
    """{dotted key: value} of a run's resolved config.yaml, or None when it cannot be read or is invalid."""
    try:
        return flatten(to_dict(load_config(path)))
    except MlpError:
        return None


def _config_features(config: dict | None) -> list[str]:
    """Extractor names in a flattened config ([] if unknown)."""
    if config is None:
        return []
    names = {}
    for key in config:
        if key.startswith("features.extractors["):
            index, _, rest = key[len("features.extractors["):].partition("].")
            names.setdefault(index, rest.split(".")[0])
    return list(names.values())


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
    runs = sorted(runs, key=lambda run: run["run"])          # ties stay in folder-name order
    present = [run for run in runs if run[sort_by] is not None]
    missing = [run for run in runs if run[sort_by] is None]
    return sorted(present, key=lambda run: run[sort_by], reverse=sort_by in BEST_FIRST) + missing


def differing_keys(runs: list[dict]) -> list[str]:
    """The config keys (in config order) on which at least two of the runs that have them disagree."""
    values: dict[str, set] = {}
    for run in runs:
        for key, value in (run["config"] or {}).items():
            if key not in NOT_COMPARED:
                values.setdefault(key, set()).add(json.dumps(value, sort_keys=True))
    return [key for key, seen in values.items() if len(seen) > 1]


def short_names(keys: list[str], taken: tuple[str, ...] = ()) -> dict[str, str]:
    """Each dotted key by its shortest unique tail that is not one of the `taken` names: optim.lr → lr,
    data.shapes.seed → shapes.seed (when seed differs too), train.epochs → train.epochs beside a column
    "epochs"; the whole key when no tail is unique."""
    parts = {key: key.split(".") for key in keys}
    names = {}
    for key, path in parts.items():
        tails = (path[-n:] for n in range(1, len(path) + 1))
        unique = (tail for tail in tails if sum(other[-len(tail):] == tail for other in parts.values()) == 1
                  and ".".join(tail) not in taken)
        names[key] = ".".join(next(unique, path))
    return names


def runs_json(runs: list[dict]) -> list[dict]:
    """The records for `mlp runs --json`: `config` holds only the keys that differ among the runs."""
    keys = differing_keys(runs)
    return [{**run, "config": None if run["config"] is None else {k: run["config"].get(k) for k in keys}}
            for run in runs]


def format_runs(runs: list[dict], width: int | None = None) -> str:
    """A plain-text table of run records under a header: the run facts, then one column per differing
    config key, fitted into `width` characters (None: as wide as it takes)."""
    if not runs:
        return "no runs"
    keys = differing_keys(runs)
    titles = short_names(keys, taken=tuple(column.title for column in COLUMNS.values()))
    columns = [*COLUMNS.values(), *(Column(titles[key], elide=True, min_width=6) for key in keys)]
    rows = [[_cell(field, run[field]) for field in COLUMNS] + [_config_cell(run["config"], key) for key in keys]
            for run in runs]
    return format_table(columns, rows, width)


def format_value(value) -> str:
    """A config value as it would be written in an override: 0.05, [256,128], true, null."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _config_cell(config: dict | None, key: str) -> str:
    if config is None:
        return "?"
    return format_value(config[key]) if key in config else "-"


def _cell(key: str, value) -> str:
    if value is None or value == []:
        return "-"
    if key in ("val_acc", "test_acc", "macro_f1"):
        return f"{value:.2%}"
    if key in ("val_loss", "test_loss"):
        return f"{value:.4f}"
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


def compare_runs(folders: list[str | Path]) -> dict:
    """Runs side by side: {"runs": folder names, "paths", "config": {differing key: [value per run]},
    "metrics": {name: [value per run]}} (a value is None where a run lacks it)."""
    runs = [run_record(folder) for folder in folders]
    return {
        "runs": [run["run"] for run in runs],
        "paths": [run["path"] for run in runs],
        "config": {key: [None if run["config"] is None else run["config"].get(key) for run in runs]
                   for key in differing_keys(runs)},
        "metrics": {field: [run[field] for run in runs] for field, _ in COMPARED},
    }


def format_comparison(comparison: dict, width: int | None = None) -> str:
    """`compare_runs` as a table: one column per run, the differing config keys then the metrics."""
    columns = [Column("", elide=True, min_width=12)] + [Column(run, right=True, elide=True, min_width=10)
                                                          for run in comparison["runs"]]
    config = comparison["config"]
    rows = [[key, *(format_value(value) for value in values)] for key, values in config.items()]
    if not config:
        rows = [["(no config key differs)", *("" for _ in comparison["runs"])]]
    rows.append(["" for _ in columns])
    rows += [[title, *(_cell(field, value) for value in comparison["metrics"][field])] for field, title in COMPARED]
    return format_table(columns, rows, width)
