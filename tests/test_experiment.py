"""One run as a library function: pausing and continuing, extending, and refusing a resume that cannot be true."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from mlpcli import experiment
from mlpcli import train as training
from mlpcli.config import load_config
from mlpcli.errors import MlpError, TrainingError
from mlpcli.features.pipeline import FeaturePipeline
from tests.helpers import folder_digest, sha256


def test_a_paused_and_continued_run_ends_with_the_bytes_of_a_straight_run(tiny_config, tmp_path):
    straight = experiment.run(load_config(tiny_config), tmp_path / "straight")
    first = experiment.run(load_config(tiny_config), tmp_path / "paused", stop_after=1)
    assert (first.status, first.epochs, first.summary) == ("paused", 1, None)
    assert not first.run.summary.exists()
    second = experiment.resume(first.run.path, stop_after=3)
    assert (second.status, second.epochs) == ("paused", 3)
    last = experiment.resume(first.run.path)
    assert (last.status, last.epochs) == ("completed", 4)
    assert last.summary == {**straight.summary, "seconds": last.summary["seconds"], "started": last.summary["started"]}
    for name in ("last", "best"):
        assert sha256(getattr(last.run, name)) == sha256(getattr(straight.run, name))


def test_extending_a_completed_run_equals_a_run_asked_for_more_epochs_at_once(tiny_config, tmp_path):
    six = experiment.run(load_config(tiny_config, ["train.epochs=6"]), tmp_path / "six")
    four = experiment.run(load_config(tiny_config), tmp_path / "four")
    extended = experiment.resume(four.run.path, epochs=6)
    assert (extended.status, extended.epochs) == ("completed", 6)
    assert load_config(four.run.config).train.epochs == 6
    assert sha256(extended.run.last) == sha256(six.run.last)
    assert [row["epoch"] for row in extended.run.read_metrics()] == [1, 2, 3, 4, 5, 6]
    with pytest.raises(MlpError, match="has done 6 epochs already"):
        experiment.resume(four.run.path, epochs=5)


def test_an_extension_killed_before_its_first_checkpoint_goes_on_to_its_epochs(tiny_config, tmp_path):
    six = experiment.run(load_config(tiny_config, ["train.epochs=6"]), tmp_path / "six")
    four = experiment.run(load_config(tiny_config), tmp_path / "four").run
    four.begin(load_config(tiny_config, ["train.epochs=6"]), 4)    # what an extension writes before its epochs
    extended = experiment.resume(four.path)                          # then `kill -9`, and `mlp train --resume`
    assert (extended.status, extended.epochs) == ("completed", 6)
    assert sha256(extended.run.last) == sha256(six.run.last)


def interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def diverge(*args, **kwargs):
    raise TrainingError("the loss became nan at epoch 3, step 1")


@pytest.mark.parametrize("failure, error", [("data gone", MlpError), ("ctrl-c while preparing", KeyboardInterrupt),
                                            ("divergence in the first new epoch", TrainingError)])
def test_an_extension_that_fails_leaves_the_finished_run_as_it_was(tmp_path, monkeypatch, failure, error):
    images = np.random.default_rng(0).integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "mine.npz", X=images, y=np.arange(40) % 2)
    cfg = load_config(None, ["data.source=npz", f"data.path={tmp_path / 'mine.npz'}", "features.extractors=[pixels]",
                             "model.hidden=[8]", "train.epochs=2", "output.plots=false", "cache_dir=null"])
    done = experiment.run(cfg, tmp_path / "run").run
    before = folder_digest(done.path)
    if failure == "data gone":
        (tmp_path / "mine.npz").unlink()
    elif failure == "ctrl-c while preparing":
        monkeypatch.setattr(FeaturePipeline, "fit", interrupt)
    else:
        monkeypatch.setattr(training, "train_epoch", diverge)
    with pytest.raises(error):
        experiment.resume(done.path, epochs=4)
    assert folder_digest(done.path) == before
    with pytest.raises(MlpError, match="already finished"):
        experiment.resume(done.path)


def test_an_early_stopped_run_is_not_extended(tiny_config, tmp_path):
    stopped = experiment.run(load_config(tiny_config, ["train.patience=1", "train.epochs=40", "optim.lr=0.5"]),
                             tmp_path / "run")
    assert stopped.status == "early_stop"
    with pytest.raises(MlpError, match="stopped early"):
        experiment.resume(stopped.run.path, epochs=80)


def test_an_edited_config_is_refused_naming_the_keys(tiny_config, tmp_path):
    paused = experiment.run(load_config(tiny_config), tmp_path / "run", stop_after=2).run
    raw = yaml.safe_load(paused.config.read_text())
    raw["optim"]["lr"], raw["seed"] = 0.01, 9
    paused.config.write_text(yaml.safe_dump(raw))
    before = sha256(paused.last)
    with pytest.raises(MlpError, match=r"was edited after the run started: seed \(3 → 9\), optim.lr \(0.05 → 0.01\)"):
        experiment.resume(paused.path)
    assert sha256(paused.last) == before


@pytest.mark.parametrize("lost, message", [("metrics.jsonl", "has 0 readable epoch rows but last.npz has done 2"),
                                           ("checkpoints/best.npz", "the best so far\\) is missing")])
def test_a_resume_without_its_history_is_refused_before_any_work(tiny_config, tmp_path, lost, message):
    paused = experiment.run(load_config(tiny_config), tmp_path / "run", stop_after=2).run
    (paused.path / lost).unlink()
    with pytest.raises(MlpError, match=message):
        experiment.resume(paused.path)


def test_a_run_killed_after_its_last_checkpoint_but_before_its_summary_is_finished_by_resume(tiny_config, tmp_path):
    done = experiment.run(load_config(tiny_config), tmp_path / "run")
    summary = json.loads(done.run.summary.read_text())
    done.run.summary.unlink()
    finished = experiment.resume(done.run.path)
    assert finished.status == "completed"
    again = json.loads(done.run.summary.read_text())
    assert again["val"] == summary["val"] and again["best_epoch"] == summary["best_epoch"]


def test_data_path_is_made_absolute_so_the_run_finds_its_data_from_anywhere(tmp_path, monkeypatch):
    images = np.random.default_rng(0).integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "mine.npz", X=images, y=np.arange(40) % 2)
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, ["data.source=npz", "data.path=mine.npz", "features.extractors=[pixels]",
                             "train.epochs=1", "output.plots=false", "cache_dir=null"])
    result = experiment.run(cfg, tmp_path / "run")
    assert load_config(result.run.config).data.path == str(tmp_path / "mine.npz")


def test_divergence_before_the_first_checkpoint_names_no_checkpoint_and_leaves_no_folder(tiny_config, tmp_path):
    cfg = load_config(tiny_config, ["optim.lr=1e30", "optim.schedule=constant", "train.batch_size=2"])
    with pytest.raises(TrainingError) as error:
        experiment.run(cfg, tmp_path / "run")
    assert "checkpoint" not in str(error.value)
    assert not (tmp_path / "run").exists()
