"""Arrays handed to the Python API, checked and converted: feature rows, class labels and images.

The messages follow scikit-learn's wording where its estimator checks expect it ("Input X contains NaN",
"X has 3 features, but MLPClassifier is expecting 4 features as input", "Reshape your data ..."), and
every error is an `InputError`: an MlpError that is also the ValueError (or TypeError) scikit-learn
expects from bad input.
"""

from __future__ import annotations

import warnings

import numpy as np

from mlpcli.errors import DataError


class InputError(DataError, ValueError, TypeError):
    """An array or a parameter value given to an estimator that it cannot use."""


def as_rows(X, owner: str, dtype: str | None = None, what: str = "X") -> np.ndarray:
    """Feature rows (N, D), N, D ≥ 1, as a finite real array (its dtype kept, an object array read as float64)
    whose values `dtype` (the model's float type) can hold, if given."""
    X = _real_array(X, what)
    if X.ndim == 1:
        raise InputError(f"Expected 2D array, got 1D array instead: {what} has shape {X.shape}. Reshape your data "
                         "either using array.reshape(-1, 1) if your data has a single feature or array.reshape(1, -1) "
                         "if it contains a single sample.")
    if X.ndim != 2:
        raise InputError(f"{owner} takes feature rows (N, D), but {what} has shape {X.shape}; for images, put a "
                         "feature transformer first, e.g. Pipeline([('hog', HOG()), ('mlp', MLPClassifier())])")
    _check_size(X.shape, what)
    _check_finite(X, what, dtype)
    return X


def as_labels(y, n: int | None, owner: str, what: str = "y") -> np.ndarray:
    """Class labels (N,) for N rows (any number if n is None): integers, strings, or floats with integer values
    (in a float array or as float objects in an object array, as scikit-learn's type_of_target reads them)."""
    if y is None:
        raise InputError(f"{owner} requires {what} to be passed, but the target {what} is None")
    if _is_sparse(y):
        raise InputError(f"{what} is a sparse matrix; sparse input is not supported: pass {what}.toarray().ravel()")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn(_column_warning(f"A column-vector {what} was passed when a 1d array was expected. Please change "
                                      f"the shape of {what} to (n_samples,), for example using ravel()."), stacklevel=3)
        y = y.ravel()
    if y.ndim != 1:
        raise InputError(f"{what} should be a 1d array, got an array of shape {y.shape} instead; give a 1d array of "
                         "class labels")
    if n is not None and len(y) != n:
        raise InputError(f"X has {n} rows but {what} has {len(y)} labels; give one label per row")
    if y.dtype.kind == "c":
        raise InputError(f"Complex data not supported in {what}")
    floats = _float_labels(y)
    if not np.isfinite(floats).all():
        raise InputError(f"Input {what} contains NaN or infinity; every row needs a class label")
    fractions = floats[floats != np.round(floats)]
    if len(fractions):
        raise InputError(f"Unknown label type: continuous values in {what} (such as {fractions[0].item()!r}); "
                         f"{owner} needs class labels: integers or strings")
    if y.dtype.kind == "O":
        try:
            np.unique(y)
        except TypeError:
            raise InputError(f"{what} mixes labels of types that cannot be ordered (such as numbers and strings); "
                             "use labels of one type") from None
    return y


def _float_labels(y: np.ndarray) -> np.ndarray:
    """The float labels of y (N,): all of a float array, the float objects of an object array (as float64)."""
    if y.dtype.kind == "f":
        return y
    if y.dtype.kind == "O":
        return np.array([label for label in y if isinstance(label, (float, np.floating))], np.float64)
    return np.empty(0)


def as_images(X, image_shape: tuple[int, ...] | None, pixel_max: float | None, owner: str,
              width: int | None = None) -> np.ndarray:
    """Images (N, H, W, C) uint8, C = 1 or 3, from images X (N, H, W, C) or gray (N, H, W), or from rows
    X (N, D) read as images of `image_shape` ((H, W) or (H, W, C), one of them may be -1), row-major as
    numpy's reshape reads them; rows must have `width` values if it is given. Pixel values run from 0 (black)
    to `pixel_max` (white; None: 255 for integers, 1.0 for floats) and are mapped linearly onto 0..255, rounded."""
    X = _real_array(X, "X")
    if X.ndim == 2 and width is not None and X.shape[1] != width:
        raise InputError(f"X has {X.shape[1]} features, but {owner} is expecting {width} features as input.")
    if X.ndim == 1:
        raise InputError(f"Expected 2D array, got 1D array instead: X has shape {X.shape}. Reshape your data "
                         "using X.reshape(1, -1) if it is a single image as a row, or pass images (N, H, W, C)")
    if X.ndim == 2:
        _check_size(X.shape, "X")
        X = X.reshape(len(X), *_row_shape(X.shape[1], image_shape, owner))
    elif X.ndim == 3 and X.shape[-1] == 3 and image_shape is None:
        raise InputError(f"X has shape {X.shape}: is it one RGB image? Pass images as (N, H, W, C) (X[None] for "
                         "one image), gray images as (N, H, W), or set image_shape")
    elif X.ndim not in (3, 4):
        raise InputError(f"X has shape {X.shape}; {owner} takes images (N, H, W, C) or (N, H, W), or rows (N, D) "
                         "with image_shape=(H, W, C)")
    images = X if X.ndim == 4 else X[..., None]
    _check_size((len(images), int(np.prod(images.shape[1:]))), "X")
    if images.shape[3] not in (1, 3):
        raise InputError(f"images have {images.shape[3]} channels (shape {images.shape}); {owner} takes gray (1) "
                         "or RGB (3) images, channels last: transpose (N, C, H, W) arrays with X.transpose(0, 2, 3, 1)")
    if image_shape is not None and X.ndim > 2:
        _row_shape(int(np.prod(images.shape[1:])), image_shape, owner, images.shape[1:])
    _check_finite(images, "X")
    return to_uint8(images, pixel_max)


