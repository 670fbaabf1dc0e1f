"""The resolved spec of a sweep (a Config whose `sweep` section holds the search space) and the configs
of its trials, all validated before the first trial starts."""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpcli.config import Config, SweepConfig, apply_override, read_yaml, set_key
from mlpcli.errors import ConfigError
from mlpcli.experiment import _with_absolute_paths
from mlpcli.schema import from_dict, to_dict
from mlpcli.sweep.samplers import DEFAULT_TRIALS
from mlpcli.sweep.space import check_key, dump_space, is_swept, parse_param

MAX_TRIALS = 10_000     # trials of one sweep: each is a training run, and a line of trials.jsonl

FEATURE_KEYS = ("seed", "data", "features", "model.dtype", "cache_dir")   # what a trial's features depend on


@dataclass
class Trial:
    """One run of a sweep: configuration `index` (its `params`) with run seed `seed`."""

    id: str                 # folder name under SWEEP/runs/, e.g. "007-seed1"
    index: int              # the configuration's number, in the order the sampler gave them
    seed: int
    params: dict[str, Any]  # swept key → value
    cfg: Config             # the full config of the run


def load_spec(config: str | Path | None, args: list[str], settings: dict[str, Any] | None = None) -> Config:
    """The sweep spec from YAML file `config` (None: the defaults), `key=value` arguments — a search space
    (`key=a,b`, `key=loguniform(lo,hi)`, ...) goes into sweep.params, one value overrides the config — and
    `settings` for the sweep section ({"method": "tpe", ...}; None values are skipped). data.path and a
    relative cache_dir are made absolute."""
    raw = read_yaml(config) if config is not None else {}
    space = {}
    for item in args:
        key, sep, text = item.partition("=")
        if sep and key and is_swept(text):
            check_key(key, key)
            space[key] = parse_param(text, key)
        else:
            apply_override(raw, item)
    section = raw.setdefault("sweep", {})
    if not isinstance(section, dict):
        raise ConfigError(f"sweep: expected a mapping of sweep settings, got {section!r}")
    if space:
        params = section.get("params") or {}
        if not isinstance(params, dict):
            raise ConfigError(f"sweep.params: expected a mapping of config keys to choices or ranges, got {params!r}")
        section["params"] = {**params, **dump_space(space)}
    for name, value in (settings or {}).items():
        if value is not None:
            section[name] = value
    spec = from_dict(Config, raw)
    if spec.output.name is None:
        spec.output.name = Path(config).stem if config is not None else "default"
    spec = _with_absolute_paths(spec)    # workers (and a resumed driver) may run in other folders
    check_spec(spec)
    plan(spec)
    _warn_if_halving_ranks_lr(spec)
    return spec


def check_spec(spec: Config) -> None:
    """ConfigError for a sweep that cannot run: every value of every swept key (each choice, both ends of
    each interval) must give a valid config, and the settings must fit together."""
    sweep = spec.sweep
    if "seed" in sweep.params and sweep.seeds > 1:
        raise ConfigError("seed is swept and sweep.seeds > 1: choose one way to vary the seed")
    if sweep.prune == "halving" and "train.epochs" in sweep.params:
        raise ConfigError("successive halving (sweep.prune=halving) sets how far each trial trains; "
                          "do not sweep train.epochs with it")
    listed = [param.values for param in sweep.params.values() if param.values is not None]
    configurations = math.prod(map(len, listed)) if sweep.method == "grid" else sweep.trials or DEFAULT_TRIALS
    if configurations * sweep.seeds > MAX_TRIALS:
        raise ConfigError(f"the sweep has {configurations:,} configurations x {sweep.seeds:,} seed(s) = "
                          f"{configurations * sweep.seeds:,} trials; at most {MAX_TRIALS:,} (fewer choices, "
                          "sweep.trials or sweep.seeds)")
    base = base_raw(spec)
    for key, param in sweep.params.items():
        for value in param.examples():
            raw = copy.deepcopy(base)
            set_key(raw, key, value)
            try:
                from_dict(Config, raw)
            except ConfigError as err:
                raise ConfigError(f"sweep.params.{key}={param.spec()}: the value {value!r} is invalid: {err}") from None


def base_raw(spec: Config) -> dict:
    """Plain config data of the spec without its sweep section: what every trial starts from."""
    raw = to_dict(spec)
    raw["sweep"] = to_dict(SweepConfig())
    return raw


