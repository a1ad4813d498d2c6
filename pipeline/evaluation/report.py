"""Reports: Table-3-style markdown (conditions x WA/UA, mean +/- std), figures, files.

Everything here is rendered from the saved tables, so `ramer report DIR` re-renders a
report without training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute
import pyarrow.parquet as pq

from pipeline.evaluation.figures import (
    condition_figure,
    paired_figure,
    precision_figure,
    save_figure,
)
from pipeline.evaluation.stats import paired_test, paired_units
from pipeline.evaluation.tables import (
    markdown_table,
    missing_conditions,
    ordered_unique,
    summarise,
    write_summary_csv,
)

# The RAMER paper's Table 3 (MER2024; WA/UA in %), shown beside ours, never mixed in.
PAPER_TABLE3 = {
    "AE": [71.80, 67.51, 58.46, 47.37, 55.12, 48.06, 75.38, 67.35, 73.66, 74.29, 72.01, 65.10, 67.74, 61.61],
    "CRA": [73.25, 68.65, 61.90, 50.44, 56.48, 48.80, 76.61, 68.30, 75.06, 75.14, 72.76, 66.32, 69.34, 62.94],
    "MMIN": [74.88, 70.34, 62.78, 50.98, 57.45, 50.25, 77.42, 69.24, 75.48, 75.77, 73.28, 67.17, 70.07, 63.88],
    "IF-MMIN": [68.79, 56.81, 62.35, 52.38, 48.79, 39.81, 72.94, 61.07, 74.51, 61.55, 69.12, 57.67, 66.23, 54.96],
    "CIF-MMIN": [72.31, 69.86, 64.12, 52.19, 63.29, 62.45, 79.64, 73.93, 76.38, 75.61, 76.44, 74.93, 71.98, 68.29],
    "RAMER": [85.94, 74.88, 71.34, 59.63, 89.84, 88.23, 82.39, 70.02, 90.96, 88.99, 90.63, 86.77, 85.13, 78.73],
    "w/o retrieval": [67.81, 55.54, 56.12, 45.72, 55.96, 53.30, 75.13, 65.29, 74.75, 70.95, 79.49, 71.60, 67.81, 61.55],
}
PAPER_CONDITIONS = ["a", "v", "l", "av", "al", "vl"]


def _fmt(mean: float, std: float) -> str:
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


# CARAT paper, Table 1 (aligned CMU-MOSEI): Acc, P, R, micro-F1.
PAPER_CARAT_MOSEI = {"CARAT": [0.494, 0.661, 0.518, 0.581], "TAILOR": [0.488, 0.641, 0.512, 0.569]}

# Headline metric pairs by task, in order of preference; the first pair fully present wins.
HEADLINE = (("WA", "UA"), ("Acc", "F1"), ("MAE", "Corr"))
SECONDARY = {"WA": ("F1w",), "Acc": ("P", "R"), "MAE": ("Acc-2", "F1", "Acc-7")}
TITLES = {"WA": "Weighted F1", "Acc": "Micro precision / recall", "MAE": "Binary and 7-class"}


def headline_metrics(metrics: pa.Table) -> tuple[str, ...]:
    """The metric names the main table shows, read from the data: WA/UA (single-label),
    Acc/F1 (multi-label), MAE/Corr (regression), else the first two recorded."""
    present = ordered_unique(metrics.column("metric").to_pylist())
    for names in HEADLINE:
        if all(n in present for n in names):
            return names
    return tuple(present[:2])


def condition_table(metrics: pa.Table, metric_names: tuple[str, ...] | None = None) -> str:
    """Markdown: rows = systems, columns = condition x metric (+ Avg over the missing ones).
    `metric_names` default: `headline_metrics(metrics)`."""
    if metric_names is None:
        metric_names = headline_metrics(metrics)
    summ = summarise(metrics, ["system", "condition", "metric"])
    systems = ordered_unique(metrics.column("system").to_pylist())
    conds = ordered_unique(metrics.column("condition").to_pylist())
    per_run = avg_over_conditions(metrics, missing_conditions(metrics))
    head = ["system"] + [f"{c} {m}" for c in conds for m in metric_names] + [f"Avg {m}" for m in metric_names]
    rows = []
    for s in systems:
        cells = [s]
        for c in conds:
            for m in metric_names:
                v = summ.get((s, c, m))
                cells.append(_fmt(v[0], v[1]) if v else "–")
        for m in metric_names:
            vals = list(per_run.get((s, m), {}).values())
            cells.append(_fmt(np.mean(vals), np.std(vals)) if vals else "–")
        rows.append(cells)
    return "\n".join(markdown_table(head, rows))


def avg_over_conditions(metrics: pa.Table, conds: list[str]) -> dict[tuple[str, str], dict[tuple, float]]:
    """Per (system, metric): the average over `conds` of each (fold, run) unit, keyed by unit."""
    summ = summarise(metrics, ["system", "metric", "fold", "run", "condition"])
    acc: dict[tuple, dict[tuple, list[float]]] = {}
    for (s, m, f, r, c), (mean, _, _) in summ.items():
        if c in conds:
            acc.setdefault((s, m), {}).setdefault((f, r), []).append(mean)
    return {k: {unit: float(np.mean(v)) for unit, v in runs.items()} for k, runs in acc.items()}


def winners(metrics: pa.Table, reference: str = "ramer", metric: str = "WA") -> list[str]:
    """Lines naming, per condition, the best system and every system that beats RAMER."""
    summ = summarise(metrics, ["system", "condition", "metric"])
    systems = ordered_unique(metrics.column("system").to_pylist())
    if reference not in systems or len(systems) < 2:
        return []
    lines = [f"Best {metric} per condition, and where another system beats `{reference}`:", ""]
    for c in ordered_unique(metrics.column("condition").to_pylist()):
        scores = {s: summ[(s, c, metric)][0] for s in systems if (s, c, metric) in summ}
        best = max(scores, key=scores.get)
        beat = [f"{s} ({100 * v:.2f})" for s, v in scores.items() if s != reference and v > scores.get(reference, 1.0)]
        ref = f"{100 * scores[reference]:.2f}" if reference in scores else "–"
        lines.append(f"- `{c}`: best {best} ({100 * scores[best]:.2f}); {reference} {ref}"
                     + (f"; beaten by {', '.join(beat)}" if beat else ""))
    return lines + [""]


def paired_differences(metrics: pa.Table, head: tuple[str, ...], reference: str = "ramer"
                       ) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """metric -> system -> (reference, system) values over the (fold, run) units both
    finished, aligned (`paired_units`), each unit's value the average over the missing
    conditions (all conditions when none is missing-modality). The paired table and the
    paired figure both read this, so they show the same pairs."""
    systems = ordered_unique(metrics.column("system").to_pylist())
    if reference not in systems or len(systems) < 2:
        return {}
    averaged = missing_conditions(metrics) or ordered_unique(metrics.column("condition").to_pylist())
    out: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for metric in head:
        per = avg_over_conditions(metrics.filter(pa.compute.equal(metrics.column("metric"), metric)), averaged)
        ref = per.get((reference, metric))
        for s in systems:
            other = per.get((s, metric))
            if s == reference or not ref or not other:
                continue
            pairs = paired_units(ref, other)
            if len(pairs[0]):  # else no (fold, run) both systems finished
                out.setdefault(metric, {})[s] = pairs
    return out


def _points(metric: str) -> float:
    """MAE in its own units, the rest in points (%)."""
    return 1.0 if metric == "MAE" else 100.0


def paired_comparison(metrics: pa.Table, head: tuple[str, ...], reference: str = "ramer") -> list[str]:
    """Each system vs `reference`, paired over fold x run units on the average over the
    missing conditions (all conditions when none is missing-modality): mean difference,
    wins, paired t-test and Wilcoxon p-values (`pipeline.evaluation.stats.paired_test`)."""
    pairs = paired_differences(metrics, head, reference)
    if not pairs:
        return []
    rows = []
    for metric, by_system in pairs.items():
        for s, (ref, other) in by_system.items():
            test = paired_test(ref, other, lower_is_better=metric == "MAE")
            rows.append([s, metric, f"{_points(metric) * test.mean_difference:+.2f}", f"{test.wins}/{test.n}",
                         f"{test.t_p:.3g}", f"{test.wilcoxon_p:.3g}"])
    intro = (f"Paired comparison with `{reference}` (average over the missing conditions, one pair per "
             f"fold x run; Δ = `{reference}` minus the system, positive = `{reference}` better; "
             "p: paired t-test / Wilcoxon):")
    head_row = ["system", "metric", "Δ mean (points)", f"`{reference}` wins", "p (t)", "p (Wilcoxon)"]
    return [intro, "", *markdown_table(head_row, rows), ""]


def paired_difference_figure(metrics: pa.Table, head: tuple[str, ...], reference: str = "ramer"):
    """The paired table as a forest plot (`figures.paired_figure`): per metric of `head`
    and system, `reference` minus the system per unit (MAE turned so that > 0 is still
    `reference` better), in the table's units; None when there is no pair."""
    pairs = paired_differences(metrics, head, reference)
    if not pairs:
        return None
    diffs = {m: {s: _points(m) * ((o - r) if m == "MAE" else (r - o)) for s, (r, o) in by.items()}
             for m, by in pairs.items()}
    averaged = "the average over the missing conditions" if missing_conditions(metrics) else \
        "the average over all conditions"
    return paired_figure(diffs, reference, unit_value=f"each {averaged}")


