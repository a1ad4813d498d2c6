"""The short summary `ramer run` and `ramer report` print: per system, the task's first
headline metric (WA, Acc or MAE) under every condition, and each headline metric averaged
over the missing-modality conditions; all means over the folds x runs.

Numbers only: the CLI draws them (pipeline.cli.runner.summary_table).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.evaluation.report import headline_metrics
from pipeline.evaluation.tables import missing_conditions, ordered_unique, summarise


@dataclass(frozen=True)
class SummaryRow:
    system: str
    by_condition: dict[str, float]  # condition -> mean of the first headline metric (absent: not measured)
    averages: dict[str, float]  # headline metric -> mean of its means over `Summary.averaged` (absent: none)


@dataclass(frozen=True)
class Summary:
    metrics: tuple[str, ...]  # the headline metrics; the first is the one shown per condition
    conditions: list[str]  # in the order they were recorded
    averaged: list[str]  # the conditions the averages run over: the missing ones (all if none is)
    rows: list[SummaryRow]  # one per system, in the order they were recorded


def display_scale(metric: str) -> int:
    """100 for the metrics that are shares (shown in %), 1 for MAE (in label units)."""
    return 1 if metric == "MAE" else 100


def summarise_experiment(metrics: pa.Table) -> Summary:
    """The summary of a metrics table (metrics.parquet's columns)."""
    first, *rest = names = headline_metrics(metrics)
    summ = summarise(metrics, ["system", "condition", "metric"])
    conds = ordered_unique(metrics.column("condition").to_pylist())
    missing = missing_conditions(metrics) or conds
    rows = []
    for s in ordered_unique(metrics.column("system").to_pylist()):
        by_condition = {c: summ[(s, c, first)][0] for c in conds if (s, c, first) in summ}
        averages = {}
        for m in (first, *rest):
            vals = [summ[(s, c, m)][0] for c in missing if (s, c, m) in summ]
            if vals:
                averages[m] = sum(vals) / len(vals)
        rows.append(SummaryRow(s, by_condition, averages))
    return Summary(tuple(names), conds, missing, rows)


def load_summary(results_dir: Path) -> Summary:
    """The summary of results_dir/metrics.parquet."""
    return summarise_experiment(pq.read_table(results_dir / "metrics.parquet"))
