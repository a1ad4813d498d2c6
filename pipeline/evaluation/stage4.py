"""Stage 4: a trained model scored on the fold's test rows under every condition.

Missing-modality experiments: each condition of the dataset (a, v, l, av, ... and the
full one) masks whole modalities. Span experiments (M3S): every modality present with a
fixed seeded span zeroed at each test range. Every metric row carries `missing`: True
when part of the input is absent under its condition (a masked modality or a span).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from pipeline.data.bank import FeatureBank
from pipeline.data.spans import Range, span_bank, span_condition
from pipeline.data.splits import FoldSplit
from pipeline.evaluation.metrics import task_metrics
from pipeline.evaluation.thresholds import choose_threshold
from pipeline.models.base import MERModel
from pipeline.models.inference import predict


def _rows(condition: str, missing: bool, metrics: dict[str, float]) -> list[dict]:
    return [{"condition": condition, "missing": missing, "metric": k, "value": v} for k, v in metrics.items()]


@torch.no_grad()
def evaluate_conditions(
    model: MERModel, bank: FeatureBank, y: np.ndarray, split: FoldSplit, names: Sequence[str],
    masks: np.ndarray, task: str,
) -> list[dict]:
    """Metric rows on `split.test` for each (name, (M,) availability mask); multi-label
    scores use one decision threshold chosen on `split.val` over every condition."""
    kw = {}
    if task == "multi_label":
        val = split.val
        kw["threshold"] = choose_threshold(
            np.concatenate([y[val]] * len(masks)),
            np.concatenate([predict(model, bank, val, m) for m in masks]),
        )
    rows = []
    for name, mask in zip(names, masks):
        logits = predict(model, bank, split.test, mask)
        rows += _rows(name, not bool(np.all(mask)), task_metrics(task, y[split.test], logits, **kw))
    return rows


@torch.no_grad()
def evaluate_spans(
    model: MERModel, bank: FeatureBank, rows: np.ndarray, y: np.ndarray, ranges: Sequence[Range],
    seed: int, task: str, over: str = "auto",
) -> list[dict]:
    """Metric rows for `rows` (labels `y`) under fixed seeded spans at one test range per
    modality; the seed depends on the unit and range only, so every system and strategy
    sees the same corrupted inputs."""
    noisy = span_bank(bank, rows, ranges, seed, over)
    logits = predict(model, noisy, rows, np.ones(len(bank.x), bool))
    return _rows(span_condition(ranges), True, task_metrics(task, y, logits))
