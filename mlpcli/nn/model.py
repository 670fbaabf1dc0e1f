"""The multilayer perceptron: gates run in order for the scores, in reverse for the gradients.

Each hidden layer is Linear → [norm] → activation → [dropout]; before batch norm the Linear has no bias
(batch norm subtracts it with the batch mean, and its β takes the bias's place). Dropout of the input
features, when asked (`model.input_dropout`), comes before the first Linear.

Loss = data loss + λ·Σ_k ΣW_k² over the weight matrices only (biases and the norms' γ, β are not
regularized), so the weight gradient gains 2λW. scikit-learn's MLPClassifier uses (α/2)·ΣW² with the
data loss averaged over the batch (λ = α/2); the CS231n assignments use λ·ΣW² as here.

Training and scoring: `loss_and_grads` runs the training behaviour (dropout masks, batch statistics and
running-average updates), `scores` the scoring behaviour (no dropout, the running averages).
"""

from __future__ import annotations

from collections import Counter
from functools import partial

import numpy as np

from mlpcli.errors import CheckpointError
from mlpcli.nn.layers import ACTIVATIONS, NORMS, Activation, BatchNorm, Dropout, Gate, Linear
from mlpcli.nn.losses import LOSSES
from mlpcli.parallel import elementwise


class MLP:
    """Gates ([dropout,] Linear, [norm,] activation, [dropout,] …, Linear) plus a data loss and the L2 strength
    `reg` (λ).

    `params`/`grads` hold every trainable array by name ("layer{i}.W", "layer{i}.b" of the i-th Linear,
    "norm{i}.gamma", "norm{i}.beta" of the i-th norm), `buffers` the arrays that are kept but not trained
    ("norm{i}.running_mean", "norm{i}.running_var"); `rng` is the generator dropout draws its masks from.
    """

    def __init__(self, gates: list[Gate], loss, reg: float, rng: np.random.Generator | None = None) -> None:
        self.gates = gates
        self.loss = loss
        self.reg = reg
        self.rng = rng
        self.params = _named(gates, "params")
        self.grads = _named(gates, "grads")
        self.buffers = _named(gates, "buffers")
        self.input_dim, _ = self.params["layer0.W"].shape
        self.dtype = self.params["layer0.W"].dtype

    @classmethod
    def from_config(cls, input_dim: int, num_classes: int, model_cfg, loss_cfg, reg: float,
                    rng: np.random.Generator, dropout_rng: np.random.Generator | None = None) -> MLP:
        """The network `model_cfg` describes: hidden [] is a linear classifier, [H] a 2-layer net, [H1, H2]
        a 3-layer net, and so on. Weights are drawn from `rng`; dropout masks (of the inputs, then of each
        hidden layer, in every training step) from `dropout_rng` (default: a generator spawned from `rng`),
        which becomes the model's `rng` (None without dropout)."""
        dtype = np.dtype(model_cfg.dtype)
        hidden = model_cfg.hidden
        rates = model_cfg.dropout_rates
        if not any(rates) and not model_cfg.input_dropout:
            dropout_rng = None
        elif dropout_rng is None:
            dropout_rng = rng.spawn(1)[0]
        gates: list[Gate] = []
        fan_in = input_dim
        for i, (H, rate) in enumerate(zip(hidden, rates)):
            act = ACTIVATIONS[model_cfg.activation](model_cfg)
            width = H * act.pieces
            norm = NORMS[model_cfg.norm](width, model_cfg) if model_cfg.norm != "none" else None
            bias = None if isinstance(norm, BatchNorm) else np.zeros(width, dtype=dtype)   # it would cancel out
            gates.append(Linear(init_weights(fan_in, width, model_cfg, dtype, rng), bias, input_grad=i > 0))
            gates += [norm, act] if norm else [act]
            if rate > 0:
                gates.append(Dropout(rate, dropout_rng))
            fan_in = H
        gates.append(Linear(init_weights(fan_in, num_classes, model_cfg, dtype, rng),
                            np.zeros(num_classes, dtype=dtype), input_grad=bool(hidden)))
        for gate in gates[1:]:
            gate.inplace = True                       # their inputs and upstream gradients are ours to reuse
        if model_cfg.input_dropout:
            gates.insert(0, Dropout(model_cfg.input_dropout, dropout_rng))   # never over X: it is the caller's
        return cls(gates, LOSSES[loss_cfg.name](loss_cfg), reg, dropout_rng)

    def forward(self, X: np.ndarray, training: bool = False) -> np.ndarray:
        """Class scores (N, C) for features X (N, D), with the training or the scoring behaviour."""
        out = np.asarray(X, dtype=self.dtype)
        for gate in self.gates:
            gate.training = training
            out = gate.forward(out)
        return out

    def scores(self, X: np.ndarray) -> np.ndarray:
        """Class scores (N, C) for features X (N, D), as the trained network gives them (no dropout,
        batch norm with its running averages)."""
        return self.forward(X)

    def loss_and_grads(self, X: np.ndarray, y: np.ndarray) -> tuple[float, float, np.ndarray]:
        """A training step's forward (which updates batch norm's running averages), loss and backward on a
        batch X (N, D), y (N,); fills `grads` and returns (data loss, L2 penalty, scores (N, C)): the loss
        is their sum."""
        scores = self.forward(X, training=True)
        data_loss, dout = self.loss(scores, y)
        for gate in reversed(self.gates):
            dout = gate.backward(dout)
            if dout is None:                         # the first Linear: the gates before it only touch data
                break
        return data_loss, self._regularize(), scores

    def penalty(self) -> float:
        """The L2 term λ·Σ_k ΣW_k² over the weight matrices."""
        return self.reg * sum(float(np.vdot(W, W)) for name, W in self.params.items() if name.endswith(".W"))

    def load_params(self, arrays: dict[str, np.ndarray]) -> None:
        """Copy weights from `arrays` (as saved from `params`), after checking every key, shape and dtype."""
        self._load(self.params, arrays, "array")

    def load_buffers(self, arrays: dict[str, np.ndarray]) -> None:
        """Copy the running averages from `arrays` (as saved from `buffers`), after checking them likewise."""
        self._load(self.buffers, arrays, "buffer")

    def describe(self) -> str:
        """Layer widths and the gates' names, e.g. "3072-100-10 relu softmax",
        "3072-200-100-10 batch_norm relu dropout softmax"."""
        sizes = [self.input_dim]
        for gate in self.gates:
            if isinstance(gate, Linear):
                sizes.append(gate.params["W"].shape[1])
            elif isinstance(gate, Activation):
                sizes[-1] //= gate.pieces
        names = dict.fromkeys(gate.name for gate in self.gates if not isinstance(gate, Linear))
        return " ".join(["-".join(map(str, sizes)), *names, self.loss.name])

    def _load(self, target: dict[str, np.ndarray], arrays: dict[str, np.ndarray], what: str) -> None:
        for name, array in target.items():
            if name not in arrays:
                raise CheckpointError(f"the checkpoint has no {what} '{name}', which the {self.describe()} "
                                      f"network needs; was it saved from a different model?")
            given = arrays[name]
            if given.shape != array.shape or given.dtype != array.dtype:
                raise CheckpointError(f"{what} '{name}' is {given.dtype} {given.shape} in the checkpoint but the "
                                      f"{self.describe()} network needs {array.dtype} {array.shape}; "
                                      f"check model.hidden, model.norm, model.dtype and the features")
        for name, array in target.items():
            np.copyto(array, arrays[name])

    def _regularize(self) -> float:
        """The L2 term, adding its gradient 2λW to the weight gradients."""
        if self.reg == 0:
            return 0.0
        for name, W in self.params.items():
            if name.endswith(".W"):
                elementwise(partial(_add_scaled, 2 * self.reg), self.grads[name], W)
        return self.penalty()


