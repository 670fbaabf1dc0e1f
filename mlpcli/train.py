"""The training loop: seeded minibatch SGD over precomputed features, validation every epoch,
early stopping, checkpoints after every epoch, and a clean stop on Ctrl-C.

Resuming restores weights, running averages, optimizer state, epoch, step and the shuffling and dropout
generators, so a resumed run ends with the same bytes as one that was never interrupted.
"""

from __future__ import annotations

import signal
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from mlpcli import checkpoint
from mlpcli.config import Config
from mlpcli.data import load_splits
from mlpcli.errors import CheckpointError, MlpError, TrainingError
from mlpcli.features.pipeline import FeaturePipeline
from mlpcli.metrics import classification_report
from mlpcli.nn.model import MLP
from mlpcli.nn.optim import OPTIMIZERS, learning_rate
from mlpcli.parallel import blas_threads
from mlpcli.predictor import batched_scores
from mlpcli.rundir import RunDir
from mlpcli.seeding import generators


SAMPLES = 6   # validation images kept for pictures


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
class Prepared:
    """A run's data, features and network, ready to train."""

    cfg: Config
    classes: list[str]
    image_shape: tuple[int, ...]
    features: dict[str, np.ndarray]     # split → (N, D); (2N, D) with mirror images for data.flip / flip_eval
    labels: dict[str, np.ndarray]       # split → (N,)
    pipeline: FeaturePipeline
    model: MLP
    samples: np.ndarray                 # a few validation images (n, H, W, C) uint8


def prepare(cfg: Config, feature_state: dict | None = None, progress: bool = True) -> tuple[Prepared, np.random.Generator]:
    """Load splits, fit (or restore) features, build the network; also returns the shuffling generator."""
    rngs = generators(cfg.seed)
    splits = load_splits(cfg, rngs["data"])
    cache_dir = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else None
    pipeline = FeaturePipeline(cfg.features, cfg.model.dtype, cache_dir, progress)
    train = splits["train"]
    if feature_state is None:
        features = {"train": pipeline.fit_transform(train.images, rngs["features"], mirror=cfg.data.flip)}
    else:
        pipeline.load_state(feature_state)
        features = {"train": pipeline.transform(train.images, mirror=cfg.data.flip)}
    features.update({name: pipeline.transform(ds.images, mirror=cfg.data.flip_eval)
                     for name, ds in splits.items() if name != "train"})
    labels = {name: ds.labels for name, ds in splits.items()}
    if cfg.data.flip:                       # the mirror images' features follow the images' (FeaturePipeline)
        labels["train"] = np.concatenate([train.labels, train.labels])
    dim, classes = features["train"].shape[1], train.classes
    model = MLP.from_config(dim, len(classes), cfg.model, cfg.loss, cfg.reg, rngs["init"], rngs["dropout"])
    samples = splits["val"].images[:SAMPLES]
    return (Prepared(cfg, classes, train.image_shape, features, labels, pipeline, model, samples),
            rngs["shuffle"])


