"""Long-format result tables, their mean +/- std summaries and the one markdown-table
writer every report uses (pyarrow + numpy only)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

METRIC_COLUMNS = ["system", "model", "strategy", "train_range", "base", "fold", "run", "condition", "missing",
                  "metric", "value"]


def records_to_table(records: list[dict]) -> pa.Table:
    """One row per (system, fold, run, condition, metric): every raw number kept, with
    what the system is (model, strategy, train_range, base: its label without the
    strategy suffix) and whether the condition leaves part of the input out (`missing`),
    so no report has to parse a label or a condition name."""
    cols: dict[str, list] = {c: [] for c in METRIC_COLUMNS}
    for rec in records:
        for m in rec["metrics"]:
            for key in ("system", "model", "strategy", "train_range", "base"):
                cols[key].append(str(rec[key]))
            cols["fold"].append(int(rec["fold"]))
            cols["run"].append(int(rec["run"]))
            cols["condition"].append(m["condition"])
            cols["missing"].append(bool(m["missing"]))
            cols["metric"].append(m["metric"])
            cols["value"].append(float(m["value"]))
    return pa.table(cols)


def rows_to_table(rows: list[dict]) -> pa.Table:
    keys = list(rows[0]) if rows else []
    return pa.table({k: [r[k] for r in rows] for k in keys})


def write_parquet(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def summarise(table: pa.Table, by: list[str], value: str = "value") -> dict[tuple, tuple[float, float, int]]:
    """Group by columns -> (mean, std over folds x runs, count)."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    cols = [table.column(c).to_pylist() for c in by]
    vals = table.column(value).to_pylist()
    for i, v in enumerate(vals):
        groups[tuple(c[i] for c in cols)].append(v)
    return {
        k: (float(np.nanmean(v)), float(np.nanstd(v)) if len(v) > 1 else 0.0, len(v))
        for k, v in groups.items()
    }


def write_summary_csv(metrics: pa.Table, path: Path) -> None:
    """summary.csv: one row per (system, condition, metric) with mean, std and n over the
    fold x run units, in the report's order; for spreadsheets and other tools."""
    import csv

    stats = summarise(metrics, ["system", "condition", "metric"])
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["system", "condition", "metric", "mean", "std", "n"])
        for (system, cond, metric), (mean, std, n) in stats.items():
            out.writerow([system, cond, metric, f"{mean:.6g}", f"{std:.6g}", n])
    tmp.replace(path)


def ordered_unique(values: list) -> list:
    seen: dict = {}
    for v in values:
        seen.setdefault(v, None)
    return list(seen)


def markdown_table(head: list[str], rows: list[list[str]]) -> list[str]:
    """The lines of a markdown table: header, separator, one line per row of cells.
    Every report's table goes through here, so they all look alike."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return lines


def missing_conditions(metrics: pa.Table) -> list[str]:
    """The missing-modality conditions of a metrics table (at least one modality absent),
    in the table's order. Read from its boolean `missing` column; metrics.parquet files
    written before that column existed fall back to the old rule, here only: a condition
    is a missing one when its name is shorter than the longest (every modality present,
    e.g. 'avl' against 'a', 'av', ...)."""
    conds = ordered_unique(metrics.column("condition").to_pylist())
    if "missing" in metrics.column_names:
        flagged = {c for c, m in zip(metrics.column("condition").to_pylist(), metrics.column("missing").to_pylist()) if m}
        return [c for c in conds if c in flagged]
    longest = max(map(len, conds), default=0)
    return [c for c in conds if len(c) < longest]
