"""Checkpoints: reproducible bytes, no pickle, and clear errors for anything that does not fit."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from mlpcli import checkpoint
from mlpcli.config import load_config
from mlpcli.errors import CheckpointError
from mlpcli.npzfile import load_npz, save_npz
from mlpcli.predictor import Classifier
from tests.helpers import sha256


@pytest.fixture
def ckpt():
    rng = np.random.default_rng(0)
    cfg = load_config(None, ["model.hidden=[4]", "features.extractors=[pixels]"])
    params = {"layer0.W": rng.standard_normal((6, 4), dtype=np.float32), "layer0.b": np.zeros(4, np.float32),
              "layer1.W": rng.standard_normal((4, 3), dtype=np.float32), "layer1.b": np.zeros(3, np.float32)}
    features = {"normalize.mean": np.zeros(6, np.float32), "normalize.std": np.ones(6, np.float32)}
    return checkpoint.Checkpoint(cfg, ["a", "b", "c"], (1, 2, 3), 6, params, features,
                                 {"t": np.array(3)}, {"epoch": 2, "rng_state": {"state": 2 ** 100}})


def test_round_trip_and_identical_bytes(ckpt, tmp_path):
    checkpoint.save(tmp_path / "a.npz", ckpt)
    checkpoint.save(tmp_path / "b.npz", ckpt)
    assert sha256(tmp_path / "a.npz") == sha256(tmp_path / "b.npz")
    back = checkpoint.load(tmp_path / "a.npz")
    assert back.classes == ckpt.classes and back.image_shape == (1, 2, 3) and back.input_dim == 6
    assert back.progress == ckpt.progress
    assert back.optim["t"].shape == ()
    for name, value in ckpt.params.items():
        np.testing.assert_array_equal(back.params[name], value)
    assert back.config.model.hidden == [4]


def test_a_checkpoint_rebuilds_a_classifier(ckpt, tmp_path):
    checkpoint.save(tmp_path / "a.npz", ckpt)
    clf = Classifier.from_checkpoint(tmp_path / "a.npz")
    images = np.arange(12, dtype=np.uint8).reshape(2, 1, 2, 3)
    features = images.reshape(2, -1).astype(np.float32) / 255
    expected = np.maximum(features @ ckpt.params["layer0.W"], 0) @ ckpt.params["layer1.W"]
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
    with zipfile.ZipFile(path, "a") as archive, archive.open("params/evil.npy", "w") as member:
        np.lib.format.write_array(member, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CheckpointError, match="object arrays"):
        checkpoint.load(path)


def test_not_an_mlpcli_checkpoint(tmp_path):
    np.savez(tmp_path / "plain.npz", x=np.zeros(3))
    with pytest.raises(CheckpointError, match="no 'meta' array"):
        checkpoint.load(tmp_path / "plain.npz")


def test_weights_that_do_not_fit_the_network(ckpt, tmp_path):
    ckpt.params["layer1.W"] = np.zeros((4, 5), np.float32)
    checkpoint.save(tmp_path / "a.npz", ckpt)
    with pytest.raises(CheckpointError, match=r"'layer1.W' is float32 \(4, 5\) in the checkpoint"):
        Classifier.from_checkpoint(tmp_path / "a.npz")


def test_missing_weights(ckpt, tmp_path):
    del ckpt.params["layer1.b"]
    checkpoint.save(tmp_path / "a.npz", ckpt)
    with pytest.raises(CheckpointError, match="no array 'layer1.b'"):
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
