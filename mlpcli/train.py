"""The training loop: seeded minibatch SGD over precomputed features, validation every epoch,
early stopping, checkpoints after every epoch, and a clean stop on Ctrl-C.

Resuming restores weights, running averages, optimizer state, epoch, step and the shuffling and dropout
generators, so a resumed run ends with the same bytes as one that was never interrupted.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Callable

import numpy as np
from tqdm import tqdm

from mlpcli import budget, checkpoint
from mlpcli.config import Config
from mlpcli.data import load_splits
from mlpcli.data.augment import augmented_copies, evaluation_views, training_views
from mlpcli.data.dataset import Dataset
from mlpcli.errors import CheckpointError, MlpError, TrainingError
from mlpcli.features.pipeline import FeaturePipeline
from mlpcli.features.ahead import SharedSlots
from mlpcli.features.store import MappedRows, StackedRows, Store, StoreRoot, reads_by_row, take_rows
from mlpcli.metrics import classification_report
from mlpcli.nn.model import MLP
from mlpcli.nn.optim import OPTIMIZERS, Optimizer, learning_rate
from mlpcli.parallel import ProcessPool, available_memory, split_products
from mlpcli.predictor import batched_scores
from mlpcli.rundir import RunDir
from mlpcli.seeding import generators


SAMPLES = 6   # validation images kept for pictures
AUTO_MEMORY_BYTES = 1 << 30   # features.load=auto trains from memory up to this size of feature rows
GROUP_BYTES = 4 << 20         # rows gathered at a time on a worker process from a store read row by row
BLOCK_BYTES = 64 << 10        # train.shuffle: blocks moves blocks of this many bytes of consecutive rows
AHEAD = 2                     # this many groups ahead of the training (one per worker: waits fell 0.5 -> 0.14 s)


class Interrupted(MlpError):
    """Training stopped by Ctrl-C after saving last.npz."""


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0                      # completed epochs
    step: int = 0                       # steps done in the current epoch (non-zero only after Ctrl-C)
    rng_state: dict = field(default_factory=dict)   # shuffling generator at the start of the current epoch
    dropout_state: dict = field(default_factory=dict)   # dropout's mask generator after the last step ({}: none)
    loss_sum: float = 0.0               # current epoch so far: Σ batch loss (data + L2) · batch size
    data_loss_sum: float = 0.0          # current epoch so far: Σ batch data loss · batch size
    correct: int = 0                    # current epoch so far: correctly classified training samples
    best_acc: float = -1.0
    best_epoch: int = 0
    stale: int = 0                      # epochs since the best validation accuracy
    stopped: str = ""                   # "", "completed" or "early_stop"


@dataclass
class TrainResult:
    state: Progress             # where training stands: epochs done, best epoch, why it stopped ("" if paused)
    summary: dict | None        # as written to summary.json; None while paused (stop_after)
    samples: np.ndarray         # a few validation images (n, H, W, C) uint8, for pictures


@dataclass
class SplitRows:
    """A split's stored features, ready to train on or to score."""

    rows: np.ndarray | MappedRows       # (V·N, D): a block of N rows per view of the images (the images, then
                                        # their mirror images and augmented copies: mlpcli.data.augment)
    labels: np.ndarray                  # (N,) labels of the images
    unreadable: np.ndarray | None       # (N,) bool, images that could not be read (data.on_error: skip)

    @property
    def views(self) -> int:
        return len(self.rows) // len(self.labels) if len(self.labels) else 1

    def training_rows(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(labels (V·N,) of every row, the rows that may be trained on (None: all))."""
        labels = np.tile(self.labels, self.views)
        usable = None if self.unreadable is None else np.flatnonzero(~np.tile(self.unreadable, self.views))
        return labels, usable

    def scores(self, model: MLP) -> tuple[np.ndarray, np.ndarray]:
        """(scores (n, C), labels (n,)) of the readable images, each the mean over the image's views."""
        scores = batched_scores(model, self.rows, views=self.views)
        if self.unreadable is None:
            return scores, self.labels
        return scores[~self.unreadable], self.labels[~self.unreadable]


@dataclass
class Prepared:
    """A run's data, features and network, ready to train."""

    cfg: Config
    classes: list[str]
    image_shape: tuple[int, ...]
    splits: dict[str, Dataset]          # the run's splits, read by index
    features: dict[str, SplitRows]      # "train", "val" (and "test" once `featurize("test")` ran)
    pipeline: FeaturePipeline
    model: MLP
    samples: np.ndarray                 # a few validation images (n, H, W, C) uint8
    stores: StoreRoot
    pool: ProcessPool
    redrawn: StoreRoot | None = None    # data.augment.redraw: a temporary folder with the current epoch's copies

    @property
    def input_dim(self) -> int:
        return int(self.features["train"].rows.shape[1])

    def featurize(self, split: str) -> SplitRows:
        """The stored features of `split` (extracted now unless cached), with the fitted state."""
        if split not in self.features:
            views = evaluation_views(self.cfg, self.image_shape)
            self.features[split] = _rows(self.pipeline.store(self.splits[split], self.stores, self.pool, views),
                                         self.splits[split], self.cfg)
        return self.features[split]

    def epoch_rows(self, epoch: int) -> np.ndarray | MappedRows | StackedRows:
        """The rows trained on in `epoch` (0-based), in the order of features["train"].rows: those rows, whose
        augmented copies are epoch 0's; with data.augment.redraw, the copies drawn for `epoch` in their place
        (extracted now into a temporary store that replaces the previous epoch's)."""
        train = self.features["train"]
        if not self.cfg.data.augment.redraw or epoch == 0:
            return train.rows
        split = self.splits["train"]
        copies = augmented_copies(self.cfg, split.image_shape, epoch)
        if self.redrawn is not None:
            self.redrawn.close()
        self.redrawn = StoreRoot(None)
        store = self.pipeline.store(split, self.redrawn, self.pool, copies)
        drawn = store.info["rows"]
        return StackedRows([(train.rows, len(train.rows) - drawn), (store.rows(_in_memory(store, self.cfg)), drawn)])


@contextmanager
def prepared(cfg: Config, feature_state: dict | None = None,
             progress: bool = True) -> Iterator[tuple[Prepared, np.random.Generator]]:
    """Load splits, fit (or restore) the features of train and val into stores, build the network; yields
    them with the shuffling generator, and frees the stores' temporary files and the workers afterwards.
    The test split is featurized only when it is scored (Prepared.featurize)."""
    rngs = generators(cfg.seed)
    splits = load_splits(cfg, rngs["data"])
    budget.require(budget.training(cfg, splits["train"].image_shape, len(splits["train"].classes),
                                   sum(len(ds) for ds in splits.values())), "training")
    stores = StoreRoot(cfg.cache_dir if cfg.features.cache else None, cfg.cache_max_gb)
    pool = ProcessPool()
    prep = None
    try:
        pipeline = FeaturePipeline(cfg.features, cfg.model.dtype, progress)
        train = splits["train"]
        evaluation_views(cfg, train.image_shape)   # a data.shift_eval that does not fit fails before the features
        store = pipeline.fit(train, rngs["features"], stores, pool, training_views(cfg, train.image_shape),
                             state=feature_state)
        features = {"train": _rows(store, train, cfg)}
        model = MLP.from_config(features["train"].rows.shape[1], len(train.classes), cfg.model, cfg.loss, cfg.reg,
                                rngs["init"], rngs["dropout"])
        samples = splits["val"].read(slice(0, SAMPLES))[0]
        prep = Prepared(cfg, train.classes, train.image_shape, splits, features, pipeline, model, samples, stores, pool)
        prep.featurize("val")
        yield prep, rngs["shuffle"]
    finally:
        pool.close()
        stores.close()
        if prep is not None and prep.redrawn is not None:
            prep.redrawn.close()


def _rows(store: Store, data: Dataset, cfg: Config) -> SplitRows:
    unreadable = store.unreadable()
    return SplitRows(store.rows(_in_memory(store, cfg)), data.labels,
                     None if unreadable is None else unreadable[:len(data)])


def _in_memory(store: Store, cfg: Config) -> bool:
    """features.load: whether to read the store whole into memory or gather rows from the disk."""
    if cfg.features.load != "auto":
        return cfg.features.load == "memory"
    size = store.info["rows"] * store.info["dim"] * np.dtype(store.info["dtype"]).itemsize
    return size <= min(AUTO_MEMORY_BYTES, available_memory() // 4)


def train(cfg: Config, run: RunDir, *, resume_from: checkpoint.Checkpoint | None = None,
          stop_after: int | None = None, progress: bool = True,
          log: Callable[[str], None] = lambda line: None) -> TrainResult:
    """Train per `cfg` into `run`, from scratch or from the checkpoint `resume_from`, until train.epochs or
    early stopping (then the summary is also written to summary.json), or pause after epoch `stop_after`."""
    started = time.perf_counter()
    with prepared(cfg, resume_from.features if resume_from else None, progress) as (prep, shuffle_rng):
        state = _train_epochs(cfg, run, prep, shuffle_rng, resume_from, stop_after, progress, log)
        summary = None
        if state.stopped:
            summary = _summarize(cfg, prep, run, state, started)
            run.write_summary(summary)
        return TrainResult(state, summary, prep.samples)


def _train_epochs(cfg: Config, run: RunDir, prep: Prepared, shuffle_rng: np.random.Generator,
                  ckpt: checkpoint.Checkpoint | None, stop_after: int | None, progress: bool,
                  log: Callable[[str], None]) -> Progress:
    """The epochs, from scratch or from `ckpt`: minibatch steps, validation, checkpoints; the final Progress."""
    model = prep.model
    optimizer = OPTIMIZERS[cfg.optim.name](model.params, cfg.optim)
    state = Progress(rng_state=shuffle_rng.bit_generator.state)
    if ckpt is not None:
        _check_same_data(ckpt, prep)
        model.load_params(ckpt.params)
        model.load_buffers(ckpt.buffers)
        optimizer.load_state(ckpt.optim)
        state = Progress(**ckpt.progress)
        _restore_dropout(model, state.dropout_state)
    start, begun = state.epoch, False

    def begin() -> None:
        """Before the first write to the run folder: make it this training's (RunDir.begin)."""
        nonlocal begun
        if not begun:
            run.begin(cfg, start)
            begun = True

    def save(path) -> None:
        state.dropout_state = model.rng.bit_generator.state if model.rng is not None else {}
        checkpoint.save(path, checkpoint.Checkpoint(
            cfg, prep.classes, prep.image_shape, prep.input_dim, model.params,
            prep.pipeline.state(), optimizer.state(), asdict(state), model.buffers))

    batches = Minibatches(prep.features["train"].rows, *prep.features["train"].training_rows(), cfg.train.batch_size,
                          prep.pool, cfg.train.shuffle)
    if state.step > batches.steps:
        raise CheckpointError(f"{run.last}: meta progress.step is {state.step}, but an epoch of this run ends "
                              f"after step {batches.steps} ({batches.n} training rows in batches of {batches.size}); "
                              "it was not saved by this run, so start a new run")
    epochs = cfg.train.epochs
    last_epoch = epochs if stop_after is None else min(epochs, stop_after)
    interrupt = _InterruptFlag()
    bar = tqdm(total=epochs * batches.steps, initial=state.epoch * batches.steps + state.step, unit="step",
               disable=None if progress else True, dynamic_ncols=True, leave=False)

    def after_step() -> None:
        bar.update()
        if interrupt.raised:
            begin()
            save(run.last)
            raise Interrupted(f"interrupted at epoch {state.epoch + 1}, step {state.step}; saved {run.last}. "
                              f"Continue with: mlp train --resume {run.path}")

    # overflow warnings are silenced: divergence is caught by train_epoch
    with interrupt, bar, closing(batches), split_products(cfg.train.threads or os.cpu_count() or 1), \
            np.errstate(over="ignore", invalid="ignore"):
        while state.epoch < last_epoch and not state.stopped:
            tick = time.perf_counter()
            advice = f"lower the learning rate (optim.lr={cfg.optim.lr:g}) or the batch size" + _last_good(run)
            batches.rows = prep.epoch_rows(state.epoch)
            trained = train_epoch(model, optimizer, batches, shuffle_rng, state, epochs, advice, after_step)
            row = _end_epoch(state, prep, trained)
            row["seconds"] = round(time.perf_counter() - tick, 4)
            if row["val_acc"] > state.best_acc:
                state.best_acc, state.best_epoch, state.stale = row["val_acc"], state.epoch, 0
            else:
                state.stale += 1
            if state.epoch == epochs:
                state.stopped = "completed"
            elif cfg.train.patience and state.stale >= cfg.train.patience:
                state.stopped = "early_stop"
            begin()
            run.append_metrics(row)
            if state.best_epoch == state.epoch:
                save(run.best)
            save(run.last)
            bar.set_postfix(epoch=state.epoch, loss=f"{row['train_loss']:.3f}", val=f"{row['val_acc']:.3f}")
            log(f"epoch {state.epoch:>3}/{epochs}  loss {row['train_loss']:.4f}  train {row['train_acc']:.2%}  "
                f"val {row['val_acc']:.2%}  lr {trained.lr:.3g}  {row['seconds']:.1f}s")
    return state


class Minibatches:
    """Shuffled minibatches of feature rows X (R, D), in memory, memory-mapped or stacked, with labels y (R,),
    of the rows `usable` (None: all), gathered into reused buffers (batch, D) and (batch,). `rows` may be
    replaced between epochs by other rows of the same shape (data.augment.redraw).

    Rows read from the disk row by row (a store too large to map) are gathered a group of batches at a time
    on the worker processes of `pool`, AHEAD groups ahead of the training (mlpcli.features.ahead); `close`
    ends that. With `shuffle` "blocks" an epoch's order keeps rows together in blocks (`order`), so that such
    a group reads a few dozen runs of rows instead of a row at a time."""

    def __init__(self, X: np.ndarray | MappedRows | StackedRows, y: np.ndarray, usable: np.ndarray | None,
                 batch_size: int, pool: ProcessPool | None = None, shuffle: str = "rows") -> None:
        self.y, self.usable, self.shuffle = y, usable, shuffle
        self.n = len(y) if usable is None else len(usable)        # rows per epoch
        self.size = min(batch_size, self.n)
        self.steps = -(-self.n // self.size)                        # batches per epoch
        self._xb, self._yb = np.empty((self.size, X.shape[1]), dtype=X.dtype), np.empty(self.size, dtype=y.dtype)
        self.group = max(1, GROUP_BYTES // self._xb.nbytes)        # batches gathered at a time on a worker
        self._pool = pool if pool is not None and pool.workers > 1 else None
        self._slots: SharedSlots | None = None
        self._groups: dict[int, tuple[np.ndarray, Future]] = {}    # group -> (order, its gathering)
        self.rows = X

    @property
    def rows(self) -> np.ndarray | MappedRows | StackedRows:
        return self._rows

    @rows.setter
    def rows(self, X: np.ndarray | MappedRows | StackedRows) -> None:
        self._rows, self._ahead = X, self._pool is not None and reads_by_row(X)

    def order(self, rng: np.random.Generator) -> np.ndarray:
        """The rows of one epoch in the order `rng` draws: a permutation of `usable` (or of all rows).

        shuffle "rows": every permutation equally likely. "blocks": runs of consecutive rows of BLOCK_BYTES
        in a random order, then the rows of every group of batches (GROUP_BYTES, at least one batch) in a
        random order, so a batch holds rows of many places of the data and a group reads whole blocks."""
        if self.shuffle == "rows":
            order = rng.permutation(self.n)
        else:
            block = max(1, BLOCK_BYTES // self._xb[0].nbytes)
            starts = rng.permutation(-(-self.n // block)) * block
            order = (starts[:, None] + np.arange(block)).ravel()
            order = order[order < self.n]
            window = self.group * self.size
            for start in range(0, self.n, window):
                rng.shuffle(order[start:start + window])
        return order if self.usable is None else self.usable[order]

    def batch(self, order: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
        """The rows (m, D) and labels (m,) of batch `step` of an epoch in `order` (views of the buffers)."""
        index = order[step * self.size:(step + 1) * self.size]
        m = len(index)
        np.take(self.y, index, out=self._yb[:m])
        if not self._ahead:
            return take_rows(self.rows, index, self._xb[:m]), self._yb[:m]
        group, first = divmod(step, self.group)
        self._gather(order, group)
        return self._slots.copy(group % (AHEAD + 1), first * self.size, self._xb[:m]), self._yb[:m]

    def _gather(self, order: np.ndarray, group: int) -> None:
        """Wait until the rows of batches group·G … (group+1)·G − 1 of an epoch in `order` are in their slot,
        having started the gathering of the AHEAD groups after it into the other slots."""
        if self._slots is None:
            self._slots = SharedSlots(self._pool, AHEAD + 1, self.group * self.size, self._xb.shape[1], self._xb.dtype)
        wanted = range(group, group + AHEAD + 1)
        for g, (was, job) in list(self._groups.items()):
            if was is not order or g not in wanted:           # it may still write into a slot wanted now
                self._pool.result(job)
                del self._groups[g]
        for g in wanted:
            if g not in self._groups and g * self.group < self.steps:
                index = order[g * self.group * self.size:(g + 1) * self.group * self.size]
                self._groups[g] = (order, self._slots.gather(self.rows, index, g % (AHEAD + 1)))
        self._pool.result(self._groups[group][1])

    def close(self) -> None:
        """Wait for gathering under way and free the shared memory."""
        for _, job in self._groups.values():
            job.exception()
        self._groups = {}
        if self._slots is not None:
            self._slots.close()
            self._slots = None


@dataclass
class EpochStats:
    """One epoch's training figures, averaged over its rows."""

    loss: float          # data loss + L2 term, as each step saw it
    data_loss: float
    accuracy: float      # on the training rows, with the training behaviour (dropout on)
    lr: float            # the learning rate of the epoch


def train_epoch(model: MLP, optimizer: Optimizer, batches: Minibatches, shuffle_rng: np.random.Generator,
                state: Progress, epochs: int, advice: str, after_step: Callable[[], None] = lambda: None) -> EpochStats:
    """Epoch `state.epoch` of `epochs`: minibatch steps (loss_and_grads, optimizer step) at the schedule's learning
    rate, over the rows in the order `shuffle_rng` draws from `state.rng_state`, from step `state.step` on (not 0
    after a Ctrl-C). Keeps `state` current after each step, then calls after_step(); closes the epoch in `state`.

    The one training loop of both `mlp train` and the scikit-learn estimator (mlpcli.estimators). TrainingError
    ending with `advice` if the loss or the weights become non-finite.
    """
    lr = learning_rate(optimizer.cfg, state.epoch, epochs)
    shuffle_rng.bit_generator.state = state.rng_state
    order = batches.order(shuffle_rng)
    for step in range(state.step, batches.steps):
        xb, yb = batches.batch(order, step)
        data_loss, penalty, scores = model.loss_and_grads(xb, yb)
        loss = data_loss + penalty
        if not np.isfinite(loss):
            raise TrainingError(f"the loss became {loss} at epoch {state.epoch + 1}, step {step + 1}; {advice}")
        optimizer.step(model.grads, lr)
        state.loss_sum += float(loss) * len(yb)
        state.data_loss_sum += float(data_loss) * len(yb)
        state.correct += int(np.count_nonzero(scores.argmax(axis=1) == yb))
        state.step = step + 1
        after_step()
    for name, value in model.params.items():
        if not np.isfinite(value).all():
            raise TrainingError(f"weights '{name}' became non-finite in epoch {state.epoch + 1}; {advice}")
    stats = EpochStats(state.loss_sum / batches.n, state.data_loss_sum / batches.n, state.correct / batches.n, lr)
    state.epoch += 1
    state.step, state.loss_sum, state.data_loss_sum, state.correct = 0, 0.0, 0.0, 0
    state.rng_state = shuffle_rng.bit_generator.state
    return stats


def _check_same_data(ckpt: checkpoint.Checkpoint, prep: Prepared) -> None:
    """CheckpointError unless the data a resumed run now sees has the checkpoint's classes and shapes."""
    found = {"classes": prep.classes, "image shape": list(prep.image_shape), "feature dimension": prep.input_dim}
    saved = {"classes": list(ckpt.classes), "image shape": list(ckpt.image_shape), "feature dimension": ckpt.input_dim}
    for what, value in saved.items():
        if found[what] != value:
            raise CheckpointError(f"the dataset has changed since the run started: its {what} is now "
                                  f"{_short(found[what])}, the checkpoint's is {_short(value)}; "
                                  "point data.path back at the run's data, or start a new run")


def _restore_dropout(model: MLP, saved: dict) -> None:
    """Put dropout's mask generator where the checkpoint left it, so the next steps draw the same masks."""
    if model.rng is None:
        return
    try:
        model.rng.bit_generator.state = saved
    except (TypeError, ValueError, KeyError):
        raise CheckpointError("the checkpoint's progress has no usable dropout generator state (dropout_state); "
                              "it was not saved by this run's network, so start a new run") from None


def _short(value, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _last_good(run: RunDir) -> str:
    return f". The last good checkpoint is {run.last}" if run.last.exists() else ""


def _end_epoch(state: Progress, prep: Prepared, trained: EpochStats) -> dict:
    """The metrics row of the epoch `train_epoch` just closed in `state`, validation scores added."""
    val_data_loss, val_acc = evaluate(prep.model, prep.features["val"])
    penalty = prep.model.penalty()
    return {"epoch": state.epoch, "train_loss": trained.loss, "train_acc": trained.accuracy,
            "val_loss": val_data_loss + penalty, "val_acc": val_acc, "lr": trained.lr,
            "train_data_loss": trained.data_loss, "val_data_loss": val_data_loss, "l2": penalty}


def evaluate(model: MLP, split: SplitRows) -> tuple[float, float]:
    """(data loss, accuracy) of the model on a split's readable images (NaN for an empty split)."""
    scores, labels = split.scores(model)
    if len(labels) == 0:
        return float("nan"), float("nan")
    return _data_loss_and_accuracy(model, scores, labels)


def _data_loss_and_accuracy(model: MLP, scores: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    data_loss, _ = model.loss(scores, y)
    return float(data_loss), float(np.mean(scores.argmax(axis=1) == y))


def _summarize(cfg: Config, prep: Prepared, run: RunDir, state: Progress, started: float) -> dict:
    """Scores of the best checkpoint on val (and test), with run facts."""
    best = checkpoint.load(run.best)
    prep.model.load_params(best.params)
    prep.model.load_buffers(best.buffers)
    penalty = prep.model.penalty()
    summary = {
        "name": cfg.output.name,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 2),
        "epochs_run": state.epoch,
        "best_epoch": state.best_epoch,
        "stopped": state.stopped,
        "classes": prep.classes,
        "image_shape": list(prep.image_shape),
        "input_dim": prep.input_dim,
        "features": prep.pipeline.names,
        "model": prep.model.describe(),
    }
    for split in ("val", "test"):
        if split in prep.splits and len(prep.splits[split]):
            scores, labels = prep.featurize(split).scores(prep.model)
            summary[split] = classification_report(labels, scores.argmax(axis=1), len(prep.classes))
            summary[split]["loss"] = _data_loss_and_accuracy(prep.model, scores, labels)[0] + penalty
    return summary


class _InterruptFlag:
    """Within `with`: the first Ctrl-C sets `raised` (training stops after the current step); a second
    one interrupts at once."""

    def __init__(self) -> None:
        self.raised = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave Ctrl-C alone
            self._previous = None
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
