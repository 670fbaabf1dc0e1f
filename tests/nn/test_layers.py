"""The gates: the lecture's worked examples, and every backward against numerical derivatives."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlpcli.config import ModelConfig
from mlpcli.nn.layers import ACTIVATIONS, ELU, LeakyReLU, Linear, Maxout, ReLU, Sigmoid, Tanh


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
    X, dY = rng.standard_normal((4, 6)).astype(np.float32), rng.standard_normal((4, 2 if gate.name == "maxout" else 6))
    dY = dY.astype(np.float32)
    Y, dX = gate.forward(X).copy(), gate.backward(dY).copy()
    X_in, dY_in = X.copy(), dY.copy()
    gate.inplace = True
    Y_in = gate.forward(X_in)
    dX_in = gate.backward(dY_in)
    np.testing.assert_array_equal(Y_in, Y)
    np.testing.assert_array_equal(dX_in, dX)
    assert Y_in.dtype == dX_in.dtype == np.float32
    if gate.name != "maxout":                        # maxout changes the shape, so it cannot reuse
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
