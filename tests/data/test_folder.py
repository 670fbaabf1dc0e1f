import os

import numpy as np
import pytest
from PIL import Image

from mlpcli.config import DataConfig
from mlpcli.data.sources import folder
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
    with pytest.raises(DataError, match=r"data/cifar10 does not exist; to get cifar10, `mlp data download cifar10 "
                                        r"--dir data` fetches .* data.source=cifar10 data.path=data/cifar10"):
        folder.load(cfg("data/cifar10"), None)
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
    with pytest.raises(DataError, match="junk.png.*data.on_error=skip"):      # met by the header sample
        folder.load(cfg(tmp_path), None)
    junk.unlink()
    train = folder.load(cfg(tmp_path), None)["train"]                         # a truncated file has a header
    with pytest.raises(DataError, match="cut.jpg: image file is truncated.*data.on_error=skip"):
        train.read()


def test_skip_reads_unreadable_images_as_zeros_and_names_them(tmp_path):
    pixels = make_folder(tmp_path, {"a": 3, "b": 3})
    junk, cut = corrupt(tmp_path)
    train = folder.load(cfg(tmp_path, on_error="skip"), None)["train"]
    images, problems = train.read()
    names = [os.path.basename(path) for path in train.reader.paths]
    assert sorted(problems) == [names.index("junk.png"), names.index("cut.jpg")]
    assert "junk.png" in problems[names.index("junk.png")]
    readable = [row for row in range(len(train)) if row not in problems]
    np.testing.assert_array_equal(images[readable], np.stack(pixels["a"] + pixels["b"]))
    assert not images[list(problems)].any()


@pytest.mark.parametrize("kind", ["fifo", "loop", "dangling"])
def test_files_that_are_not_readable_regular_files_are_unreadable_images(tmp_path, kind):
    make_folder(tmp_path, {"a": 2, "b": 2})
    odd = tmp_path / "a" / "odd.png"
    {"fifo": lambda: os.mkfifo(odd), "loop": lambda: odd.symlink_to(odd),
     "dangling": lambda: odd.symlink_to(tmp_path / "gone.png")}[kind]()
    train = folder.load(cfg(tmp_path, size=[8, 6], mode="rgb"), None)["train"]
    with pytest.raises(DataError, match="odd.png"):
        train.read()
    skipping = folder.load(cfg(tmp_path, size=[8, 6], mode="rgb", on_error="skip"), None)["train"]
    _, problems = skipping.read()
    assert len(problems) == 1 and "odd.png" in next(iter(problems.values()))


def test_file_names_that_are_not_utf8_are_read(tmp_path):
    make_folder(tmp_path, {"a": 2, "b": 2})
    name = os.fsdecode(b"caf\xe9.png")                       # latin-1, not valid UTF-8
    write(tmp_path / "a" / name, np.full((8, 6, 3), 9, np.uint8))
    train = folder.load(cfg(tmp_path), None)["train"]
    assert len(train) == 5 and len(train.key) == 32
    row = [os.path.basename(path) for path in train.reader.paths].index(name)
    np.testing.assert_array_equal(train.read(np.array([row]))[0][0], np.full((8, 6, 3), 9, np.uint8))


def test_only_the_images_asked_for_are_decoded(tmp_path, monkeypatch):
    make_folder(tmp_path, {"a": 10, "b": 10})
    decoded = []
    real = folder.read_image
    monkeypatch.setattr(folder, "read_image", lambda path, *args: decoded.append(path) or real(path, *args))
    train = folder.load(cfg(tmp_path, size=[8, 6], mode="rgb"), None)["train"]
    assert decoded == []
    train.subset(np.array([3, 15])).read()
    assert [os.path.basename(path) for path in decoded] == ["3.png", "5.png"]


def test_the_key_changes_with_the_files_and_the_conversion(tmp_path):
    make_folder(tmp_path, {"a": 2, "b": 2})
    key = folder.load(cfg(tmp_path), None)["train"].key
    assert folder.load(cfg(tmp_path), None)["train"].key == key
    assert folder.load(cfg(tmp_path, mode="gray"), None)["train"].key != key
    stat = os.stat(tmp_path / "b" / "1.png")
    os.utime(tmp_path / "b" / "1.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert folder.load(cfg(tmp_path), None)["train"].key != key


def test_a_subset_key_looks_at_its_own_files_alone(tmp_path):
    make_folder(tmp_path, {"a": 3, "b": 3})
    subset = lambda: folder.load(cfg(tmp_path), None)["train"].subset(np.array([0, 4]))    # a/0.png, b/1.png
    key = subset().key
    for name in ("a/1.png", "b/0.png"):                      # rewritten (size, time), not in the subset
        write(tmp_path / name, np.full((8, 6, 3), 1, np.uint8))
    assert subset().key == key
    write(tmp_path / "b" / "1.png", np.full((8, 6, 3), 1, np.uint8))
    assert subset().key != key


def test_the_default_size_and_mode_come_from_a_sample_of_headers_spread_over_the_files(tmp_path, monkeypatch):
    monkeypatch.setattr(folder, "HEADER_SAMPLE", 3)
    make_folder(tmp_path, {"a": 4, "b": 4}, shape=(8, 6))        # gray
    write(tmp_path / "a" / "1.png", np.zeros((20, 10, 3), np.uint8))   # color, another size, not in the sample
    train = folder.load(cfg(tmp_path), None)["train"]
    assert train.image_shape == (8, 6, 1)