def trials_of(spec: Config, index: int, params: dict[str, Any], digits: int) -> list[Trial]:
    """The trials of configuration number `index`: one per seed, each config validated."""
    trials = []
    for repeat in range(spec.sweep.seeds):
        raw = base_raw(spec)
        for key, value in params.items():
            set_key(raw, key, copy.deepcopy(value))
        seed = raw["seed"] + repeat
        raw["seed"] = seed
        if raw["train"]["threads"] is None:
            raw["train"]["threads"] = 1      # one trial per core; and the same bytes on every executor
        trial_id = f"{index:0{digits}d}-seed{seed}"
        raw["output"]["name"] = f"{spec.output.name}-{trial_id}"
        try:
            cfg = from_dict(Config, raw)
        except ConfigError as err:
            shown = ", ".join(f"{key}={value!r}" for key, value in params.items())
            raise ConfigError(f"trial {trial_id} ({shown}): {err}") from None
        trials.append(Trial(trial_id, index, seed, params, cfg))
    return trials


def feature_key(cfg: Config) -> str:
    """What a config's extracted features depend on, as text: trials with equal keys share one extraction."""
    from mlpcli.schema import flatten

    flat = flatten(to_dict(cfg))
    return repr(sorted((key, repr(value)) for key, value in flat.items()
                       if any(key == part or key.startswith(part + ".") or key.startswith(part + "[")
                              for part in FEATURE_KEYS)))


def _warn_if_halving_ranks_lr(spec: Config) -> None:
    """Successive halving over learning rates under a decaying schedule prunes the large ones too early."""
    sweep = spec.sweep
    decays = spec.optim.schedule != "constant" or "optim.schedule" in sweep.params
    if sweep.prune == "halving" and "optim.lr" in sweep.params and decays:
        warnings.warn("successive halving ranks the configurations after their first epochs, when a decaying "
                      "optim.schedule has barely begun: larger optim.lr values score lower there and can be "
                      "pruned before they would lead (BENCHMARKS.md, Sweeps); fix optim.lr, use "
                      "optim.schedule=constant, or sweep it without pruning")


def rungs(spec: Config) -> list[int | None]:
    """Epochs at which successive halving ranks the configurations, ending with train.epochs; [None] (train
    to the end) without pruning."""
    sweep, epochs = spec.sweep, spec.train.epochs
    if sweep.prune != "halving":
        return [None]
    points, rung = [], sweep.min_epochs
    while rung < epochs:
        points.append(rung)
        rung *= sweep.eta
    return points + [epochs]


def plan(spec: Config) -> list[dict[str, Any]] | None:
    """The configurations of a grid or random sweep (None for tpe, whose draws depend on results), with
    every trial's config validated."""
    from mlpcli.sweep.samplers import make_sampler

    sampler = make_sampler(spec.sweep)
    if spec.sweep.method == "tpe":
        return None
    configs = sampler.ask()
    for index, params in enumerate(configs):
        trials_of(spec, index, params, digits_for(len(configs)))
    return configs


def planned(spec: Config) -> str:
    """What the sweep will run, as text: its size, its rungs, and (grid, random) every configuration."""
    from mlpcli.sweep.results import format_value

    sweep = spec.sweep
    configs = plan(spec)
    total = len(configs) if configs is not None else (sweep.trials or DEFAULT_TRIALS)
    lines = [f"{sweep.method}: {total} configurations x {sweep.seeds} seed(s) = {total * sweep.seeds} trials, "
             f"ranked by {sweep.metric}"]
    points = rungs(spec)
    if points != [None]:
        lines.append(f"successive halving: the best 1/{sweep.eta} continue at epochs {', '.join(map(str, points))}")
    if configs is None:
        lines.append(f"tpe draws rounds of {sweep.round} configurations, each after the results of the rounds before")
    for index, params in enumerate(configs or []):
        shown = "  ".join(f"{key}={format_value(value)}" for key, value in params.items())
        lines.append(f"{index:0{digits_for(total)}d}  {shown}")
    return "\n".join(lines)


def digits_for(configurations: int) -> int:
    """Digits of the configuration numbers in trial names (at least 3, so names sort as numbers)."""
    return max(3, len(str(configurations - 1)))
