"""Metrics against values computed by hand, and against scikit-learn on generated labels."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import precision_recall_fscore_support

from mlpcli.metrics import accuracy, classification_report, confusion_matrix, macro_f1, per_class


def test_a_report_computed_by_hand():
    #            true: 0  0  0  1  1  2
    #       predicted: 0  0  1  1  2  2
    report = classification_report(np.array([0, 0, 0, 1, 1, 2]), np.array([0, 0, 1, 1, 2, 2]), 3)
    assert report["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["precision"] == pytest.approx([2 / 2, 1 / 2, 1 / 2], abs=1e-6)     # of each predicted column
    assert report["recall"] == pytest.approx([2 / 3, 1 / 2, 1 / 1], abs=1e-6)        # of each true row
    assert report["f1"] == pytest.approx([0.8, 0.5, 2 / 3], abs=1e-6)               # 2PR / (P + R)
    assert report["support"] == [3, 2, 1]
    assert report["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3, abs=1e-6)


def test_classes_never_predicted_or_absent_score_zero():
    scores = per_class(confusion_matrix(np.array([0, 0, 1]), np.array([0, 0, 0]), 3))
    assert scores["precision"] == pytest.approx([2 / 3, 0, 0], abs=1e-6)
    assert scores["recall"] == pytest.approx([1, 0, 0])
    assert scores["f1"] == pytest.approx([0.8, 0, 0], abs=1e-6)
    assert scores["support"] == [2, 1, 0]
    assert macro_f1([[2, 0, 0], [1, 0, 0], [0, 0, 0]]) == pytest.approx(0.4, abs=1e-6)   # class 2 has no images


def test_accuracy_of_nothing_is_zero():
    assert accuracy(np.array([], int), np.array([], int)) == 0.0
    assert accuracy(np.array([1, 2]), np.array([1, 0])) == 0.5


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 6).flatmap(lambda c: st.tuples(
    st.just(c), st.lists(st.tuples(st.integers(0, c - 1), st.integers(0, c - 1)), min_size=1, max_size=60))))
def test_per_class_scores_agree_with_scikit_learn(case):
    classes, pairs = case
    labels, predicted = (np.array(column) for column in zip(*pairs))
    report = classification_report(labels, predicted, classes)
    expected = precision_recall_fscore_support(labels, predicted, labels=range(classes), zero_division=0)
    for key, values in zip(("precision", "recall", "f1", "support"), expected):
        assert report[key] == pytest.approx(values.tolist(), abs=1e-6), key
    assert np.sum(report["confusion"]) == len(labels)
