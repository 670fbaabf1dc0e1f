"""Numerical gradient checks: analytic gradients against centered differences, in float64.

For every checked entry x: numerical = (f(x + h) − f(x − h)) / 2h, relative error
|a − n| / max(1e-8, |a| + |n|). An entry whose ±h perturbation moves any gate (or the hinge) to another
linear piece than the unperturbed forward — a kink crossing, where the derivative jumps — is counted
as `kinked` and left out instead of failing.

Round-off: each numerical derivative is only known to ±r = 10 ε·(|f(x+h)| + |f(x−h)|) / 2h (for a
gate, summed over the outputs that moved; the gate checks difference the outputs element-wise before
weighting them with the upstream gradient, so unchanged outputs add nothing; for the network, from the
loss even when it did not move). Where |a| + |n| < r / threshold a relative error below the threshold
cannot be resolved — a hinge net's output-bias gradient, for one, is often exactly zero, a sum of ±1/N
that cancels — so such entries are counted as `near_zero` and pass when |a − n| ≤ r. A small batch of
unit-scale inputs keeps the loss of order one and r near 1e-10.

Dropout and batch norm are checked with their training behaviour — the function whose gradient a
training step uses: batch statistics, and the same dropout masks in every evaluation (the mask
generator is rewound before each one). A check leaves the model's running averages and generator as
it found them.
"""

from __future__ import annotations

import math

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from mlpcli.nn.layers import ACTIVATIONS, NORMS, Dropout, Gate, Linear
from mlpcli.nn.losses import LOSSES
from mlpcli.nn.model import MLP

ROUNDOFF = 10 * np.finfo(np.float64).eps
"""Relative round-off allowed on each output value of the ±h evaluations (measured: below 4 ε)."""

GATE_BATCH, GATE_INPUTS, GATE_UNITS, GATE_CLASSES = 5, 4, 6, 3
"""Shapes N, D, H, C of the random inputs `check_gates` feeds each gate: small, so every entry is checked."""


@dataclass
class GradCheckRow:
    """The outcome for one gradient array."""

    name: str
    shape: tuple[int, ...]
    max_rel_error: float     # over the entries checked
    checked: int             # entries compared
    kinked: int              # entries skipped because ±h crossed a kink
    near_zero: int           # checked entries too close to zero for a relative error, compared absolutely
    passed: bool             # something was checked and max_rel_error < threshold


def relative_error(analytic: float, numerical: float) -> float:
    return abs(analytic - numerical) / max(1e-8, abs(analytic) + abs(numerical))


def check_model(model: MLP, X: np.ndarray, y: np.ndarray, *, h: float = 1e-5, samples: int | None = None,
                rng: np.random.Generator | None = None, threshold: float = 1e-6) -> list[GradCheckRow]:
    """One row per parameter of a float64 `model` on the batch X (N, D), y (N,): all entries, or a
    seeded sample of `samples` entries per parameter."""
    if model.dtype != np.float64:
        raise ValueError(f"gradient checks need a float64 model, got {model.dtype}")
    rng = rng if rng is not None else np.random.default_rng(0)
    buffers = {name: array.copy() for name, array in model.buffers.items()}
    masks = _Rewind(model.rng)
    model.loss_and_grads(X, y)
    parts = [*model.gates, model.loss]
    base = _regions(parts)

    def evaluate():
        masks.rewind()
        return model.loss(model.forward(X, training=True), y)[0] + model.penalty(), _regions(parts)

    rows = []
    for name, param in model.params.items():
        analytic = model.grads[name].copy()
        size = param.size
        indices = range(size) if samples is None or samples >= size else np.sort(
            rng.choice(size, samples, replace=False))
        rows.append(_check(name, param, analytic, evaluate, 1.0, base, h, indices, threshold))
    masks.rewind()
    for name, array in model.buffers.items():
        np.copyto(array, buffers[name])
    return rows


def jitter_constants(model: MLP, rng: np.random.Generator, scale: float = 1.0) -> None:
    """Move the parameters that start as constants — biases (0), γ (1), β (0) — by N(0, scale²) each, so
    that a check of a freshly built model does not sit on a kink: an input row of zeros (a sample whose
    units were all dropped or off) gives every unit its bias, and exactly 0 is ReLU's kink."""
    for name, array in model.params.items():
        if not name.endswith(".W"):
            array += scale * rng.standard_normal(array.shape)