def paper_table() -> str:
    """The paper's Table 3 as published, plus the averages recomputed from its own cells:
    several published averages disagree with the mean of their six conditions (e.g.
    RAMER's UA 78.73 against 78.09; w/o retrieval's WA 67.81 is its `a` cell, the mean is
    68.21). Differences over 0.05 are marked with *."""
    head = ["paper (MER2024)"] + [f"{c} {m}" for c in PAPER_CONDITIONS for m in ("WA", "UA")]
    head += ["Avg WA (published)", "Avg WA (recomputed)", "Avg UA (published)", "Avg UA (recomputed)"]
    rows = []
    for name, vals in PAPER_TABLE3.items():
        cells, (wa, ua) = vals[:-2], vals[-2:]
        means = (sum(cells[0::2]) / len(PAPER_CONDITIONS), sum(cells[1::2]) / len(PAPER_CONDITIONS))
        avg = []
        for published, mean in zip((wa, ua), means):
            avg += [f"{published:.2f}", f"{mean:.2f}" + (" *" if abs(published - mean) > 0.05 else "")]
        rows.append([name] + [f"{v:.2f}" for v in cells] + avg)
    lines = markdown_table(head, rows) + [""]
    lines.append("\\* the published average differs from the mean of the published per-condition cells.")
    return "\n".join(lines)


