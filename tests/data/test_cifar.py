import io
import os
import pickle
import struct

import numpy as np
import pytest

from mlpcli.config import DataConfig
from mlpcli.data.sources import cifar
from mlpcli.errors import DataError


class Py2Pickler(pickle._Pickler):
    """Writes every str and bytes as a Python 2 `str` (BINSTRING), as cPickle did for the official files."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str


def dump(path, obj):
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    path.write_bytes(buffer.getvalue())


def batch(rng, n, classes, label_key="labels"):
    """A batch dict and its images (n, 32, 32, 3): rows are the R plane, then G, then B, as in CIFAR."""
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = [i % classes for i in range(n)]
    rows = images.transpose(0, 3, 1, 2).reshape(n, 3072)
    return {"batch_label": "tiny", label_key: labels, "data": rows, "filenames": [f"{i}.png" for i in range(n)]}, images


def make_cifar10(folder, n=4):
    """A tiny cifar-10-batches-py folder; returns (train images, test images)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    names = ["airplane", "automobile", "bird"]
    dump(folder / "batches.meta", {"label_names": names, "num_cases_per_batch": n, "num_vis": 3072})
    train = []
    for i in range(1, 6):
        content, images = batch(rng, n, len(names))
        dump(folder / f"data_batch_{i}", content)
        train.append(images)
    content, test = batch(rng, n, len(names))
    dump(folder / "test_batch", content)
    return np.concatenate(train), test


def test_cifar10_reads_official_layout(tmp_path):
    train, test = make_cifar10(tmp_path / "cifar10" / "cifar-10-batches-py")
    for path in (tmp_path / "cifar10", tmp_path / "cifar10" / "cifar-10-batches-py"):
        data = cifar.load_cifar10(DataConfig(source="cifar10", path=str(path)), None)
        assert data["train"].classes == ["airplane", "automobile", "bird"]
        np.testing.assert_array_equal(data["train"].images, train)
        np.testing.assert_array_equal(data["test"].images, test)
        np.testing.assert_array_equal(data["train"].labels, np.tile([0, 1, 2, 0], 5))
        assert data["train"].labels.dtype == np.int64


def test_cifar10_applies_size_and_mode(tmp_path):
    make_cifar10(tmp_path)
    data = cifar.load_cifar10(DataConfig(source="cifar10", path=str(tmp_path), size=[16, 16], mode="gray"), None)
    assert data["train"].images.shape == (20, 16, 16, 1)


def test_cifar100_uses_fine_labels(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    fine = [f"class{i}" for i in range(5)]
    dump(folder / "meta", {"fine_label_names": fine, "coarse_label_names": ["x", "y"]})
    content, images = batch(rng, 6, 5, label_key="fine_labels")
    dump(folder / "train", {**content, "coarse_labels": [0] * 6})
    content, _ = batch(rng, 3, 3, label_key="fine_labels")
    dump(folder / "test", content)
    data = cifar.load_cifar100(DataConfig(source="cifar100", path=str(tmp_path)), None)
    assert data["train"].classes == fine
    np.testing.assert_array_equal(data["train"].labels, [0, 1, 2, 3, 4, 0])
    np.testing.assert_array_equal(data["train"].images, images)
    assert len(data["test"]) == 3


class Boom:
    def __reduce__(self):
        return os.system, ("echo owned > owned.txt",)


def test_a_pickle_naming_any_other_global_is_refused_before_it_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_cifar10(tmp_path / "data")
    dump(tmp_path / "data" / "data_batch_2", {"data": Boom()})
    with pytest.raises(DataError, match=r"data_batch_2 is not a CIFAR.*refusing to load global posix.system"):
        cifar.load_cifar10(DataConfig(source="cifar10", path=str(tmp_path / "data")), None)
    assert not (tmp_path / "owned.txt").exists()


def test_the_official_numpy_names_are_the_only_globals_allowed():
    unpickler = cifar.SafeUnpickler(io.BytesIO(b""))
    assert unpickler.find_class("numpy.core.multiarray", "_reconstruct") is cifar._reconstruct
    for module, name in [("numpy", "load"), ("builtins", "eval"), ("numpy.core.multiarray", "scalar")]:
        with pytest.raises(pickle.UnpicklingError):
            unpickler.find_class(module, name)


def test_bad_batches_name_the_file(tmp_path):
    make_cifar10(tmp_path)
    rng = np.random.default_rng(2)
    content, _ = batch(rng, 4, 3)
    dump(tmp_path / "data_batch_3", {**content, "labels": [0, 1, 7, 2]})
    with pytest.raises(DataError, match="data_batch_3: label 7 is out of range for 3 classes"):
        cifar.load_cifar10(DataConfig(source="cifar10", path=str(tmp_path)), None)
    dump(tmp_path / "data_batch_3", {**content, "data": content["data"][:, :100]})
    with pytest.raises(DataError, match=r"data_batch_3: 'data' must be a uint8 array of shape \(N, 3072\)"):
        cifar.load_cifar10(DataConfig(source="cifar10", path=str(tmp_path)), None)
    (tmp_path / "data_batch_3").write_bytes(b"\x80\x02}q\x00(U")  # cut off mid-pickle
    with pytest.raises(DataError, match="data_batch_3 is not a CIFAR"):
        cifar.load_cifar10(DataConfig(source="cifar10", path=str(tmp_path)), None)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(DataError, match="missing file .*data_batch_3"):
        cifar.load_cifar10(DataConfig(source="cifar10", path=str(tmp_path)), None)


def test_missing_folder_suggests_download(tmp_path):
    with pytest.raises(DataError, match="mlp data download cifar10"):
        cifar.load_cifar10(DataConfig(source="cifar10", path=str(tmp_path / "absent")), None)


def test_a_config_for_image_folders_on_the_downloaded_batches_names_the_source_that_reads_them(tmp_path):
    from mlpcli.config import load_config
    from mlpcli.data import load_splits

    make_cifar10(tmp_path / "cifar10" / "cifar-10-batches-py")   # as `mlp data download cifar10` leaves it
    with pytest.raises(DataError, match=r"class folder.* \(.*cifar10 holds cifar10 data, which data.source "
                                        r"cifar10 reads\)$"):
        load_splits(load_config(None, ["data.source=folder", f"data.path={tmp_path / 'cifar10'}"]))
    assert len(load_splits(load_config(None, ["data.source=cifar10", f"data.path={tmp_path / 'cifar10'}"]))["train"])


def test_a_folder_of_images_under_the_cifar10_source_names_the_folder_source(tmp_path):
    from mlpcli.config import load_config
    from mlpcli.data import load_splits

    (tmp_path / "cat").mkdir()
    with pytest.raises(DataError, match=r"batches.meta.* \(.* holds folder data, which data.source folder reads\)$"):
        load_splits(load_config(None, ["data.source=cifar10", f"data.path={tmp_path}"]))
