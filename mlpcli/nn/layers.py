"""Gates: the nodes of the network's computational graph, each with its forward and backward side by side.

A gate keeps `params` and `grads` (dicts with the same keys; empty when it has no parameters) and
`buffers` (arrays it keeps but no optimizer touches: batch norm's running averages), `forward(X)`
caches what `backward` needs, and `backward(dY)` fills `grads` and returns dX. `training` picks the
behaviour of the gates that have two (dropout, batch norm): the model sets it, True for a training step
and False for scoring. `region()` names the linear piece each unit was in at the last forward (None for
smooth gates), so that a gradient check can tell a kink crossing from a wrong gradient.

Gates after the first Linear with `inplace = True` may overwrite their forward input and their upstream
gradient; the model sets it, as both are temporaries it owns.
"""

from __future__ import annotations

import numpy as np

from mlpcli.parallel import matmul


class Gate:
    """A node of the graph; subclasses implement `forward`, `backward` and, when piecewise linear, `region`."""

    name: str          # its name in gradcheck rows and network descriptions
    inplace = False
    training = False

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}

    def forward(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dY: np.ndarray) -> np.ndarray | None:
        raise NotImplementedError

    def region(self) -> np.ndarray | None:
        """Which linear piece each unit was in at the last forward; None for smooth gates."""
        return None

    def _out(self, X: np.ndarray) -> np.ndarray | None:
        """Where an elementwise result may go: over X when in place, else a new array."""
        return X if self.inplace else None


class Linear(Gate):
    """Affine gate Y = X·W + b, W (D, H), b (H,); with b None, Y = X·W (before batch norm, whose β is the bias).

    With `input_grad=False` (the first layer, whose input is data) backward skips dX and returns None.
    """

    name = "linear"

    def __init__(self, W: np.ndarray, b: np.ndarray | None, input_grad: bool = True) -> None:
        super().__init__()
        self.params = {"W": W} if b is None else {"W": W, "b": b}
        self.grads = {key: np.zeros_like(array) for key, array in self.params.items()}
        self.input_grad = input_grad

    def forward(self, X: np.ndarray) -> np.ndarray:
        self.X = X                                           # (N, D)
        Y = matmul(X, self.params["W"])                      # (N, H)
        if "b" in self.params:
            Y += self.params["b"]
        return Y

    def backward(self, dY: np.ndarray) -> np.ndarray | None:
        matmul(self.X.T, dY, out=self.grads["W"])            # dW = Xᵀ·dY  (D, H)
        if "b" in self.grads:
            np.sum(dY, axis=0, out=self.grads["b"])          # db = Σ_n dY (H,)
        return matmul(dY, self.params["W"].T) if self.input_grad else None   # dX = dY·Wᵀ (N, D)


class Activation(Gate):
    """A hidden layer's nonlinearity: Y (N, H) from X (N, pieces·H); `pieces` is 1 for elementwise ones."""

    pieces = 1


class ReLU(Activation):
    """Y = max(0, X); the gradient passes where X > 0."""

    name = "relu"

    def forward(self, X: np.ndarray) -> np.ndarray:
        zeros = np.zeros(X.shape[-1], dtype=X.dtype)         # against a row of zeros numpy 2.4 runs its SIMD
        self.Y = np.maximum(X, zeros, out=self._out(X))      # loop, ~4x faster than against the scalar 0
        return self.Y

    def backward(self, dY: np.ndarray) -> np.ndarray:
        return np.multiply(dY, self.Y > 0, out=self._out(dY))

    def region(self) -> np.ndarray:
        return self.Y > 0


class LeakyReLU(Activation):
    """Y = X where X > 0, else slope·X (0 ≤ slope ≤ 1, so Y = max(X, slope·X))."""

    name = "leaky_relu"

    def __init__(self, slope: float = 0.1) -> None:
        super().__init__()
        self.slope = slope

    def forward(self, X: np.ndarray) -> np.ndarray:
        self.Y = np.maximum(X, X * self.slope, out=self._out(X))
        return self.Y

    def backward(self, dY: np.ndarray) -> np.ndarray:
        return np.where(self.Y > 0, dY, dY * self.slope)

    def region(self) -> np.ndarray:
        return self.Y > 0