def precision_table(precision: pa.Table) -> str:
    summ = summarise(precision, ["modality", "k"], value="precision")
    mods = ordered_unique(precision.column("modality").to_pylist())
    ks = sorted(set(precision.column("k").to_pylist()))
    rows = [[m] + [_fmt(*summ[(m, k)][:2]) for k in ks] for m in mods]
    return "\n".join(markdown_table(["modality"] + [f"P@{k}" for k in ks], rows))


PAIRED_PLOT = "paired_differences.png"
CHANCE_MARGIN = 0.01  # a validation score within this of the best constant guess = chance


def warnings_section(results_dir: Path) -> list[str]:
    """Lines for the top of the report: degenerate DB modalities (fits of stage 2) and
    systems at chance level on validation, each named with its folds x runs."""
    lines = []
    diag_path, fits_path = results_dir / "diagnostics.parquet", results_dir / "fits.parquet"
    if diag_path.is_file():
        diag = pq.read_table(diag_path).to_pylist()
        for m in ordered_unique([d["modality"] for d in diag]):
            bad = [f"f{d['fold']}r{d['run']}" for d in diag if d["modality"] == m and d["degenerate"]]
            if bad:
                lines.append(f"- **degenerate hidden vectors** of `{m}` in {', '.join(bad)}: they point (almost) "
                             "one way, so retrieval through it is close to random (see the per-modality table).")
    if fits_path.is_file():
        fits = pq.read_table(fits_path).to_pylist()
        for sname in ordered_unique([f["system"] for f in fits]):
            units = [f for f in fits if f["system"] == sname]
            low = [f"f{f['fold']}r{f['run']}" for f in units
                   if np.isfinite(f["val_chance"]) and f["val_score"] <= f["val_chance"] + CHANCE_MARGIN]
            if low:
                lines.append(f"- **{sname} is at chance level on validation** in {len(low)}/{len(units)} "
                             f"units ({', '.join(low)}): its averages below include those units.")
    return ["## Warnings", "", *lines, ""] if lines else []


