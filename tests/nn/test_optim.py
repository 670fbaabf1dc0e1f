"""Optimizers against hand-computed updates, their state round trip, and the learning-rate schedules."""

from __future__ import annotations

import numpy as np
import pytest

from mlpcli.config import OptimConfig
from mlpcli.errors import CheckpointError
from mlpcli.nn.optim import OPTIMIZERS, learning_rate

G1, G2 = np.array([0.5, -1.0]), np.array([1.0, 1.0])


def run(name, grads, **cfg):
    params = {"w": np.array([1.0, 2.0])}
    w = params["w"]
    optimizer = OPTIMIZERS[name](params, OptimConfig(name=name, **cfg))
    for grad in grads:
        optimizer.step({"w": grad}, lr=0.1)
    assert params["w"] is w                               # updated in place
    return w


def test_sgd():
    np.testing.assert_allclose(run("sgd", [G1]), [1 - 0.05, 2 + 0.1])


def test_momentum():
    # v1 = g1 = (0.5, −1), p1 = (0.95, 2.1); v2 = 0.9·v1 + g2 = (1.45, 0.1), p2 = p1 − 0.1·v2
    np.testing.assert_allclose(run("momentum", [G1, G2], momentum=0.9), [0.805, 2.09])


def test_nesterov():
    # v1 = g1; p1 = p0 − 0.1·(g1 + 0.9·v1) = p0 − 0.19·g1
    np.testing.assert_allclose(run("momentum", [G1], momentum=0.9, nesterov=True), [0.905, 2.19])


def test_rmsprop():
    # s = 0.1·g² = (0.025, 0.1); p = p0 − 0.1·g/√s = p0 − 0.1·(3.1623, −3.1623)
    np.testing.assert_allclose(run("rmsprop", [G1], rho=0.9, eps=1e-8), [0.6837722, 2.3162278], rtol=1e-7)


def test_adam():
    # step 1: m̂ = g, v̂ = g², so p moves lr·sign(g) = (0.9, 2.1)
    np.testing.assert_allclose(run("adam", [G1], beta1=0.9, beta2=0.999, eps=1e-8), [0.9, 2.1], rtol=1e-7)
    # step 2: m = (0.145, 0.01), v = (0.00124975, 0.001999); m̂ = m/0.19, v̂ = v/0.001999
    np.testing.assert_allclose(run("adam", [G1, G2], beta1=0.9, beta2=0.999, eps=1e-8), [0.8034818, 2.0947368],
                               rtol=1e-7)


def test_float32_stays_float32():
    params = {"w": np.ones(3, dtype=np.float32)}
    optimizer = OPTIMIZERS["adam"](params, OptimConfig(name="adam"))
    optimizer.step({"w": np.ones(3, dtype=np.float32)}, lr=0.01)
    assert params["w"].dtype == np.float32 and optimizer.state()["m.w"].dtype == np.float32


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_state_round_trip_continues_identically(name):
    rng = np.random.default_rng(0)
    grads = [{"W": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)} for _ in range(4)]
    cfg = OptimConfig(name=name, nesterov=True)
    params = {"W": np.ones((3, 2)), "b": np.zeros(2)}
    optimizer = OPTIMIZERS[name](params, cfg)
    for g in grads[:2]:
        optimizer.step(g, lr=0.1)
    state = optimizer.state()
    resumed_params = {key: value.copy() for key, value in params.items()}
    resumed = OPTIMIZERS[name](resumed_params, cfg)
    resumed.load_state(state)
    for g in grads[2:]:
        optimizer.step(g, lr=0.1)
        resumed.step(g, lr=0.1)
    for key in params:
        np.testing.assert_array_equal(resumed_params[key], params[key])
    assert int(state["t"]) == 2 and resumed.t == 4


def test_state_is_a_snapshot():
    params = {"w": np.zeros(2)}
    optimizer = OPTIMIZERS["momentum"](params, OptimConfig(name="momentum"))
    optimizer.step({"w": np.ones(2)}, lr=0.1)
    state = optimizer.state()
    optimizer.step({"w": np.ones(2)}, lr=0.1)
    np.testing.assert_array_equal(state["velocity.w"], [1.0, 1.0])


def test_load_state_names_what_does_not_fit():
    params = {"W": np.ones((3, 2))}
    optimizer = OPTIMIZERS["adam"](params, OptimConfig(name="adam"))
    state = optimizer.state()
    with pytest.raises(CheckpointError, match="'v.W' is missing"):
        optimizer.load_state({k: v for k, v in state.items() if k != "v.W"})
    with pytest.raises(CheckpointError, match=r"'m.W' is float64 \(2, 3\).*float64 \(3, 2\)"):
        optimizer.load_state(state | {"m.W": np.zeros((2, 3))})
    momentum = OPTIMIZERS["momentum"](params, OptimConfig(name="momentum"))
    with pytest.raises(CheckpointError, match="'velocity.W' is missing"):
        momentum.load_state(state)


def test_constant_schedule():
    cfg = OptimConfig(lr=0.1, schedule="constant")
    assert [learning_rate(cfg, e, 10) for e in (0, 5, 9)] == [0.1, 0.1, 0.1]


def test_step_schedule():
    cfg = OptimConfig(lr=0.1, schedule="step", decay=0.5, step_every=2)
    assert [learning_rate(cfg, e, 10) for e in range(5)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])


def test_cosine_schedule():
    cfg = OptimConfig(lr=0.1, schedule="cosine", min_lr=0.02)
    rates = [learning_rate(cfg, e, 4) for e in range(4)]
    # (1 + cos(π·e/4))/2 = 1, 0.8536, 0.5, 0.1464
    assert rates == pytest.approx([0.1, 0.0882843, 0.06, 0.0317157])
    assert learning_rate(cfg, 4, 4) == pytest.approx(0.02)
