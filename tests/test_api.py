"""The Python API: what `import mlpcli` exposes (lazily), its documentation, the example scripts, a trained
classifier on arrays, and the estimators without scikit-learn."""

from __future__ import annotations

import inspect
import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mlpcli
from mlpcli import experiment
from mlpcli.config import load_config
from mlpcli.data import load_splits
from mlpcli.errors import DataError, MlpError
from mlpcli.parallel import single_threaded_blas

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
EXPORTED = [name for name in mlpcli.__all__ if name != "__version__"]


def python(code: str) -> subprocess.CompletedProcess:
    """Run Python `code` in a fresh interpreter, BLAS on one thread."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)


def test_import_mlpcli_loads_nothing_until_a_name_is_used():
    done = python("import sys, mlpcli\n"
                  "print(sorted(m for m in sys.modules if m.startswith('mlpcli.')))\n"
                  "mlpcli.Classifier\n"
                  "print('mlpcli.predictor' in sys.modules, 'mlpcli.estimators' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "True False"]


def test_every_exported_name_resolves_is_documented_and_listed_in_the_readme():
    section = README.split("## Python API", 1)[1].split("\n## ", 1)[0]
    for name in EXPORTED:
        value = getattr(mlpcli, name)
        assert name in dir(mlpcli)
        doc = inspect.getdoc(value)
        assert doc and not doc.startswith(f"{name}("), f"{name} has no docstring"      # not a dataclass's own
        assert f"`{name}" in section, f"{name} is not in the README's Python API section"
    with pytest.raises(AttributeError, match="module 'mlpcli' has no attribute 'trian'"):
        mlpcli.trian


@pytest.mark.parametrize("name", ["Classifier", "MLPClassifier", "Pixels", "ColorHist", "HOG", "BagOfWords"])
def test_every_public_method_has_a_docstring(name):
    cls = getattr(mlpcli, name)
    for attribute, value in vars(cls).items():
        if not attribute.startswith("_") and (callable(value) or isinstance(value, property)):
            assert inspect.getdoc(value), f"{name}.{attribute} has no docstring"


@pytest.mark.parametrize("script, expected", [
    ("python_api.py", ["features: 324 per image", "run: ", "predict on 160 images: accuracy",
                       "features the network sees: (5, 324)"]),
    ("sklearn_pipeline.py", ["HOG + color histograms -> MLP: validation accuracy", "grid search: best",
                             "bag of words (64 words) -> MLP: validation accuracy"]),
])
def test_example_scripts_run(script, expected, tmp_path, monkeypatch, capsys):
    if script.startswith("sklearn"):
        pytest.importorskip("sklearn")
    monkeypatch.chdir(tmp_path)
    with single_threaded_blas():               # small products: threads would only wait for each other
        runpy.run_path(str(ROOT / "examples" / script), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    for start in expected:
        assert any(line.startswith(start) for line in lines), (start, lines)
    assert list(tmp_path.iterdir()) == []                     # nothing written outside its temporary folder


@pytest.fixture
def trained(tiny_config, tmp_path):
    return experiment.run(load_config(tiny_config), tmp_path / "run")


def test_a_classifier_predicts_on_arrays_as_its_run_scored_them(trained, tiny_config):
    clf = mlpcli.Classifier.from_checkpoint(trained.run.path)
    val = load_splits(load_config(tiny_config))["val"]
    probabilities = clf.predict_proba(val.images)
    assert probabilities.shape == (len(val), len(clf.classes))
    assert np.allclose(probabilities.sum(axis=1), 1)
    assert np.array_equal(probabilities.argmax(axis=1), clf.predict(val.images))
    assert np.mean(clf.predict(val.images) == val.labels) == pytest.approx(trained.summary["val"]["accuracy"])
    features = clf.features(val.images)
    assert np.array_equal(clf.model.scores(features), clf.scores(val.images))
    with pytest.raises(DataError, match=r"images are \(8, 8, 3\) but this model was trained on \(16, 16, 3\)"):
        clf.features(val.images[:, :8, :8])


def test_a_classifier_takes_an_empty_batch_or_a_nested_list(trained):
    clf = mlpcli.Classifier.from_checkpoint(trained.run.path)
    empty = np.zeros((0, 16, 16, 3), np.uint8)
    assert clf.predict(empty).shape == (0,)
    assert clf.scores(empty).shape == clf.predict_proba(empty).shape == (0, len(clf.classes))
    images = load_splits(clf.config)["val"].images[:3]
    assert np.array_equal(clf.scores(images.tolist()), clf.scores(images))


@pytest.mark.parametrize("images, message", [
    (np.zeros((16, 16, 3), np.uint8), r"images have 3 dimension\(s\) \(shape \(16, 16, 3\)\); this model takes images "
                                      r"\(N, 16, 16, 3\) uint8 \(images\[None\] for one image\)"),
    (np.zeros(5, np.uint8), r"images have 1 dimension\(s\) \(shape \(5,\)\)"),
    ("images", r"images have 0 dimension\(s\)"),
    ([np.zeros((16, 16, 3)), np.zeros((8, 8, 3))], r"images cannot be read as an array"),
    (np.zeros((1, 16, 16, 3)), r"images have dtype float64; this model takes images \(N, 16, 16, 3\) uint8"),
    (np.full((1, 16, 16, 3), 256), r"images have dtype int64"),
    (np.zeros((1, 16, 16, 1), np.uint8), r"images are \(16, 16, 1\) but this model was trained on \(16, 16, 3\)"),
])
def test_a_classifier_refuses_what_is_not_images_naming_what_it_takes(trained, images, message):
    clf = mlpcli.Classifier.from_checkpoint(trained.run.path)
    for method in (clf.predict, clf.predict_proba, clf.scores, clf.features):
        with pytest.raises(DataError, match=message):
            method(images)


def test_a_hinge_model_gives_scores_not_probabilities(tiny_config, tmp_path):
    result = experiment.run(load_config(tiny_config, ["loss.name=hinge", "train.epochs=1"]), tmp_path / "hinge")
    clf = mlpcli.Classifier.from_checkpoint(result.run.best)
    with pytest.raises(MlpError, match="loss.name=hinge, whose class scores are not probabilities"):
        clf.predict_proba(np.zeros((1, *clf.image_shape), np.uint8))


WITHOUT_SKLEARN = """
import sys
sys.modules["sklearn"] = None                       # `import sklearn` now fails, as if it were not installed
import numpy as np
from mlpcli.estimators import HOG, MLPClassifier
from mlpcli.estimator_base import NotFittedError