def validation_rows(results_dir: Path, metrics: pa.Table, metric: str) -> list[tuple[str, float, float, int]]:
    """Per system: (name, mean validation score, mean test Avg `metric`, units), best
    validation first. Validation = the stage-3 selection score of what each unit chose
    (`fits.parquet`); test = `metric` averaged over the missing conditions (every condition
    of a span experiment) per unit, as the main table's Avg, then over the units."""
    val: dict[str, list[float]] = {}
    for f in pq.read_table(results_dir / "fits.parquet", columns=["system", "val_score"]).to_pylist():
        val.setdefault(f["system"], []).append(f["val_score"])
    conds = missing_conditions(metrics) or ordered_unique(metrics.column("condition").to_pylist())
    per_unit = avg_over_conditions(metrics, conds)  # (system, metric) -> {unit: avg}
    rows = [(s, float(np.mean(v)), float(np.mean(list(per_unit[(s, metric)].values()))), len(v))
            for s, v in val.items() if (s, metric) in per_unit]
    return sorted(rows, key=lambda r: -r[1])


def validation_section(results_dir: Path, metrics: pa.Table, metric: str) -> list[str]:
    """The score every choice is read from beside the one it is reported on: a default or
    variant is kept when it wins on validation, whatever the test column says."""
    if not (results_dir / "fits.parquet").is_file():
        return []
    rows = [[s, f"{v:.4f}", f"{100 * t:.2f}", str(n)] for s, v, t, n in validation_rows(results_dir, metrics, metric)]
    return ["## Validation beside test", "",
            ("Per system, best validation first: the mean validation score of the epoch and variant "
             f"each unit chose (its selection score), beside the mean test Avg {metric}."), "",
            *markdown_table(["system", "validation", f"test Avg {metric} (%)", "units"], rows), ""]


def modality_section(results_dir: Path) -> list[str]:
    """Per modality: stage-1 validation score against chance, and the DB's health."""
    path = results_dir / "diagnostics.parquet"
    if not path.is_file():
        return []
    diag = pq.read_table(path)
    summ = {k: summarise(diag, ["modality"], value=k) for k in
            ("stage1_val", "stage1_chance", "concentration", "effective_rank", "degenerate")}
    lines = ["## Stage 1 and the database, per modality", "",
             ("Stage-1 validation score of each modality's encoder (the task's selection score) beside "
              "the best constant guess, and the health of its hidden vectors in the DB: concentration "
              "= |mean unit vector| (1 = one direction), effective rank (~1 = a line)."), ""]
    rows = []
    for m in ordered_unique(diag.column("modality").to_pylist()):
        v = {k: summ[k][(m,)] for k in summ}
        rows.append([m, f"{v['stage1_val'][0]:.3f} ± {v['stage1_val'][1]:.3f}", f"{v['stage1_chance'][0]:.3f}",
                     f"{v['concentration'][0]:.3f}", f"{v['effective_rank'][0]:.1f}",
                     f"{round(v['degenerate'][0] * v['degenerate'][2])}/{v['degenerate'][2]}"])
    head = ["modality", "stage-1 val", "chance", "concentration", "effective rank", "degenerate units"]
    return lines + markdown_table(head, rows) + [""]


def view_links(results_dir: Path) -> list[str]:
    """Report lines linking the per-fold collection views (`views/*.html`), if any."""
    pages = sorted((results_dir / "views").glob("*.html"))
    if not pages:
        return []
    return [
        "## Hidden-feature maps",
        "",
        ("One interactive page per fold's collection (open offline in a browser): per modality a "
         "2-D map of the stored hidden vectors, and each point's top-K neighbours under the "
         "leakage filter. Another view: `ramer collections explore NAME --out FILE.html`."),
        "",
        *(f"- [{p.stem}](views/{p.name})" for p in pages),
        "",
    ]


