"""What a worker does for a sweep: extract a group's features once, and train one trial (new, or resumed
from its run folder) up to a number of epochs. Both return plain data and never raise for a failed run:
its one-line error is part of the result, so the sweep goes on and a failure is not retried.
"""

from __future__ import annotations

import fcntl
import time
from contextlib import contextmanager
from pathlib import Path

from mlpcli import experiment
from mlpcli.cluster import worker_address
from mlpcli.config import Config
from mlpcli.errors import MlpError, one_line
from mlpcli.rundir import RunDir
from mlpcli.runs import read_metrics, read_summary


def extract(cfg: Config, pool) -> str | None:
    """Extract and cache the features of `cfg`'s data and features config, the chunks on `pool` (they also
    serve a trial resumed by successive halving); None, or the error."""
    try:
        experiment.extract_features(cfg, pool=pool)
    except Exception as err:   # noqa: BLE001 - reported with the trials that needed the features
        return f"feature extraction failed: {one_line(err)}"
    return None


def train_trial(cfg: Config, folder: str, stop_after: int | None, extraction_error: str | None = None) -> dict:
    """Train the trial of config `cfg` in run folder `folder` to `stop_after` epochs (None: to the end),
    resuming from the folder when it holds the run already (a paused trial, or a worker killed mid-trial).
    Its record: status, epochs, best_val_acc, best_val_loss, test_acc, seconds, worker, error."""
    started = time.perf_counter()
    record = {"status": "failed", "worker": worker_address(), "error": extraction_error}
    if extraction_error is not None:
        return {**record, "seconds": 0.0}
    path = Path(folder)
    if not path.parent.is_dir():
        return {**record, "seconds": 0.0, "error": f"the sweep folder {path.parent.parent} is not visible on worker "
                f"{record['worker']}; put it on a file system every worker shares, at the same path"}
    try:
        with _exclusive(path):        # a stale worker of an interrupted driver may still be running this trial
            run = RunDir(path)
            done = len(run.read_metrics())
            if run.summary.exists() or (stop_after is not None and done >= stop_after):
                status = _status_on_disk(run)     # done already: a rerun after a lost result
            elif run.config.exists():
                status = experiment.resume(path, stop_after=stop_after).status
            else:
                status = experiment.run(cfg, path, stop_after=stop_after).status
            record.update(status=status, error=None)
    except Exception as err:   # noqa: BLE001 - diverged, out of memory, an invalid combination, ...: the sweep goes on
        record["error"] = one_line(err)
    record.update(progress(RunDir(path)))
    record["seconds"] = round(time.perf_counter() - started, 2)
    return record


def progress(run: RunDir) -> dict:
    """epochs, best_val_acc, best_val_loss, test_acc of the run folder as its files say (read as `mlp runs`
    reads them: a value or a summary that is not what mlp train writes counts as missing)."""
    rows = read_metrics(run.path)
    accs = [row["val_acc"] for row in rows if row.get("val_acc") is not None]
    losses = [row["val_loss"] for row in rows if row.get("val_loss") is not None]
    test = _summary(run).get("test", {})
    return {"epochs": len(rows), "best_val_acc": max(accs, default=None), "best_val_loss": min(losses, default=None),
            "test_acc": test.get("accuracy")}


def metric_at(run: RunDir, metric: str, epochs: int) -> float | None:
    """The run's best `metric` (val_acc: highest, val_loss: lowest) over its first `epochs` epochs."""
    values = [row[metric] for row in read_metrics(run.path)[:epochs] if row.get(metric) is not None]
    if not values:
        return None
    return max(values) if metric == "val_acc" else min(values)


def _status_on_disk(run: RunDir) -> str:
    if run.summary.exists():
        return _summary(run).get("stopped") or "completed"
    return "paused"


def _summary(run: RunDir) -> dict:
    """The run's summary.json, checked; {} if it is missing or damaged."""
    try:
        return read_summary(run.summary)
    except MlpError:
        return {}


@contextmanager
def _exclusive(path: Path):
    """Hold an exclusive lock on the trial (a file beside its run folder) for the block."""
    with open(path.parent / f".{path.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
