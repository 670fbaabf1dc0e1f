"""Training: reproducible to the byte, resumable after Ctrl-C or kill -9, loud on divergence."""

from __future__ import annotations

import json
import threading
import signal
import tempfile
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from mlpcli import checkpoint, experiment, parallel, train as train_module
from mlpcli.config import load_config
from mlpcli.data.augment import augmented_copies
from mlpcli.errors import CheckpointError, MlpError, TrainingError
from mlpcli.features import store as store_module
from mlpcli.features.store import MappedRows
from mlpcli.nn.model import MLP
from mlpcli.npzfile import load_npz, save_npz
from mlpcli.predictor import Classifier, batched_scores
from mlpcli.report import validation_split
from mlpcli.rundir import RunDir
from mlpcli.seeding import generators
from mlpcli.train import Interrupted, Minibatches, prepared, train
from tests.helpers import sha256


def run_once(config: Path, out: Path, overrides=()) -> RunDir:
    return experiment.run(load_config(config, list(overrides)), out).run


def metrics_without_time(run: RunDir) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in run.read_metrics()]


def test_flip_adds_the_mirror_images_to_the_training_split_only(tiny_config):
    with prepared(load_config(tiny_config)) as (plain, _), \
            prepared(load_config(tiny_config, ["data.flip=true"])) as (flipped, _):
        n = len(plain.features["train"].labels)
        rows = flipped.features["train"].rows
        assert rows.shape == (2 * n, plain.features["train"].rows.shape[1])
        labels, usable = flipped.features["train"].training_rows()
        np.testing.assert_array_equal(labels, np.concatenate([plain.features["train"].labels] * 2))
        assert usable is None
        assert len(flipped.features["val"].rows) == len(plain.features["val"].rows)
        assert not np.allclose(rows[:n], rows[n:], atol=1e-3)