def _add_scaled(scale: float, total: np.ndarray, array: np.ndarray) -> None:
    """total += scale·array, in place."""
    total += scale * array


def _named(gates: list[Gate], attribute: str) -> dict[str, np.ndarray]:
    """The gates' `params`, `grads` or `buffers` under one name each: "layer{i}.<key>" for the i-th
    Linear, "norm{i}.<key>" for the i-th normalization gate."""
    seen: Counter = Counter()
    named = {}
    for gate in gates:
        if not gate.params:
            continue
        prefix = "layer" if isinstance(gate, Linear) else "norm"
        named.update({f"{prefix}{seen[prefix]}.{key}": array for key, array in getattr(gate, attribute).items()})
        seen[prefix] += 1
    return named


def init_weights(fan_in: int, fan_out: int, model_cfg, dtype: np.dtype, rng: np.random.Generator) -> np.ndarray:
    """Initial weights (fan_in, fan_out), all normal with std:
    he √(2/fan_in), xavier (Glorot normal) √(2/(fan_in + fan_out)), normal `init_std`."""
    std = {"he": np.sqrt(2 / fan_in),
           "xavier": np.sqrt(2 / (fan_in + fan_out)),
           "normal": model_cfg.init_std}[model_cfg.init]
    W = rng.standard_normal((fan_in, fan_out), dtype=dtype)
    W *= std
    return W

