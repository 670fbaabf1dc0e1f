import numpy as np
import pytest
from PIL import Image

from mlpcli.data.convert import conform, luma, read_image, to_dataset
from mlpcli.errors import DataError


@pytest.fixture
def rgb():
    return np.random.default_rng(0).integers(0, 256, (3, 9, 7, 3), dtype=np.uint8)


def test_luma_matches_pil_gray_conversion_exactly(rgb):
    expected = np.stack([np.asarray(Image.fromarray(image).convert("L")) for image in rgb])[..., None]
    np.testing.assert_array_equal(luma(rgb), expected)


def test_conform_resizes_each_image_like_pil(rgb):
    out = conform(rgb, [4, 5], None)
    assert out.shape == (3, 4, 5, 3) and out.dtype == np.uint8
    expected = np.asarray(Image.fromarray(rgb[1]).resize((5, 4), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(out[1], expected)


def test_conform_converts_modes_both_ways(rgb):
    gray = conform(rgb, None, "gray")
    assert gray.shape == (3, 9, 7, 1)
    back = conform(gray, None, "rgb")
    assert back.shape == (3, 9, 7, 3)
    np.testing.assert_array_equal(back[..., 2], gray[..., 0])
    assert conform(rgb, [9, 7], "rgb") is rgb


def test_read_image_round_trips_png_and_converts(tmp_path, rgb):
    path = tmp_path / "a.png"
    Image.fromarray(rgb[0]).save(path)
    np.testing.assert_array_equal(read_image(path), rgb[0])
    gray = read_image(path, mode="gray")
    np.testing.assert_array_equal(gray, luma(rgb[:1])[0])
    assert read_image(path, size=[3, 2]).shape == (3, 2, 3)


def test_read_image_keeps_gray_files_single_channel(tmp_path, rgb):
    path = tmp_path / "g.png"
    Image.fromarray(rgb[0, :, :, 0]).save(path)
    assert read_image(path).shape == (9, 7, 1)
    assert read_image(path, mode="rgb").shape == (9, 7, 3)


def test_read_image_names_the_file_it_cannot_read(tmp_path, rgb):
    jpeg = tmp_path / "cut.jpg"
    Image.fromarray(np.repeat(np.repeat(rgb[0], 8, 0), 8, 1)).save(jpeg, quality=90)
    jpeg.write_bytes(jpeg.read_bytes()[:len(jpeg.read_bytes()) // 2])  # the header survives, the pixels do not
    with pytest.raises(DataError, match=r"cut\.jpg: image file is truncated"):
        read_image(jpeg)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    for path in (junk, tmp_path / "missing.png"):
        with pytest.raises(DataError, match=path.name):
            read_image(path)


def test_to_dataset_checks_labels(rgb):
    classes = ["a", "b"]
    dataset = to_dataset(rgb, np.array([0, 1, 1], np.uint8), classes, "f.bin", [2, 2], "gray")
    assert dataset.images.shape == (3, 2, 2, 1) and dataset.labels.dtype == np.int64
    with pytest.raises(DataError, match=r"f\.bin: label 2 is out of range for 2 classes"):
        to_dataset(rgb, np.array([0, 1, 2]), classes, "f.bin", None, None)
    with pytest.raises(DataError, match="only class 'b'"):
        to_dataset(rgb, np.array([1, 1, 1]), classes, "f.bin", None, None)
    with pytest.raises(DataError, match="3 images but 2 labels"):
        to_dataset(rgb, np.array([0, 1]), classes, "f.bin", None, None)
