"""Multi-label decision thresholds: one global threshold, chosen on validation.

A multi-label model outputs one logit per label; turning them into label sets needs a
threshold on sigmoid(logit). Fixing it at 0.5 penalises models whose scores are well
ranked but shifted (CARAT's released scripts use 0.25), so the protocol picks one
threshold per (system, fold, run) from a grid by validation micro-F1 and applies it
unchanged to the test split. Never tuned on test.
"""

from __future__ import annotations

import numpy as np

from pipeline.models.scores import micro_f1, sigmoid

GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)  # candidate thresholds on sigmoid scores


def choose_threshold(y_true: np.ndarray, logits: np.ndarray, grid: np.ndarray = GRID) -> float:
    """The grid threshold with the best micro-F1 on (y_true, logits); ties -> closest to 0.5."""
    probs = sigmoid(logits)
    scores = np.array([micro_f1(y_true, probs >= t) for t in grid])
    best = np.flatnonzero(scores >= scores.max() - 1e-12)
    return float(grid[best[np.argmin(np.abs(grid[best] - 0.5))]])
