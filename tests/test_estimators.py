"""The scikit-learn estimators: scikit-learn's own estimator checks, the weights of `mlp train` from the same
seed, partial_fit, random_state, Pipelines and grid searches on images, parameter errors, and life without
scikit-learn."""

from __future__ import annotations

import pickle
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlpcli import checkpoint, experiment
from mlpcli.arrays import InputError
from mlpcli.config import load_config
from mlpcli.data import load_splits
from mlpcli.data.sources.builtin import render_shapes
from mlpcli.errors import MlpError, TrainingError
from mlpcli.estimator_base import NotFittedError
from mlpcli.estimators import BagOfWords, ColorHist, HOG, MLPClassifier, Pixels

sklearn = pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import FeatureUnion, Pipeline  # noqa: E402
from sklearn.utils.estimator_checks import check_methods_subset_invariance, parametrize_with_checks  # noqa: E402

# The checks feed 2-D float rows of 1 to 20 features with values up to about 30. The image transformers read
# each row as a strip of gray pixels one pixel high (image_shape=(1, -1, 1)), white at 100, with cells and
# patches of one pixel, so that every width makes an image they can take.
STRIP = {"image_shape": (1, -1, 1), "pixel_max": 100}
RGB_ONLY = ("ColorHist counts colors, so it reads 3 values per pixel (image_shape=(1, -1, 3)); the check's rows have "
            "1, 2, 4, 5 or 10 values, which make no RGB image, and fitting them fails with a message that says so")
FLOAT32_ROUNDING = ("in float32 (the default dtype, as in mlp train) a matrix product may round a row's scores "
                    "differently (~1e-7) in a batch of another size, and this check allows 1e-7; the float64 "
                    "instance passes it (test_scores_do_not_depend_on_the_batch_in_float64)")
EXPECTED_FAILURES = {
    "MLPClassifier": {"check_methods_subset_invariance": FLOAT32_ROUNDING},
    "ColorHist": {name: RGB_ONLY for name in [
        "check_estimators_dtypes", "check_dtype_object", "check_estimators_fit_returns_self",
        "check_estimators_overwrite_params", "check_readonly_memmap_input", "check_n_features_in_after_fitting",
        "check_positive_only_tag_during_fit", "check_fit2d_1sample", "check_fit2d_1feature", "check_fit_idempotent",
        "check_fit_check_is_fitted", "check_n_features_in"]},
}
CHECKED = [
    MLPClassifier(),
    MLPClassifier(dtype="float64", norm="batch", dropout=0.2, optimizer="adam", lr=0.01, hidden=(32, 16)),
    MLPClassifier(loss="hinge", activation="maxout", schedule="cosine", batch_size=64),
    Pixels(**STRIP),
    HOG(**STRIP, pixels_per_cell=1, cells_per_block=1),
    ColorHist(image_shape=(1, -1, 3), pixel_max=100),
    BagOfWords(**STRIP, patch=1, words=2, patches=10, pool=1, whiten=False),
]


def expected_failures(estimator) -> dict[str, str]:
    failures = EXPECTED_FAILURES.get(type(estimator).__name__, {})
    if isinstance(estimator, MLPClassifier) and estimator.dtype == "float64":
        return {}
    return failures


NOT_APPLICABLE = {"check_array_api_input": "mlp computes in NumPy and takes NumPy arrays (or what np.asarray "
                                            "takes); inputs of the array API standard (CuPy, torch tensors) are not "
                                            "supported, so scikit-learn's check for them does not apply"}


def applicable(checks: pytest.MarkDecorator) -> pytest.MarkDecorator:
    """parametrize_with_checks's parametrization without the checks in NOT_APPLICABLE (which would only
    report themselves skipped)."""
    def name(case) -> str:
        check = (case.values if hasattr(case, "values") else case)[1]
        return getattr(check, "func", check).__name__

    names, cases = checks.args
    return pytest.mark.parametrize(names, [case for case in cases if name(case) not in NOT_APPLICABLE], **checks.kwargs)


@applicable(parametrize_with_checks(CHECKED, expected_failed_checks=expected_failures))
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_scores_do_not_depend_on_the_batch_in_float64():
    check_methods_subset_invariance("MLPClassifier", MLPClassifier(dtype="float64", random_state=0))


@pytest.fixture
def shapes_run(tiny_config, tmp_path):
    """A run's config, its last checkpoint and its training split."""
    def train(*overrides: str):
        cfg = load_config(tiny_config, list(overrides))
        result = experiment.run(cfg, tmp_path / f"run{len(list(tmp_path.iterdir()))}")
        return cfg, checkpoint.load(result.run.last), load_splits(cfg)["train"]
    return train


