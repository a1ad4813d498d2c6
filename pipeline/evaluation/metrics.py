"""Reported metrics per task, always called as metric(y_true, logits) (sklearn's order).

Every function in METRICS_BY_TASK takes the true targets first and the model's raw
outputs (logits; regression: the predicted value) second, then task options by keyword.
Single-label (the RAMER paper): WA = accuracy, UA = mean per-class recall, plus
weighted F1. The validation selection scores (accuracy, micro-F1, -MAE) are in
`pipeline.models.scores`, in the same argument order; tests/test_metrics_order.py
checks both, so a call with the two swapped is caught.
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


METRICS_BY_TASK = {"single_label": single_label_metrics}


def task_metrics(task: str, y_true: np.ndarray, logits: np.ndarray, **kw) -> dict[str, float]:
    """`kw`: task-specific options, e.g. `threshold=` (validation-chosen) for multi_label."""
    return METRICS_BY_TASK[task](y_true, logits, **kw)


# ---------------------------------------------------------------- regression (MOSI-style)


def regression_metrics(y_true: np.ndarray, logits: np.ndarray, **_: object) -> dict[str, float]:
    """Sentiment in [-3, 3] as MMSA reports it: MAE, Pearson Corr, Acc-2 and its weighted
    F1 (non-negative vs negative, MMSA's "has0" variant), Acc-7 (rounded and clipped to
    the seven integers -3..3). Predictions are clipped to [-3, 3] first, as MMSA does."""
    y = np.asarray(y_true, np.float64).ravel()
    pred = np.clip(np.asarray(logits, np.float64).reshape(len(y), -1)[:, 0], -3.0, 3.0)
    corr = np.corrcoef(pred, y)[0, 1] if len(y) > 1 and pred.std() > 0 and y.std() > 0 else 0.0
    b_true, b_pred = y >= 0, pred >= 0
    return {
        "MAE": float(np.abs(pred - y).mean()),
        "Corr": float(corr),
        "Acc-2": float(accuracy_score(b_true, b_pred)),
        "F1": float(f1_score(b_true, b_pred, average="weighted", zero_division=0)),
        "Acc-7": float((np.clip(np.round(pred), -3, 3) == np.clip(np.round(y), -3, 3)).mean()),
    }


METRICS_BY_TASK["regression"] = regression_metrics


# ---------------------------------------------------------------- multi-label (CARAT, CMU-MOSEI)


def multilabel_metrics(y_true: np.ndarray, logits: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """CARAT's metrics on label sets pred = sigmoid(logits) >= threshold: Acc = example-based
    accuracy (Jaccard |y & p| / |y | p| averaged over samples; 1 when both sets are empty,
    e.g. a MOSEI "None" sample predicted as none), micro precision P, micro recall R and
    micro-F1; `thr` records the threshold used (chosen on validation by the protocol)."""
    from pipeline.models.scores import micro_counts, sigmoid

    y = np.asarray(y_true) > 0.5
    pred = sigmoid(logits) >= threshold
    inter, union = (y & pred).sum(1), (y | pred).sum(1)
    tp, pp, ap = micro_counts(y, pred)
    p = tp / pp if pp else 0.0
    r = tp / ap if ap else 0.0
    return {
        "Acc": float(np.where(union > 0, inter / np.maximum(union, 1), 1.0).mean()),
        "P": float(p),
        "R": float(r),
        "F1": float(2 * p * r / (p + r)) if p + r else 0.0,
        "thr": float(threshold),
    }


METRICS_BY_TASK["multi_label"] = multilabel_metrics

