"""Classification metrics: accuracy, confusion matrix, per-class precision, recall, F1 and support."""

from __future__ import annotations

import numpy as np


def accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    """Fraction of predicted (N,) equal to labels (N,)."""
    return float(np.mean(labels == predicted)) if len(labels) else 0.0


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts (C, C): row = true class, column = predicted class."""
    return np.bincount(labels * num_classes + predicted, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def per_class(confusion) -> dict[str, list]:
    """Per-class scores from a confusion matrix (C, C) (rows = true class), each a list of C values:

    precision  of the images predicted as the class, the share that are (0 if it is never predicted)
    recall     of the images of the class, the share predicted as it (0 if it has no images)
    f1         harmonic mean 2·P·R / (P + R) of the two (0 if both are 0)
    support    the number of images of the class
    """
    confusion = np.asarray(confusion, dtype=np.int64)
    hits = np.diag(confusion).astype(np.float64)
    predicted_counts, true_counts = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(hits, predicted_counts, out=np.zeros_like(hits), where=predicted_counts > 0)
    recall = np.divide(hits, true_counts, out=np.zeros_like(hits), where=true_counts > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(hits), where=both > 0)
    return {"precision": precision.round(6).tolist(), "recall": recall.round(6).tolist(),
            "f1": f1.round(6).tolist(), "support": true_counts.tolist()}


def macro_f1(confusion) -> float:
    """The unweighted mean of the per-class F1 scores over the classes that have images."""
    scores = per_class(confusion)
    present = [f1 for f1, n in zip(scores["f1"], scores["support"]) if n > 0]
    return float(np.mean(present)) if present else 0.0


def classification_report(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> dict:
    """Accuracy, confusion matrix, per-class precision/recall/F1/support (`per_class`) and macro F1."""
    confusion = confusion_matrix(labels, predicted, num_classes)
    return {"accuracy": accuracy(labels, predicted), "confusion": confusion.tolist(), **per_class(confusion),
            "macro_f1": round(macro_f1(confusion), 6)}
