"""Gradient checks: every configured network passes, wrong gates are caught, kinks are not failures."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mlpcli.config import LossConfig, ModelConfig
from mlpcli.nn import gradcheck, layers
from mlpcli.nn.gradcheck import check_gates, check_model, jitter_constants, relative_error
from mlpcli.nn.model import MLP

ACTIVATION_NAMES = list(layers.ACTIVATIONS)


def build(hidden, activation="relu", loss="softmax", reg=0.05, seed=0, input_dim=5, classes=4, delta=1.0, **model):
    cfg = ModelConfig(hidden=hidden, activation=activation, dtype="float64", **model)
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


@pytest.mark.parametrize("activation, loss, norm",
                         list(itertools.product(ACTIVATION_NAMES, ["softmax", "hinge"], ["none", "batch", "layer"])))
def test_every_network_with_dropout_of_inputs_and_units_and_norm_passes(activation, loss, norm):
    model = build([6, 5], activation, loss, norm=norm, dropout=[0.3, 0.5], input_dropout=0.2)
    jitter_constants(model, np.random.default_rng(2))
    rows = check_model(model, *batch())
    assert [row.name for row in rows] == list(model.params)
    assert all(row.passed and row.checked + row.kinked == np.prod(row.shape) for row in rows), rows


@pytest.mark.parametrize("activation, loss", list(itertools.product(ACTIVATION_NAMES, ["softmax", "hinge"])))
def test_every_gate_alone_passes(activation, loss):
    rows = check_gates(ModelConfig(activation=activation), LossConfig(name=loss), np.random.default_rng(0))
    assert [row.name for row in rows] == ["linear.dX", "linear.W", "linear.b", f"{activation}.dX",
                                          f"{loss}.dscores"]
    assert all(row.passed and row.checked > 0 for row in rows), rows


@pytest.mark.parametrize("activation, norm", list(itertools.product(ACTIVATION_NAMES, ["batch", "layer"])))
def test_norm_and_dropout_gates_alone_pass(activation, norm):
    cfg = ModelConfig(activation=activation, norm=norm, dropout=0.5)
    rows = check_gates(cfg, LossConfig(), np.random.default_rng(1))
    assert [row.name for row in rows] == ["linear.dX", "linear.W", "linear.b", f"{norm}_norm.dX", f"{norm}_norm.gamma",
                                          f"{norm}_norm.beta", f"{activation}.dX", "dropout.dX", "softmax.dscores"]
    assert all(row.passed and row.checked > 0 for row in rows), rows


def test_input_dropout_alone_is_checked_as_the_dropout_gate():
    rows = check_gates(ModelConfig(input_dropout=0.2), LossConfig(), np.random.default_rng(1))
    assert [row.name for row in rows] == ["linear.dX", "linear.W", "linear.b", "relu.dX", "dropout.dX",
                                          "softmax.dscores"]
    assert all(row.passed and row.checked > 0 for row in rows), rows


def test_a_check_leaves_the_model_as_it_found_it():
    model, (X, y) = build([6, 5], norm="batch", dropout=0.5), batch()
    state, buffers = model.rng.bit_generator.state, {k: v.copy() for k, v in model.buffers.items()}
    assert all(row.passed for row in check_model(model, X, y))
    assert model.rng.bit_generator.state == state
    assert all(np.array_equal(model.buffers[k], buffers[k]) for k in buffers)


def test_batch_norm_of_one_sample_passes():
    """With one sample batch norm outputs β whatever its input, so every gradient below it is zero up to
    round-off, and so small that the loss does not move under ±h: such entries count as near zero."""
    model = build([5, 4, 3], "tanh", norm="batch")
    jitter_constants(model, np.random.default_rng(2))
    rows = {row.name: row for row in check_model(model, *batch(n=1))}
    assert all(row.passed for row in rows.values()), rows
    assert rows["norm0.gamma"].near_zero == rows["norm0.beta"].near_zero == 5


def test_jitter_moves_the_constant_parameters_only():
    model = build([5], norm="layer")
    before = {name: array.copy() for name, array in model.params.items()}
    jitter_constants(model, np.random.default_rng(0))
    for name, array in model.params.items():
        assert np.array_equal(array, before[name]) == name.endswith(".W"), name


class SigmoidMissingOneMinusY(layers.Sigmoid):
    def backward(self, dY):
        return dY * self.Y                            # forgot the (1 − Y) factor


class ReLUWithoutMask(layers.ReLU):
    def backward(self, dY):
        return dY.copy()                              # passes the gradient where the input was negative too


class BatchNormWithoutBatchTerms(layers.BatchNorm):
    def backward(self, dY):
        super().backward(dY)
        return dY * self.params["gamma"] * self.inv_std     # forgets that μ and σ² depend on every sample


class LayerNormWithoutMeanTerm(layers.LayerNorm):
    def backward(self, dY):
        super().backward(dY)
        dxhat = dY * self.params["gamma"]
        return (dxhat - self.xhat * np.mean(dxhat * self.xhat, axis=1, keepdims=True)) * self.inv_std


class DropoutWithoutScale(layers.Dropout):
    def backward(self, dY):
        return dY * (self.mask > 0)                         # routes through the mask but forgets 1 / (1 − rate)


def wrong_model(wrong):
    """A [6] net with the gate of `wrong`'s type replaced by `wrong`, which keeps its arrays."""
    model = build([6], "tanh", norm="batch" if wrong is BatchNormWithoutBatchTerms else "layer", dropout=0.5)
    index = next(i for i, gate in enumerate(model.gates) if type(gate) is wrong.__mro__[1])
    right = model.gates[index]
    model.gates[index] = gate = wrong.__new__(wrong)
    gate.__dict__.update(right.__dict__)
    return model


