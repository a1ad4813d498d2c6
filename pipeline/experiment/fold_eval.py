"""Stages 3-4 of one system on one unit: train it (training) and score it on the test rows
(evaluation), cached as <slug>.json in the unit's folder."""

from __future__ import annotations

import time

import numpy as np

from pipeline.data.missing import condition_names
from pipeline.data.spans import modality_ranges, parse_ranges
from pipeline.evaluation.stage4 import evaluate_conditions, evaluate_spans
from pipeline.models.base import MERModel
from pipeline.training.checkpoint import load_json, save_json
from pipeline.training.config import ExperimentConfig
from pipeline.training.fold_run import FoldRun
from pipeline.training.systems import SystemSpec


def train_and_evaluate(fr: FoldRun, system: SystemSpec) -> dict:
    """The system's record of this unit: its training record plus its test metrics."""
    out_path = fr.ctx.run_dir / f"{system.slug}.json"
    if out_path.is_file():  # named by the canonical key: reported under today's spelling of the label
        return {**load_json(out_path), "system": system.label, **system.columns()}
    model, record = fr.train(system)
    if system.candidates:  # reported under the selection's name, with what it chose
        record = {**record, "system": system.label, **system.columns(), "chosen": record["system"]}
    t0 = time.perf_counter()
    record = {**record, "metrics": score_model(fr, model)}
    fr.timings["evaluate"] = fr.timings.get("evaluate", 0.0) + time.perf_counter() - t0
    save_json(record, out_path)
    return record


def score_model(fr: FoldRun, model: MERModel) -> list[dict]:
    """Stage 4 on the unit's test rows: every missing condition (and the full one), or,
    in a span experiment, every test range."""
    ctx, cfg = fr.ctx, fr.cfg
    if cfg.strategy != "none":
        test = ctx.split.test
        return [row for ranges in span_test_ranges(cfg, list(ctx.spec.modalities))
                for row in evaluate_spans(model, ctx.bank, test, ctx.ds.y[test], ranges,
                                          ctx.seed(f"test-spans-{ranges}"), ctx.spec.task, cfg.span_over)]
    names, masks = _evaluated_conditions(fr)
    return evaluate_conditions(model, ctx.bank, ctx.ds.y, ctx.split, names, masks, ctx.spec.task)


def _evaluated_conditions(fr: FoldRun) -> tuple[list[str], np.ndarray]:
    """The unit's missing conditions and the full one: names and (C + 1, M) masks."""
    conds = fr.ctx.conds
    names = condition_names(fr.ctx.ds.manifest, include_full=True)
    return names, np.vstack([conds, np.ones((1, conds.shape[1]), bool)])


def span_test_ranges(cfg: ExperimentConfig, modalities: list[str]) -> list[list]:
    """Every span test condition: per-modality ranges for each test range (default: the
    training ranges), so all systems are scored on the same span-corrupted inputs."""
    if cfg.test_missing_rate is not None:
        return [modality_ranges(modalities, r, {}) for r in parse_ranges(cfg.test_missing_rate)]
    return [modality_ranges(modalities, r, cfg.modality_missing_rate) for r in parse_ranges(cfg.missing_rate)]
