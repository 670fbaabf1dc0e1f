"""Update rules that change the model's parameter arrays in place, and learning-rate schedules.

An optimizer is built on the `params` dict it updates; `step(grads, lr)` applies one update; its
`state()` (velocities, moments, step count) is a dict of arrays, saved in checkpoints so a resumed
run continues exactly.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np

from mlpcli.errors import CheckpointError
from mlpcli.parallel import elementwise


class Optimizer:
    """Keeps one slot array per parameter for each name in `slots`, plus the step count `t`. `update` changes a
    block of a parameter, of its gradient and of its slots (in the order of `slots`) in place."""

    slots: tuple[str, ...] = ()

    def __init__(self, params: dict[str, np.ndarray], cfg) -> None:
        self.params = params
        self.cfg = cfg
        self.t = 0
        self.slot = {slot: {name: np.zeros_like(p) for name, p in params.items()} for slot in self.slots}

    def step(self, grads: dict[str, np.ndarray], lr: float) -> None:
        """Update every parameter from its gradient with learning rate `lr`."""
        self.t += 1
        for name, param in self.params.items():
            slots = [self.slot[slot][name] for slot in self.slots]
            elementwise(partial(self.update, lr=lr), param, grads[name], *slots)

    def update(self, param: np.ndarray, grad: np.ndarray, *slots: np.ndarray, lr: float) -> None:
        raise NotImplementedError

    def state(self) -> dict[str, np.ndarray]:
        """Copies of the slots as "slot.param" arrays, and the step count as "t"."""
        state = {key: array.copy() for key, array in self._slot_arrays()}
        state["t"] = np.array(self.t, dtype=np.int64)
        return state

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore `state()` output, after checking that every array is there with the right shape and dtype."""
        expected = dict(self._slot_arrays(), t=np.array(self.t, dtype=np.int64))
        for key, array in expected.items():
            if key not in state:
                raise CheckpointError(f"optimizer state '{key}' is missing from the checkpoint; "
                                      f"was it saved with another optimizer than '{self.cfg.name}'?")
            if state[key].shape != array.shape or state[key].dtype != array.dtype:
                raise CheckpointError(f"optimizer state '{key}' is {state[key].dtype} {state[key].shape} in the "
                                      f"checkpoint, but {array.dtype} {array.shape} is needed")
        for key, array in self._slot_arrays():
            np.copyto(array, state[key])
        self.t = int(state["t"])

    def _slot_arrays(self):
        """("slot.param", live slot array) pairs."""
        for slot, arrays in self.slot.items():
            for name, array in arrays.items():
                yield f"{slot}.{name}", array


class SGD(Optimizer):
    """p ← p − lr·g."""

    def update(self, param, grad, lr):
        param -= lr * grad


class Momentum(Optimizer):
    """v ← μv + g; p ← p − lr·v, or with Nesterov p ← p − lr·(g + μv) (PyTorch's form: v holds no lr,
    so a learning-rate change takes effect at once)."""

    slots = ("velocity",)

    def update(self, param, grad, v, lr):
        v *= self.cfg.momentum
        v += grad
        if self.cfg.nesterov:
            param -= lr * (grad + self.cfg.momentum * v)
        else:
            param -= lr * v


class RMSProp(Optimizer):
    """s ← ρs + (1 − ρ)g²; p ← p − lr·g / (√s + ε)."""

    slots = ("square",)

    def update(self, param, grad, s, lr):
        s *= self.cfg.rho
        s += (1 - self.cfg.rho) * np.square(grad)
        denom = np.sqrt(s)
        denom += self.cfg.eps
        param -= lr * grad / denom


class Adam(Optimizer):
    """m ← β1·m + (1 − β1)g; v ← β2·v + (1 − β2)g²; p ← p − lr·m̂ / (√v̂ + ε) with bias-corrected
    m̂ = m / (1 − β1ᵗ), v̂ = v / (1 − β2ᵗ)."""

    slots = ("m", "v")

    def update(self, param, grad, m, v, lr):
        beta1, beta2 = self.cfg.beta1, self.cfg.beta2
        m *= beta1
        m += (1 - beta1) * grad
        v *= beta2
        v += (1 - beta2) * np.square(grad)
        denom = np.sqrt(v / (1 - beta2 ** self.t))
        denom += self.cfg.eps
        param -= (lr / (1 - beta1 ** self.t)) * m / denom


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "rmsprop": RMSProp, "adam": Adam}
"""Optimizer name → class taking (params, OptimConfig)."""


def learning_rate(cfg, epoch: int, epochs: int) -> float:
    """The rate for `epoch` (counted from 0) of `epochs`: constant, step (lr·decay^(epoch // step_every))
    or cosine (min_lr + (lr − min_lr)(1 + cos(π·epoch/epochs))/2)."""
    if cfg.schedule == "step":
        return cfg.lr * cfg.decay ** (epoch // cfg.step_every)
    if cfg.schedule == "cosine":
        return cfg.min_lr + (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * epoch / epochs)) / 2
    return cfg.lr
