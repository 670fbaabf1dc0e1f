import numpy as np
import pytest

from mlpcli.config import DataConfig
from mlpcli.data.sources import npz
from mlpcli.errors import DataError


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, (6, 5, 4, 3), dtype=np.uint8)


def load(path, **options):
    return npz.load(DataConfig(source="npz", path=str(path), **options), None)


def test_reads_arrays_classes_and_test_split(tmp_path, images):
    path = tmp_path / "d.npz"
    np.savez(path, X=images, y=np.array([0, 1, 2, 0, 1, 2]), classes=np.array(["a", "b", "c"]),
             X_test=images[:2, :, :, 0], y_test=np.array([2, 1]))
    data = load(path)
    np.testing.assert_array_equal(data["train"].images, images)
    assert data["train"].classes == ["a", "b", "c"]
    assert data["test"].images.shape == (2, 5, 4, 1)
    np.testing.assert_array_equal(data["test"].labels, [2, 1])


def test_default_class_names_and_float_pixels(tmp_path, images):
    path = tmp_path / "d.npz"
    np.savez(path, X=images.astype(np.float32) / 255, y=np.array([0, 3, 0, 3, 1, 1]))
    train = load(path)["train"]
    assert train.classes == ["0", "1", "2", "3"]
    np.testing.assert_array_equal(train.images, images)


def test_conversions_apply(tmp_path, images):
    path = tmp_path / "d.npz"
    np.savez(path, X=images, y=np.array([0, 1] * 3))
    assert load(path, size=[3, 3], mode="gray")["train"].images.shape == (6, 3, 3, 1)


LABELS = np.array([0, 1, 0, 1, 0, 1])


@pytest.mark.parametrize("arrays, message", [
    (lambda im: {"y": LABELS}, "has no array 'X'"),
    (lambda im: {"X": im[..., :2], "y": LABELS}, "expected \\(N, H, W\\)"),
    (lambda im: {"X": im * 2.0, "y": LABELS}, "float 'X' must lie in \\[0, 1\\]"),
    (lambda im: {"X": im.astype(np.int16), "y": LABELS}, "dtype int16"),
    (lambda im: {"X": im, "y": LABELS * 5, "classes": np.array(["a", "b"])}, "label 5 is out of range"),
    (lambda im: {"X": im, "y": LABELS * 0}, "only class '0'"),
    (lambda im: {"X": im, "y": LABELS, "X_test": im}, "'X_test' and 'y_test' go together"),
    (lambda im: {"X": im, "y": LABELS, "classes": np.array([1, 2])}, "'classes' must be .* strings"),
    (lambda im: {"X": im, "y": LABELS, "classes": np.array([b"\xff\xfe", b"c"])}, "not UTF-8 text"),
    (lambda im: {"X": im, "y": LABELS * 2**40}, "label 1099511627776 would make 1,099,511,627,777 classes"),
])
def test_bad_arrays_are_explained(tmp_path, images, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays(images))
    with pytest.raises(DataError, match=message) as err:
        load(path)
    assert "bad.npz" in str(err.value)


def test_object_arrays_are_refused_without_unpickling(tmp_path, images):
    path = tmp_path / "obj.npz"
    np.savez(path, X=images, y=np.array([0, 1, 0, 1, 0, 1]), classes=np.array(["a", 1], dtype=object))
    with pytest.raises(DataError, match="object array, which needs pickle"):
        load(path)


def test_not_an_npz(tmp_path):
    path = tmp_path / "fake.npz"
    path.write_bytes(b"plain text")
    with pytest.raises(DataError, match="cannot read .*fake.npz"):
        load(path)


@pytest.mark.parametrize("classes, message", [
    (["a", "a"], r"\['a', 'a'\] names a class twice"),
    (["a", "b\nc"], r"holds 'b\\nc'; a class name is printable text"),
    (["a", ""], r"holds ''; a class name is printable text"),
    (["a", "b" * 256], r"holds 'bbb.*'; a class name is printable text of 1 to 255 characters"),
])
def test_class_names_a_checkpoint_cannot_carry_are_refused_before_training(tmp_path, images, classes, message):
    from mlpcli.config import load_config
    from mlpcli.data import load_splits

    path = tmp_path / "named.npz"
    np.savez(path, X=images, y=LABELS, classes=np.array(classes))
    with pytest.raises(DataError, match=f"named.npz: its list of classes {message}"):
        load_splits(load_config(None, ["data.source=npz", f"data.path={path}", "data.val_fraction=0.34"]))
