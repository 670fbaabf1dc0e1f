import gzip
import struct

import numpy as np
import pytest
from PIL import Image

from mlpcli.data.sources import folder
from mlpcli.data.info import describe
from mlpcli.errors import DataError


def test_describes_a_folder_from_headers_without_decoding(tmp_path, monkeypatch):
    for i, (name, shape) in enumerate([("cat", (8, 6, 3)), ("cat", (8, 6, 3)), ("dog", (8, 6)), ("dog", (10, 4, 3))]):
        path = tmp_path / "train" / name / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros(shape, np.uint8)).save(path)
    (tmp_path / "test" / "cat").mkdir(parents=True)
    (tmp_path / "test" / "dog").mkdir()
    Image.fromarray(np.zeros((8, 6, 3), np.uint8)).save(tmp_path / "test" / "cat" / "a.jpg")
    (tmp_path / "test" / "dog" / "bad.png").write_bytes(b"nope")
    monkeypatch.setattr(folder, "read_image", None)  # describing must not decode pixels
    info = describe(tmp_path)
    assert info["format"] == "folder" and info["sources"] == ["folder"]
    assert info["classes"] == ["cat", "dog"]
    assert info["splits"] == {"train": {"images": 4, "per_class": {"cat": 2, "dog": 2}},
                              "test": {"images": 2, "per_class": {"cat": 1, "dog": 1}}}
    assert info["sizes"] == {"8x6": 4, "10x4": 1}
    assert info["modes"] == {"RGB": 4, "L": 1}
    assert len(info["unreadable"]) == 1 and "bad.png" in info["unreadable"][0]


def test_describes_array_formats(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, X=np.zeros((5, 4, 3), np.uint8), y=np.array([0, 1, 1, 2, 2]))
    info = describe(path)
    assert info["format"] == "npz"
    assert info["splits"] == {"train": {"images": 5, "per_class": {"0": 1, "1": 2, "2": 2}}}
    assert info["sizes"] == {"4x3": 5} and info["modes"] == {"L": 5}


def test_detects_idx_files(tmp_path):
    images, labels = np.zeros((3, 2, 2), np.uint8), np.array([0, 1, 1], np.uint8)
    for name, array in [("train-images-idx3-ubyte.gz", images), ("train-labels-idx1-ubyte.gz", labels)]:
        header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
        (tmp_path / name).write_bytes(gzip.compress(header + array.tobytes()))
    info = describe(tmp_path)
    assert info["format"] == "idx" and info["sources"] == ["mnist", "fashion-mnist"]
    assert info["splits"]["train"]["per_class"]["1"] == 2


def test_missing_or_unknown_paths(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        describe(tmp_path / "nothing")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="not a .npz"):
        describe(tmp_path / "notes.txt")


def test_every_source_module_is_registered_and_each_format_is_detected(tmp_path):
    import pkgutil

    from mlpcli.data import SOURCES, sources

    modules = {module.name for module in pkgutil.iter_modules(sources.__path__)}
    assert modules == {"builtin", "cifar", "folder", "idx", "npz"}
    assert sorted(SOURCES) == ["cifar10", "cifar100", "faces", "fashion-mnist", "folder", "mnist", "npz", "shapes"]
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "plain").mkdir()
    (tmp_path / "d.npz").write_bytes(b"")
    from mlpcli.data import detect
    assert [detect(p) for p in (tmp_path, tmp_path / "plain", tmp_path / "d.npz")] == ["cifar10", "folder", "npz"]
