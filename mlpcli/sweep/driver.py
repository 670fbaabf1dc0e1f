"""The driver of a sweep: it asks the sampler for rounds of configurations, builds and validates every
trial's config, extracts each distinct set of features once, runs the trials on a Dask client — with
successive halving, rung by rung — records each result in trials.jsonl as it arrives, and tells the
sampler. It owns the sweep's state: after Ctrl-C or kill -9, `run_sweep` on the same folder replays what
was recorded and runs only what is missing.

Successive halving here is synchronous: every configuration of a round trains to the first rung
(min_epochs), the best 1/eta continue to min_epochs·eta, and so on up to train.epochs. Waiting for a
rung to fill costs some idle worker time against ASHA's asynchronous promotions, but the decisions
then depend only on the results, never on which worker finished first — so the same sweep keeps the
same trials, and a resumed driver makes the same decisions again.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from mlpcli.cluster import DaskPool
from mlpcli.config import Config
from mlpcli.errors import MlpError, one_line
from mlpcli.rundir import RunDir
from mlpcli.sweep.folder import FINISHED, SweepDir
from mlpcli.sweep.samplers import Outcome, make_sampler
from mlpcli.sweep.spec import Trial, check_spec, digits_for, feature_key, rungs, trials_of
from mlpcli.sweep.trial import extract, metric_at, progress, train_trial


def run_sweep(sweep: SweepDir, client, *, progress: bool = True, log: Callable[[str], None] = lambda line: None
              ) -> list[dict]:
    """Run (or finish) the sweep in folder `sweep` on Dask `client`; the trial records, in trial order."""
    return _Driver(sweep, client, progress, log).run()


class _Driver:
    def __init__(self, sweep: SweepDir, client, progress: bool, log: Callable[[str], None]) -> None:
        self.sweep, self.client, self.log = sweep, client, log
        self.spec = sweep.load_spec()
        check_spec(self.spec)
        self.records = sweep.read_trials()
        self.order: list[str] = []              # trial ids in the order the sampler gave them
        self.extractions: dict[str, str | None] = {}   # feature key → the error of its extraction, or None
        self.cached = bool(self.spec.cache_dir and self.spec.features.cache)
        self.progress = progress
        self.bar = None

    def run(self) -> list[dict]:
        spec = self.spec
        sampler = make_sampler(spec.sweep)
        total = sampler.total * spec.sweep.seeds
        digits = digits_for(sampler.total)
        done = sum(record.get("status") in FINISHED for record in self.records.values())
        if not self.cached:
            self.log("features are not cached (cache_dir or features.cache is off): every trial extracts its own")
        self.bar = tqdm(total=total, initial=done, unit="trial", desc="sweep", disable=None if self.progress else True,
                        dynamic_ncols=True, file=sys.stderr)
        index = 0
        try:
            with self.bar:
                self._show_best()
                while configs := sampler.ask():
                    trials = [trial for i, params in enumerate(configs)
                              for trial in trials_of(spec, index + i, params, digits)]
                    index += len(configs)
                    self._register(trials)
                    sampler.tell(self._bracket(trials))
        except KeyboardInterrupt:
            for record in self.records.values():
                if record["status"] == "running":
                    record.update(status="unfinished", **_on_disk(self.sweep.run_dir(record["trial"])))
            self.sweep.write_trials(self.records)
            from mlpcli.train import Interrupted

            finished = sum(self.records[t].get("status") in FINISHED for t in self.order)
            raise Interrupted(f"sweep interrupted with {finished} trials finished; continue with: "
                              f"mlp sweep --resume {self.sweep.path}") from None
        return [self.records[trial_id] for trial_id in self.order]

    def _register(self, trials: list[Trial]) -> None:
        """Record new trials as pending; MlpError if a recorded one was drawn with other values (the spec or
        the sampler's library changed since the sweep started)."""
        for trial in trials:
            record = self.records.get(trial.id)
            if record is not None and record.get("params") != _plain(trial.params):
                raise MlpError(f"{self.sweep.trials}: trial {trial.id} was recorded with {record.get('params')} but "
                               f"the sweep now draws {_plain(trial.params)} (was sweep.yaml edited, or Optuna "
                               f"updated?); start a new sweep")
            if record is None:
                self.records[trial.id] = {
                    "trial": trial.id, "config": trial.index, "seed": trial.seed, "params": _plain(trial.params),
                    "status": "pending", "epochs": 0, "best_val_acc": None, "best_val_loss": None, "test_acc": None,
                    "seconds": 0.0, "worker": None, "run": f"runs/{trial.id}", "error": None}
            self.order.append(trial.id)
        self.sweep.write_trials(self.records)

    def _bracket(self, trials: list[Trial]) -> list[Outcome]:
        """Run the configurations of one round (with successive halving, rung by rung); their outcomes."""
        configs: dict[int, list[Trial]] = {}
        for trial in trials:
            configs.setdefault(trial.index, []).append(trial)
        alive, history, pruned = list(configs), {i: [] for i in configs}, set()
        points = rungs(self.spec)
        for k, epochs in enumerate(points):
            last = k == len(points) - 1
            stop_after = None if last else epochs
            self._execute([t for i in alive for t in configs[i] if not self._settled(t, stop_after)], stop_after)
            for i in alive:
                value = self._config_metric(configs[i], epochs)
                if value is not None:
                    history[i].append((epochs or self._epochs(configs[i]), value))
            if last:
                break
            keep = self._best(alive, configs, epochs, max(1, len(alive) // self.spec.sweep.eta))
            for i in alive:
                if i not in keep:
                    pruned.add(i)
                    self._prune(configs[i], epochs)
            alive = keep
        self.sweep.write_trials(self.records)
        return [Outcome("failed" if all(self.records[t.id]["status"] == "failed" for t in configs[i])
                        else "pruned" if i in pruned else "completed", history[i]) for i in configs]

    def _execute(self, trials: list[Trial], stop_after: int | None) -> None:
        """Train `trials` to `stop_after` epochs (None: to the end) on the cluster, recording each result."""
        from distributed import as_completed

        if not trials:
            return
        futures = {}
        for trial in trials:
            features = self._features(trial.cfg)
            futures[self.client.submit(train_trial, trial.cfg, str(self.sweep.run_dir(trial.id)), stop_after, features,
                                       key=f"trial-{trial.id}-{uuid.uuid4().hex[:8]}")] = trial
            self.records[trial.id]["status"] = "running"
        self.sweep.write_trials(self.records)
        try:
            for future in as_completed(futures):
                self._record(futures[future], future)
        except BaseException:
            self.client.cancel(list(futures))
            raise

    def _record(self, trial: Trial, future) -> None:
        from distributed.scheduler import KilledWorker

        try:
            result = future.result()
        except KilledWorker:
            result = {"status": "failed", "error": "the workers running this trial died several times (out of "
                                                   "memory?); its folder keeps what it trained"}
            result.update(_on_disk(self.sweep.run_dir(trial.id)))
        except Exception as err:   # noqa: BLE001 - a lost trial is recorded; the sweep goes on
            result = {"status": "failed", "error": one_line(err)}
        record = self.records[trial.id]
        seconds = record.get("seconds") or 0.0
        record.update(result)
        record["seconds"] = round(seconds + result.get("seconds", 0.0), 2)
        self.sweep.write_trials(self.records)
        if record["status"] == "failed":
            self.log(f"trial {trial.id} failed: {record['error']}")
        if record["status"] in FINISHED:
            self.bar.update()
        self._show_best()

    def _features(self, cfg: Config) -> str | None:
        """Extract cfg's features once per distinct set, its chunks on the cluster's workers; the error
        that stops the trials needing them, or None."""
        if not self.cached:
            return None
        key = feature_key(cfg)
        if key not in self.extractions:
            self.extractions[key] = extract(cfg, DaskPool(self.client))
        return self.extractions[key]

    def _settled(self, trial: Trial, stop_after: int | None) -> bool:
        record = self.records[trial.id]
        if record["status"] in FINISHED:
            return True
        return stop_after is not None and record["status"] == "paused" and record["epochs"] >= stop_after

    def _config_metric(self, trials: list[Trial], epochs: int | None) -> float | None:
        """The configuration's metric after `epochs` epochs (None: all), averaged over its seeds."""
        values = []
        for trial in trials:
            if self.records[trial.id]["status"] == "failed":
                continue
            value = metric_at(RunDir(self.sweep.run_dir(trial.id)), self.spec.sweep.metric, epochs or 10**9)
            if value is not None:
                values.append(value)
        return sum(values) / len(values) if values else None

    def _best(self, alive: list[int], configs: dict[int, list[Trial]], epochs: int, count: int) -> list[int]:
        sign = 1 if self.spec.sweep.metric == "val_acc" else -1

        def rank(i: int):
            value = self._config_metric(configs[i], epochs)
            return (value is None, -sign * (value or 0.0), i)

        return sorted(alive, key=rank)[:count]

    def _prune(self, trials: list[Trial], epochs: int) -> None:
        for trial in trials:
            record = self.records[trial.id]
            if record["status"] == "paused":
                record["status"] = "pruned"
                record["error"] = None
                self.bar.update()
                self.log(f"trial {trial.id} pruned after {epochs} epochs")

    def _epochs(self, trials: list[Trial]) -> int:
        return max(self.records[t.id]["epochs"] or 0 for t in trials)

    def _show_best(self) -> None:
        metric = self.spec.sweep.metric
        key = "best_val_acc" if metric == "val_acc" else "best_val_loss"
        scored = [(record[key], record["trial"]) for record in self.records.values()
                  if record.get("status") in ("completed", "early_stop") and isinstance(record.get(key), (int, float))]
        if scored:
            value, trial = max(scored) if metric == "val_acc" else min(scored)
            self.bar.set_postfix_str(f"best {value:.2%} ({trial})" if metric == "val_acc" else f"best {value:.4f} ({trial})")


def _on_disk(folder: Path) -> dict:
    return progress(RunDir(folder))


def _plain(params: dict) -> dict:
    """JSON's view of the params (tuples become lists), as trials.jsonl holds them."""
    return json.loads(json.dumps(params))
