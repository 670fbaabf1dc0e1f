"""The sweep folder, owned by the sweep's driver:

    SWEEP/sweep.yaml     the resolved spec: config and search space (`mlp sweep --resume SWEEP` reads it)
    SWEEP/trials.jsonl   one JSON object per trial: trial, config, seed, params, status, epochs, best_val_acc,
                         best_val_loss, test_acc, seconds, worker, run, error
    SWEEP/runs/<trial>/  each trial's run folder (`mlp runs SWEEP/runs`, `mlp report SWEEP/runs/<trial>`)

Every write replaces a file atomically, so a driver killed at any moment leaves a readable folder.
Status of a trial: pending, running, unfinished (the driver was interrupted), paused (at a rung of
successive halving), completed, early_stop, pruned or failed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from mlpcli.atomic import write_text_atomic
from mlpcli.config import Config, dump_config, load_config
from mlpcli.errors import MlpError
from mlpcli.readfile import read_regular
from mlpcli.rundir import new_folder

FINISHED = ("completed", "early_stop", "pruned", "failed")
STATUSES = ("pending", "running", "unfinished", "paused", *FINISHED)
FIELDS = {"trial": str, "config": int, "seed": int, "params": dict, "status": str, "epochs": int,
          "best_val_acc": (float, int, type(None)), "best_val_loss": (float, int, type(None)),
          "test_acc": (float, int, type(None)), "seconds": (float, int), "worker": (str, type(None)), "run": str,
          "error": (str, type(None))}


class SweepDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.spec = self.path / "sweep.yaml"
        self.trials = self.path / "trials.jsonl"
        self.runs = self.path / "runs"

    @classmethod
    def create(cls, spec: Config, out: str | Path | None = None) -> SweepDir:
        """A new sweep folder: `out`, or sweeps/<output.name>-<timestamp>; never an existing sweep."""
        path = new_folder(out, Path("sweeps"), spec.output.name, "mlp sweep --resume")
        sweep = cls(path.absolute())
        sweep.runs.mkdir(parents=True, exist_ok=True)
        write_text_atomic(sweep.spec, dump_config(spec))
        write_text_atomic(sweep.trials, "")
        return sweep

    @classmethod
    def existing(cls, path: str | Path) -> SweepDir:
        sweep = cls(Path(path).absolute())
        if not sweep.spec.is_file():
            raise MlpError(f"{path} is not a sweep folder (it has no sweep.yaml); sweep folders are written by "
                           f"`mlp sweep`")
        return sweep

    def load_spec(self) -> Config:
        return load_config(self.spec)

    def read_trials(self) -> dict[str, dict]:
        """{trial id: record} from trials.jsonl, each with params for the keys sweep.yaml sweeps; MlpError
        naming the line if one is damaged."""
        if not self.trials.exists():
            return {}
        keys = list(self.load_spec().sweep.params)
        records = {}
        for number, line in enumerate(read_regular(self.trials).splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
                why = (err.msg if isinstance(err, json.JSONDecodeError)
                       else "not UTF-8 text" if isinstance(err, UnicodeDecodeError) else "nested too deeply")
                raise MlpError(f"{self.trials}, line {number}: not valid JSON ({why}); remove the line to run "
                               f"that trial again") from None
            problem = _problem(record, keys)
            if problem:
                raise MlpError(f"{self.trials}, line {number}: not a trial record ({problem}); remove the line to "
                               f"run that trial again")
            records[record["trial"]] = record
        return records

    def write_trials(self, records: dict[str, dict]) -> None:
        write_text_atomic(self.trials, "".join(json.dumps(record) + "\n" for record in records.values()))

    def run_dir(self, trial_id: str) -> Path:
        return self.runs / trial_id


def _problem(record, keys: list[str]) -> str | None:
    """What is wrong with a trials.jsonl record of a sweep over `keys`, or None."""
    if not isinstance(record, dict):
        return "not a JSON object"
    for name, kind in FIELDS.items():
        if name not in record:
            return f"no \"{name}\""
        if isinstance(record[name], bool) or not isinstance(record[name], kind):
            return f"\"{name}\" is {record[name]!r}"
    if not re.fullmatch(r"\d{3,}-seed\d+", record["trial"]):
        return f"\"trial\" is {record['trial']!r}"
    if sorted(record["params"]) != sorted(keys):
        return f"\"params\" has {sorted(record['params'])}, not the swept keys {sorted(keys)}"
    if record["status"] not in STATUSES:
        return f"unknown status {record['status']!r}"
    if record["run"] != f"runs/{record['trial']}":
        return f"\"run\" is {record['run']!r}, not runs/{record['trial']}"
    return None