class ELU(Activation):
    """Y = X where X > 0, else alpha·(e^X − 1); dY/dX = 1 or Y + alpha."""

    name = "elu"

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, X: np.ndarray) -> np.ndarray:
        negative = np.expm1(np.minimum(X, 0))
        negative *= self.alpha
        self.Y = X if self.inplace else X.copy()
        np.copyto(self.Y, negative, where=X <= 0)
        return self.Y

    def backward(self, dY: np.ndarray) -> np.ndarray:
        return np.where(self.Y > 0, dY, dY * (self.Y + self.alpha))

    def region(self) -> np.ndarray:
        """ELU's second derivative jumps at 0 (and its first too unless alpha = 1)."""
        return self.Y > 0


class Sigmoid(Activation):
    """Y = σ(X) = 1 / (1 + e^−X), computed as (1 + tanh(X/2)) / 2 so it never overflows; dY/dX = Y(1 − Y)."""

    name = "sigmoid"

    def forward(self, X: np.ndarray) -> np.ndarray:
        Y = np.multiply(X, 0.5, out=self._out(X))
        np.tanh(Y, out=Y)
        Y += 1
        Y *= 0.5
        self.Y = Y
        return Y

    def backward(self, dY: np.ndarray) -> np.ndarray:
        dX = np.multiply(dY, self.Y, out=self._out(dY))
        dX *= 1 - self.Y
        return dX


class Tanh(Activation):
    """Y = tanh(X); dY/dX = 1 − Y²."""

    name = "tanh"

    def forward(self, X: np.ndarray) -> np.ndarray:
        self.Y = np.tanh(X, out=self._out(X))
        return self.Y

    def backward(self, dY: np.ndarray) -> np.ndarray:
        slope = np.square(self.Y)
        np.subtract(1, slope, out=slope)
        return np.multiply(dY, slope, out=self._out(dY))


class Maxout(Activation):
    """Max over each unit's k affine pieces: X (N, k·H) → Y (N, H).

    Piece p of unit h is column p·H + h, so the pieces are k contiguous blocks of H columns
    (a maxout hidden layer is Linear(D, k·H) then Maxout(k)). The gradient goes to the winning piece.
    """

    name = "maxout"

    def __init__(self, pieces: int = 2) -> None:
        super().__init__()
        self.pieces = pieces

    def forward(self, X: np.ndarray) -> np.ndarray:
        blocks = X.reshape(len(X), self.pieces, -1)                      # (N, k, H)
        self.winner = blocks.argmax(axis=1)                              # (N, H)
        return np.take_along_axis(blocks, self.winner[:, None, :], axis=1)[:, 0, :]

    def backward(self, dY: np.ndarray) -> np.ndarray:
        N, H = dY.shape
        dX = np.zeros((N, self.pieces, H), dtype=dY.dtype)
        np.put_along_axis(dX, self.winner[:, None, :], dY[:, None, :], axis=1)
        return dX.reshape(N, self.pieces * H)

    def region(self) -> np.ndarray:
        return self.winner


