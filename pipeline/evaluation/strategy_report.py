"""M3S-style tables (its Tables 2-5) from a span-strategy experiment's metrics.parquet.

Systems are labelled 'base+strategy'. Per base system and test condition: one row per
strategy (ORIG, ORIG + SPL-TRN, ORIG + M3S) with every metric of the task as mean ± std
over folds x runs, the Delta of M3S against ORIG, and a paired two-tailed t-test
(scipy.stats.ttest_rel, M3S's Table 5) plus a Wilcoxon signed-rank test over the
(fold, run) pairs that both strategies finished.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.data.spans import range_tag
from pipeline.evaluation.tables import ordered_unique
from pipeline.training.strategies import STRATEGIES, split_strategy, train_range_of

NAMES = {"orig": "ORIG", "spl-trn": "ORIG + SPL-TRN", "m3s": "ORIG + M3S"}
LOWER_IS_BETTER = {"MAE"}


def _train_tag(system: str) -> str:
    """'mmin+m3s@20-40' -> '20-40'; '' when the label has no training range."""
    r = train_range_of(system)
    return "" if r is None else range_tag(r)


def _runs(metrics: pa.Table) -> dict[tuple, dict[tuple[int, int], float]]:
    """(base, strategy, condition, metric) -> {(fold, run): value}; a system trained at its
    own range ('mmin+m3s@20-40') has base 'mmin @train20-40'."""
    cols = {c: metrics.column(c).to_pylist() for c in ("system", "fold", "run", "condition", "metric", "value")}
    out: dict[tuple, dict] = {}
    for i, system in enumerate(cols["system"]):
        base, strat = split_strategy(system)
        if strat == "none":
            continue
        tag = _train_tag(system)
        key = (f"{base} @train{tag}" if tag else base, strat, cols["condition"][i], cols["metric"][i])
        out.setdefault(key, {})[(cols["fold"][i], cols["run"][i])] = cols["value"][i]
    return out


def paired_tests(a: dict, b: dict) -> tuple[int, float, float]:
    """(n pairs, t-test p, Wilcoxon p) of b against a over their common (fold, run) keys."""
    from scipy import stats

    keys = sorted(set(a) & set(b))
    x, y = np.array([a[k] for k in keys]), np.array([b[k] for k in keys])
    if len(keys) < 2 or np.allclose(x, y):
        return len(keys), math.nan, math.nan
    t_p = float(stats.ttest_rel(y, x).pvalue)
    try:
        w_p = float(stats.wilcoxon(y, x).pvalue)
    except ValueError:
        w_p = math.nan
    return len(keys), t_p, w_p


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
    bases = ordered_unique([k[0] for k in runs])
    plain = ordered_unique([b.split(" @train")[0] for b in bases])
    if len(conds) < 2 and len(bases) == len(plain):
        return ""
    metric = headline_metrics(metrics)[0]
    parts = [f"## Training range x test range (M3S Table 4), {metric}", "",
             ("Mean ± std over folds x runs" + ("; lower is better" if metric in LOWER_IS_BETTER else "")
              + ". Rows: training span-rate range and strategy; columns: test range. "
              "The best strategy per (training range, test range) is in bold."), ""]
    for model in plain:
        head = ["train range", "method"] + [f"test {c.replace('span', '')}" for c in conds]
        lines = [f"**{model}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for base in [b for b in bases if b.split(" @train")[0] == model]:
            tag = base.partition(" @train")[2] or "(config)"
            means = {(st, c): np.mean(list(runs[(base, st, c, metric)].values()))
                     for st in STRATEGIES for c in conds if runs.get((base, st, c, metric))}
            for st in STRATEGIES:
                if not any((st, c) in means for c in conds):
                    continue
                cells = []
                for c in conds:
                    vals = list(runs.get((base, st, c, metric), {}).values())
                    col = [v for (s_, c_), v in means.items() if c_ == c]  # this base's strategies at c
                    text = _cell(vals, metric)
                    best = (min if metric in LOWER_IS_BETTER else max)(col) if len(col) > 1 else None
                    cells.append(f"**{text}**" if vals and means[(st, c)] == best else text)
                lines.append(f"| {tag} | {NAMES[st]} | " + " | ".join(cells) + " |")
        parts += lines + [""]
    return "\n".join(parts)


def strategy_tables(metrics: pa.Table) -> str:
    runs = _runs(metrics)
    if not runs:
        return ""
    bases = ordered_unique([k[0] for k in runs])
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
    tests = ["## Paired significance of M3S (and SPL-TRN) against ORIG (M3S Table 5)", "",
             ("Two-tailed paired t-test (scipy.stats.ttest_rel) and Wilcoxon signed-rank over the "
              "(fold, run) pairs; n = number of pairs."), ""]
    tests += ["| base | condition | comparison | n | " + " | ".join(f"{m} t-test p" for m in mets) + " | "
              + " | ".join(f"{m} Wilcoxon p" for m in mets) + " |", "|" + "---|" * (4 + 2 * len(mets))]
    for base in bases:
        for cond in conds:
            head = ["method"] + mets
            lines = [f"**{base}**, test {cond}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for st in STRATEGIES:
                cells = []
                for m in mets:
                    cells.append(_cell(list(runs.get((base, st, cond, m), {}).values()), m))
                lines.append(f"| {NAMES[st]} | " + " | ".join(cells) + " |")
            delta = []
            for m in mets:
                a, b = runs.get((base, "orig", cond, m)), runs.get((base, "m3s", cond, m))
                if a and b:
                    d = np.mean(list(b.values())) - np.mean(list(a.values()))
                    good = d < 0 if m in LOWER_IS_BETTER else d > 0
                    arrow = "= " if abs(d) < 1e-12 else ("↑ " if d > 0 else "↓ ")
                    delta.append(arrow + _pct(m, abs(d)) + (" ✓" if good else ""))
                else:
                    delta.append("–")
            lines.append("| Δ_ORIG (M3S) | " + " | ".join(delta) + " |")
            parts += lines + [""]
            for st in ("m3s", "spl-trn"):
                res = [paired_tests(runs.get((base, "orig", cond, m), {}), runs.get((base, st, cond, m), {})) for m in mets]
                if not any(r[0] for r in res):
                    continue
                fmt = lambda p: "–" if math.isnan(p) else f"{p:.3g}"
                tests.append(f"| {base} | {cond} | {NAMES[st]} vs ORIG | {res[0][0]} | "
                             + " | ".join(fmt(r[1]) for r in res) + " | " + " | ".join(fmt(r[2]) for r in res) + " |")
    grid = grid_table(metrics)
    return "\n".join(([grid, ""] if grid else []) + parts + [""] + tests + [""])


def append_strategy_report(results_dir: Path) -> Path:
    """Append the strategy tables to results_dir/report.md (after `render_report`)."""
    metrics = pq.read_table(results_dir / "metrics.parquet")
    text = strategy_tables(metrics)
    path = results_dir / "report.md"
    if text:
        (results_dir / "strategies.md").write_text(text)
        with path.open("a") as fh:
            fh.write("\n" + text)
    return path
