"""One run as a library function: `mlp train`, `mlp sweep`, the benchmarks and Python users all call
`run` (a new run) or `resume` (continue one); each owns its run folder (mlpcli.rundir).

    result = experiment.run(load_config("configs/cifar10_hog_color_quick.yaml", ["optim.lr=0.05"]))
    result.summary["val"]["accuracy"], result.run.path

A run can pause after any epoch (`stop_after`) and continue later with `resume`: the checkpoints then end with
the same bytes as a run that never paused, as after Ctrl-C or kill -9.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlpcli import budget, checkpoint
from mlpcli.config import Config, load_config
from mlpcli.data import load_splits
from mlpcli.data.augment import evaluation_views, training_views
from mlpcli.data.dataset import Dataset
from mlpcli.errors import MlpError
from mlpcli.features.pipeline import FeaturePipeline
from mlpcli.features.store import Store, StoreRoot
from mlpcli.parallel import ProcessPool
from mlpcli.rundir import RunDir
from mlpcli.schema import flatten, from_dict, to_dict
from mlpcli.seeding import generators
from mlpcli.train import train

Log = Callable[[str], None]


@dataclass
class RunResult:
    """What `run` and `resume` return: the run folder and where training stands."""

    run: RunDir               # the run folder
    status: str               # "completed", "early_stop", or "paused" (stop_after reached before train.epochs)
    epochs: int               # epochs completed
    best_val_acc: float       # best validation accuracy so far
    best_epoch: int           # the epoch that reached it
    summary: dict | None      # summary.json: val (and test) scores of the best epoch; None while paused


def run(cfg: Config, out: str | Path | None = None, *, stop_after: int | None = None, progress: bool = False,
        log: Log | None = None) -> RunResult:
    """A new run of `cfg` in folder `out` (default <output.dir>/<output.name>-<timestamp>), trained to
    train.epochs (or until early stopping), or paused after `stop_after` epochs (last.npz saved, no summary).

    data.path is resolved to an absolute path first, so `mlp eval` and `mlp report` of the run find its data
    from any folder. If the run fails before its first checkpoint, its folder is removed again.
    """
    cfg = _with_absolute_paths(cfg)
    folder = RunDir.create(cfg, out)
    try:
        return _train(cfg, folder, None, stop_after, progress, log)
    except BaseException:
        folder.discard_if_unused()
        raise


def resume(path: str | Path, *, epochs: int | None = None, stop_after: int | None = None, progress: bool = False,
           log: Log | None = None) -> RunResult:
    """Continue the run in folder `path` from its checkpoints/last.npz with its own config.yaml, to its
    train.epochs or, with `epochs`, to that many (extending a completed run); or pause after `stop_after`.

    A run killed before its first checkpoint starts over in its folder, an extension killed before its
    first checkpoint goes on to the train.epochs its config.yaml then says. MlpError, before any work, if
    config.yaml was edited since the checkpoint (naming the keys), or if metrics.jsonl or best.npz is gone.
    The folder is left as it was until training first writes to it (RunDir.begin).
    """
    folder = RunDir.existing(path)
    cfg = load_config(folder.config)
    ckpt = checkpoint.load(folder.last) if folder.last.exists() else None
    if ckpt is not None:
        if cfg.train.epochs > ckpt.config.train.epochs:   # an extension killed after RunDir.begin rewrote
            epochs = epochs if epochs is not None else cfg.train.epochs   # config.yaml, before its checkpoint
            cfg.train.epochs = ckpt.config.train.epochs
        _check_unchanged(folder, cfg, ckpt.config)
        _check_history(folder, ckpt.progress)
    if epochs is not None:
        cfg = _extended(folder, cfg, ckpt, epochs)
    elif ckpt is not None and ckpt.progress.get("stopped") and folder.summary.exists():
        raise MlpError(f"{folder.path} already finished ({ckpt.progress['stopped']} after "
                       f"{ckpt.progress['epoch']} epochs); extend it with `mlp train --resume {folder.path} "
                       f"train.epochs=N`")
    return _train(cfg, folder, ckpt, stop_after, progress, log)


def extract_features(cfg: Config, *, progress: bool = False, pool=None,
                     report: Callable[[str, Dataset, Store, float, bool], None] | None = None) -> list[int]:
    """Fit the features on the training split and extract every split's into stores, as a run would: with a
    cache (cache_dir and features.cache) a sweep does this once for all the trials that share them. The
    chunks run on `pool` (default: worker processes on this machine; a `cluster.DaskPool` runs them on a Dask
    cluster, which needs the cache on a file system its workers share). Calls report(split name, split, store,
    seconds, served from the cache) after each split; returns the width of each extractor's features."""
    rngs = generators(cfg.seed)
    splits = load_splits(cfg, rngs["data"])
    budget.require(budget.features(cfg, splits["train"].image_shape, fit=True), "feature extraction")
    pipeline = FeaturePipeline(cfg.features, cfg.model.dtype, progress)
    if pool is not None and not (cfg.cache_dir and cfg.features.cache):
        raise MlpError("extracting features on a cluster needs a feature cache the workers share: set cache_dir "
                       "(and features.cache=true)")
    stores = StoreRoot(cfg.cache_dir if cfg.features.cache else None, cfg.cache_max_gb)
    try:
        with ProcessPool() as local:
            for name, split in splits.items():
                tick, hits = time.perf_counter(), pipeline.cache_hits
                if name == "train":
                    store = pipeline.fit(split, rngs["features"], stores, pool or local,
                                         training_views(cfg, split.image_shape))
                else:
                    store = pipeline.store(split, stores, pool or local, evaluation_views(cfg, split.image_shape))
                if report:
                    report(name, split, store, time.perf_counter() - tick, pipeline.cache_hits > hits)
    finally:
        stores.close()
    return pipeline.dims(splits["train"].image_shape)


