import os
import warnings

import numpy as np
import pytest
from PIL import Image

from mlpcli.config import DataConfig
from mlpcli.data import folder
from mlpcli.errors import DataError

RNG_SEED = 0


def write(path, pixels):
    """Save `pixels` (H, W) or (H, W, 3) uint8 losslessly (or as JPEG for .jpg) and return them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def make_folder(root, counts, shape=(8, 6, 3), seed=RNG_SEED):
    """root/<class>/<i>.png with random pixels; returns {class: [pixels, ...]} in file order."""
    rng = np.random.default_rng(seed)
    return {name: [write(root / name / f"{i}.png", rng.integers(0, 256, shape, dtype=np.uint8)) for i in range(n)]
            for name, n in counts.items()}


def cfg(root, **options):
    return DataConfig(source="folder", path=str(root), **options)


def test_loads_classes_labels_and_pixels_in_order(tmp_path):
    pixels = make_folder(tmp_path, {"dog": 2, "cat": 3})
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    data = folder.load(cfg(tmp_path), None)
    assert list(data) == ["train"]
    train = data["train"]
    assert train.classes == ["cat", "dog"]
    assert train.images.shape == (5, 8, 6, 3) and train.images.dtype == np.uint8
    np.testing.assert_array_equal(train.labels, [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(train.images, np.stack(pixels["cat"] + pixels["dog"]))


def test_extensions_are_case_insensitive(tmp_path):
    make_folder(tmp_path, {"a": 1, "b": 1}, shape=(4, 4))
    write(tmp_path / "a" / "UPPER.PNG", np.zeros((4, 4), np.uint8))
    write(tmp_path / "b" / "mixed.JpEg", np.zeros((4, 4), np.uint8))
    assert len(folder.load(cfg(tmp_path), None)["train"]) == 4


def test_mixed_sizes_and_modes_follow_the_policy(tmp_path):
    make_folder(tmp_path, {"a": 2, "b": 1}, shape=(8, 6))  # gray, most common size
    write(tmp_path / "b" / "big.png", np.full((20, 10, 3), 200, np.uint8))  # one color image, another size
    train = folder.load(cfg(tmp_path), None)["train"]
    assert train.images.shape == (4, 8, 6, 3)  # most common size; rgb because one image is color
    np.testing.assert_array_equal(train.images[3], np.full((8, 6, 3), 200, np.uint8))
    explicit = folder.load(cfg(tmp_path, size=[5, 4], mode="gray"), None)["train"]
    assert explicit.images.shape == (4, 5, 4, 1)


def test_all_gray_folder_loads_as_gray(tmp_path):
    pixels = make_folder(tmp_path, {"a": 2, "b": 2}, shape=(5, 5))
    train = folder.load(cfg(tmp_path), None)["train"]
    np.testing.assert_array_equal(train.images[..., 0], np.stack(pixels["a"] + pixels["b"]))


def test_train_and_test_subfolders(tmp_path):
    make_folder(tmp_path / "train", {"x": 3, "y": 2})
    make_folder(tmp_path / "test", {"x": 1, "y": 1}, seed=1)
    data = folder.load(cfg(tmp_path), None)
    assert {split: len(d) for split, d in data.items()} == {"train": 5, "test": 2}
    np.testing.assert_array_equal(data["test"].labels, [0, 1])
    write(tmp_path / "test" / "z" / "0.png", np.zeros((8, 6, 3), np.uint8))
    with pytest.raises(DataError, match="only in train: -; only in test: z"):
        folder.load(cfg(tmp_path), None)


def test_test_without_train_is_an_error(tmp_path):
    make_folder(tmp_path / "test", {"x": 1, "y": 1})
    with pytest.raises(DataError, match="test/ folder but no train/"):
        folder.load(cfg(tmp_path), None)


def test_empty_class_folder_and_single_class_are_errors(tmp_path):
    make_folder(tmp_path, {"a": 2, "b": 2})
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="class folder .*empty has no image files"):
        folder.load(cfg(tmp_path), None)
    make_folder(tmp_path / "one", {"only": 2})
    with pytest.raises(DataError, match="1 class folder.*only"):
        folder.load(cfg(tmp_path / "one"), None)


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        folder.load(cfg(tmp_path / "nowhere"), None)
    with pytest.raises(DataError, match="data.path is not set"):
        folder.load(DataConfig(source="folder"), None)


def corrupt(root):
    """Add an undecodable .png and a truncated JPEG to a valid folder; returns their paths."""
    junk = root / "a" / "junk.png"
    junk.write_bytes(b"\x89PNG but not really")
    cut = root / "b" / "cut.jpg"
    write(cut, np.random.default_rng(1).integers(0, 256, (64, 48, 3), dtype=np.uint8))
    cut.write_bytes(cut.read_bytes()[:len(cut.read_bytes()) // 2])
    return junk, cut


def test_unreadable_images_raise_naming_the_file(tmp_path):
    make_folder(tmp_path, {"a": 2, "b": 2})
    junk, cut = corrupt(tmp_path)
    with pytest.raises(DataError, match="junk.png.*data.on_error=skip"):
        folder.load(cfg(tmp_path), None)
    junk.unlink()
    with pytest.raises(DataError, match="cut.jpg: image file is truncated"):
        folder.load(cfg(tmp_path), None)


def test_skip_leaves_unreadable_images_out_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(folder, "CHUNK", 2)  # several pool tasks, so failures land in different chunks
    pixels = make_folder(tmp_path, {"a": 3, "b": 3})
    corrupt(tmp_path)
    with pytest.warns(UserWarning, match="skipped 2 unreadable image"):
        train = folder.load(cfg(tmp_path, on_error="skip"), None)["train"]
    np.testing.assert_array_equal(train.labels, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(train.images, np.stack(pixels["a"] + pixels["b"]))


def test_skipping_every_image_of_a_class_is_an_error(tmp_path):
    make_folder(tmp_path, {"a": 2, "b": 1})
    (tmp_path / "b" / "0.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="class 'b' of the train split has no readable image"):
        folder.load(cfg(tmp_path, on_error="skip", size=[8, 6], mode="rgb"), None)


def test_second_load_is_served_from_the_cache(tmp_path, monkeypatch):
    root, cache = tmp_path / "images", tmp_path / "cache"
    make_folder(root, {"a": 2, "b": 3})
    first = folder.load(cfg(root), cache)["train"]

    def no_decoding(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(folder, "decode", no_decoding)
    second = folder.load(cfg(root), cache)["train"]
    np.testing.assert_array_equal(second.images, first.images)
    np.testing.assert_array_equal(second.labels, first.labels)
    assert second.classes == first.classes
    entries = list((cache / "images").iterdir())
    assert len(entries) == 1 and not entries[0].name.startswith(".")  # no staging folder left behind
    assert sorted(p.name for p in entries[0].iterdir()) == ["skipped.npy", "train-images.npy", "train-labels.npy"]
    with pytest.raises(AssertionError, match="decoded again"):  # a different policy is a different entry
        folder.load(cfg(root, mode="gray"), cache)


def test_changed_file_invalidates_the_cache(tmp_path):
    root, cache = tmp_path / "images", tmp_path / "cache"
    make_folder(root, {"a": 2, "b": 2})
    folder.load(cfg(root), cache)
    changed = write(root / "b" / "1.png", np.full((8, 6, 3), 7, np.uint8))
    stat = os.stat(root / "b" / "1.png")
    os.utime(root / "b" / "1.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    reloaded = folder.load(cfg(root), cache)["train"]
    np.testing.assert_array_equal(reloaded.images[3], changed)
    assert len(list((cache / "images").iterdir())) == 2


def test_cached_skip_still_warns(tmp_path):
    root, cache = tmp_path / "images", tmp_path / "cache"
    make_folder(root, {"a": 2, "b": 2})
    corrupt(root)
    with pytest.warns(UserWarning, match="skipped 2"):
        folder.load(cfg(root, on_error="skip"), cache)
    with pytest.warns(UserWarning, match="skipped 2"):
        assert len(folder.load(cfg(root, on_error="skip"), cache)["train"]) == 4


def test_unwritable_cache_only_warns(tmp_path):
    make_folder(tmp_path / "images", {"a": 1, "b": 1})
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(folder.load(cfg(tmp_path / "images"), blocker)["train"]) == 2
    assert any("cannot write the image cache" in str(w.message) for w in caught)
