"""The gates: the lecture's worked examples, and every backward against numerical derivatives."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlpcli.config import ModelConfig
from mlpcli.nn.layers import (ACTIVATIONS, ELU, BatchNorm, Dropout, LayerNorm, LeakyReLU, Linear, Maxout, ReLU,
                               Sigmoid, Tanh)


def numerical_gradient(f, x: np.ndarray, dY: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """∂(Σ f()·dY)/∂x by centered differences, perturbing x in place."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        plus = f().copy()
        x[i] = old - h
        minus = f().copy()
        x[i] = old
        grad[i] = np.sum((plus - minus) * dY) / (2 * h)
    return grad


def test_add_then_multiply_chain_rule():
    """f(x, y, z) = (x + y)·z at (−2, 5, −4): q = x + y is a Linear gate with weights (1, 1); f = q·z
    a Linear gate with weight z. Backward multiplies the upstream gradient by the local ones."""
    add = Linear(np.array([[1.0], [1.0]]), np.zeros(1))
    mul = Linear(np.array([[-4.0]]), np.zeros(1))
    q = add.forward(np.array([[-2.0, 5.0]]))
    f = mul.forward(q)
    assert q[0, 0] == 3 and f[0, 0] == -12
    df_dq = mul.backward(np.ones((1, 1)))          # ∂f/∂q = z
    assert mul.grads["W"][0, 0] == 3                # ∂f/∂z = q
    df_dxy = add.backward(df_dq)                    # ∂f/∂x = ∂f/∂q · ∂q/∂x = z·1
    np.testing.assert_array_equal(df_dxy, [[-4.0, -4.0]])


def test_sigmoid_neuron():
    """f = σ(w0·x0 + w1·x1 + w2) at w = (2, −3, −3), x = (−1, −2), through Linear + Sigmoid."""
    linear, sigmoid = Linear(np.array([[2.0], [-3.0]]), np.array([-3.0])), Sigmoid()
    f = sigmoid.forward(linear.forward(np.array([[-1.0, -2.0]])))
    dx = linear.backward(sigmoid.backward(np.ones((1, 1))))
    np.testing.assert_allclose(f, [[0.73]], atol=0.005)
    np.testing.assert_allclose(linear.grads["W"][:, 0], [-0.20, -0.39], atol=0.005)
    np.testing.assert_allclose(linear.grads["b"], [0.20], atol=0.005)
    np.testing.assert_allclose(dx[0], [0.39, -0.59], atol=0.005)


def test_relu_backward_routes_where_input_was_positive():
    relu = ReLU()
    relu.forward(np.array([[1.0, -2.0, 3.0, -1.0]]))
    np.testing.assert_array_equal(relu.backward(np.array([[4.0, -1.0, 5.0, 9.0]])), [[4, 0, 5, 0]])


