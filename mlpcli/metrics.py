"""Classification metrics: accuracy, confusion matrix, per-class precision and recall."""

from __future__ import annotations

import numpy as np


def accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    """Fraction of predicted (N,) equal to labels (N,)."""
    return float(np.mean(labels == predicted)) if len(labels) else 0.0


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts (C, C): row = true class, column = predicted class."""
    return np.bincount(labels * num_classes + predicted, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def classification_report(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> dict:
    """Accuracy, confusion matrix and per-class precision/recall (0 where a class is never predicted/present)."""
    confusion = confusion_matrix(labels, predicted, num_classes)
    hits = np.diag(confusion).astype(np.float64)
    predicted_counts, true_counts = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(hits, predicted_counts, out=np.zeros_like(hits), where=predicted_counts > 0)
    recall = np.divide(hits, true_counts, out=np.zeros_like(hits), where=true_counts > 0)
    return {
        "accuracy": accuracy(labels, predicted),
        "confusion": confusion.tolist(),
        "precision": precision.round(6).tolist(),
        "recall": recall.round(6).tolist(),
    }
