import gzip
import struct

import numpy as np
import pytest

from mlpcli.config import DataConfig
from mlpcli.data.sources import idx
from mlpcli.errors import DataError


def idx_bytes(array):
    """`array` (uint8) in IDX format: zero, zero, type 0x08, ndim, big-endian dims, values."""
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write(path, array, gz):
    data = idx_bytes(array)
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def make_idx(root, gz, n_train=6, n_test=4):
    rng = np.random.default_rng(0)
    arrays = {"train": (rng.integers(0, 256, (n_train, 5, 4), dtype=np.uint8), np.arange(n_train, dtype=np.uint8) % 10),
              "t10k": (rng.integers(0, 256, (n_test, 5, 4), dtype=np.uint8), np.arange(n_test, dtype=np.uint8)[::-1])}
    for prefix, (images, labels) in arrays.items():
        write(root / f"{prefix}-images-idx3-ubyte", images, gz)
        write(root / f"{prefix}-labels-idx1-ubyte", labels, gz)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_reads_raw_and_gzipped_idx(tmp_path, gz):
    arrays = make_idx(tmp_path, gz)
    data = idx.load_mnist(DataConfig(source="mnist", path=str(tmp_path)), None)
    assert data["train"].classes == [str(d) for d in range(10)]
    np.testing.assert_array_equal(data["train"].images[..., 0], arrays["train"][0])
    np.testing.assert_array_equal(data["train"].labels, arrays["train"][1])
    np.testing.assert_array_equal(data["test"].images[..., 0], arrays["t10k"][0])
    assert data["test"].images.shape == (4, 5, 4, 1)


def test_fashion_mnist_names_and_optional_test_split(tmp_path):
    make_idx(tmp_path, gz=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / name).unlink()
    data = idx.load_fashion_mnist(DataConfig(source="fashion-mnist", path=str(tmp_path), mode="rgb"), None)
    assert list(data) == ["train"]
    assert data["train"].classes[0] == "T-shirt/top" and data["train"].classes[9] == "Ankle boot"
    assert data["train"].images.shape == (6, 5, 4, 3)


def test_header_checks_name_the_file(tmp_path):
    image = np.zeros((2, 3, 3), np.uint8)
    path = tmp_path / "f"
    cases = [(b"\x01" + idx_bytes(image)[1:], "bad magic number"),
             (idx_bytes(image)[:2] + b"\x0d" + idx_bytes(image)[3:], "IDX type 0x0d"),
             (idx_bytes(image)[:-1], "has 33 bytes but its header .* needs 34"),
             (idx_bytes(image)[:10], "header is incomplete")]
    for content, message in cases:
        path.write_bytes(content)
        with pytest.raises(DataError, match=message) as err:
            idx.read_idx(path, ndim=3)
        assert str(path) in str(err.value)
    path.write_bytes(idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(DataError, match="has 1 dimensions, expected 3"):
        idx.read_idx(path, ndim=3)
    (tmp_path / "g.gz").write_bytes(gzip.compress(idx_bytes(image))[:-8])
    with pytest.raises(DataError, match="cannot read .*g.gz"):
        idx.read_idx(tmp_path / "g.gz", ndim=3)


def test_label_out_of_range_and_count_mismatch(tmp_path):
    arrays = make_idx(tmp_path, gz=False)
    write(tmp_path / "train-labels-idx1-ubyte", np.array([0, 1, 2, 3, 4, 12], np.uint8), gz=False)
    with pytest.raises(DataError, match="train-labels-idx1-ubyte: label 12 is out of range for 10 classes"):
        idx.load_mnist(DataConfig(source="mnist", path=str(tmp_path)), None)
    write(tmp_path / "train-labels-idx1-ubyte", arrays["train"][1][:5], gz=False)
    with pytest.raises(DataError, match="holds 6 images but .* holds 5 labels"):
        idx.load_mnist(DataConfig(source="mnist", path=str(tmp_path)), None)


def test_missing_file_is_named(tmp_path):
    make_idx(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="missing file .*t10k-labels-idx1-ubyte"):
        idx.load_mnist(DataConfig(source="mnist", path=str(tmp_path)), None)


def test_a_lying_header_is_refused_before_anything_is_read(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 65536, 2**24, 2**24))    # 2^64 bytes: 0 in int64
    with pytest.raises(DataError, match=r"announces 18,446,744,073,709,551,616 bytes, more than this machine"):
        idx.read_idx(path, ndim=3)


def test_a_gzip_bomb_is_inflated_no_further_than_its_header_says(tmp_path):
    image = np.zeros((2, 3, 3), np.uint8)
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(idx_bytes(image) + bytes(50 << 20)))                 # 50 MiB more, in 50 KiB
    with pytest.raises(DataError, match=r"has 35 or more bytes but its header \(2, 3, 3\) needs 34"):
        idx.read_idx(path, ndim=3)