def check_gates(model_cfg, loss_cfg, rng: np.random.Generator, *, h: float = 1e-5,
                threshold: float = 1e-6) -> list[GradCheckRow]:
    """Each gate type of the configured net alone — Linear, the norm, the activation, dropout, the loss —
    on random unit-scale float64 inputs and a random upstream gradient: dX and the parameter gradients
    against numerical ones."""
    N, D, H, C = GATE_BATCH, GATE_INPUTS, GATE_UNITS, GATE_CLASSES
    model_cfg = replace(model_cfg, dtype="float64")
    linear = Linear(rng.standard_normal((D, H)), rng.standard_normal(H))
    activation = ACTIVATIONS[model_cfg.activation](model_cfg)
    width = H * activation.pieces
    rows = _check_gate(linear, rng.standard_normal((N, D)), rng.standard_normal((N, H)), h, threshold)
    if model_cfg.norm != "none":
        norm = NORMS[model_cfg.norm](width, model_cfg)
        for array in norm.params.values():
            array[:] = rng.standard_normal(width)
        norm.training = True
        rows += _check_gate(norm, rng.standard_normal((N, width)), rng.standard_normal((N, width)), h, threshold)
    rows += _check_gate(activation, rng.standard_normal((N, width)), rng.standard_normal((N, H)), h, threshold)
    rates = [model_cfg.input_dropout, *model_cfg.dropout_rates]
    if any(rates):
        dropout = Dropout(max(rates), rng.spawn(1)[0])
        dropout.training = True
        rows += _check_gate(dropout, rng.standard_normal((N, H)), rng.standard_normal((N, H)), h, threshold,
                            masks=dropout.rng)

    loss = LOSSES[loss_cfg.name](loss_cfg)
    scores, y = rng.standard_normal((N, C)), rng.integers(0, C, N)
    _, dscores = loss(scores, y)
    base = _regions([loss])

    def evaluate():
        return loss(scores, y)[0], _regions([loss])

    rows.append(_check(f"{loss.name}.dscores", scores, dscores, evaluate, 1.0, base, h, range(scores.size),
                       threshold))
    return rows


def _check_gate(gate: Gate, X: np.ndarray, dY: np.ndarray, h: float, threshold: float,
                masks: np.random.Generator | None = None) -> list[GradCheckRow]:
    """Rows for dX and every parameter of `gate`, seen as f = Σ forward(X)·dY; `masks`, the generator of
    a dropout gate, is rewound before every evaluation."""
    masks = _Rewind(masks)
    gate.forward(X)
    base = _regions([gate])
    analytic = {"dX": gate.backward(dY)} | {key: grad.copy() for key, grad in gate.grads.items()}

    def evaluate():
        masks.rewind()
        return gate.forward(X), _regions([gate])

    arrays = {"dX": X} | gate.params
    return [_check(f"{gate.name}.{key}", array, analytic[key], evaluate, dY, base, h, range(array.size), threshold)
            for key, array in arrays.items()]


class _Rewind:
    """Puts a generator (or None) back to the state it had when this was made: dropout draws the same
    masks in every evaluation of a check."""

    def __init__(self, rng: np.random.Generator | None) -> None:
        self.rng = rng
        self.state = rng.bit_generator.state if rng is not None else None

    def rewind(self) -> None:
        if self.rng is not None:
            self.rng.bit_generator.state = self.state


def _check(name: str, array: np.ndarray, analytic: np.ndarray,
           evaluate: Callable[[], tuple[np.ndarray | float, list[np.ndarray]]], upstream: np.ndarray | float,
           base: list[np.ndarray], h: float, indices: Sequence[int], threshold: float) -> GradCheckRow:
    """Compare analytic[i] with Σ(out(x_i + h) − out(x_i − h))·upstream / 2h for each flat index i of `array`."""
    flat = array.reshape(-1)            # a view: writing it perturbs the array the model or gate reads
    assert np.shares_memory(flat, array)
    worst, checked, kinked, near_zero = 0.0, 0, 0, 0
    for i in indices:
        old = flat[i]
        flat[i] = old + h
        plus, regions_plus = evaluate()
        flat[i] = old - h
        minus, regions_minus = evaluate()
        flat[i] = old
        if _moved(regions_plus, base) or _moved(regions_minus, base):
            kinked += 1
            continue
        checked += 1
        a = float(analytic.reshape(-1)[i])
        n = float(np.sum((plus - minus) * upstream)) / (2 * h)
        resolution = _resolution(plus, minus, upstream, h)
        if not np.isfinite([a, n, resolution]).all():     # overflow: nothing to compare, and a failure
            worst = math.inf
            continue
        if abs(a) + abs(n) < resolution / threshold:
            near_zero += 1
            if abs(a - n) <= resolution:
                continue
        worst = max(worst, relative_error(a, n))
    return GradCheckRow(name, array.shape, worst, checked, kinked, near_zero, checked > 0 and worst < threshold)


def _resolution(plus, minus, upstream, h: float) -> float:
    """The round-off bound of the numerical derivative: ROUNDOFF relative error on every output of a gate
    that moved (one that did not is taken not to depend on the entry), and always on the loss (a change
    below its last bit leaves it unmoved: batch norm's gradients can be that small)."""
    spread = (np.abs(plus) + np.abs(minus)) * np.abs(upstream)
    moved = plus != minus if np.ndim(plus) else True
    return ROUNDOFF * float(np.sum(np.where(moved, spread, 0))) / (2 * h)


def _regions(parts: list) -> list[np.ndarray]:
    return [region.copy() for part in parts if (region := part.region()) is not None]


def _moved(regions: list[np.ndarray], base: list[np.ndarray]) -> bool:
    return any(not np.array_equal(now, then) for now, then in zip(regions, base))