def render_report(results_dir: Path, title: str | None = None, differences: list[str] | None = None) -> Path:
    """Write report.md + PNGs in `results_dir` from its metrics/precision parquet files.
    `differences`: the lines saying which settings differ from the papers (made by
    `pipeline.experiment.differences.differences_lines`), shown under the main table;
    none given, no such section."""
    metrics = pq.read_table(results_dir / "metrics.parquet")
    n_runs = len(set(zip(metrics.column("fold").to_pylist(), metrics.column("run").to_pylist())))
    write_summary_csv(metrics, results_dir / "summary.csv")
    head = headline_metrics(metrics)
    present = set(metrics.column("metric").to_pylist())
    second = tuple(m for m in SECONDARY.get(head[0], ()) if m in present)
    multi = head == ("Acc", "F1")
    plot_name = f"{head[0].lower()}_by_condition.png"
    parts = [
        f"# {title or results_dir.name}",
        "",
        (f"Test-split results, mean ± std over {n_runs} fold x run combinations "
         "(models selected on validation only). Raw numbers: `metrics.parquet`; the same as "
         "mean / std / n per system, condition and metric: `summary.csv`; config: `config.json`."),
        "",
        *warnings_section(results_dir),
        f"## Missing-modality conditions ({' / '.join(head)}, %)",
        "",
    ]
    if multi:
        parts += [
            ("Acc = example-based accuracy (Jaccard), F1 = micro-F1; label sets at one decision "
             "threshold per system x fold x run, chosen on validation micro-F1 (metric `thr`)."),
            "",
        ]
    parts += [condition_table(metrics, head), ""]
    parts += list(differences or [])
    parts += winners(metrics, metric=head[0]) + paired_comparison(metrics, head)
    paired = paired_difference_figure(metrics, head)
    if paired is not None:
        save_figure(paired, results_dir / PAIRED_PLOT)
        parts += [(f"The same pairs drawn ({PAIRED_PLOT}): a point per fold x run unit, the mean with its 95 % "
                   "t-interval (it leaves out 0 exactly when p (t) < 0.05), 0 dashed."), "",
                  f"![paired differences]({PAIRED_PLOT})", ""]
    if second:
        parts += [f"{TITLES[head[0]]} ({' / '.join(second)}, %):", "", condition_table(metrics, second), ""]
    parts += [f"![{head[0]} per condition]({plot_name})", ""]
    save_figure(condition_figure(metrics, head[0]), results_dir / plot_name)
    parts += validation_section(results_dir, metrics, head[0])
    parts += precision_section(results_dir, multi)
    parts += modality_section(results_dir)
    parts += view_links(results_dir)
    parts += paper_section(head)
    path = results_dir / "report.md"
    path.write_text("\n".join(parts))
    return path


def precision_section(results_dir: Path, multi: bool) -> list[str]:
    """Retrieval precision@K table and plot (precision_at_k.png), if precision.parquet has rows."""
    path = results_dir / "precision.parquet"
    precision = pq.read_table(path) if path.is_file() else None
    if precision is None or not precision.num_rows:
        return []
    save_figure(precision_figure(precision), results_dir / "precision_at_k.png")
    rule = "sharing at least one label with the query" if multi else "sharing the query label"
    return [
        f"## Retrieval precision@K (test queries, labeled neighbours {rule}, %)",
        "",
        precision_table(precision),
        "",
        "![precision@K](precision_at_k.png)",
        "",
    ]


def paper_section(head: tuple[str, ...]) -> list[str]:
    """The published numbers of the paper the task comes from, for reference, never mixed in."""
    if head == ("WA", "UA"):
        return [
            "## For reference: the paper's Table 3 (MER2024, different data; not comparable number-for-number)",
            "",
            paper_table(),
            "",
        ]
    if head == ("Acc", "F1"):
        rows = [[k] + [f"{100 * v:.1f}" for v in vals] for k, vals in PAPER_CARAT_MOSEI.items()]
        return [
            "## For reference: CARAT paper, Table 1 (aligned CMU-MOSEI, full modalities; different data)",
            "",
            *markdown_table(["paper (MOSEI)", "Acc", "P", "R", "Micro-F1"], rows),
            "",
        ]
    return []