def train(cfg: Config, run: RunDir, *, resume_from: checkpoint.Checkpoint | None = None,
          stop_after: int | None = None, progress: bool = True,
          log: Callable[[str], None] = lambda line: None) -> TrainResult:
    """Train per `cfg` into `run`, from scratch or from the checkpoint `resume_from`, until train.epochs or
    early stopping (then the summary is also written to summary.json), or pause after epoch `stop_after`."""
    started = time.perf_counter()
    ckpt = resume_from
    prep, shuffle_rng = prepare(cfg, ckpt.features if ckpt else None, progress)
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
    run.keep_metrics(state.epoch)

    def save(path) -> None:
        state.dropout_state = model.rng.bit_generator.state if model.rng is not None else {}
        checkpoint.save(path, checkpoint.Checkpoint(
            cfg, prep.classes, prep.image_shape, prep.features["train"].shape[1], model.params,
            prep.pipeline.state(), optimizer.state(), asdict(state), model.buffers))

    X, y = prep.features["train"], prep.labels["train"]
    n, batch, epochs = len(y), min(cfg.train.batch_size, len(y)), cfg.train.epochs
    last_epoch = epochs if stop_after is None else min(epochs, stop_after)
    steps = -(-n // batch)
    xb, yb = np.empty((batch, X.shape[1]), dtype=X.dtype), np.empty(batch, dtype=y.dtype)
    interrupt = _InterruptFlag()
    bar = tqdm(total=epochs * steps, initial=state.epoch * steps + state.step, unit="step",
               disable=None if progress else True, dynamic_ncols=True, leave=False)
    # overflow warnings are silenced: divergence is caught below
    with interrupt, bar, blas_threads(cfg.train.threads), np.errstate(over="ignore", invalid="ignore"):
        while state.epoch < last_epoch and not state.stopped:
            tick = time.perf_counter()
            shuffle_rng.bit_generator.state = state.rng_state
            order = shuffle_rng.permutation(n)
            lr = learning_rate(cfg.optim, state.epoch, epochs)
            for step in range(state.step, steps):
                index = order[step * batch:(step + 1) * batch]
                m = len(index)
                np.take(X, index, axis=0, out=xb[:m])
                np.take(y, index, out=yb[:m])
                data_loss, penalty, scores = model.loss_and_grads(xb[:m], yb[:m])
                loss = data_loss + penalty
                if not np.isfinite(loss):
                    raise TrainingError(f"the loss became {loss} at epoch {state.epoch + 1}, step {step + 1}; "
                                        f"lower the learning rate (optim.lr={cfg.optim.lr:g}) or the batch size"
                                        + _last_good(run))
                optimizer.step(model.grads, lr)
                state.loss_sum += float(loss) * m
                state.data_loss_sum += float(data_loss) * m
                state.correct += int(np.count_nonzero(scores.argmax(axis=1) == yb[:m]))
                state.step = step + 1
                bar.update()
                if interrupt.raised:
                    save(run.last)
                    raise Interrupted(f"interrupted at epoch {state.epoch + 1}, step {state.step}; saved {run.last}. "
                                      f"Continue with: mlp train --resume {run.path}")
            row = _end_epoch(state, prep, shuffle_rng, lr, n)
            row["seconds"] = round(time.perf_counter() - tick, 4)
            _check_finite(model, state.epoch, run)
            if row["val_acc"] > state.best_acc:
                state.best_acc, state.best_epoch, state.stale = row["val_acc"], state.epoch, 0
            else:
                state.stale += 1
            if state.epoch == epochs:
                state.stopped = "completed"
            elif cfg.train.patience and state.stale >= cfg.train.patience:
                state.stopped = "early_stop"
            run.append_metrics(row)
            if state.best_epoch == state.epoch:
                save(run.best)
            save(run.last)
            bar.set_postfix(epoch=state.epoch, loss=f"{row['train_loss']:.3f}", val=f"{row['val_acc']:.3f}")
            log(f"epoch {state.epoch:>3}/{epochs}  loss {row['train_loss']:.4f}  train {row['train_acc']:.2%}  "
                f"val {row['val_acc']:.2%}  lr {lr:.3g}  {row['seconds']:.1f}s")
    summary = None
    if state.stopped:
        summary = _summarize(cfg, prep, run, state, started)
        run.write_summary(summary)
    return TrainResult(state, summary, prep.samples)


def _check_same_data(ckpt: checkpoint.Checkpoint, prep: Prepared) -> None:
    """CheckpointError unless the data a resumed run now sees has the checkpoint's classes and shapes."""
    found = {"classes": prep.classes, "image shape": list(prep.image_shape),
             "feature dimension": int(prep.features["train"].shape[1])}
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


def _end_epoch(state: Progress, prep: Prepared, shuffle_rng: np.random.Generator, lr: float, n: int) -> dict:
    """Close the epoch in `state`; its metrics row."""
    val_data_loss, val_acc = evaluate(prep.model, prep.features["val"], prep.labels["val"], prep.cfg.data.flip_eval)
    penalty = prep.model.penalty()
    row = {"epoch": state.epoch + 1, "train_loss": state.loss_sum / n, "train_acc": state.correct / n,
           "val_loss": val_data_loss + penalty, "val_acc": val_acc, "lr": lr,
           "train_data_loss": state.data_loss_sum / n, "val_data_loss": val_data_loss, "l2": penalty}
    state.epoch += 1
    state.step, state.loss_sum, state.data_loss_sum, state.correct = 0, 0.0, 0.0, 0
    state.rng_state = shuffle_rng.bit_generator.state
    return row


def evaluate(model: MLP, X: np.ndarray, y: np.ndarray, mirrored: bool = False) -> tuple[float, float]:
    """(data loss, accuracy) of the model on features X (N, D), labels y (N,); with `mirrored`, X is
    (2N, D) and the scores average each image and its mirror (batched_scores)."""
    if len(y) == 0:
        return float("nan"), float("nan")
    scores = batched_scores(model, X, mirrored=mirrored)
    return _data_loss_and_accuracy(model, scores, y)


def _data_loss_and_accuracy(model: MLP, scores: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    data_loss, _ = model.loss(scores, y)
    return float(data_loss), float(np.mean(scores.argmax(axis=1) == y))


def _check_finite(model: MLP, epoch: int, run: RunDir) -> None:
    for name, value in model.params.items():
        if not np.isfinite(value).all():
            raise TrainingError(f"weights '{name}' became non-finite in epoch {epoch}; lower the learning rate"
                                + _last_good(run))


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
        "input_dim": int(prep.features["train"].shape[1]),
        "features": prep.pipeline.names,
        "model": prep.model.describe(),
    }
    for split in ("val", "test"):
        if split in prep.features and len(prep.labels[split]):
            scores = batched_scores(prep.model, prep.features[split], mirrored=cfg.data.flip_eval)
            summary[split] = classification_report(prep.labels[split], scores.argmax(axis=1), len(prep.classes))
            summary[split]["loss"] = _data_loss_and_accuracy(prep.model, scores, prep.labels[split])[0] + penalty
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
