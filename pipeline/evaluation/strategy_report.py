"""M3S-style tables (its Tables 2-5) from a span-strategy experiment's metrics.parquet.

Each metrics row names its system's `base` (the label without its strategy suffix),
`strategy` ('none' | 'orig' | 'spl-trn' | 'm3s') and `train_range` ('' or e.g. '20-40');
labels are never parsed here. Per base system and test condition: one row per strategy
(ORIG, ORIG + SPL-TRN, ORIG + M3S) with every metric of the task as mean ± std over
folds x runs, the Delta of M3S against ORIG, and a paired two-tailed t-test
(scipy.stats.ttest_rel, M3S's Table 5) plus a Wilcoxon signed-rank test over the
(fold, run) pairs that both strategies finished (`pipeline.evaluation.stats`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.evaluation.stats import paired_test, paired_units
from pipeline.evaluation.tables import markdown_table, ordered_unique, require_columns

# The strategies in table order, with the names M3S's tables give them.
NAMES = {"orig": "ORIG", "spl-trn": "ORIG + SPL-TRN", "m3s": "ORIG + M3S"}
LOWER_IS_BETTER = {"MAE"}
STRATEGY_COLUMNS = ("base", "strategy", "train_range")  # what the tables read


class Group(NamedTuple):
    """The systems compared with each other: one base system at one training range."""

    base: str
    train_range: str  # '' = the experiment's configured range

    @property
    def label(self) -> str:
        return f"{self.base} @train{self.train_range}" if self.train_range else self.base


Runs = dict[tuple[Group, str, str, str], dict[tuple[int, int], float]]


def _runs(metrics: pa.Table) -> Runs:
    """(group, strategy, condition, metric) -> {(fold, run): value}; a system trained at its
    own range ('mmin+m3s@20-40') is in group 'mmin @train20-40'."""
    require_columns(metrics.column_names, columns=STRATEGY_COLUMNS)
    names = ("base", "train_range", "strategy", "fold", "run", "condition", "metric", "value")
    cols = {c: metrics.column(c).to_pylist() for c in names}
    out: Runs = {}
    for i, strat in enumerate(cols["strategy"]):
        if strat == "none":
            continue
        key = (Group(cols["base"][i], cols["train_range"][i]), strat, cols["condition"][i], cols["metric"][i])
        out.setdefault(key, {})[(cols["fold"][i], cols["run"][i])] = cols["value"][i]
    return out


def _pct(metric: str, v: float) -> str:
    return f"{v:.4f}" if metric in ("MAE", "Corr") else f"{100 * v:.2f}"


def _cell(values: list[float], metric: str) -> str:
    return f"{_pct(metric, np.mean(values))} ± {_pct(metric, np.std(values))}" if values else "–"


def grid_table(metrics: pa.Table) -> str:
    """M3S Table 4 layout: per base model, rows = training range x strategy, columns = test
    ranges, headline metric; '' unless the experiment has several training or test ranges."""
    from pipeline.evaluation.report import headline_metrics

    runs = _runs(metrics)
    if not runs:
        return ""
    conds = ordered_unique([k[2] for k in runs])
    groups = ordered_unique([k[0] for k in runs])
    plain = ordered_unique([g.base for g in groups])
    if len(conds) < 2 and len(groups) == len(plain):
        return ""
    metric = headline_metrics(metrics)[0]
    parts = [f"## Training range x test range (M3S Table 4), {metric}", "",
             ("Mean ± std over folds x runs" + ("; lower is better" if metric in LOWER_IS_BETTER else "")
              + ". Rows: training span-rate range and strategy; columns: test range. "
              "The best strategy per (training range, test range) is in bold."), ""]
    for model in plain:
        rows = []
        for group in [g for g in groups if g.base == model]:
            rows += _grid_rows(runs, group, conds, metric)
        head = ["train range", "method"] + [f"test {c.replace('span', '')}" for c in conds]
        parts += [f"**{model}**", "", *markdown_table(head, rows), ""]
    return "\n".join(parts)


def _grid_rows(runs: Runs, group: Group, conds: list[str], metric: str) -> list[list[str]]:
    """One row per strategy of `group`, the best mean per test range in bold."""
    tag = group.train_range or "(config)"
    means = {(st, c): np.mean(list(runs[(group, st, c, metric)].values()))
             for st in NAMES for c in conds if runs.get((group, st, c, metric))}
    rows = []
    for st, name in NAMES.items():
        if not any((st, c) in means for c in conds):
            continue
        cells = []
        for c in conds:
            vals = list(runs.get((group, st, c, metric), {}).values())
            col = [v for (s_, c_), v in means.items() if c_ == c]  # this group's strategies at c
            text = _cell(vals, metric)
            best = (min if metric in LOWER_IS_BETTER else max)(col) if len(col) > 1 else None
            cells.append(f"**{text}**" if vals and means[(st, c)] == best else text)
        rows.append([tag, name, *cells])
    return rows


def _strategy_block(runs: Runs, group: Group, cond: str, mets: list[str]) -> list[str]:
    """M3S Tables 2-3 for one group and test condition: a row per strategy, then Δ."""
    rows = [[name] + [_cell(list(runs.get((group, st, cond, m), {}).values()), m) for m in mets]
            for st, name in NAMES.items()]
    delta = []
    for m in mets:
        a, b = runs.get((group, "orig", cond, m)), runs.get((group, "m3s", cond, m))
        if a and b:
            d = np.mean(list(b.values())) - np.mean(list(a.values()))
            good = d < 0 if m in LOWER_IS_BETTER else d > 0
            arrow = "= " if abs(d) < 1e-12 else ("↑ " if d > 0 else "↓ ")
            delta.append(arrow + _pct(m, abs(d)) + (" ✓" if good else ""))
        else:
            delta.append("–")
    rows.append(["Δ_ORIG (M3S)", *delta])
    return [f"**{group.label}**, test {cond}", "", *markdown_table(["method", *mets], rows), ""]


def _test_rows(runs: Runs, group: Group, cond: str, mets: list[str]) -> list[list[str]]:
    """M3S Table 5 rows: M3S and SPL-TRN each against ORIG, where they share units."""
    def fmt(p: float) -> str:
        return "–" if math.isnan(p) else f"{p:.3g}"

    rows = []
    for st in ("m3s", "spl-trn"):
        res = [paired_test(*paired_units(runs.get((group, st, cond, m), {}), runs.get((group, "orig", cond, m), {})))
               for m in mets]
        if not any(r.n for r in res):
            continue
        rows.append([group.label, cond, f"{NAMES[st]} vs ORIG", str(res[0].n),
                     *(fmt(r.t_p) for r in res), *(fmt(r.wilcoxon_p) for r in res)])
    return rows


def strategy_tables(metrics: pa.Table) -> str:
    runs = _runs(metrics)
    if not runs:
        return ""
    groups = ordered_unique([k[0] for k in runs])
    conds = ordered_unique([k[2] for k in runs])
    mets = ordered_unique([k[3] for k in runs])
    parts = [
        "## Span-missing strategies (M3S Tables 2-4)",
        "",
        (
            "Mean ± std over folds x runs; accuracies, F1, UA in %, MAE and Corr raw. "
            "Delta = M3S − ORIG (for MAE lower is better). Test condition `spanLO-HI` = "
            "missing-rate range of the test inputs (seeded, identical for every system)."
        ),
        "",
    ]
    test_rows = []
    for group in groups:
        for cond in conds:
            parts += _strategy_block(runs, group, cond, mets)
            test_rows += _test_rows(runs, group, cond, mets)
    head = (["base", "condition", "comparison", "n"] + [f"{m} t-test p" for m in mets]
            + [f"{m} Wilcoxon p" for m in mets])
    tests = ["## Paired significance of M3S (and SPL-TRN) against ORIG (M3S Table 5)", "",
             ("Two-tailed paired t-test (scipy.stats.ttest_rel) and Wilcoxon signed-rank over the "
              "(fold, run) pairs; n = number of pairs."), "", *markdown_table(head, test_rows)]
    grid = grid_table(metrics)
    return "\n".join(([grid, ""] if grid else []) + parts + [""] + tests + [""])


def append_strategy_report(results_dir: Path) -> Path:
    """Append the strategy tables to results_dir/report.md (after `render_report`)."""
    path = results_dir / "metrics.parquet"
    metrics = pq.read_table(path)
    require_columns(metrics.column_names, path, STRATEGY_COLUMNS)
    text = strategy_tables(metrics)
    path = results_dir / "report.md"
    if text:
        (results_dir / "strategies.md").write_text(text)
        with path.open("a") as fh:
            fh.write("\n" + text)
    return path