rng = np.random.default_rng(0)
images, labels = rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8), np.arange(40) % 2
features = HOG(pixels_per_cell=4).fit_transform(images)
model = MLPClassifier(hidden=(8,), epochs=2)
assert model.set_params(random_state=0) is model and model.get_params()["random_state"] == 0
print(repr(model))
assert model.fit(features, labels) is model
print(model.score(features, labels) == np.mean(model.predict(features) == labels))
print(model.predict_proba(features).round(6).tolist())
try:
    MLPClassifier().predict(features)
except ValueError as err:
    print(type(err).__name__, isinstance(err, AttributeError))
try:
    model.set_params(hiden=3)
except ValueError as err:
    print(str(err).split(".")[0])
"""


def test_the_estimators_work_without_scikit_learn():
    done = python(WITHOUT_SKLEARN)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "MLPClassifier(epochs=2, hidden=(8,), random_state=0)"     # as scikit-learn prints it
    assert lines[1] == "True"
    assert lines[3:] == ["NotFittedError True", "Invalid parameter 'hiden' for estimator MLPClassifier(epochs=2, "
                                                 "hidden=(8,), random_state=0)"]
    pytest.importorskip("sklearn")                    # the same numbers as with scikit-learn's base classes
    from mlpcli.estimators import HOG, MLPClassifier

    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8), np.arange(40) % 2
    features = HOG(pixels_per_cell=4).fit_transform(images)
    model = MLPClassifier(hidden=(8,), epochs=2, random_state=0).fit(features, labels)
    assert lines[2] == str(model.predict_proba(features).round(6).tolist())
