"""Gates: the nodes of the network's computational graph, each with its forward and backward side by side.

A gate keeps `params` and `grads` (dicts with the same keys; empty when it has no parameters),
`forward(X)` caches what `backward` needs, and `backward(dY)` fills `grads` and returns dX.
`region()` names the linear piece each unit was in at the last forward (None for smooth gates),
so that a gradient check can tell a kink crossing from a wrong gradient.

Activation gates with `inplace = True` may overwrite their forward input and their upstream gradient;
the model sets it, as both are temporaries it owns.
"""

from __future__ import annotations

import numpy as np


class Gate:
    """A node of the graph; subclasses implement `forward`, `backward` and, when piecewise linear, `region`."""

    name: str          # the config's name for it
    inplace = False

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

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
    """Affine gate Y = X·W + b, W (D, H), b (H,).

    With `input_grad=False` (the first layer, whose input is data) backward skips dX and returns None.
    """

    name = "linear"

    def __init__(self, W: np.ndarray, b: np.ndarray, input_grad: bool = True) -> None:
        super().__init__()
        self.params = {"W": W, "b": b}
        self.grads = {"W": np.zeros_like(W), "b": np.zeros_like(b)}
        self.input_grad = input_grad

    def forward(self, X: np.ndarray) -> np.ndarray:
        self.X = X                                           # (N, D)
        Y = X @ self.params["W"]                             # (N, H)
        Y += self.params["b"]
        return Y

    def backward(self, dY: np.ndarray) -> np.ndarray | None:
        np.matmul(self.X.T, dY, out=self.grads["W"])         # dW = Xᵀ·dY  (D, H)
        np.sum(dY, axis=0, out=self.grads["b"])              # db = Σ_n dY (H,)
        return dY @ self.params["W"].T if self.input_grad else None   # dX = dY·Wᵀ (N, D)


class ReLU(Gate):
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


class LeakyReLU(Gate):
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


class ELU(Gate):
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


class Sigmoid(Gate):
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


class Tanh(Gate):
    """Y = tanh(X); dY/dX = 1 − Y²."""

    name = "tanh"

    def forward(self, X: np.ndarray) -> np.ndarray:
        self.Y = np.tanh(X, out=self._out(X))
        return self.Y

    def backward(self, dY: np.ndarray) -> np.ndarray:
        slope = np.square(self.Y)
        np.subtract(1, slope, out=slope)
        return np.multiply(dY, slope, out=self._out(dY))


class Maxout(Gate):
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


ACTIVATIONS = {
    "relu": lambda cfg: ReLU(),
    "leaky_relu": lambda cfg: LeakyReLU(cfg.leaky_slope),
    "elu": lambda cfg: ELU(cfg.elu_alpha),
    "sigmoid": lambda cfg: Sigmoid(),
    "tanh": lambda cfg: Tanh(),
}
"""Activation name → factory taking the ModelConfig. "maxout" changes the Linear before it, so the model
builds it itself (Linear(D, k·H) then Maxout(k))."""