def _train(cfg: Config, folder: RunDir, ckpt, stop_after: int | None, progress: bool, log: Log | None) -> RunResult:
    say = log or (lambda line: None)
    say(f"run folder: {folder.path}")
    result = train(cfg, folder, resume_from=ckpt, stop_after=stop_after, progress=progress, log=say)
    if result.summary is not None and cfg.output.plots:
        from mlpcli.plots import write_run_plots

        write_run_plots(folder.path, samples=result.samples)
    state = result.state
    return RunResult(folder, state.stopped or "paused", state.epoch, state.best_acc, state.best_epoch, result.summary)


def _with_absolute_paths(cfg: Config) -> Config:
    """A copy of `cfg` with data.path (and a relative cache_dir) made absolute."""
    cfg = copy.deepcopy(cfg)
    if cfg.data.path is not None:
        cfg.data.path = str(Path(cfg.data.path).expanduser().absolute())
    if cfg.cache_dir is not None and not cfg.cache_dir.startswith("~") and not Path(cfg.cache_dir).is_absolute():
        cfg.cache_dir = str(Path(cfg.cache_dir).absolute())
    return cfg


def config_changes(before: Config, after: Config) -> list[str]:
    """The dotted keys whose values differ between two configs, in config order."""
    old, new = flatten(to_dict(before)), flatten(to_dict(after))
    return [key for key in dict.fromkeys([*old, *new]) if old.get(key, ...) != new.get(key, ...)]


def _check_unchanged(folder: RunDir, cfg: Config, saved: Config) -> None:
    changed = config_changes(saved, cfg)
    if changed:
        shown = ", ".join(f"{key} ({_short(flatten(to_dict(saved)).get(key))} → {_short(flatten(to_dict(cfg)).get(key))})"
                          for key in changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise MlpError(f"{folder.config} was edited after the run started: {shown}; a resumed run must keep its "
                       f"config, so undo the edit (or start a new run with `mlp train {folder.config}`)")


def _check_history(folder: RunDir, progress: dict) -> None:
    """MlpError if the files a resumed run reports from are gone: a metrics row per completed epoch, and
    best.npz once an epoch was best."""
    done = progress.get("epoch", 0)
    rows = len(folder.read_metrics())
    if rows < done:
        raise MlpError(f"{folder.metrics} has {rows} readable epoch rows but last.npz has done {done} epochs: "
                       "the run's history is lost or damaged; restore the file, or start a new run")
    if progress.get("best_epoch", 0) and not folder.best.exists():
        raise MlpError(f"{folder.best} (epoch {progress['best_epoch']}, the best so far) is missing, so the run "
                       "could not report its best weights; restore it, or start a new run")


def _extended(folder: RunDir, cfg: Config, ckpt, epochs: int) -> Config:
    """cfg with train.epochs = `epochs`; the checkpoint's progress is reopened if the run had completed. The
    folder changes only when training first writes to it (RunDir.begin: config.yaml rewritten, summary.json
    removed), so an extension that fails before leaves the finished run as it was."""
    progress = ckpt.progress if ckpt is not None else {}
    done, stopped = progress.get("epoch", 0), progress.get("stopped", "")
    if epochs < done or (epochs == done and stopped):
        raise MlpError(f"train.epochs={epochs}: the run has done {done} epochs already; ask for more")
    if stopped == "early_stop":
        raise MlpError(f"{folder.path} stopped early after {done} epochs (no better validation accuracy for "
                       f"train.patience={cfg.train.patience} epochs); more epochs would not change that, so "
                       "start a new run instead")
    cfg = copy.deepcopy(cfg)
    cfg.train.epochs = epochs
    cfg = from_dict(Config, to_dict(cfg))          # validates the new value like any other
    if ckpt is not None:
        ckpt.config.train.epochs = epochs
        progress["stopped"] = ""
    return cfg


def _short(value, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"