@pytest.mark.parametrize("wrong", [SigmoidMissingOneMinusY, ReLUWithoutMask])
def test_a_wrong_backward_is_caught(wrong):
    model = build([6], wrong.__mro__[1].name)
    model.gates[1] = wrong()
    rows = {row.name: row for row in check_model(model, *batch())}
    assert not rows["layer0.W"].passed and not rows["layer0.b"].passed
    assert rows["layer0.W"].max_rel_error > 1e-2
    assert rows["layer1.W"].passed and rows["layer1.b"].passed      # the layers above it are right


@pytest.mark.parametrize("wrong", [BatchNormWithoutBatchTerms, LayerNormWithoutMeanTerm, DropoutWithoutScale])
def test_a_wrong_norm_or_dropout_backward_is_caught(wrong):
    rows = {row.name: row for row in check_model(wrong_model(wrong), *batch())}
    assert not rows["layer0.W"].passed and rows["layer0.W"].max_rel_error > 1e-3
    assert rows["layer1.W"].passed and rows["layer1.b"].passed


@pytest.mark.parametrize("wrong, norm, name", [(BatchNormWithoutBatchTerms, "batch", "batch_norm.dX"),
                                               (LayerNormWithoutMeanTerm, "layer", "layer_norm.dX"),
                                               (DropoutWithoutScale, "layer", "dropout.dX")])
def test_a_wrong_norm_or_dropout_gate_is_caught_alone(monkeypatch, wrong, norm, name):
    if wrong is DropoutWithoutScale:
        monkeypatch.setattr(gradcheck, "Dropout", wrong)
    else:
        monkeypatch.setitem(layers.NORMS, norm, lambda H, cfg: wrong(H, eps=cfg.norm_eps))
    rows = {row.name: row for row in check_gates(ModelConfig(norm=norm, dropout=0.5), LossConfig(),
                                                 np.random.default_rng(0))}
    assert not rows[name].passed and rows["linear.W"].passed and rows["relu.dX"].passed


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
