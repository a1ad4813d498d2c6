"""Model-selection scores: what early stopping and every validation choice maximise.

Every score and metric in this package takes (y_true, logits), scikit-learn's order;
higher is better for a score. Reported metrics live in `pipeline.evaluation.metrics`
(which builds on these); the training layer only needs to rank epochs and variants.

    single_label  accuracy                       (the papers select on WA)
    multi_label   micro-F1 at threshold 0.5      (CARAT selects on validation F1)
    regression    -MAE                           (the L1 training loss, every target value)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Score = Callable[[np.ndarray, np.ndarray], float]  # (y_true, logits) -> float, higher is better


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(logits, np.float64), -50, 50)))


def micro_counts(y_true: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    """(true positives, predicted positives, actual positives) over all (sample, label) cells."""
    y = np.asarray(y_true) > 0.5
    p = np.asarray(pred, bool)
    return float((y & p).sum()), float(p.sum()), float(y.sum())


def micro_f1(y_true: np.ndarray, pred: np.ndarray) -> float:
    """Micro-F1 of 0/1 label sets `pred` (1.0 when both are empty everywhere)."""
    tp, pp, ap = micro_counts(y_true, pred)
    return 2 * tp / (pp + ap) if pp + ap else 1.0


def score_accuracy(y_true: np.ndarray, logits: np.ndarray) -> float:
    return float((np.asarray(logits).argmax(axis=1) == np.asarray(y_true)).mean())


def score_micro_f1(y_true: np.ndarray, logits: np.ndarray) -> float:
    """At threshold 0.5; the test threshold is chosen afterwards on validation."""
    return micro_f1(y_true, sigmoid(logits) >= 0.5)


def score_neg_mae(y_true: np.ndarray, logits: np.ndarray) -> float:
    """-MAE of predictions clipped to [-3, 3] (MMSA's sentiment range)."""
    y = np.asarray(y_true, np.float64)
    pred = np.clip(np.asarray(logits, np.float64).reshape(len(y), -1)[:, 0], -3.0, 3.0)
    return -float(np.abs(pred - y).mean())


SCORE_BY_TASK: dict[str, Score] = {
    "single_label": score_accuracy, "multi_label": score_micro_f1, "regression": score_neg_mae,
}


def task_score(task: str) -> Score:
    """The validation selection score of a task."""
    return SCORE_BY_TASK[task]


def chance_score(task: str, y_true: np.ndarray) -> float:
    """The selection score of the best constant prediction for `y_true`: majority-class
    accuracy, micro-F1 of predicting every label, or -MAE of the median. A trained system
    at or below it has learned nothing usable."""
    y = np.asarray(y_true)
    if len(y) == 0:
        return float("nan")
    if task == "single_label":
        return float(np.unique(y, return_counts=True)[1].max() / len(y))
    if task == "multi_label":
        pos = float((y > 0.5).sum())
        return 2 * pos / (pos + y.size) if pos else 0.0
    return -float(np.abs(y - np.median(y)).mean())