def to_uint8(images: np.ndarray, pixel_max: float | None) -> np.ndarray:
    """`images` with values 0..pixel_max (None: 255 for integers and booleans, 1.0 for floats) as uint8 0..255."""
    integer = images.dtype.kind in "biu"
    top = pixel_max if pixel_max is not None else (255 if integer else 1.0)
    if isinstance(top, bool) or not isinstance(top, (int, float, np.number)) or not 0 < top < np.inf:
        raise InputError(f"pixel_max: {top!r} is not a positive number; give the value of a white pixel "
                         "(255 for 0-255 values, 1.0 for 0-1 values)")
    if images.dtype == np.uint8 and top == 255:
        return images
    low, high = images.min(), images.max()
    if low < 0:
        raise InputError(f"Negative values in data: X holds pixel values down to {low}; pixel values run from 0 "
                         f"(black) to pixel_max={top} (white)")
    if high > top:
        hint = "pass pixel_max=255 for floats on a 0-255 scale" if not integer and high <= 255 else \
               "set pixel_max to the value of a white pixel"
        raise InputError(f"X holds pixel values up to {high}, above pixel_max={top} (white); {hint}")
    if integer and top == 255:
        return images.astype(np.uint8)
    return np.rint(images * (255 / top)).astype(np.uint8)


def _row_shape(width: int, image_shape, owner: str, given: tuple[int, ...] | None = None) -> tuple[int, int, int]:
    """The (H, W, C) that `image_shape` (H, W[, C], one entry may be -1) gives rows of `width` values, or that
    it allows for images of shape `given`; InputError if it cannot."""
    if image_shape is None:
        raise InputError(f"X is 2-D (N, {width}): set image_shape=(H, W, C) to read each row as an image, or pass "
                         f"images (N, H, W, C) to {owner}")
    shape = _image_shape(image_shape)
    if len(shape) == 2:
        shape = (*shape, 1)
    if given is not None:
        if len(given) != 3 or any(want not in (-1, have) for want, have in zip(shape, given)):
            raise InputError(f"images have shape {tuple(given)} but image_shape is {tuple(image_shape)}")
        return tuple(given)
    known = int(np.prod([side for side in shape if side != -1]))
    if -1 in shape and width % known == 0 and width:
        shape = tuple(width // known if side == -1 else side for side in shape)
    if int(np.prod(shape)) != width:
        raise InputError(f"rows of {width} values cannot be images of image_shape={tuple(image_shape)}; "
                         "give the shape (H, W, C) the rows were flattened from")
    return shape


def _image_shape(image_shape) -> tuple[int, ...]:
    try:
        shape = tuple(int(side) for side in image_shape)
        valid = len(shape) in (2, 3) and all(side == -1 or side >= 1 for side in shape) and shape.count(-1) <= 1 \
            and shape == tuple(image_shape) and (len(shape) == 2 or shape[2] in (1, 3, -1))
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise InputError(f"image_shape: {image_shape!r} is not (H, W) or (H, W, C) with C = 1 or 3, one entry "
                         "possibly -1 (as in numpy's reshape), e.g. (32, 32, 3) or (28, 28)")
    return shape


def _real_array(X, what: str) -> np.ndarray:
    """X as a numpy array of numbers (an object array read as float64); InputError for sparse, complex,
    string or ragged input."""
    if _is_sparse(X):
        raise InputError(f"{what} is a sparse matrix; sparse input is not supported: pass {what}.toarray()")
    try:
        X = np.asarray(X)
        if X.dtype.kind == "O":
            X = X.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(f"{what} cannot be read as an array of numbers: {err}") from None
    if X.dtype.kind == "c":
        raise InputError(f"Complex data not supported: {what} has dtype {X.dtype}")
    if X.dtype.kind not in "biuf":
        raise InputError(f"{what} has dtype {X.dtype}; give numbers")
    return X


def _check_size(shape: tuple[int, int], what: str) -> None:
    """InputError unless `shape` (samples, features) has at least one of each."""
    for count, unit in zip(shape, ("sample", "feature")):
        if count == 0:
            raise InputError(f"Found array with 0 {unit}(s) (shape={shape}) while a minimum of 1 is required "
                             f"({what} is empty).")


def _check_finite(X: np.ndarray, what: str, dtype: str | None = None) -> None:
    """InputError if X holds NaN or infinity, or (with `dtype`) a value beyond what that float type holds."""
    if X.dtype.kind != "f":
        return
    if not np.isfinite(X).all():
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(X))[0])
        raise InputError(f"Input {what} contains NaN or infinity (at {where}); remove or impute those values")
    if dtype is None or np.finfo(dtype).max >= np.finfo(X.dtype).max:
        return
    top = np.finfo(dtype).max
    if X.max() > top or X.min() < -top:
        where = tuple(int(i) for i in np.argwhere(np.abs(X) > top)[0])
        raise InputError(f"Input {what} contains a value too large for dtype('{np.dtype(dtype)}') ({X[where]:g} at "
                         f"{where}): the model computes in {np.dtype(dtype)}, whose values reach ±{top:.3g}; rescale "
                         "the features or use dtype='float64'")


def _is_sparse(X) -> bool:
    return type(X).__module__.startswith("scipy.sparse")


def _column_warning(message: str) -> Warning:
    """scikit-learn's DataConversionWarning when it is installed, a UserWarning otherwise."""
    try:
        from sklearn.exceptions import DataConversionWarning
    except ImportError:
        return UserWarning(message)
    return DataConversionWarning(message)
