"""Arrays handed to the Python API: images in every accepted form give the same uint8 images, and anything
else is refused with a message that says what to pass instead."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mlpcli.arrays import InputError, as_images, as_labels, as_rows, to_uint8
from mlpcli.errors import MlpError

images_strategy = st.tuples(st.integers(1, 4), st.integers(1, 9), st.integers(1, 9), st.sampled_from([1, 3])).flatmap(
    lambda shape: arrays(np.uint8, shape))


@settings(max_examples=60, deadline=None)
@given(images_strategy, st.integers(0, 2))
def test_images_rows_and_scaled_values_are_the_same_images(images, wildcard):
    n, height, width, channels = images.shape
    assert as_images(images, None, None, "T") is images
    shape = [height, width, channels]
    shape[wildcard] = -1
    assert np.array_equal(as_images(images.reshape(n, -1), tuple(shape), None, "T"), images)
    assert np.array_equal(as_images(images / 255, None, None, "T"), images)                  # floats: white 1.0
    assert np.array_equal(as_images(images.astype(np.float32) / 255, None, None, "T"), images)
    assert np.array_equal(as_images(images.astype(np.int64) * 4, None, 1020, "T"), images)   # white 1020
    assert np.array_equal(as_images(images.astype(np.float64), None, 255, "T"), images)
    if channels == 1:
        assert np.array_equal(as_images(images.reshape(n, -1), (height, width), None, "T"), images)
        if width != 3:
            assert np.array_equal(as_images(images[..., 0], None, None, "T"), images)        # gray (N, H, W)
        else:                                                    # ... unless it looks like one RGB image
            with pytest.raises(InputError, match="is it one RGB image"):
                as_images(images[..., 0], None, None, "T")


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(1, 6)),
              elements=st.floats(-1e6, 1e6, allow_nan=False)), st.floats(1e-3, 1e6))
def test_pixel_values_outside_black_to_white_are_refused(values, white):
    inside = (values >= 0).all() and (values <= white).all()
    if inside:
        converted = to_uint8(values, white)
        assert converted.dtype == np.uint8
        assert np.array_equal(converted, np.rint(values * (255 / white)))
        return
    with pytest.raises(InputError, match="Negative values in data" if (values < 0).any() else "above pixel_max"):
        to_uint8(values, white)


@pytest.mark.parametrize("X, image_shape, pixel_max, message", [
    (np.zeros((2, 12)), None, None, r"X is 2-D \(N, 12\): set image_shape=\(H, W, C\)"),
    (np.zeros((2, 12)), (5, -1), None, r"rows of 12 values cannot be images of image_shape=\(5, -1\)"),
    (np.zeros((2, 12)), (2, 2, 2), None, r"image_shape: \(2, 2, 2\) is not \(H, W\) or \(H, W, C\) with C = 1 or 3"),
    (np.zeros((2, 12)), (-1, -1), None, r"image_shape: \(-1, -1\) is not"),
    (np.zeros((2, 12)), "4x3", None, r"image_shape: '4x3' is not"),
    (np.zeros((4, 4, 3)), None, None, r"X has shape \(4, 4, 3\): is it one RGB image\? Pass images as \(N, H, W, C\)"),
    (np.zeros((2, 4, 4, 2)), None, None, r"images have 2 channels .* transpose \(N, C, H, W\) arrays"),
    (np.zeros((2, 4, 4, 3)), (4, 5, 3), None, r"images have shape \(4, 4, 3\) but image_shape is \(4, 5, 3\)"),
    (np.zeros((2, 3, 4, 4, 3)), None, None, r"X has shape \(2, 3, 4, 4, 3\); T takes images"),
    (np.zeros(5), None, None, r"Expected 2D array, got 1D array instead"),
    (np.zeros((0, 4, 4, 3)), None, None, r"Found array with 0 sample\(s\)"),
    (np.full((1, 2, 2, 1), np.nan), None, None, r"Input X contains NaN or infinity \(at \(0, 0, 0, 0\)\)"),
    (np.full((1, 2, 2, 1), 2.0), None, None, r"X holds pixel values up to 2.0, above pixel_max=1.0 \(white\); pass "
                                             r"pixel_max=255 for floats on a 0-255 scale"),
    (np.full((1, 2, 2, 1), 300), None, None, r"above pixel_max=255 \(white\); set pixel_max"),
    (np.ones((1, 2, 2, 1)), None, 0, r"pixel_max: 0 is not a positive number"),
    (np.ones((1, 2, 2, 1)) * 1j, None, None, r"Complex data not supported"),
    (np.array([[["a"]]]), None, None, r"X has dtype <U1; give numbers"),
    ([[1, 2], [3]], (1, -1), None, r"X cannot be read as an array of numbers"),
])
def test_images_that_cannot_be_read_are_refused_with_the_fix(X, image_shape, pixel_max, message):
    with pytest.raises(InputError, match=message):
        as_images(X, image_shape, pixel_max, "T")


def test_input_errors_are_what_scikit_learn_and_mlp_expect():
    assert issubclass(InputError, MlpError) and issubclass(InputError, ValueError) and issubclass(InputError, TypeError)
    objects = np.array([[1.0, {"a": 1}]], dtype=object)
    with pytest.raises(TypeError, match="argument must be a string or a real number"):
        as_rows(objects, "T")
    assert as_rows(np.array([[1.0, 2]], dtype=object), "T").dtype == np.float64
    with pytest.raises(InputError, match=r"T takes feature rows \(N, D\), but X has shape \(2, 3, 4\); for images, "
                                         r"put a feature transformer first"):
        as_rows(np.zeros((2, 3, 4)), "T")
    with pytest.raises(InputError, match=r"Found array with 0 feature\(s\) \(shape=\(3, 0\)\)"):
        as_rows(np.zeros((3, 0)), "T")


@pytest.mark.parametrize("y, message", [
    (None, "T requires y to be passed, but the target y is None"),
    ([0.5, 1.0], r"Unknown label type: continuous values in y \(such as 0.5\)"),
    ([np.nan, 1.0], "Input y contains NaN or infinity"),
    ([[0, 1], [1, 0]], r"y should be a 1d array, got an array of shape \(2, 2\)"),
    ([1, 2, 3], "X has 2 rows but y has 3 labels"),
    (np.array([1, "a"], dtype=object), "y mixes labels of types that cannot be ordered"),
])
def test_labels_that_cannot_be_classes_are_refused(y, message):
    with pytest.raises(InputError, match=message):
        as_labels(y, 2, "T")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-3, 3).map(float), min_size=1, max_size=6))
def test_float_objects_are_labels_as_floats_are(labels):
    def outcome(y):
        try:
            return as_labels(y, len(labels), "T").tolist()
        except InputError as err:
            return str(err)

    assert outcome(np.array(labels, dtype=object)) == outcome(np.array(labels, dtype=np.float64))


def test_labels_may_be_integers_strings_or_whole_floats_and_a_column_is_raveled():
    assert as_labels(["cat", "dog"], 2, "T").tolist() == ["cat", "dog"]
    assert as_labels([1.0, 2.0], 2, "T").tolist() == [1.0, 2.0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert as_labels([[3], [4]], 2, "T").tolist() == [3, 4]
    messages = [str(w.message).split(".")[0] for w in caught]
    assert messages == ["A column-vector y was passed when a 1d array was expected"]
