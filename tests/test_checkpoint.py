"""Checkpoints: reproducible bytes, no pickle, and clear errors for anything that does not fit."""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict

import numpy as np
import pytest

from mlpcli import checkpoint
from mlpcli.config import load_config
from mlpcli.errors import CheckpointError
from mlpcli.features.pipeline import FeaturePipeline
from mlpcli.nn.model import MLP
from mlpcli.nn.optim import OPTIMIZERS
from mlpcli.npzfile import load_npz, save_npz
from mlpcli.predictor import Classifier
from mlpcli.seeding import generators
from mlpcli.train import Progress
from tests.helpers import sha256


def make_checkpoint(overrides=(), image_shape=(1, 2, 3), classes=("a", "b", "c")) -> checkpoint.Checkpoint:
    """A complete checkpoint as training writes it: the network, optimizer state after one step, feature
    state and progress, for `pixels` features of images of `image_shape`."""
    cfg = load_config(None, ["model.hidden=[4]", "features.extractors=[pixels]", *overrides])
    pipeline = FeaturePipeline(cfg.features, cfg.model.dtype)
    dim = sum(pipeline.dims(image_shape))
    model = MLP.from_config(dim, len(classes), cfg.model, cfg.loss, cfg.reg, np.random.default_rng(0))
    optimizer = OPTIMIZERS[cfg.optim.name](model.params, cfg.optim)
    model.loss_and_grads(np.ones((2, dim), model.dtype), np.array([0, 1]))
    optimizer.step(model.grads, 0.1)
    features = {"normalize.mean": np.zeros(dim, model.dtype), "normalize.std": np.ones(dim, model.dtype)}
    progress = asdict(Progress(epoch=2, rng_state=generators(0)["shuffle"].bit_generator.state, best_acc=0.5,
                               best_epoch=2))
    return checkpoint.Checkpoint(cfg, list(classes), image_shape, dim, model.params, features, optimizer.state(),
                                 progress)


@pytest.fixture
def ckpt():
    return make_checkpoint()


def test_round_trip_and_identical_bytes(ckpt, tmp_path):
    checkpoint.save(tmp_path / "a.npz", ckpt)
    checkpoint.save(tmp_path / "b.npz", ckpt)
    assert sha256(tmp_path / "a.npz") == sha256(tmp_path / "b.npz")
    back = checkpoint.load(tmp_path / "a.npz")
    assert back.classes == ckpt.classes and back.image_shape == (1, 2, 3) and back.input_dim == 6
    assert back.progress == ckpt.progress
    assert back.optim["t"].shape == () and back.optim.keys() == ckpt.optim.keys()
    for name, value in ckpt.params.items():
        np.testing.assert_array_equal(back.params[name], value)
    assert back.config.model.hidden == [4]


def test_a_checkpoint_rebuilds_a_classifier(ckpt, tmp_path):
    checkpoint.save(tmp_path / "a.npz", ckpt)
    clf = Classifier.from_checkpoint(tmp_path / "a.npz")
    images = np.arange(12, dtype=np.uint8).reshape(2, 1, 2, 3)
    features = images.reshape(2, -1).astype(np.float32) / 255
    p = ckpt.params
    expected = np.maximum(features @ p["layer0.W"] + p["layer0.b"], 0) @ p["layer1.W"] + p["layer1.b"]
    np.testing.assert_allclose(clf.scores(images), expected, rtol=1e-5)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        checkpoint.load(tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(CheckpointError, match="not a readable"):
        checkpoint.load(tmp_path / "junk.npz")


def test_truncated_file(ckpt, tmp_path):
    checkpoint.save(tmp_path / "a.npz", ckpt)
    data = (tmp_path / "a.npz").read_bytes()
    (tmp_path / "a.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        checkpoint.load(tmp_path / "a.npz")


def _rewrite_meta(path, change):
    arrays = load_npz(path)
    meta = json.loads(arrays["meta"].tobytes())
    change(meta)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    save_npz(path, arrays)


def test_other_format_version(ckpt, tmp_path):
    path = tmp_path / "a.npz"
    checkpoint.save(path, ckpt)
    _rewrite_meta(path, lambda meta: meta.update(format_version=99))
    with pytest.raises(CheckpointError, match="format version 99; this mlpcli reads version 1"):
        checkpoint.load(path)


def test_invalid_config_inside(ckpt, tmp_path):
    path = tmp_path / "a.npz"
    checkpoint.save(path, ckpt)
    _rewrite_meta(path, lambda meta: meta["config"]["model"].update(hidden="x"))
    with pytest.raises(CheckpointError, match="its config is invalid: model.hidden"):
        checkpoint.load(path)


def test_object_arrays_are_refused(ckpt, tmp_path):
    path = tmp_path / "a.npz"
    checkpoint.save(path, ckpt)
    arrays = load_npz(path)
    arrays["features/normalize.mean"] = np.array([{"x": 1}] * 6, dtype=object)
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, array, allow_pickle=True)
    with pytest.raises(CheckpointError, match="member 'features/normalize.mean' holds Python objects"):
        checkpoint.load(path)


def test_not_an_mlpcli_checkpoint(tmp_path):
    np.savez(tmp_path / "plain.npz", x=np.zeros(3))
    with pytest.raises(CheckpointError, match="no 'meta' array"):
        checkpoint.load(tmp_path / "plain.npz")


def test_weights_that_do_not_fit_the_network(ckpt, tmp_path):
    ckpt.params["layer1.W"] = np.zeros((4, 5), np.float32)
    checkpoint.save(tmp_path / "a.npz", ckpt)
    with pytest.raises(CheckpointError, match=r"array 'params/layer1.W' is float32 \(4, 5\), but its config "
                                              r"describes float32 \(4, 3\)"):
        Classifier.from_checkpoint(tmp_path / "a.npz")


def test_missing_weights(ckpt, tmp_path):
    del ckpt.params["layer1.b"]
    checkpoint.save(tmp_path / "a.npz", ckpt)
    with pytest.raises(CheckpointError, match=r"lacks arrays \['params/layer1.b'\], which its config needs"):
        Classifier.from_checkpoint(tmp_path / "a.npz")


def test_failed_save_keeps_the_previous_file(ckpt, tmp_path):
    path = tmp_path / "a.npz"
    checkpoint.save(path, ckpt)
    before = sha256(path)
    ckpt.params["layer0.W"] = np.array([object()], dtype=object)
    with pytest.raises(ValueError):
        checkpoint.save(path, ckpt)
    assert sha256(path) == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]
