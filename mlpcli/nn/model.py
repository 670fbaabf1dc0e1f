"""The multilayer perceptron: gates run in order for the scores, in reverse for the gradients.

Loss = data loss + λ·Σ_k ΣW_k² over the weight matrices only (biases are not regularized), so the
weight gradient gains 2λW. scikit-learn's MLPClassifier uses (α/2)·ΣW² with the data loss averaged
over the batch (λ = α/2); the CS231n assignments use λ·ΣW² as here.
"""

from __future__ import annotations

import numpy as np

from mlpcli.errors import CheckpointError
from mlpcli.nn.layers import ACTIVATIONS, Gate, Linear, Maxout
from mlpcli.nn.losses import LOSSES


class MLP:
    """Gates (Linear, activation, …, Linear) plus a data loss and the L2 strength `reg` (λ)."""

    def __init__(self, gates: list[Gate], loss, reg: float) -> None:
        self.gates = gates
        self.loss = loss
        self.reg = reg
        linears = [gate for gate in gates if isinstance(gate, Linear)]
        self.params = {f"layer{i}.{key}": array for i, gate in enumerate(linears) for key, array in gate.params.items()}
        self.grads = {f"layer{i}.{key}": array for i, gate in enumerate(linears) for key, array in gate.grads.items()}
        self.dtype = linears[0].params["W"].dtype

    @classmethod
    def from_config(cls, input_dim: int, num_classes: int, model_cfg, loss_cfg, reg: float,
                    rng: np.random.Generator) -> MLP:
        """The network `model_cfg` describes: hidden [] is a linear classifier, [H] a 2-layer net, and so on."""
        dtype = np.dtype(model_cfg.dtype)
        pieces = model_cfg.maxout_pieces if model_cfg.activation == "maxout" else 1
        sizes = [input_dim, *model_cfg.hidden, num_classes]
        gates: list[Gate] = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            hidden = i < len(sizes) - 2
            width = fan_out * pieces if hidden else fan_out
            W = init_weights(fan_in, width, model_cfg, dtype, rng)
            gates.append(Linear(W, np.zeros(width, dtype=dtype), input_grad=i > 0))
            if hidden:
                act = Maxout(pieces) if pieces > 1 else ACTIVATIONS[model_cfg.activation](model_cfg)
                act.inplace = True                      # its input and upstream gradient are ours to reuse
                gates.append(act)
        return cls(gates, LOSSES[loss_cfg.name](loss_cfg), reg)

    def scores(self, X: np.ndarray) -> np.ndarray:
        """Class scores (N, C) for features X (N, D)."""
        out = np.asarray(X, dtype=self.dtype)
        for gate in self.gates:
            out = gate.forward(out)
        return out

    def loss_and_grads(self, X: np.ndarray, y: np.ndarray) -> tuple[float, float, np.ndarray]:
        """Forward, loss and backward on a batch X (N, D), y (N,); fills `grads` and returns
        (data loss, L2 penalty, scores (N, C)): the loss is their sum."""
        scores = self.scores(X)
        data_loss, dout = self.loss(scores, y)
        for gate in reversed(self.gates):
            dout = gate.backward(dout)
        return data_loss, self._regularize(), scores

    def penalty(self) -> float:
        """The L2 term λ·Σ_k ΣW_k² over the weight matrices."""
        return self.reg * sum(float(np.vdot(W, W)) for name, W in self.params.items() if name.endswith(".W"))

    def load_params(self, arrays: dict[str, np.ndarray]) -> None:
        """Copy weights from `arrays` (as saved from `params`), after checking every key, shape and dtype."""
        for name, param in self.params.items():
            if name not in arrays:
                raise CheckpointError(f"the checkpoint has no array '{name}', which the {self.describe()} "
                                      f"network needs; was it saved from a different model?")
            array = arrays[name]
            if array.shape != param.shape or array.dtype != param.dtype:
                raise CheckpointError(f"array '{name}' is {array.dtype} {array.shape} in the checkpoint but the "
                                      f"{self.describe()} network needs {param.dtype} {param.shape}; "
                                      f"check model.hidden, model.dtype and the features")
        for name, param in self.params.items():
            np.copyto(param, arrays[name])

    def describe(self) -> str:
        """Layer widths, activation and loss, e.g. "3072-100-10 relu softmax"."""
        sizes = [self.gates[0].params["W"].shape[0]]
        for gate in self.gates:
            if isinstance(gate, Linear):
                sizes.append(gate.params["W"].shape[1])
            elif isinstance(gate, Maxout):
                sizes[-1] //= gate.pieces
        activations = dict.fromkeys(gate.name for gate in self.gates if not isinstance(gate, Linear))
        return " ".join(["-".join(map(str, sizes)), *activations, self.loss.name])

    def _regularize(self) -> float:
        """The L2 term, adding its gradient 2λW to the weight gradients."""
        if self.reg == 0:
            return 0.0
        for name, W in self.params.items():
            if name.endswith(".W"):
                self.grads[name] += (2 * self.reg) * W
        return self.penalty()


def init_weights(fan_in: int, fan_out: int, model_cfg, dtype: np.dtype, rng: np.random.Generator) -> np.ndarray:
    """Initial weights (fan_in, fan_out), all normal with std:
    he √(2/fan_in), xavier (Glorot normal) √(2/(fan_in + fan_out)), normal `init_std`."""
    std = {"he": np.sqrt(2 / fan_in),
           "xavier": np.sqrt(2 / (fan_in + fan_out)),
           "normal": model_cfg.init_std}[model_cfg.init]
    W = rng.standard_normal((fan_in, fan_out), dtype=dtype)
    W *= std
    return W

