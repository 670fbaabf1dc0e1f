"""The losses against naive per-sample loops, and softmax's numerical stability."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlpcli.config import LossConfig
from mlpcli.nn.losses import LOSSES, HingeLoss, SoftmaxLoss, hinge_loss, softmax_loss


def naive_softmax(scores, y):
    N, C = scores.shape
    loss, dscores = 0.0, np.zeros_like(scores)
    for i in range(N):
        exps = [math.exp(s) for s in scores[i]]
        total = sum(exps)
        loss -= math.log(exps[y[i]] / total) / N
        for j in range(C):
            dscores[i, j] = (exps[j] / total - (j == y[i])) / N
    return loss, dscores


def naive_hinge(scores, y, delta):
    N, C = scores.shape
    loss, dscores = 0.0, np.zeros_like(scores)
    for i in range(N):
        for j in range(C):
            margin = scores[i, j] - scores[i, y[i]] + delta
            if j != y[i] and margin > 0:
                loss += margin / N
                dscores[i, j] += 1 / N
                dscores[i, y[i]] -= 1 / N
    return loss, dscores


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    return rng.standard_normal((9, 5)) * 3, rng.integers(0, 5, 9)


def test_softmax_matches_a_per_sample_loop(batch):
    scores, y = batch
    loss, dscores = softmax_loss(scores, y)
    expected_loss, expected_dscores = naive_softmax(scores, y)
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    np.testing.assert_allclose(dscores, expected_dscores, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("delta", [1.0, 0.5, 0.0])
def test_hinge_matches_a_per_sample_loop(batch, delta):
    scores, y = batch
    loss, dscores = hinge_loss(scores, y, delta)
    expected_loss, expected_dscores = naive_hinge(scores, y, delta)
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    np.testing.assert_allclose(dscores, expected_dscores, atol=1e-15)


def test_softmax_is_stable_on_huge_scores():
    scores = np.array([[1000.0, 1001.0, 999.0], [-1e5, 3e4, 3e4]], dtype=np.float32)
    y = np.array([1, 2])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, dscores = softmax_loss(scores, y)
    # the same as the shifted scores: a constant per row does not change softmax
    expected_loss, expected_dscores = naive_softmax(np.array([[1.0, 2.0, 0.0], [-1.3e5, 0.0, 0.0]]), y)
    assert loss == pytest.approx(expected_loss, rel=1e-6)
    np.testing.assert_allclose(dscores, expected_dscores, atol=1e-7)
    assert dscores.dtype == np.float32


def test_softmax_of_uniform_scores_is_log_c():
    loss, dscores = softmax_loss(np.zeros((4, 10)), np.arange(4))
    assert loss == pytest.approx(math.log(10))
    np.testing.assert_allclose(dscores.sum(axis=1), 0, atol=1e-16)


def test_hinge_loss_object_exposes_active_margins():
    hinge = LOSSES["hinge"](LossConfig(name="hinge", delta=1.0))
    scores, y = np.array([[3.0, 2.5, 1.0], [0.0, 0.0, 5.0]]), np.array([0, 2])
    loss, _ = hinge(scores, y)
    # row 0: 2.5 − 3 + 1 = 0.5 active, 1 − 3 + 1 < 0; row 1: all margins negative
    assert loss == pytest.approx(0.25)
    np.testing.assert_array_equal(hinge.region(), [[False, True, False], [False, False, False]])
    assert isinstance(hinge, HingeLoss) and hinge.delta == 1.0


def test_softmax_loss_object_is_smooth():
    softmax = LOSSES["softmax"](LossConfig())
    assert isinstance(softmax, SoftmaxLoss)
    loss, dscores = softmax(np.zeros((2, 3)), np.array([0, 1]))
    assert loss == pytest.approx(math.log(3)) and softmax.region() is None
