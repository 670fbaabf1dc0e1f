"""Samplers: the configurations of a sweep, asked in rounds and told their results.

grid asks every combination of the choices in one round; random asks `trials` seeded draws in one
round; tpe asks rounds of `sweep.round` configurations from Optuna's TPE sampler, and is told each
round's results before the next. A round's size never depends on the number of workers, so the same
sweep seed always gives the same trials, and a resumed sweep replays the rounds it had told.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field
from typing import Any

from mlpcli.errors import ConfigError

DEFAULT_TRIALS = 20     # random and tpe, when sweep.trials is not set


@dataclass
class Outcome:
    """What became of one configuration: `state` completed, pruned or failed; `history` the metric (mean
    over seeds) at each rung of epochs it reached, as [(epochs, value)]."""

    state: str
    history: list[tuple[int, float]] = field(default_factory=list)


class GridSampler:
    """Every combination of the parameters' values, the first parameter varying slowest."""

    def __init__(self, space: dict) -> None:
        not_enumerable = [key for key, param in space.items() if param.values is None]
        if not_enumerable:
            key = not_enumerable[0]
            raise ConfigError(f"sweep.method grid needs choices or range() for every key, but {key} is "
                              f"{space[key].spec()}; use sweep.method=random or tpe (--method), or list choices")
        self.space = space
        self.done = False

    @property
    def total(self) -> int:
        count = 1
        for param in self.space.values():
            count *= len(param.values)
        return count

    def ask(self) -> list[dict[str, Any]]:
        if self.done:
            return []
        self.done = True
        keys = list(self.space)
        return [dict(zip(keys, combo)) for combo in itertools.product(*(self.space[k].values for k in keys))]

    def tell(self, outcomes: list[Outcome]) -> None:
        pass


class OptunaSampler:
    """Draws through an Optuna study: RandomSampler (one round) or TPESampler (rounds of `round`)."""

    def __init__(self, space: dict, method: str, trials: int, seed: int, round_size: int, maximize: bool) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if method == "tpe":
            sampler = optuna.samplers.TPESampler(seed=seed)
        else:
            sampler, round_size = optuna.samplers.RandomSampler(seed=seed), trials
        self.study = optuna.create_study(sampler=sampler, direction="maximize" if maximize else "minimize")
        self.space, self.total, self.round_size = space, trials, round_size
        self.distributions = {key: param.distribution() for key, param in space.items()}
        self.pending: list = []
        self.asked = 0

    def ask(self) -> list[dict[str, Any]]:
        count = min(self.round_size, self.total - self.asked)
        self.pending = [self.study.ask(self.distributions) for _ in range(count)]
        self.asked += count
        return [{key: self.space[key].decode(trial.params[key]) for key in self.space} for trial in self.pending]

    def tell(self, outcomes: list[Outcome]) -> None:
        from optuna.trial import TrialState

        for trial, outcome in zip(self.pending, outcomes):
            with warnings.catch_warnings():       # Optuna warns about reports it then ignores; they are expected
                warnings.simplefilter("ignore")
                for epochs, value in outcome.history:
                    trial.report(value, epochs)
            if outcome.state == "failed" or not outcome.history:
                self.study.tell(trial, state=TrialState.FAIL)
            elif outcome.state == "pruned":
                self.study.tell(trial, state=TrialState.PRUNED)
            else:
                self.study.tell(trial, outcome.history[-1][1])
        self.pending = []


def make_sampler(sweep) -> GridSampler | OptunaSampler:
    """The sampler of SweepConfig `sweep`."""
    if not sweep.params:
        raise ConfigError("nothing to sweep: give a search space as KEY=a,b,c or KEY=loguniform(lo,hi) arguments, "
                          "or in the config's sweep.params")
    if sweep.method == "grid":
        if sweep.trials is not None:
            raise ConfigError(f"sweep.trials={sweep.trials} is for the random and tpe methods; grid runs every "
                              f"combination (remove sweep.trials, or use --method random)")
        return GridSampler(sweep.params)
    return OptunaSampler(sweep.params, sweep.method, sweep.trials or DEFAULT_TRIALS, sweep.seed, sweep.round,
                         maximize=sweep.metric == "val_acc")