class Normalization(Gate):
    """Y = γ·x̂ + β, x̂ = (X − μ) / √(σ² + eps) with μ, σ² the mean and variance of X (N, H) along `axis`
    (0: each unit over the batch; 1: each sample over its units); γ, β (H,)."""

    axis: int

    def __init__(self, H: int, eps: float = 1e-5, dtype=np.float64) -> None:
        super().__init__()
        self.params = {"gamma": np.ones(H, dtype=dtype), "beta": np.zeros(H, dtype=dtype)}
        self.grads = {key: np.zeros_like(array) for key, array in self.params.items()}
        self.eps = eps

    def _normalize(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Y, and the μ and σ² it used (squeezed along `axis`)."""
        mean, var, self.xhat, self.inv_std = _standardize(X, self.axis, self.eps)   # x̂ like X, 1/σ kept 2-D
        Y = np.multiply(self.xhat, self.params["gamma"], out=self._out(X))
        Y += self.params["beta"]
        return Y, mean, var

    def backward(self, dY: np.ndarray) -> np.ndarray:
        np.sum(dY * self.xhat, axis=0, out=self.grads["gamma"])                       # dγ = Σ_n dY·x̂
        np.sum(dY, axis=0, out=self.grads["beta"])                                    # dβ = Σ_n dY
        dxhat = np.multiply(dY, self.params["gamma"], out=self._out(dY))
        return _standardize_backward(dxhat, self.xhat, self.inv_std, self.axis)


class BatchNorm(Normalization):
    """Batch normalization: each unit standardized over the batch.

    Training: μ, σ² are the batch's mean and (biased) variance, and the running averages follow them,
    running ← momentum·running + (1 − momentum)·batch. Scoring: μ, σ² are the running averages, so
    each sample's scores do not depend on the rest of its batch. `backward` follows a training forward.
    """

    name = "batch_norm"
    axis = 0

    def __init__(self, H: int, momentum: float = 0.9, eps: float = 1e-5, dtype=np.float64) -> None:
        super().__init__(H, eps, dtype)
        self.buffers = {"running_mean": np.zeros(H, dtype=dtype), "running_var": np.ones(H, dtype=dtype)}
        self.momentum = momentum

    def forward(self, X: np.ndarray) -> np.ndarray:
        if not self.training:
            scale = self.params["gamma"] / np.sqrt(self.buffers["running_var"] + self.eps)    # (H,)
            shift = self.params["beta"] - self.buffers["running_mean"] * scale
            Y = np.multiply(X, scale, out=self._out(X))
            Y += shift
            return Y
        Y, mean, var = self._normalize(X)
        for key, batch in (("running_mean", mean), ("running_var", var)):
            running = self.buffers[key]
            running *= self.momentum
            running += (1 - self.momentum) * batch
        return Y


class LayerNorm(Normalization):
    """Layer normalization: each sample standardized over its H units, the same in training and scoring."""

    name = "layer_norm"
    axis = 1

    def forward(self, X: np.ndarray) -> np.ndarray:
        return self._normalize(X)[0]


def _standardize(X: np.ndarray, axis: int, eps: float) -> tuple[np.ndarray, ...]:
    """Mean and variance of X along `axis`, x̂ = (X − mean) / √(var + eps) and 1 / √(var + eps) (kept
    as a row or column to broadcast against X)."""
    mean = X.mean(axis=axis, keepdims=True)
    xhat = X - mean
    var = np.mean(np.square(xhat), axis=axis, keepdims=True)
    inv_std = var + eps
    np.sqrt(inv_std, out=inv_std)
    np.divide(1, inv_std, out=inv_std)
    xhat *= inv_std
    return mean.squeeze(axis), var.squeeze(axis), xhat, inv_std


def _standardize_backward(dxhat: np.ndarray, xhat: np.ndarray, inv_std: np.ndarray, axis: int) -> np.ndarray:
    """dX of x̂ = (X − mean) / √(var + eps) along `axis` (M values each), in the compact form
    dX = (1/σ)·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)); may overwrite dxhat."""
    projection = np.mean(dxhat * xhat, axis=axis, keepdims=True)
    centred = np.mean(dxhat, axis=axis, keepdims=True)
    dxhat -= centred
    dxhat -= xhat * projection
    dxhat *= inv_std
    return dxhat


class Dropout(Gate):
    """Inverted dropout: in training Y = X·mask, each unit kept with probability 1 − rate and scaled by
    1 / (1 − rate), so that E[Y] = X; in scoring Y = X. The masks come from the generator `rng`, one
    (N, H) draw per training forward; backward routes dY through the same mask."""

    name = "dropout"

    def __init__(self, rate: float, rng: np.random.Generator) -> None:
        super().__init__()
        self.rate, self.rng = rate, rng

    def forward(self, X: np.ndarray) -> np.ndarray:
        if not self.training:
            return X
        keep = self.rng.random(X.shape, dtype=X.dtype) >= self.rate                   # (N, H)
        self.mask = np.multiply(keep, 1 / (1 - self.rate), dtype=X.dtype)
        return X * self.mask           # never over X: the activation before may keep X for its backward

    def backward(self, dY: np.ndarray) -> np.ndarray:
        return np.multiply(dY, self.mask, out=self._out(dY))


ACTIVATIONS = {
    "relu": lambda cfg: ReLU(),
    "leaky_relu": lambda cfg: LeakyReLU(cfg.leaky_slope),
    "elu": lambda cfg: ELU(cfg.elu_alpha),
    "sigmoid": lambda cfg: Sigmoid(),
    "tanh": lambda cfg: Tanh(),
    "maxout": lambda cfg: Maxout(cfg.maxout_pieces),
}
"""Activation name → factory taking the ModelConfig. The Linear before an activation is `pieces` times
as wide as the layer (maxout: one column per affine piece of each unit)."""

NORMS = {
    "batch": lambda H, cfg: BatchNorm(H, cfg.norm_momentum, cfg.norm_eps, np.dtype(cfg.dtype)),
    "layer": lambda H, cfg: LayerNorm(H, cfg.norm_eps, np.dtype(cfg.dtype)),
}
"""`model.norm` name → factory taking the width H and the ModelConfig; the gate sits between each
hidden Linear and its activation."""