def test_flip_eval_scores_each_image_by_the_mean_of_its_and_its_mirror_images_scores(tiny_config, tmp_path):
    run = run_once(tiny_config, tmp_path / "run", ["data.flip_eval=true"])
    clf = Classifier.from_checkpoint(run.best)
    val = validation_split(clf.config)
    plain = batched_scores(clf.model, clf.pipeline.transform(val.images))
    mirrored = batched_scores(clf.model, clf.pipeline.transform(np.ascontiguousarray(val.images[:, :, ::-1])))
    expected = (plain + mirrored) / 2
    np.testing.assert_allclose(clf.scores(val.images), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(plain, expected, atol=1e-3)
    summary = json.loads(run.summary.read_text())
    assert summary["val"]["accuracy"] == np.mean(expected.argmax(axis=1) == val.labels)
    assert summary["val"]["accuracy"] == max(row["val_acc"] for row in run.read_metrics())


def test_shift_eval_scores_each_image_by_the_mean_over_its_shifted_and_mirrored_views(tiny_config, tmp_path):
    run = run_once(tiny_config, tmp_path / "run", ["data.flip_eval=true", "data.shift_eval=2"])
    clf = Classifier.from_checkpoint(run.best)
    val = validation_split(clf.config)
    padded = np.pad(val.images, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
    size = val.images.shape[1]
    views = [padded[:, 2 + dy:2 + dy + size, 2 + dx:2 + dx + size] for dy, dx in ((0, 0), (-2, -2), (-2, 2), (2, -2),
                                                                                 (2, 2))]
    views += [view[:, :, ::-1] for view in views]
    each = [batched_scores(clf.model, clf.pipeline.transform(np.ascontiguousarray(view))) for view in views]
    expected = np.mean(each, axis=0)
    np.testing.assert_allclose(clf.scores(val.images), expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose((each[0] + each[5]) / 2, expected, atol=1e-3)
    summary = json.loads(run.summary.read_text())
    assert summary["val"]["accuracy"] == np.mean(expected.argmax(axis=1) == val.labels)


def test_run_folder_holds_config_metrics_summary_and_checkpoints(tiny_config, tmp_path):
    run = run_once(tiny_config, tmp_path / "run")
    rows = run.read_metrics()
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4]
    assert set(rows[0]) == {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds",
                            "train_data_loss", "val_data_loss", "l2"}
    for row in rows:
        assert row["val_loss"] == pytest.approx(row["val_data_loss"] + row["l2"], rel=1e-12)
        assert row["train_loss"] > row["train_data_loss"] > 0
    assert rows[1]["lr"] == pytest.approx(0.05 * 0.95)
    summary = json.loads(run.summary.read_text())
    assert summary["epochs_run"] == 4 and summary["stopped"] == "completed"
    assert summary["val"]["accuracy"] == max(row["val_acc"] for row in rows)
    assert load_config(run.config).model.hidden == [16]
    best = checkpoint.load(run.best)
    assert best.progress["epoch"] == summary["best_epoch"]
    weights = [W for name, W in checkpoint.load(run.last).params.items() if name.endswith(".W")]
    assert rows[-1]["l2"] == pytest.approx(1e-3 * sum(float(np.vdot(W, W)) for W in weights), rel=1e-6)
    assert best.classes == ["circle", "square", "triangle"]


def test_same_config_gives_identical_checkpoints_and_metrics(tiny_config, tmp_path):
    a, b = run_once(tiny_config, tmp_path / "a"), run_once(tiny_config, tmp_path / "b")
    assert sha256(a.last) == sha256(b.last)
    assert sha256(a.best) == sha256(b.best)
    assert metrics_without_time(a) == metrics_without_time(b)


def test_train_threads_split_the_large_products_over_threads_with_single_threaded_blas(tiny_config, tmp_path,
                                                                                          monkeypatch):
    blas, threads, real_matmul, real_step = [], set(), np.matmul, MLP.loss_and_grads

    def matmul(a, b, out=None):
        threads.add(threading.get_ident())
        return real_matmul(a, b, out=out)

    def step(self, X, y):
        blas.append(max(info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"))
        return real_step(self, X, y)

    monkeypatch.setattr(parallel.np, "matmul", matmul)
    monkeypatch.setattr(MLP, "loss_and_grads", step)
    wide = ["model.hidden=[512]", "train.epochs=1"]        # 16 x 768 x 512: large enough to split
    first = run_once(tiny_config, tmp_path / "a", [*wide, "train.threads=2"])
    assert set(blas) == {1} and len(threads - {threading.get_ident()}) == 2      # the two threads of the products
    threads.clear()
    run_once(tiny_config, tmp_path / "b", [*wide, "train.threads=1"])
    assert threads == {threading.get_ident()}
    monkeypatch.setattr(parallel.np, "matmul", real_matmul)
    assert sha256(first.last) == sha256(run_once(tiny_config, tmp_path / "c", [*wide, "train.threads=2"]).last)


def test_another_seed_gives_another_run(tiny_config, tmp_path):
    a, b = run_once(tiny_config, tmp_path / "a"), run_once(tiny_config, tmp_path / "b", ["seed=4"])
    assert sha256(a.last) != sha256(b.last)


class Crash(BaseException):
    """Stands for the process dying (kill -9) right after a checkpoint was written."""


@pytest.mark.parametrize("crash_after_saves, overrides", [(1, []), (4, []), (5, []), (4, ["data.flip=true"]),
                                                         (4, ["features.load=disk"]), (4, ["train.shuffle=blocks"])])
def test_resume_after_a_crash_ends_byte_identical(tiny_config, tmp_path, monkeypatch, crash_after_saves, overrides):
    reference = run_once(tiny_config, tmp_path / "reference", overrides)
    real_save, saves = checkpoint.save, []

    def save_then_crash(path, ckpt):
        real_save(path, ckpt)
        saves.append(path)
        if len(saves) == crash_after_saves:
            raise Crash

    monkeypatch.setattr(checkpoint, "save", save_then_crash)
    cfg = load_config(tiny_config, overrides)
    run = RunDir.create(cfg, tmp_path / "crashed")
    with pytest.raises(Crash):
        train(cfg, run, progress=False)
    monkeypatch.setattr(checkpoint, "save", real_save)
    assert run.last.exists() == (crash_after_saves > 1)     # the first save is epoch 1's best.npz
    experiment.resume(run.path)                            # without last.npz: starts over in the folder
    assert sha256(run.last) == sha256(reference.last)
    assert sha256(run.best) == sha256(reference.best)
    assert metrics_without_time(run) == metrics_without_time(reference)


def test_divergence_stops_with_the_epoch_and_keeps_the_last_good_checkpoint(tiny_config, tmp_path):
    cfg = load_config(tiny_config, ["optim.lr=1e30", "optim.schedule=constant"])
    run = RunDir.create(cfg, tmp_path / "run")
    with pytest.raises(TrainingError, match=r"epoch \d+, step \d+; lower the learning rate"):
        train(cfg, run, progress=False)
    if run.last.exists():
        assert checkpoint.load(run.last).progress["epoch"] >= 1


def test_resuming_a_finished_run_says_so(tiny_config, tmp_path):
    run = run_once(tiny_config, tmp_path / "run")
    with pytest.raises(MlpError, match="already finished"):
        experiment.resume(run.path)


def test_early_stopping_with_patience(tiny_config, tmp_path):
    run = run_once(tiny_config, tmp_path / "run", ["train.patience=1", "train.epochs=40", "optim.lr=0.5"])
    summary = json.loads(run.summary.read_text())
    assert summary["stopped"] == "early_stop"
    assert summary["epochs_run"] == summary["best_epoch"] + 1


REGULARIZED = ["model.hidden=[16, 12]", "model.norm=batch", "model.dropout=[0.5, 0.2]"]


def resumed_like_a_run_never_stopped(tiny_config, tmp_path, monkeypatch, overrides, epoch: int, ctrl_c: bool) -> dict:
    """Run `overrides`, stopped after epoch `epoch` (as by kill -9 after its checkpoints) or by Ctrl-C at the
    second step of the epoch after, then resumed: assert it repeats and ends with the bytes and metrics of a run
    never stopped; the progress it resumed from."""
    reference = run_once(tiny_config, tmp_path / "reference", overrides)
    assert sha256(reference.last) == sha256(run_once(tiny_config, tmp_path / "again", overrides).last)
    with prepared(load_config(tiny_config, overrides)) as (prep, _):
        steps_per_epoch = -(-len(prep.features["train"].training_rows()[0]) // 16)
    real_save, real_step, steps = checkpoint.save, MLP.loss_and_grads, []

    def save_then_crash(path, ckpt):
        real_save(path, ckpt)
        if ckpt.progress["epoch"] == epoch and path.name == "last.npz":
            raise Crash

    def step_then_ctrl_c(self, X, y):
        steps.append(len(y))
        if len(steps) == epoch * steps_per_epoch + 2:
            signal.raise_signal(signal.SIGINT)
        return real_step(self, X, y)

    if ctrl_c:
        monkeypatch.setattr(MLP, "loss_and_grads", step_then_ctrl_c)
    else:
        monkeypatch.setattr(checkpoint, "save", save_then_crash)
    with pytest.raises((Crash, Interrupted)):
        experiment.run(load_config(tiny_config, overrides), tmp_path / "stopped")
    monkeypatch.undo()
    run = RunDir(tmp_path / "stopped")
    progress = checkpoint.load(run.last).progress
    assert (progress["epoch"], progress["step"]) == (epoch, 2 if ctrl_c else 0)
    experiment.resume(run.path)
    assert sha256(run.last) == sha256(reference.last)
    assert sha256(run.best) == sha256(reference.best)
    assert metrics_without_time(run) == metrics_without_time(reference)
    return progress


@pytest.mark.parametrize("stop", ["crash after epoch 1", "Ctrl-C in epoch 2"])
def test_dropout_and_batch_norm_runs_repeat_and_resume_byte_identical(tiny_config, tmp_path, monkeypatch, stop):
    progress = resumed_like_a_run_never_stopped(tiny_config, tmp_path, monkeypatch, REGULARIZED, 1,
                                                stop.startswith("Ctrl-C"))
    assert progress["dropout_state"]["bit_generator"] == "PCG64"


def test_input_dropout_runs_repeat_and_resume_byte_identical(tiny_config, tmp_path, monkeypatch):
    overrides = ["model.hidden=[16]", "model.input_dropout=0.3"]
    progress = resumed_like_a_run_never_stopped(tiny_config, tmp_path, monkeypatch, overrides, 1, ctrl_c=True)
    assert progress["dropout_state"]["bit_generator"] == "PCG64"


def test_checkpoints_carry_the_running_averages_and_the_classifier_scores_with_them(tiny_config, tmp_path):
    run = run_once(tiny_config, tmp_path / "run", REGULARIZED)
    best = checkpoint.load(run.best)
    assert sorted(best.buffers) == ["norm0.running_mean", "norm0.running_var", "norm1.running_mean",
                                    "norm1.running_var"]
    assert "velocity.norm0.gamma" in best.optim and not any("running" in name for name in best.optim)
    clf = Classifier.from_checkpoint(run.best)
    np.testing.assert_array_equal(clf.model.buffers["norm1.running_var"], best.buffers["norm1.running_var"])
    val = validation_split(clf.config)
    summary = json.loads(run.summary.read_text())
    assert summary["val"]["accuracy"] == np.mean(clf.predict(val.images) == val.labels)
    assert summary["model"] == "768-16-12-3 batch_norm relu dropout softmax"
    plain = run_once(tiny_config, tmp_path / "plain", REGULARIZED[:1])
    assert not any(name.startswith("buffers/") for name in np.load(plain.last).files)
    assert checkpoint.load(plain.last).progress["dropout_state"] == {}


@pytest.mark.parametrize("damaged", [{}, {"bit_generator": "MT19937"}, {"bit_generator": "PCG64", "state": 5}])
def test_a_damaged_dropout_state_is_refused_on_resume(tiny_config, tmp_path, damaged):
    run = experiment.run(load_config(tiny_config, REGULARIZED), tmp_path / "run", stop_after=1).run
    arrays = load_npz(run.last)
    meta = json.loads(arrays["meta"].tobytes())
    meta["progress"]["dropout_state"] = damaged
    save_npz(run.last, arrays | {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)})
    with pytest.raises(CheckpointError, match="no usable dropout generator state|progress.dropout_state is"):
        experiment.resume(run.path)


def test_the_dropout_stream_leaves_the_streams_before_it_as_they_were():
    """Runs from before dropout existed keep their splits, features, weights and shuffling."""
    rngs = generators(7)
    before = np.random.SeedSequence(7).spawn(4)
    for name, child in zip(["data", "features", "init", "shuffle"], before):
        assert rngs[name].random(3).tolist() == np.random.default_rng(child).random(3).tolist()
    assert rngs["dropout"].random() not in [np.random.default_rng(child).random() for child in before]


@pytest.mark.parametrize("map_whole, shuffle", [(256 << 20, "rows"), (0, "rows"), (0, "blocks")],
                         ids=["mapped", "pread", "pread-blocks"])
def test_training_from_memory_and_from_the_disk_store_gives_identical_checkpoints(tiny_config, tmp_path,
                                                                                 monkeypatch, map_whole, shuffle):
    """Identical but for the features.load the checkpoint's config records; the store read through a memory
    map or with pread (a large store), its minibatches gathered ahead on a worker process (in blocks of 5 rows
    and groups of 2 batches: so that a group reads runs)."""
    monkeypatch.setattr(store_module, "MAP_WHOLE_BYTES", map_whole)
    monkeypatch.setattr(train_module, "BLOCK_BYTES", 5 * 16 * 16 * 3 * 4)
    monkeypatch.setattr(train_module, "GROUP_BYTES", 2 * 16 * 16 * 16 * 3 * 4)
    common = ["data.flip=true", f"train.shuffle={shuffle}"]
    memory = run_once(tiny_config, tmp_path / "memory", ["features.load=memory", *common])
    disk = run_once(tiny_config, tmp_path / "disk", ["features.load=disk", *common])
    for name in ("last", "best"):
        a, b = load_npz(getattr(memory, name)), load_npz(getattr(disk, name))
        meta_a, meta_b = (json.loads(arrays.pop("meta").tobytes()) for arrays in (a, b))
        assert meta_a["config"]["features"].pop("load") == "memory"
        assert meta_b["config"]["features"].pop("load") == "disk"
        assert meta_a == meta_b
        assert a.keys() == b.keys() and all(a[key].tobytes() == b[key].tobytes() for key in a)


def test_minibatches_gathered_ahead_on_a_worker_process_are_the_batches_gathered_in_memory(tmp_path, monkeypatch):
    """In order, resumed mid-epoch, out of order and with rows replaced between epochs: the same batches from
    a store read row by row, gathered three batches at a time on worker processes, AHEAD groups ahead; close
    frees the shared memory."""
    monkeypatch.setattr(store_module, "MAP_WHOLE_BYTES", 0)          # pread, as a store of over 256 MB
    monkeypatch.setattr(train_module, "GROUP_BYTES", 3 * 7 * 6 * 4)   # 3 batches of 7 rows of 6 float32
    rng = np.random.default_rng(0)
    X, y, usable = rng.standard_normal((50, 6)).astype(np.float32), rng.integers(0, 3, 50), np.arange(3, 50)
    np.save(tmp_path / "a.npy", X)
    np.save(tmp_path / "b.npy", X[::-1].copy())
    with parallel.ProcessPool(2) as pool:
        memory, disk = Minibatches(X, y, usable, 7), Minibatches(MappedRows(tmp_path / "a.npy"), y, usable, 7, pool)
        assert disk.group == 3 and disk.steps == 7
        calls = [(0, range(memory.steps)), (1, range(4, memory.steps)), (2, [5, 2, 3, 6, 0, 0, 1])]
        for epoch, steps in calls:
            if epoch == 2:
                memory.rows, disk.rows = X[::-1].copy(), MappedRows(tmp_path / "b.npy")
            order = memory.order(np.random.default_rng(epoch))
            for step in steps:
                (xm, ym), (xd, yd) = memory.batch(order, step), disk.batch(order, step)
                index = order[step * 7:(step + 1) * 7]
                np.testing.assert_array_equal(xd, np.asarray(memory.rows)[index])
                np.testing.assert_array_equal(xd, xm)
                np.testing.assert_array_equal(yd, ym)
                group = step // 3
                assert all(job[0] is order for job in disk._groups.values())
                ahead = [g for g in range(group, group + train_module.AHEAD + 1) if g * 3 < disk.steps]
                assert sorted(disk._groups) == ahead
        assert pool._executor is not None and pool._executor._processes   # the gathers went to worker processes
        name = disk._slots._memory.name
        disk.close()
        assert not (Path("/dev/shm") / name.lstrip("/")).exists()


@pytest.mark.parametrize("usable", [None, np.flatnonzero(np.arange(1000) % 7)])
def test_a_block_shuffle_is_a_seeded_permutation_of_blocks_shuffled_within_groups(monkeypatch, usable):
    monkeypatch.setattr(train_module, "BLOCK_BYTES", 10 * 4 * 4)       # 10 rows of 4 float32
    monkeypatch.setattr(train_module, "GROUP_BYTES", 8 * 16 * 4 * 4)   # 8 batches of 16 rows
    y = np.zeros(1000, np.int64)
    batches = Minibatches(np.zeros((1000, 4), np.float32), y, usable, 16, shuffle="blocks")
    n, window = batches.n, 8 * 16
    order = batches.order(np.random.default_rng(5))
    assert sorted(order) == sorted(np.arange(1000) if usable is None else usable)
    np.testing.assert_array_equal(order, batches.order(np.random.default_rng(5)))
    assert not np.array_equal(order, batches.order(np.random.default_rng(6)))
    positions = np.searchsorted(np.arange(1000) if usable is None else usable, order)
    for start in range(0, n, window):      # a group's rows: whole blocks of 10, but the two cut by its ends
        blocks, counts = np.unique(positions[start:start + window] // 10, return_counts=True)
        assert np.count_nonzero(counts != np.minimum(10, n - 10 * blocks)) <= 2
    assert not np.array_equal(positions[:window], np.sort(positions[:window]))     # shuffled within the group


def test_the_feature_stores_of_a_run_serve_the_next_one(tiny_config, tmp_path, monkeypatch):
    from mlpcli.features import pixels

    cache = ["cache_dir=" + str(tmp_path / "cache")]
    first = run_once(tiny_config, tmp_path / "first", cache)
    stores = sorted(p.name for p in (tmp_path / "cache" / "features").iterdir())
    assert len(stores) == 2                            # train (with the fitted state) and val

    def fail(self, images):
        raise AssertionError("extracted again instead of reading the store")

    monkeypatch.setattr(pixels.Pixels, "transform", fail)
    again = run_once(tiny_config, tmp_path / "again", [*cache, "optim.lr=0.02"])      # another model, same features
    assert sorted(p.name for p in (tmp_path / "cache" / "features").iterdir()) == stores
    assert sha256(first.last) != sha256(again.last)


AUGMENTED = ["data.augment={copies: 2, pad: 3}"]
REDRAWN = ["data.augment={copies: 1, pad: 3, redraw: true}"]


def test_augmented_copies_are_trained_on_after_the_images_and_their_mirror_images(tiny_config):
    raw = ["features.normalize=none", "data.flip=true"]
    with prepared(load_config(tiny_config, raw)) as (plain, _), \
            prepared(load_config(tiny_config, [*raw, *AUGMENTED])) as (augmented, _):
        train = augmented.features["train"]
        n = len(train.labels)
        assert train.views == 4 and train.rows.shape == (4 * n, plain.input_dim)
        np.testing.assert_array_equal(train.rows[:2 * n], plain.features["train"].rows)
        np.testing.assert_array_equal(train.training_rows()[0], np.tile(train.labels, 4))
        assert not np.array_equal(train.rows[2 * n:3 * n], train.rows[3 * n:])
        assert len(augmented.features["val"].rows) == len(plain.features["val"].rows)
        assert augmented.epoch_rows(3) is train.rows        # fixed copies: the same every epoch


def test_redrawn_copies_are_new_in_every_epoch_and_the_same_when_drawn_again(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))      # to see the temporary stores go
    cfg = load_config(tiny_config, ["features.normalize=none", *REDRAWN])
    with prepared(cfg) as (prep, _):
        n = len(prep.features["train"].labels)
        everything = np.arange(2 * n)

        def rows(epoch):
            X = prep.epoch_rows(epoch)
            return X.take(everything, np.empty((2 * n, prep.input_dim), np.float32)) if epoch else X

        first, second, again = rows(0), rows(1), rows(1)
        np.testing.assert_array_equal(second[:n], first[:n])          # the images' own rows stay
        assert not np.array_equal(second[n:], first[n:])              # their copies are drawn anew
        np.testing.assert_array_equal(again, second)
        split = prep.splits["train"]
        expected = prep.pipeline.transform(augmented_copies(cfg, split.image_shape, 1)[0](split.images, np.arange(n)))
        np.testing.assert_array_equal(second[n:], expected)
        assert len(list(tmp_path.glob("mlp-features-*"))) == 2      # the run's stores, and one epoch's copies
    assert list(tmp_path.glob("mlp-features-*")) == []


@pytest.mark.parametrize("overrides", [AUGMENTED, REDRAWN])
@pytest.mark.parametrize("stop", ["crash after epoch 2", "Ctrl-C in epoch 3"])
def test_augmented_runs_repeat_and_resume_byte_identical(tiny_config, tmp_path, monkeypatch, overrides, stop):
    resumed_like_a_run_never_stopped(tiny_config, tmp_path, monkeypatch, overrides, 2, stop.startswith("Ctrl-C"))


def test_fixed_copies_are_served_from_the_feature_cache_and_redrawn_ones_never_kept(tiny_config, tmp_path, monkeypatch):
    from mlpcli.features import pixels

    cache = ["cache_dir=" + str(tmp_path / "cache")]
    first = run_once(tiny_config, tmp_path / "first", [*cache, *AUGMENTED])
    run_once(tiny_config, tmp_path / "other", [*cache, "data.augment={copies: 2, pad: 2}"])     # other copies
    assert len(list((tmp_path / "cache" / "features").iterdir())) == 4     # train and val (other statistics) twice

    def fail(self, images):
        raise AssertionError("extracted again instead of reading the store")

    with monkeypatch.context() as patch:
        patch.setattr(pixels.Pixels, "transform", fail)
        again = run_once(tiny_config, tmp_path / "again", [*cache, *AUGMENTED])
    assert sha256(first.last) == sha256(again.last)
    run_once(tiny_config, tmp_path / "redrawn", [*cache, *REDRAWN])
    assert len(list((tmp_path / "cache" / "features").iterdir())) == 6     # train (epoch 0's copies) and val