@pytest.mark.parametrize("overrides, params", [
    ((), {}),
    (("model.norm=batch", "model.dropout=0.3", "model.input_dropout=0.1", "optim.name=adam", "optim.lr=0.01",
      "reg=0.01", "model.hidden=[16,8]", "optim.schedule=cosine", "train.batch_size=10"),
     {"norm": "batch", "dropout": 0.3, "input_dropout": 0.1, "optimizer": "adam", "lr": 0.01, "reg": 0.01,
      "hidden": (16, 8), "schedule": "cosine", "batch_size": 10}),
])
def test_random_state_s_learns_the_weights_of_a_run_with_seed_s(shapes_run, overrides, params):
    cfg, ckpt, train = shapes_run(*overrides)
    model = Pipeline([("pixels", Pixels()), ("mlp", MLPClassifier(
        **{"hidden": (16,), "lr": 0.05, "epochs": 4, "batch_size": 16, "random_state": cfg.seed, **params}))])
    model.fit(train.images, train.labels)
    network = model.named_steps["mlp"].network_
    for group in ("params", "buffers"):
        saved, learned = getattr(ckpt, group), getattr(network, group)
        assert saved.keys() == learned.keys()
        for name in saved:
            assert np.array_equal(saved[name], learned[name]), name
    assert np.array_equal(ckpt.features["normalize.mean"], model.named_steps["mlp"].mean_)


def test_bag_of_words_learns_the_codebook_of_a_run(shapes_run):
    options = {"patch": 4, "words": 8, "patches": 300, "pool": 1, "iterations": 5}
    cfg, ckpt, train = shapes_run("features.extractors=[{bow: {patch: 4, words: 8, patches: 300, pool: 1, "
                                  "iterations: 5}}]", "train.epochs=1")
    bow = BagOfWords(**options, random_state=cfg.seed).fit(train.images)
    assert np.array_equal(bow.extractor_.codebook, ckpt.features["extractor0.codebook"])
    assert np.array_equal(bow.extractor_.zca, ckpt.features["extractor0.zca"])


