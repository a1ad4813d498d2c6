"""Long-format result tables, their mean +/- std summaries and the one markdown-table
writer every report uses (pyarrow + numpy only)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import RamerError

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


def require_columns(names: list[str], path: Path | None = None, columns=METRIC_COLUMNS) -> None:
    """Refuse a metrics table whose column `names` lack what reports read (`path`: the
    metrics.parquet it came from, named in the error): a file another ramer version wrote
    is rerun, not guessed at."""
    absent = [c for c in columns if c not in names]
    if absent:
        raise RamerError(f"{path or 'metrics table'}: no {', '.join(absent)} column(s), which every "
                         "metrics.parquet of this ramer version has; rerun the experiment that wrote it")


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
    in the table's order, read from its boolean `missing` column."""
    require_columns(metrics.column_names, columns=("condition", "missing"))
    conds = metrics.column("condition").to_pylist()
    flagged = {c for c, m in zip(conds, metrics.column("missing").to_pylist()) if m}
    return [c for c in ordered_unique(conds) if c in flagged]
