"""Gradient checks: every configured network passes, wrong gates are caught, kinks are not failures."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mlpcli.config import LossConfig, ModelConfig
from mlpcli.nn import layers
from mlpcli.nn.gradcheck import check_gates, check_model, relative_error
from mlpcli.nn.model import MLP

ACTIVATION_NAMES = [*layers.ACTIVATIONS, "maxout"]


def build(hidden, activation="relu", loss="softmax", reg=0.05, seed=0, input_dim=5, classes=4, delta=1.0):
    cfg = ModelConfig(hidden=hidden, activation=activation, dtype="float64")
    loss_cfg = LossConfig(name=loss, delta=delta)
    return MLP.from_config(input_dim, classes, cfg, loss_cfg, reg, np.random.default_rng(seed))


def batch(seed=1, n=6, input_dim=5, classes=4):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, input_dim)), rng.integers(0, classes, n)


@pytest.mark.parametrize("activation, loss, hidden",
                         list(itertools.product(ACTIVATION_NAMES, ["softmax", "hinge"], [[7], [6, 5]])))
def test_every_network_passes(activation, loss, hidden):
    model = build(hidden, activation, loss)
    rows = check_model(model, *batch())
    assert [row.name for row in rows] == list(model.params)
    for row in rows:
        assert row.passed and row.max_rel_error < 1e-6, row
        assert row.checked + row.kinked == np.prod(row.shape)


@pytest.mark.parametrize("hidden", [[], [4, 4, 3]])
def test_linear_classifier_and_deeper_nets_pass(hidden):
    assert all(row.passed for row in check_model(build(hidden, "tanh", "hinge"), *batch()))


@pytest.mark.parametrize("activation, loss", list(itertools.product(ACTIVATION_NAMES, ["softmax", "hinge"])))
def test_every_gate_alone_passes(activation, loss):
    rows = check_gates(ModelConfig(activation=activation), LossConfig(name=loss), np.random.default_rng(0))
    assert [row.name for row in rows] == ["linear.dX", "linear.W", "linear.b", f"{activation}.dX",
                                          f"{loss}.dscores"]
    assert all(row.passed and row.checked > 0 for row in rows), rows


class SigmoidMissingOneMinusY(layers.Sigmoid):
    def backward(self, dY):
        return dY * self.Y                            # forgot the (1 − Y) factor


class ReLUWithoutMask(layers.ReLU):
    def backward(self, dY):
        return dY.copy()                              # passes the gradient where the input was negative too


@pytest.mark.parametrize("wrong", [SigmoidMissingOneMinusY, ReLUWithoutMask])
def test_a_wrong_backward_is_caught(wrong):
    model = build([6], wrong.__mro__[1].name)
    model.gates[1] = wrong()
    rows = {row.name: row for row in check_model(model, *batch())}
    assert not rows["layer0.W"].passed and not rows["layer0.b"].passed
    assert rows["layer0.W"].max_rel_error > 1e-2
    assert rows["layer1.W"].passed and rows["layer1.b"].passed      # the layers above it are right


def test_a_wrong_gate_is_caught_alone(monkeypatch):
    monkeypatch.setitem(layers.ACTIVATIONS, "relu", lambda cfg: ReLUWithoutMask())
    rows = {row.name: row for row in check_gates(ModelConfig(), LossConfig(), np.random.default_rng(0))}
    assert not rows["relu.dX"].passed and rows["linear.W"].passed


def numerical(model, X, y, name, index, h=1e-5):
    param = model.params[name]
    old = param[index]
    param[index] = old + h
    plus = model.loss(model.scores(X), y)[0] + model.penalty()
    param[index] = old - h
    minus = model.loss(model.scores(X), y)[0] + model.penalty()
    param[index] = old
    return (plus - minus) / (2 * h)


def test_relu_kink_crossings_are_skipped_not_failed():
    model, (X, y) = build([6], "relu"), batch()
    W, b = model.params["layer0.W"], model.params["layer0.b"]
    b[0] = 2e-6 - X[0] @ W[:, 0]                      # unit 0 of sample 0 sits 2e-6 above the kink
    model.loss_and_grads(X, y)
    analytic = model.grads["layer0.b"][0]
    assert relative_error(analytic, numerical(model, X, y, "layer0.b", 0)) > 1e-5   # a naive check fails
    rows = {row.name: row for row in check_model(model, X, y)}
    assert rows["layer0.b"].kinked >= 1 and rows["layer0.W"].kinked >= 1
    assert all(row.passed for row in rows.values())


def test_hinge_kink_crossings_are_skipped_not_failed():
    model, (X, y) = build([], loss="hinge"), batch()
    scores = model.scores(X)
    other = (y[0] + 1) % 4
    model.params["layer0.b"][other] += 1e-6 - (scores[0, other] - scores[0, y[0]] + 1)   # margin 1e-6
    rows = {row.name: row for row in check_model(model, X, y)}
    assert rows["layer0.b"].kinked >= 1 and rows["layer0.W"].kinked >= 1
    assert all(row.passed for row in rows.values())


def test_exactly_zero_gradients_compare_absolutely():
    """With Δ = 10 every hinge margin is active, so with one sample per class each bias gets three +1/N
    and one −3/N that cancel to 0, which the numerical derivative reaches only up to round-off."""
    model = build([], loss="hinge", classes=4, delta=10.0, seed=2)
    X, y = batch(seed=12, n=4)[0], np.arange(4)
    model.loss_and_grads(X, y)
    assert not model.grads["layer0.b"].any()
    assert max(relative_error(0.0, numerical(model, X, y, "layer0.b", c)) for c in range(4)) > 1e-3  # naive fails
    rows = {row.name: row for row in check_model(model, X, y)}
    assert rows["layer0.b"].passed and rows["layer0.b"].near_zero >= 1 and rows["layer0.b"].max_rel_error == 0


def test_sampled_entries_are_seeded():
    model, (X, y) = build([30]), batch()
    rows = check_model(model, X, y, samples=10, rng=np.random.default_rng(5))
    assert [row.checked + row.kinked for row in rows] == [10, 10, 10, 4]
    again = check_model(model, X, y, samples=10, rng=np.random.default_rng(5))
    assert [row.max_rel_error for row in rows] == [row.max_rel_error for row in again]


def test_float32_models_are_refused():
    cfg = ModelConfig(hidden=[3])
    model = MLP.from_config(5, 4, cfg, LossConfig(), 0.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="float64"):
        check_model(model, *batch())
