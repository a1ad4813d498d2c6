"""Metrics, always called as metric(y_true, y_pred) (sklearn's order).

Single-label (the RAMER paper): WA = accuracy, UA = mean per-class recall, plus
weighted F1. Scores are computed from logits so the trainer and reports share them.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score


def single_label_metrics(y_true: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    pred = logits.argmax(axis=1)
    return {
        "WA": float(accuracy_score(y_true, pred)),
        "UA": float(balanced_accuracy_score(y_true, pred)),
        "F1w": float(f1_score(y_true, pred, average="weighted", zero_division=0)),
    }


def accuracy_from_logits(logits: np.ndarray, y_true: np.ndarray) -> float:
    """Validation score for single-label training (the trainer's `score_fn` order)."""
    return float((logits.argmax(axis=1) == y_true).mean())


METRICS_BY_TASK = {"single_label": single_label_metrics}
SCORE_BY_TASK = {"single_label": accuracy_from_logits}


def task_metrics(task: str, y_true: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    return METRICS_BY_TASK[task](y_true, logits)


def task_score(task: str):
    """The validation selection score for a task: higher is better."""
    return SCORE_BY_TASK[task]
