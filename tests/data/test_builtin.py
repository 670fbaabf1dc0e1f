from __future__ import annotations

import numpy as np
import pytest

from mlpcli.config import load_config
from mlpcli.data import load_splits
from mlpcli.data.sources.builtin import SHAPE_NAMES, load_faces, load_shapes, render_shapes


def test_shapes_are_seeded_balanced_colored_images():
    cfg = load_config(None, ["data.shapes.classes=5", "data.shapes.per_class=12", "data.shapes.size=20"])
    a, b = load_shapes(cfg.data, None)["train"], load_shapes(cfg.data, None)["train"]
    assert a.images.shape == (60, 20, 20, 3) and a.images.dtype == np.uint8
    np.testing.assert_array_equal(a.images, b.images)
    assert np.bincount(a.labels).tolist() == [12] * 5
    assert a.classes == SHAPE_NAMES[:5]
    other = load_shapes(load_config(None, ["data.shapes.seed=1", "data.shapes.classes=5",
                                            "data.shapes.per_class=12", "data.shapes.size=20"]).data, None)["train"]
    assert not np.array_equal(a.images, other.images)


def test_each_shape_covers_a_plausible_area():
    labels = np.repeat(np.arange(len(SHAPE_NAMES)), 20)
    images = render_shapes(labels, 32, 0.0, np.random.default_rng(0).spawn(len(labels)))
    background = images[:, :1, :1, :]                         # a corner pixel is background
    covered = np.any(images != background, axis=-1).mean(axis=(1, 2))
    for label, name in enumerate(SHAPE_NAMES):
        area = covered[labels == label].mean()
        assert 0.03 < area < 0.6, (name, area)
    ring, circle = covered[labels == 4].mean(), covered[labels == 0].mean()
    assert ring < circle                                       # the ring has a hole


def test_faces_are_the_lfw_subset():
    faces = load_faces(load_config().data, None)["train"]
    assert faces.images.shape == (200, 25, 25, 1)
    assert faces.classes == ["face", "non-face"]
    assert np.bincount(faces.labels).tolist() == [100, 100]


def test_builtin_images_follow_data_size_and_mode():
    cfg = load_config(None, ["data.size=[20, 24]", "data.mode=rgb"])
    assert load_faces(cfg.data, None)["train"].images.shape == (200, 20, 24, 3)
    cfg = load_config(None, ["data.mode=gray", "data.shapes.per_class=3"])
    assert load_shapes(cfg.data, None)["train"].images.shape == (12, 32, 32, 1)


def test_splits_are_stratified_disjoint_and_reproducible():
    cfg = load_config(None, ["data.shapes.per_class=40", "data.val_fraction=0.25"])
    splits, again = load_splits(cfg), load_splits(cfg)
    train, val = splits["train"], splits["val"]
    assert len(train) == 120 and len(val) == 40
    assert np.bincount(val.labels).tolist() == [10] * 4
    np.testing.assert_array_equal(val.images, again["val"].images)
    rows = {row.tobytes() for row in train.images}
    assert not any(row.tobytes() in rows for row in val.images)


def test_limit_takes_a_stratified_sample():
    cfg = load_config(None, ["data.limit=40", "data.val_fraction=0.5"])
    splits = load_splits(cfg)
    assert len(splits["train"]) + len(splits["val"]) == 40
    assert np.bincount(splits["val"].labels).tolist() == [5] * 4


def test_a_single_class_is_refused(monkeypatch):
    from mlpcli import data
    from mlpcli.data.source import Source
    from mlpcli.errors import DataError

    def one_class(data_cfg, cache_dir):
        shapes = load_shapes(data_cfg, None)["train"]
        return {"train": shapes.subset(np.flatnonzero(shapes.labels == 0))}

    monkeypatch.setitem(data.SOURCES, "one_class", Source("one_class", one_class, reads_path=False))
    cfg = load_config()
    cfg.data.source = "one_class"
    with pytest.raises(DataError, match="fewer than 2 classes"):
        load_splits(cfg)
