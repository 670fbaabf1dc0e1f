"""The MLP: built from config at any depth, forward/backward through the gates, training vs scoring, L2 term,
loading weights and buffers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlpcli.config import LossConfig, ModelConfig, OptimConfig
from mlpcli.errors import CheckpointError
from mlpcli.nn.layers import Dropout, LayerNorm, Linear, Maxout, ReLU, Tanh
from mlpcli.nn.model import MLP
from mlpcli.nn.optim import OPTIMIZERS


def build(hidden, activation="relu", loss="softmax", reg=0.0, dtype="float32", seed=0, **model):
    cfg = ModelConfig(hidden=hidden, activation=activation, dtype=dtype, **model)
    return MLP.from_config(6, 3, cfg, LossConfig(name=loss), reg, np.random.default_rng(seed))


@pytest.mark.parametrize("hidden, widths", [([], [(6, 3)]), ([5], [(6, 5), (5, 3)]),
                                            ([5, 4], [(6, 5), (5, 4), (4, 3)]),
                                            ([5, 4, 2], [(6, 5), (5, 4), (4, 2), (2, 3)])])
def test_layers_follow_the_hidden_sizes(hidden, widths):
    model = build(hidden)
    assert [model.params[f"layer{i}.W"].shape for i in range(len(widths))] == widths
    assert list(model.params) == list(model.grads) == [f"layer{i}.{k}" for i in range(len(widths)) for k in "Wb"]
    assert [type(g) for g in model.gates] == [Linear, ReLU] * len(hidden) + [Linear]
    assert all(not model.params[f"layer{i}.b"].any() for i in range(len(widths)))


def test_maxout_layer_is_a_wider_linear_then_maxout():
    model = build([5], activation="maxout", maxout_pieces=3)
    assert model.params["layer0.W"].shape == (6, 15) and model.params["layer1.W"].shape == (5, 3)
    assert isinstance(model.gates[1], Maxout) and model.gates[1].pieces == 3
    assert model.describe() == "6-5-3 maxout softmax"


def test_describe():
    assert build([5, 4], activation="tanh", loss="hinge").describe() == "6-5-4-3 tanh hinge"
    assert build([]).describe() == "6-3 softmax"


def test_params_are_the_arrays_the_gates_use():
    model = build([5], activation="tanh", dtype="float64")
    assert model.params["layer1.W"] is model.gates[2].params["W"]
    assert model.grads["layer0.b"] is model.gates[0].grads["b"]
    X = np.random.default_rng(1).standard_normal((2, 6))
    before = model.scores(X).copy()
    model.params["layer1.b"] += 1.0                  # an optimizer updates in place
    np.testing.assert_allclose(model.scores(X), before + 1.0)


@pytest.mark.parametrize("init, std", [("he", np.sqrt(2 / 400)), ("xavier", np.sqrt(2 / 600)), ("normal", 0.05)])
def test_initialization_scale(init, std):
    cfg = ModelConfig(hidden=[200], init=init, init_std=0.05)
    model = MLP.from_config(400, 10, cfg, LossConfig(), 0.0, np.random.default_rng(0))
    W = model.params["layer0.W"]
    assert W.dtype == np.float32
    assert W.std() == pytest.approx(std, rel=0.02) and abs(W.mean()) < std / 50


def test_same_seed_same_weights_and_dtype_follows_config():
    a, b = build([5], seed=7), build([5], seed=7)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert not np.array_equal(a.params["layer0.W"], build([5], seed=8).params["layer0.W"])
    model = build([5], dtype="float64")
    assert all(p.dtype == np.float64 for p in model.params.values())
    assert model.scores(np.ones((2, 6), dtype=np.float32)).dtype == np.float64


def test_forward_is_the_composition_of_the_layers():
    model = build([5, 4], activation="tanh", dtype="float64")
    X = np.random.default_rng(2).standard_normal((3, 6))
    p = model.params
    hidden = np.tanh(np.tanh(X @ p["layer0.W"] + p["layer0.b"]) @ p["layer1.W"] + p["layer1.b"])
    np.testing.assert_allclose(model.scores(X), hidden @ p["layer2.W"] + p["layer2.b"])


def test_l2_term_adds_lambda_sum_of_squared_weights_and_its_gradient():
    reg = 0.3
    plain, regularized = build([5], dtype="float64"), build([5], dtype="float64", reg=reg)
    X, y = np.random.default_rng(3).standard_normal((4, 6)), np.array([0, 1, 2, 1])
    loss, no_penalty, scores = plain.loss_and_grads(X, y)
    data_loss, penalty, scores_reg = regularized.loss_and_grads(X, y)
    loss_reg = data_loss + penalty
    assert no_penalty == 0 and data_loss == loss
    weights = [plain.params["layer0.W"], plain.params["layer1.W"]]
    assert loss_reg == pytest.approx(loss + reg * sum(np.sum(W ** 2) for W in weights), rel=1e-12)
    assert regularized.penalty() == pytest.approx(loss_reg - loss, rel=1e-12)
    np.testing.assert_array_equal(scores, scores_reg)
    for name in plain.grads:
        extra = 2 * reg * plain.params[name] if name.endswith(".W") else 0     # biases are not regularized
        np.testing.assert_allclose(regularized.grads[name], plain.grads[name] + extra, atol=1e-14)


def test_training_steps_fit_a_small_problem():
    """Hand-written backprop plus plain gradient steps separates three Gaussian blobs."""
    rng = np.random.default_rng(4)
    centers = rng.standard_normal((3, 6)) * 3
    y = rng.integers(0, 3, 150)
    X = (centers[y] + rng.standard_normal((150, 6))).astype(np.float32)
    model = build([16], reg=1e-4)
    first, _, _ = model.loss_and_grads(X, y)
    for _ in range(100):
        loss, _, scores = model.loss_and_grads(X, y)
        for name, grad in model.grads.items():
            model.params[name] -= 0.1 * grad
    assert loss < first / 4
    assert np.mean(scores.argmax(axis=1) == y) > 0.95


def test_load_params_round_trip():
    source, target = build([5], seed=1), build([5], seed=2)
    target.load_params({name: array.copy() for name, array in source.params.items()})
    X = np.ones((1, 6), dtype=np.float32)
    np.testing.assert_array_equal(target.scores(X), source.scores(X))
    assert target.params["layer0.W"] is target.gates[0].params["W"]


def test_load_params_names_what_does_not_fit():
    model = build([5])
    arrays = {name: array.copy() for name, array in model.params.items()}
    before = model.params["layer0.W"].copy()
    with pytest.raises(CheckpointError, match="no array 'layer1.b'"):
        model.load_params({k: v + 1 for k, v in arrays.items() if k != "layer1.b"})
    np.testing.assert_array_equal(model.params["layer0.W"], before)   # nothing copied on failure
    with pytest.raises(CheckpointError, match=r"'layer1.W' is float32 \(4, 3\).*needs float32 \(5, 3\)"):
        model.load_params(arrays | {"layer1.W": np.zeros((4, 3), dtype=np.float32)})
    with pytest.raises(CheckpointError, match=r"'layer0.b' is float64 .*needs float32"):
        model.load_params(arrays | {"layer0.b": np.zeros(5)})


def test_gates_can_be_composed_by_hand():
    gates = [Linear(np.eye(2), np.zeros(2), input_grad=False), Tanh(), Linear(np.eye(2), np.zeros(2))]
    model = MLP(gates, build([]).loss, reg=0.0)
    assert model.describe() == "2-2-2 tanh softmax" and model.dtype == np.float64


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(1, 6), max_size=6), st.sampled_from(["none", "batch", "layer"]),
       st.floats(0.0, 0.9), st.floats(0.0, 0.9), st.integers(1, 5))
def test_any_depth_builds_and_runs(hidden, norm, dropout, input_dropout, N):
    model = build(hidden, norm=norm, dropout=dropout, input_dropout=input_dropout, dtype="float64")
    sizes = [6, *hidden, 3]
    assert [model.params[f"layer{i}.W"].shape for i in range(len(sizes) - 1)] == list(zip(sizes[:-1], sizes[1:]))
    assert model.describe().split()[0] == "-".join(map(str, sizes))
    X, y = np.random.default_rng(0).standard_normal((N, 6)), np.arange(N) % 3
    data_loss, penalty, scores = model.loss_and_grads(X, y)
    assert scores.shape == model.scores(X).shape == (N, 3) and np.isfinite(data_loss + penalty)
    assert all(np.isfinite(grad).all() for grad in model.grads.values())


def test_hidden_layer_is_linear_norm_activation_dropout():
    model = build([5, 4], norm="layer", dropout=[0.5, 0.0])
    assert [type(g) for g in model.gates] == [Linear, LayerNorm, ReLU, Dropout, Linear, LayerNorm, ReLU, Linear]
    assert list(model.params) == ["layer0.W", "layer0.b", "norm0.gamma", "norm0.beta", "layer1.W", "layer1.b",
                                  "norm1.gamma", "norm1.beta", "layer2.W", "layer2.b"]
    assert model.gates[3].rate == 0.5 and model.buffers == {}
    assert model.describe() == "6-5-4-3 layer_norm relu dropout softmax"
    every = build([5, 4, 2], dropout=0.25)
    assert [g.rate for g in every.gates if isinstance(g, Dropout)] == [0.25] * 3


@pytest.mark.parametrize("hidden, dropout", [([5], 0.0), ([5, 4], 0.5), ([], 0.0)])
def test_input_dropout_masks_the_features_before_the_first_linear(hidden, dropout):
    model = build(hidden, dropout=dropout, input_dropout=0.4, dtype="float64")
    assert isinstance(model.gates[0], Dropout) and model.gates[0].rate == 0.4 and isinstance(model.gates[1], Linear)
    plain = build(hidden, dropout=dropout, dtype="float64")
    assert list(model.params) == list(plain.params)
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((7, 6)), np.arange(7) % 3
    plain.load_params(model.params)
    np.testing.assert_array_equal(model.scores(X), plain.scores(X))              # scoring: no dropout
    for gate in plain.gates:
        if isinstance(gate, Dropout):
            gate.rng = model.rng                                                 # the same hidden masks
    state = model.rng.bit_generator.state
    model.loss_and_grads(X, y)
    mask = model.gates[0].mask                                                   # (7, 6): 0 or 1 / 0.6
    assert set(np.unique(mask)) <= {0.0, 1 / 0.6} and mask.shape == X.shape
    model.rng.bit_generator.state = state
    model.rng.random(X.shape)                                                    # the input mask's draw
    plain.loss_and_grads(X * mask, y)                                            # the net on the masked inputs
    for name in model.grads:
        np.testing.assert_allclose(model.grads[name], plain.grads[name], rtol=1e-12, err_msg=name)
    assert model.describe().split()[1] == "dropout"


def test_batch_norm_takes_the_bias_and_keeps_running_averages_as_buffers():
    model = build([5, 4], norm="batch", activation="maxout", maxout_pieces=2)
    assert list(model.params) == ["layer0.W", "norm0.gamma", "norm0.beta", "layer1.W", "norm1.gamma", "norm1.beta",
                                  "layer2.W", "layer2.b"]
    assert list(model.buffers) == ["norm0.running_mean", "norm0.running_var", "norm1.running_mean",
                                   "norm1.running_var"]
    assert model.buffers["norm0.running_var"].shape == (10,)          # before maxout: one per piece
    assert all(array.dtype == np.float32 for array in [*model.params.values(), *model.buffers.values()])
    assert model.buffers["norm1.running_mean"] is model.gates[4].buffers["running_mean"]
    assert model.describe() == "6-5-4-3 batch_norm maxout softmax"


def test_training_steps_use_dropout_and_batch_statistics_and_scoring_does_not():
    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((8, 6)), np.arange(8) % 3
    model = build([16], norm="batch", dropout=0.5, dtype="float64")
    plain = build([16], norm="batch", dtype="float64")
    plain.load_params(model.params)
    running = {name: array.copy() for name, array in model.buffers.items()}
    np.testing.assert_array_equal(model.scores(X), plain.scores(X))              # scoring: no dropout
    assert all(np.array_equal(model.buffers[k], running[k]) for k in running)    # and no buffer updates
    state = model.rng.bit_generator.state
    *_, train_scores = model.loss_and_grads(X, y)
    assert model.rng.bit_generator.state != state                                 # a mask was drawn
    assert not np.allclose(train_scores, plain.forward(X, training=True))
    hidden = X @ model.params["layer0.W"]
    np.testing.assert_allclose(model.buffers["norm0.running_mean"], 0.1 * hidden.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(model.buffers["norm0.running_var"], 0.9 + 0.1 * hidden.var(axis=0), rtol=1e-12)
    scale = model.params["norm0.gamma"] / np.sqrt(model.buffers["norm0.running_var"] + 1e-5)
    expected = np.maximum((hidden - model.buffers["norm0.running_mean"]) * scale + model.params["norm0.beta"], 0)
    np.testing.assert_allclose(model.scores(X), expected @ model.params["layer1.W"] + model.params["layer1.b"],
                               rtol=1e-12)


def test_dropout_masks_follow_the_generator():
    X, y = np.ones((4, 6), dtype=np.float32), np.arange(4) % 3
    a = build([8], dropout=0.5, seed=1)
    b = MLP.from_config(6, 3, ModelConfig(hidden=[8], dropout=0.5), LossConfig(), 0.0, np.random.default_rng(1),
                        np.random.default_rng(1))
    c = build([8], dropout=0.5, seed=1)
    np.testing.assert_array_equal(a.loss_and_grads(X, y)[2], c.loss_and_grads(X, y)[2])   # spawned from the seed
    assert b.rng is b.gates[2].rng and not np.array_equal(a.loss_and_grads(X, y)[2], b.loss_and_grads(X, y)[2])
    assert build([8]).rng is None


def test_norm_parameters_are_not_regularized_and_buffers_are_not_trained():
    reg = 0.5
    X, y = np.random.default_rng(6).standard_normal((6, 6)), np.arange(6) % 3
    plain, regularized = build([5], norm="batch", dtype="float64"), build([5], norm="batch", dtype="float64", reg=reg)
    data_loss, _, _ = plain.loss_and_grads(X, y)
    data_loss_reg, penalty, _ = regularized.loss_and_grads(X, y)
    weights = [plain.params["layer0.W"], plain.params["layer1.W"]]
    assert data_loss_reg == data_loss and penalty == pytest.approx(reg * sum(np.sum(W ** 2) for W in weights))
    for name in ("norm0.gamma", "norm0.beta", "layer1.b"):
        np.testing.assert_array_equal(regularized.grads[name], plain.grads[name])
    optimizer = OPTIMIZERS["momentum"](regularized.params, OptimConfig())
    buffers = {name: array.copy() for name, array in regularized.buffers.items()}
    optimizer.step(regularized.grads, 0.1)
    assert all(np.array_equal(regularized.buffers[k], buffers[k]) for k in buffers)
    assert not any(name in key for key in optimizer.state() for name in buffers)


def test_batch_norm_net_fits_a_small_problem_and_scores_with_its_running_averages():
    rng = np.random.default_rng(4)
    centers = rng.standard_normal((3, 6)) * 3
    y = rng.integers(0, 3, 300)
    X = (centers[y] + rng.standard_normal((300, 6))).astype(np.float32)
    model = build([16, 16], norm="batch", dropout=0.1, reg=1e-4)
    optimizer = OPTIMIZERS["momentum"](model.params, OptimConfig())
    for epoch in range(10):
        for i in range(0, 300, 30):
            model.loss_and_grads(X[i:i + 30], y[i:i + 30])
            optimizer.step(model.grads, 0.05)
    assert np.mean(model.scores(X).argmax(axis=1) == y) > 0.95


def test_load_buffers_round_trip_and_refusals():
    source, target = build([5], norm="batch", seed=1), build([5], norm="batch", seed=2)
    X, y = np.random.default_rng(7).standard_normal((6, 6)), np.arange(6) % 3
    source.loss_and_grads(X, y)
    target.load_params(source.params)
    target.load_buffers({name: array.copy() for name, array in source.buffers.items()})
    np.testing.assert_array_equal(target.scores(X), source.scores(X))
    with pytest.raises(CheckpointError, match="no buffer 'norm0.running_var'"):
        target.load_buffers({"norm0.running_mean": source.buffers["norm0.running_mean"]})
    with pytest.raises(CheckpointError, match=r"buffer 'norm0.running_mean' is float64 \(5,\).*needs float32"):
        target.load_buffers(source.buffers | {"norm0.running_mean": np.zeros(5)})
    with pytest.raises(CheckpointError, match="no array 'norm0.gamma'"):
        build([5], norm="layer").load_params(build([5]).params)
