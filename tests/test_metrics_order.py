"""Every reported metric and every selection score takes (y_true, logits), in that order.

For each task: the parameter names say so, a perfect prediction scores perfectly, and
the same call with the two arguments swapped either fails or scores differently, so a
caller that swaps them is caught.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from pipeline.evaluation.metrics import METRICS_BY_TASK
from pipeline.models.scores import SCORE_BY_TASK


def _single_label() -> tuple[np.ndarray, np.ndarray]:
    y = np.array([0, 1, 2, 1, 0, 2])
    logits = np.full((len(y), 3), -2.0)
    logits[np.arange(len(y)), y] = 3.0
    return y, logits


def _multi_label() -> tuple[np.ndarray, np.ndarray]:
    y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]], np.float32)
    return y, np.where(y > 0, 4.0, -4.0)  # every label set right at threshold 0.5


def _regression() -> tuple[np.ndarray, np.ndarray]:
    y = np.array([-3.0, -1.0, 0.0, 2.0, 3.0])
    return y, np.array([[-5.0], [-1.0], [0.0], [2.0], [7.0]])  # exact once clipped to [-3, 3]


CASES = {"single_label": _single_label, "multi_label": _multi_label, "regression": _regression}
PERFECT_METRICS = {
    "single_label": {"WA": 1.0, "UA": 1.0, "F1w": 1.0},
    "multi_label": {"Acc": 1.0, "P": 1.0, "R": 1.0, "F1": 1.0},
    "regression": {"MAE": 0.0, "Corr": 1.0, "Acc-2": 1.0, "F1": 1.0, "Acc-7": 1.0},
}
PERFECT_SCORE = {"single_label": 1.0, "multi_label": 1.0, "regression": 0.0}


def test_every_task_has_a_case() -> None:
    assert set(METRICS_BY_TASK) <= set(CASES) and set(SCORE_BY_TASK) <= set(CASES)


def _swap_is_caught(fn, y: np.ndarray, logits: np.ndarray, right) -> bool:
    try:
        swapped = fn(logits, y)
    except (ValueError, IndexError, np.exceptions.AxisError):
        return True
    return swapped != right


@pytest.mark.parametrize("task", sorted(METRICS_BY_TASK))
def test_metrics_take_y_true_then_logits(task: str) -> None:
    fn = METRICS_BY_TASK[task]
    assert list(inspect.signature(fn).parameters)[:2] == ["y_true", "logits"]
    y, logits = CASES[task]()
    got = fn(y, logits)
    assert {k: got[k] for k in PERFECT_METRICS[task]} == pytest.approx(PERFECT_METRICS[task])
    assert _swap_is_caught(fn, y, logits, got)


@pytest.mark.parametrize("task", sorted(SCORE_BY_TASK))
def test_scores_take_y_true_then_logits(task: str) -> None:
    fn = SCORE_BY_TASK[task]
    assert list(inspect.signature(fn).parameters)[:2] == ["y_true", "logits"]
    y, logits = CASES[task]()
    got = fn(y, logits)
    assert got == pytest.approx(PERFECT_SCORE[task])
    assert _swap_is_caught(fn, y, logits, got)
