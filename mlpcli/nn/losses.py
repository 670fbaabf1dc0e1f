"""Data losses on raw class scores (N, C) and integer labels y (N,), averaged over the batch.

Each returns `(loss, dscores)` with dscores (N, C) the gradient of the averaged loss.
The registry holds loss objects that also remember where their kinks were, like the gates do.
"""

from __future__ import annotations

import numpy as np


def softmax_loss(scores: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Cross-entropy of softmax(scores): mean_i −log p_{i,y_i}; dscores = (probs − onehot) / N.

    Scores are shifted by their row maximum first, so huge scores neither overflow nor lose precision.
    """
    N = len(y)
    rows = np.arange(N)
    shifted = scores - scores.max(axis=1, keepdims=True)        # (N, C), each row's max is 0
    correct = shifted[rows, y]                                   # (N,)
    exp = np.exp(shifted, out=shifted)
    sums = exp.sum(axis=1)                                       # (N,) ≥ 1
    loss = float(np.mean(np.log(sums) - correct))
    dscores = exp
    dscores *= (1 / (N * sums))[:, None]                         # probs / N
    dscores[rows, y] -= 1 / N
    return loss, dscores


def hinge_loss(scores: np.ndarray, y: np.ndarray, delta: float = 1.0) -> tuple[float, np.ndarray]:
    """Multiclass SVM loss mean_i Σ_{j≠y_i} max(0, s_j − s_{y_i} + Δ).

    dscores is 1/N for each active margin (j ≠ y_i) and −(number of active margins)/N at y_i.
    """
    margins = _margins(scores, y, delta)
    return _hinge(margins, margins > 0, y)


def _margins(scores: np.ndarray, y: np.ndarray, delta: float) -> np.ndarray:
    """max(0, s_j − s_{y_i} + Δ) (N, C), zero at j = y_i."""
    rows = np.arange(len(y))
    margins = scores - scores[rows, y][:, None]
    margins += delta
    np.maximum(margins, 0, out=margins)
    margins[rows, y] = 0
    return margins


def _hinge(margins: np.ndarray, active: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    N = len(y)
    dscores = active.astype(margins.dtype)                       # (N, C)
    dscores[np.arange(N), y] = -active.sum(axis=1)
    dscores /= N
    return float(margins.sum() / N), dscores


class SoftmaxLoss:
    """The softmax loss as the model uses it; it is smooth, so `region()` is None."""

    name = "softmax"

    def __call__(self, scores: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        return softmax_loss(scores, y)

    def region(self) -> None:
        return None



class HingeLoss:
    """The hinge loss with margin Δ; `region()` is the (N, C) mask of margins active at the last call."""

    name = "hinge"

    def __init__(self, delta: float = 1.0) -> None:
        self.delta = delta

    def __call__(self, scores: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        margins = _margins(scores, y, self.delta)
        self.active = margins > 0
        return _hinge(margins, self.active, y)

    def region(self) -> np.ndarray:
        return self.active



LOSSES = {
    "softmax": lambda cfg: SoftmaxLoss(),
    "hinge": lambda cfg: HingeLoss(cfg.delta),
}
"""Loss name → factory taking the LossConfig, returning a callable `(scores, y) -> (loss, dscores)`
with `region()` (as on the gates) for gradient checks."""