def shapes(n: int, seed: int = 0, size: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """n generated shape images (n, size, size, 3) uint8 of 4 classes, and their labels (n,)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    return render_shapes(labels, size, 0.05, rng.spawn(n)), labels


def test_a_pipeline_and_a_grid_search_over_image_features():
    images, labels = shapes(300, size=32)
    features = FeatureUnion([("hog", HOG()), ("color", ColorHist())])
    network = MLPClassifier(hidden=(32,), epochs=8, batch_size=32, random_state=0)
    search = GridSearchCV(Pipeline([("features", features), ("mlp", network)]),
                          {"mlp__lr": [0.001, 0.05], "features__hog__orientations": [6, 9]}, cv=2)
    search.fit(images[:200], labels[:200])
    assert search.best_params_["mlp__lr"] == 0.05            # 8 epochs at 0.001 barely move the weights
    assert search.score(images[200:], labels[200:]) > 0.55   # 4 classes: chance is 0.25
    assert search.best_estimator_.predict_proba(images[200:]).shape == (100, 4)


def test_partial_fit_epochs_continue_as_fit_does():
    X, y = np.random.default_rng(1).normal(size=(60, 5)), np.repeat(["a", "b", "c"], 20)
    whole = MLPClassifier(hidden=(8,), epochs=3, batch_size=16, random_state=2).fit(X, y)
    parts = MLPClassifier(hidden=(8,), epochs=3, batch_size=16, random_state=2)
    with pytest.raises(InputError, match="classes: the first partial_fit call needs every class label"):
        parts.partial_fit(X, y)
    for _ in range(3):
        parts.partial_fit(X, y, classes=["c", "b", "a"])
    assert parts.n_iter_ == whole.n_iter_ == 3
    assert parts.loss_curve_ == whole.loss_curve_
    for name, value in whole.network_.params.items():
        assert np.array_equal(value, parts.network_.params[name])
    with pytest.raises(InputError, match="y has label 'd', which is not among classes_"):
        parts.partial_fit(X[:2], ["a", "d"])
    with pytest.raises(InputError, match="X has 4 features, but MLPClassifier is expecting 5"):
        parts.partial_fit(X[:, :4], y)


@pytest.mark.parametrize("classes, message", [
    ([], r"classes=\[\] has fewer than two labels"),
    (3, r"classes should be a 1d array, got an array of shape \(\) instead"),
    ([1, 1], r"classes=\[1\] has fewer than two labels"),
    ([[0, 1]], r"classes should be a 1d array, got an array of shape \(1, 2\)"),
    ([0.5, 1.0], r"continuous values in classes \(such as 0.5\)"),
    ([0, 2], r"y has label 1, which is not among classes \[0, 2\]"),
])
def test_partial_fit_refuses_classes_that_are_not_every_label(classes, message):
    model = MLPClassifier(epochs=1)
    with pytest.raises(InputError, match=message):
        model.partial_fit(np.zeros((4, 3)), [0, 1, 0, 1], classes=classes)
    assert not hasattr(model, "network_")           # nothing started: the next call is still the first


@pytest.fixture(scope="module")
def fitted():
    X = np.random.default_rng(0).normal(size=(60, 5))
    return MLPClassifier(hidden=(8,), epochs=2, random_state=0).fit(X, (X[:, 0] > 0).astype(int))


@settings(max_examples=25, deadline=None)
@given(st.floats(3.5e38, 1e300), st.booleans(), st.integers(0, 9))
def test_values_beyond_the_model_dtype_are_refused_by_every_method(fitted, magnitude, negative, at):
    X = np.random.default_rng(at).normal(size=(2, 5))
    X.flat[at] = -magnitude if negative else magnitude
    where = r"\(%d, %d\)" % divmod(at, 5)
    for method in (fitted.predict, fitted.predict_proba, fitted.decision_function, lambda X: fitted.score(X, [0, 1]),
                   lambda X: MLPClassifier(epochs=1).fit(np.vstack([X, -X]), [0, 1, 1, 0])):
        with pytest.raises(InputError, match=r"Input X contains a value too large for dtype\('float32'\) \(.* at "
                                             + where):
            method(X)
    assert MLPClassifier(epochs=1, dtype="float64").fit(np.vstack([X, -X]), [0, 1, 1, 0]).n_iter_ == 1


def test_random_state_as_in_scikit_learn():
    X, y = np.random.default_rng(1).normal(size=(40, 3)), np.arange(40) % 2

    def weights(random_state):
        return MLPClassifier(hidden=(4,), epochs=1, random_state=random_state).fit(X, y).network_.params["layer0.W"]

    assert np.array_equal(weights(7), weights(7))
    assert not np.array_equal(weights(None), weights(None))
    generator = np.random.default_rng(5)
    first, second = weights(generator), weights(generator)
    assert not np.array_equal(first, second)                   # each fit draws anew from the generator ...
    assert np.array_equal(first, weights(np.random.default_rng(5)))   # ... as a fresh one with its seed does
    assert np.array_equal(weights(np.random.RandomState(3)), weights(np.random.RandomState(3)))
    with pytest.raises(InputError, match="random_state: -1 is negative"):
        weights(-1)


@pytest.mark.parametrize("estimator, message", [
    (MLPClassifier(activation="rleu"), r"^activation: 'rleu' \(str\) is not one of .*; did you mean 'relu'\?"),
    (MLPClassifier(hidden=(16, 0)), r"^hidden: 0 is out of range; it must be between 1 and 1000000"),
    (MLPClassifier(dropout=(0.5,), hidden=(4, 4)), r"^dropout: \[0.5\] has 1 rate for the 2 hidden layers"),
    (MLPClassifier(optimizer="adamw"), r"^optimizer: 'adamw' \(str\) is not one of .*; did you mean 'adam'\?"),
    (MLPClassifier(lr=-1.0), r"^lr: "),
    (MLPClassifier(random_state="seven"), r"^random_state: 'seven' is not None, an int"),
])
def test_a_bad_network_parameter_is_named_at_fit(estimator, message):
    with pytest.raises(InputError, match=message):
        estimator.fit(np.eye(4), [0, 1, 0, 1])


@pytest.mark.parametrize("estimator, message", [
    (HOG(orientations=0), r"^orientations: "),
    (HOG(pixels_per_cell=16), r"24x24 images are too small for pixels_per_cell=16"),
    (ColorHist(space="rgb", bins=40), r"^bins: 40 bins per channel"),
    (BagOfWords(words=50, patches=20), r"^patches: 20 patches cannot make 50 words"),
    (Pixels(size=(8,)), r"^size: expected 2 values"),
])
def test_a_bad_transformer_parameter_is_named_at_fit(estimator, message):
    with pytest.raises(InputError, match=message):
        estimator.fit(shapes(4)[0])


def test_an_unknown_parameter_is_refused_with_a_suggestion():
    with pytest.raises(InputError, match=r"unknown HOG parameter 'orientation'; did you mean 'orientations'\?"):
        HOG(orientation=12)
    with pytest.raises(ValueError, match="Invalid parameter"):
        MLPClassifier().set_params(hiden=(3,))


def test_hinge_models_score_but_give_no_probabilities():
    X, y = shapes(40)[0].reshape(40, -1), np.arange(40) % 3
    model = MLPClassifier(loss="hinge", hidden=(8,), epochs=2, random_state=0).fit(X, y)
    assert not hasattr(model, "predict_proba")
    assert model.decision_function(X).shape == (40, 3)
    assert np.array_equal(model.classes_[model.decision_function(X).argmax(axis=1)], model.predict(X))


def test_binary_decision_function_is_the_difference_of_the_two_scores():
    X, y = np.random.default_rng(0).normal(size=(30, 3)), np.array(["no", "yes"] * 15)
    model = MLPClassifier(hidden=(4,), epochs=3, random_state=0).fit(X, y)
    decision = model.decision_function(X)
    assert decision.shape == (30,)
    assert np.array_equal(np.where(decision > 0, "yes", "no"), model.predict(X))
    assert np.allclose(model.predict_proba(X)[:, 1], 1 / (1 + np.exp(-decision.astype(np.float64))), atol=1e-6)


def test_divergence_names_the_learning_rate():
    X, y = np.random.default_rng(0).normal(size=(50, 4)) * 1e3, np.arange(50) % 2
    with pytest.raises(TrainingError, match=r"lower the learning rate \(lr=1e\+30\) or the batch size"):
        MLPClassifier(lr=1e30, optimizer="sgd", normalize="none", epochs=3).fit(X, y)


def test_fitted_estimators_survive_pickling_and_clone_does_not_copy_the_fit():
    images, labels = shapes(40)
    model = Pipeline([("hog", HOG()), ("mlp", MLPClassifier(hidden=(8,), epochs=2, random_state=0))])
    model.fit(images, labels)
    copy = pickle.loads(pickle.dumps(model))
    assert np.array_equal(copy.predict_proba(images), model.predict_proba(images))
    with pytest.raises(sklearn.exceptions.NotFittedError, match="not fitted yet"):
        clone(model).predict(images)
    with pytest.raises(NotFittedError, match="This MLPClassifier instance is not fitted yet"):
        clone(model.named_steps["mlp"]).predict(images)
    for base in (MlpError, ValueError, AttributeError, sklearn.exceptions.NotFittedError):
        assert issubclass(NotFittedError, base)


def test_rows_are_copied_only_to_standardize_them_and_never_written():
    X = np.random.default_rng(0).standard_normal((20000, 100), dtype=np.float32)       # 8 MB
    y = np.arange(len(X)) % 3
    before = X.copy()
    peaks = {}
    for normalize in ("none", "standard"):
        tracemalloc.start()
        MLPClassifier(hidden=(4,), epochs=1, normalize=normalize, random_state=0).fit(X, y).predict_proba(X)
        peaks[normalize] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks["none"] < X.nbytes / 2                 # no copy; the finiteness check's mask is X.nbytes / 4
    assert peaks["standard"] >= X.nbytes                # the standardized copy
    assert np.array_equal(X, before)


def test_transformers_take_images_or_rows_with_an_image_shape():
    images = shapes(6, size=16)[0]
    expected = HOG(pixels_per_cell=4).fit(images).transform(images)
    assert expected.dtype == np.float32 and expected.shape[0] == 6
    rows = HOG(pixels_per_cell=4, image_shape=(16, -1, 3)).fit(images.reshape(6, -1))
    assert np.array_equal(rows.transform(images.reshape(6, -1)), expected)
    assert np.array_equal(HOG(pixels_per_cell=4).fit_transform(images / 255.0), expected)     # floats: white is 1.0
    assert np.array_equal(HOG(pixels_per_cell=4, pixel_max=255).fit_transform(images.astype(np.float64)), expected)
    gray = HOG(pixels_per_cell=4, image_shape=(16, 16)).fit(images[..., 0].reshape(6, -1))
    with pytest.raises(InputError, match="X has 768 features, but HOG is expecting 256 features as input"):
        gray.transform(images.reshape(6, -1)[:, :768])
    with pytest.raises(InputError, match=r"images have shape \(16, 16, 1\), but HOG was fitted on \(16, 16, 3\)"):
        HOG(pixels_per_cell=4).fit(images).transform(images[..., 0])