def test_squared_norm_of_matrix_vector_product():
    """f = ‖W·x‖²: in the row convention q = xᵀ·Wᵀ, so the Linear gate holds Wᵀ; ∂f/∂q = 2q."""
    W, x = np.array([[0.1, 0.5], [-0.3, 0.8]]), np.array([0.2, 0.4])
    linear = Linear(W.T.copy(), np.zeros(2))
    q = linear.forward(x[None, :])
    np.testing.assert_allclose(q[0], [0.22, 0.26])
    dx = linear.backward(2 * q)
    np.testing.assert_allclose(linear.grads["W"].T, [[0.088, 0.176], [0.104, 0.208]])
    np.testing.assert_allclose(dx[0], [-0.112, 0.636])


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5), st.integers(1, 6), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_affine_backward_matches_numerical(N, D, H, seed):
    rng = np.random.default_rng(seed)
    X, W, b, dY = rng.standard_normal((N, D)), rng.standard_normal((D, H)), rng.standard_normal(H), \
        rng.standard_normal((N, H))
    linear = Linear(W, b)
    linear.forward(X)
    dX = linear.backward(dY)
    forward = lambda: linear.forward(X)                                          # noqa: E731
    np.testing.assert_allclose(dX, numerical_gradient(forward, X, dY), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(linear.grads["W"], numerical_gradient(forward, W, dY), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(linear.grads["b"], numerical_gradient(forward, b, dY), rtol=1e-7, atol=1e-9)


def test_affine_backward_is_the_matrix_formulas():
    rng = np.random.default_rng(0)
    X, W, b, dY = rng.standard_normal((7, 3)), rng.standard_normal((3, 5)), rng.standard_normal(5), \
        rng.standard_normal((7, 5))
    linear = Linear(W, b)
    np.testing.assert_allclose(linear.forward(X), X @ W + b)
    np.testing.assert_allclose(linear.backward(dY), dY @ W.T)
    np.testing.assert_allclose(linear.grads["W"], X.T @ dY)
    np.testing.assert_allclose(linear.grads["b"], dY.sum(axis=0))


def test_first_layer_skips_the_input_gradient():
    linear = Linear(np.ones((3, 2)), np.zeros(2), input_grad=False)
    linear.forward(np.ones((4, 3)))
    assert linear.backward(np.ones((4, 2))) is None
    np.testing.assert_array_equal(linear.grads["W"], np.full((3, 2), 4.0))


def elementwise_gates():
    return [ReLU(), LeakyReLU(0.1), LeakyReLU(0.0), ELU(1.0), ELU(0.5), ELU(3.0), Sigmoid(), Tanh()]


@pytest.mark.parametrize("gate", elementwise_gates(), ids=lambda g: f"{g.name}-{vars(g)}")
def test_elementwise_forward_and_backward(gate):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((6, 5)) * 2
    X[np.abs(X) < 1e-3] = 0.5                       # keep away from the kink at 0
    dY = rng.standard_normal((6, 5))
    reference = {"relu": np.maximum(X, 0), "leaky_relu": np.where(X > 0, X, X * getattr(gate, "slope", 0)),
                 "elu": np.where(X > 0, X, getattr(gate, "alpha", 0) * (np.exp(X) - 1)),
                 "sigmoid": 1 / (1 + np.exp(-X)), "tanh": np.tanh(X)}[gate.name]
    np.testing.assert_allclose(gate.forward(X), reference, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gate.backward(dY), numerical_gradient(lambda: gate.forward(X), X, dY),
                               rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("gate", elementwise_gates() + [Maxout(3)], ids=lambda g: g.name)
def test_in_place_gives_the_same_results_and_reuses_the_buffers(gate):
    rng = np.random.default_rng(2)
    X, dY = rng.standard_normal((4, 6)).astype(np.float32), rng.standard_normal((4, 6 // gate.pieces))
    dY = dY.astype(np.float32)
    Y, dX = gate.forward(X).copy(), gate.backward(dY).copy()
    X_in, dY_in = X.copy(), dY.copy()
    gate.inplace = True
    Y_in = gate.forward(X_in)
    dX_in = gate.backward(dY_in)
    np.testing.assert_array_equal(Y_in, Y)
    np.testing.assert_array_equal(dX_in, dX)
    assert Y_in.dtype == dX_in.dtype == np.float32
    if gate.pieces == 1:                             # maxout changes the shape, so it cannot reuse
        assert np.shares_memory(Y_in, X_in)


def test_sigmoid_is_stable_for_huge_inputs():
    sigmoid = Sigmoid()
    with np.errstate(all="raise"):
        Y = sigmoid.forward(np.array([[-1e4, -50.0, 0.0, 50.0, 1e4]], dtype=np.float32))
        dX = sigmoid.backward(np.ones((1, 5), dtype=np.float32))
    np.testing.assert_allclose(Y, [[0, 0, 0.5, 1, 1]], atol=1e-7)
    np.testing.assert_allclose(dX, [[0, 0, 0.25, 0, 0]], atol=1e-7)


def test_maxout_takes_the_max_of_each_units_pieces_and_routes_the_gradient_to_it():
    # 2 units, 3 pieces: piece p of unit h is column p·2 + h
    X = np.array([[1.0, -5.0, 4.0, -1.0, 2.0, -3.0]])
    maxout = Maxout(3)
    np.testing.assert_array_equal(maxout.forward(X), [[4.0, -1.0]])
    np.testing.assert_array_equal(maxout.region(), [[1, 1]])
    np.testing.assert_array_equal(maxout.backward(np.array([[10.0, 20.0]])), [[0, 0, 10, 20, 0, 0]])


def test_region_marks_the_linear_piece():
    X = np.array([[-1.0, 2.0]])
    for gate in (ReLU(), LeakyReLU(0.1), ELU(1.0)):
        gate.forward(X)
        np.testing.assert_array_equal(gate.region(), [[False, True]])
    for gate in (Sigmoid(), Tanh(), Linear(np.eye(2), np.zeros(2))):
        gate.forward(X)
        assert gate.region() is None


def test_activation_registry_reads_the_model_config():
    cfg = ModelConfig(leaky_slope=0.3, elu_alpha=2.0)
    gates = {name: make(cfg) for name, make in ACTIVATIONS.items()}
    assert {name: gate.name for name, gate in gates.items()} == {name: name for name in ACTIVATIONS}
    assert gates["leaky_relu"].slope == 0.3 and gates["elu"].alpha == 2.0


def test_every_activation_declares_the_width_it_takes():
    cfg = ModelConfig(maxout_pieces=3)
    X = np.random.default_rng(3).standard_normal((4, 3 * 5))
    for name, make in ACTIVATIONS.items():
        gate = make(cfg)
        assert gate.pieces == (3 if name == "maxout" else 1)
        assert gate.forward(X[:, :5 * gate.pieces]).shape == (4, 5)


def batch_norm_reference(X, gamma, beta, eps):
    """The forward pass as a staged graph (CS231n's batchnorm_forward), and its backward stage by stage."""
    N = len(X)
    mu = X.sum(axis=0) / N
    xmu = X - mu
    var = (xmu ** 2).sum(axis=0) / N
    sqrtvar = np.sqrt(var + eps)
    ivar = 1 / sqrtvar
    xhat = xmu * ivar

    def backward(dY):
        dxhat = dY * gamma
        divar = np.sum(dxhat * xmu, axis=0)
        dxmu = dxhat * ivar
        dsqrtvar = -divar / sqrtvar ** 2
        dvar = 0.5 * dsqrtvar / sqrtvar
        dxmu += 2 * xmu * dvar / N
        return dxmu - dxmu.sum(axis=0) / N

    return gamma * xhat + beta, mu, var, backward


def standardizing_gates(H, rng):
    batch, layer = BatchNorm(H, momentum=0.8, eps=1e-5), LayerNorm(H, eps=1e-5)
    for gate in (batch, layer):
        gate.params["gamma"][:] = rng.standard_normal(H)
        gate.params["beta"][:] = rng.standard_normal(H)
        gate.training = True
    return batch, layer


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 6), st.integers(2, 5), st.integers(0, 2**32 - 1))
def test_batch_norm_training_forward_and_backward(N, H, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, H)) * rng.uniform(0.5, 3, H) + rng.standard_normal(H)
    dY = rng.standard_normal((N, H))
    gate, _ = standardizing_gates(H, rng)
    gamma, beta = gate.params["gamma"], gate.params["beta"]
    Y, mu, var, reference_backward = batch_norm_reference(X, gamma, beta, 1e-5)
    np.testing.assert_allclose(gate.forward(X), Y, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gate.buffers["running_mean"], 0.2 * mu, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gate.buffers["running_var"], 0.8 + 0.2 * var, rtol=1e-12)
    dX = gate.backward(dY)
    np.testing.assert_allclose(dX, reference_backward(dY), rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(gate.grads["gamma"], np.sum(dY * (Y - beta) / gamma, axis=0), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(gate.grads["beta"], dY.sum(axis=0), rtol=1e-12)
    buffers = {key: array.copy() for key, array in gate.buffers.items()}
    forward = lambda: gate.forward(X)                                            # noqa: E731
    np.testing.assert_allclose(dX, numerical_gradient(forward, X, dY), rtol=1e-5, atol=1e-8)
    for key in ("gamma", "beta"):
        np.testing.assert_allclose(gate.grads[key], numerical_gradient(forward, gate.params[key], dY),
                                   rtol=1e-5, atol=1e-8)
    assert not np.array_equal(gate.buffers["running_mean"], buffers["running_mean"])   # every forward updates


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5), st.integers(2, 6), st.integers(0, 2**32 - 1))
def test_layer_norm_forward_and_backward(N, H, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, H)) * rng.uniform(0.5, 3, (N, 1)) + rng.standard_normal((N, 1))
    dY = rng.standard_normal((N, H))
    _, gate = standardizing_gates(H, rng)
    gamma, beta = gate.params["gamma"], gate.params["beta"]
    Y, *_ = batch_norm_reference(X.T, 1.0, 0.0, 1e-5)              # each sample's units, standardized
    np.testing.assert_allclose(gate.forward(X), Y.T * gamma + beta, rtol=1e-10, atol=1e-12)
    gate.training = False
    np.testing.assert_allclose(gate.forward(X), Y.T * gamma + beta, rtol=1e-10, atol=1e-12)
    dX = gate.backward(dY)
    _, _, _, reference_backward = batch_norm_reference(X.T, gamma[:, None], 0.0, 1e-5)
    np.testing.assert_allclose(dX, reference_backward(dY.T).T, rtol=1e-7, atol=1e-10)
    forward = lambda: gate.forward(X)                                            # noqa: E731
    np.testing.assert_allclose(dX, numerical_gradient(forward, X, dY), rtol=1e-5, atol=1e-8)
    for key in ("gamma", "beta"):
        np.testing.assert_allclose(gate.grads[key], numerical_gradient(forward, gate.params[key], dY),
                                   rtol=1e-5, atol=1e-8)


def test_batch_norm_running_averages_approach_the_data_statistics_and_score_with_them():
    rng = np.random.default_rng(4)
    mean, std = np.array([3.0, -1.0, 0.0]), np.array([2.0, 0.5, 1.0])
    gate = BatchNorm(3, momentum=0.9)
    gate.training = True
    for _ in range(200):
        gate.forward(rng.standard_normal((50, 3)) * std + mean)
    np.testing.assert_allclose(gate.buffers["running_mean"], mean, atol=0.15)
    np.testing.assert_allclose(gate.buffers["running_var"], std ** 2, rtol=0.1)
    gate.training = False
    buffers = {key: array.copy() for key, array in gate.buffers.items()}
    X = rng.standard_normal((4, 3)) * std + mean
    expected = (X - buffers["running_mean"]) / np.sqrt(buffers["running_var"] + gate.eps)
    np.testing.assert_allclose(gate.forward(X), expected, rtol=1e-12)
    np.testing.assert_allclose(gate.forward(X[2:3]), expected[2:3], rtol=1e-12)    # no batch dependence
    assert all(np.array_equal(gate.buffers[key], buffers[key]) for key in buffers)  # scoring leaves them


def test_dropout_scoring_is_the_identity():
    gate = Dropout(0.5, np.random.default_rng(0))
    X = np.random.default_rng(1).standard_normal((3, 4))
    assert gate.forward(X) is X


@settings(max_examples=20, deadline=None)
@given(st.floats(0.05, 0.95), st.integers(0, 2**32 - 1))
def test_dropout_keeps_units_with_probability_one_minus_rate_and_scales_them(rate, seed):
    gate = Dropout(rate, np.random.default_rng(seed))
    gate.training = True
    X = np.random.default_rng(seed + 1).uniform(1, 2, (100, 200)).astype(np.float32)
    Y = gate.forward(X)
    kept = Y != 0
    assert Y.dtype == np.float32
    np.testing.assert_allclose(Y[kept], X[kept] / np.float32(1 - rate), rtol=1e-6)
    # 20,000 Bernoulli draws: the kept fraction is within 5 standard deviations of 1 − rate
    assert abs(kept.mean() - (1 - rate)) < 5 * np.sqrt(rate * (1 - rate) / kept.size)
    assert abs(np.mean(Y / X) - 1) < 5 * np.sqrt(rate / (1 - rate) / Y.size)   # E[Y] = X: mask/(1 − rate) has mean 1


def test_dropout_masks_come_from_its_generator_and_backward_uses_the_forward_mask():
    X, dY = np.ones((6, 8)), np.random.default_rng(2).standard_normal((6, 8))
    a, b = Dropout(0.5, np.random.default_rng(7)), Dropout(0.5, np.random.default_rng(7))
    a.training = b.training = True
    first, again = a.forward(X), b.forward(X)
    np.testing.assert_array_equal(first, again)                       # same generator state, same mask
    assert not np.array_equal(a.forward(X), first)                    # the next step draws a new one
    np.testing.assert_array_equal(b.backward(dY), dY * first)         # X = 1: the output is the mask
    rng = np.random.default_rng(9)
    gate = Dropout(0.3, rng)
    gate.training = True
    state = rng.bit_generator.state
    gate.forward(X)
    dX = gate.backward(dY)

    def forward():
        rng.bit_generator.state = state                               # the same mask every time
        return gate.forward(X)

    np.testing.assert_allclose(dX, numerical_gradient(forward, X, dY), rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("make", [lambda: BatchNorm(6, dtype=np.float32), lambda: LayerNorm(6, dtype=np.float32),
                                  lambda: Dropout(0.4, np.random.default_rng(5))],
                         ids=["batch_norm", "layer_norm", "dropout"])
def test_normalization_and_dropout_in_place_give_the_same_results(make):
    rng = np.random.default_rng(3)
    X, dY = rng.standard_normal((4, 6)).astype(np.float32), rng.standard_normal((4, 6)).astype(np.float32)
    results = []
    for inplace in (False, True):
        gate = make()
        gate.training, gate.inplace = True, inplace
        X_in, dY_in = X.copy(), dY.copy()
        Y = gate.forward(X_in).copy()
        dX = gate.backward(dY_in)
        assert Y.dtype == dX.dtype == np.float32
        assert np.shares_memory(dX, dY_in) == inplace
        results.append((Y, dX.copy(), {key: grad.copy() for key, grad in gate.grads.items()}))
    (Y, dX, grads), (Y_in, dX_in, grads_in) = results
    np.testing.assert_array_equal(Y_in, Y)
    np.testing.assert_array_equal(dX_in, dX)
    assert all(np.array_equal(grads[key], grads_in[key]) for key in grads)
