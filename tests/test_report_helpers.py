"""The helpers every report shares: the markdown table, the missing-condition rule, the
paired test, and the refusal of metrics files without the columns reports read."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import RamerError
from pipeline.evaluation.stats import paired_test, paired_units
from pipeline.evaluation.tables import markdown_table, missing_conditions


def test_markdown_table() -> None:
    assert markdown_table(["a", "b"], [["1", ""], ["x", "y"]]) == ["| a | b |", "|---|---|", "| 1 |  |", "| x | y |"]
    assert markdown_table(["only"], []) == ["| only |", "|---|"]


def _metrics(conds: list[str], missing: list[bool] | None = None) -> pa.Table:
    cols = {"system": ["s"] * len(conds), "condition": conds}
    if missing is not None:
        cols["missing"] = missing
    return pa.table(cols)


def test_missing_conditions_read_the_column_not_the_names() -> None:
    conds = ["a", "av", "avl", "a"]
    # the column decides: here 'avl' lacks a modality and 'a' does not
    assert missing_conditions(_metrics(conds, [False, True, True, False])) == ["av", "avl"]
    assert missing_conditions(_metrics(["span20-40", "span60-80"], [False, False])) == []
    with pytest.raises(RamerError, match="no missing column"):
        missing_conditions(_metrics(conds))


def test_paired_test_values_and_undefined_cases() -> None:
    x, y = np.array([0.6, 0.7, 0.5, 0.8]), np.array([0.5, 0.65, 0.55, 0.6])
    t = paired_test(x, y)
    assert (t.n, t.wins) == (4, 3) and t.mean_difference == pytest.approx(0.075)
    assert 0 < t.t_p < 1 and 0 < t.wilcoxon_p <= 1
    low = paired_test(x, y, lower_is_better=True)  # e.g. MAE: positive = x lower
    assert low.mean_difference == pytest.approx(-0.075) and low.wins == 1 and low.t_p == pytest.approx(t.t_p)
    same = paired_test(x, x)
    assert same.wins == 0 and math.isnan(same.t_p) and math.isnan(same.wilcoxon_p)
    shifted = paired_test(np.array([0.5, 0.75, 0.25]), np.array([0.25, 0.5, 0.0]))  # one constant difference
    assert math.isnan(shifted.t_p) and not math.isnan(shifted.wilcoxon_p)
    one = paired_test(np.array([0.7]), np.array([0.5]))
    assert one.n == 1 and one.wins == 1 and math.isnan(one.t_p) and math.isnan(one.wilcoxon_p)
    none = paired_test(np.array([]), np.array([]))
    assert none.n == 0 and math.isnan(none.mean_difference)
    with pytest.raises(ValueError, match="aligned"):
        paired_test(np.ones(3), np.ones(2))


def test_paired_units_keep_the_common_units_in_order() -> None:
    a, b = paired_units({(1, 0): 0.1, (0, 0): 0.2, (2, 0): 0.3}, {(0, 0): 0.5, (1, 0): 0.6})
    assert a.tolist() == [0.2, 0.1] and b.tolist() == [0.5, 0.6]


def test_strategy_report_refuses_metrics_without_the_strategy_columns(tmp_path: Path) -> None:
    from pipeline.evaluation.strategy_report import append_strategy_report

    rows = [{"system": "ae+m3s", "fold": 0, "run": 0, "condition": "span20-40", "metric": "WA", "value": 0.5}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "metrics.parquet")
    with pytest.raises(RamerError, match=r"metrics\.parquet: no base, strategy, train_range column\(s\).*rerun"):
        append_strategy_report(tmp_path)


def test_strategy_tables_group_by_the_columns_not_the_label() -> None:
    from pipeline.evaluation.strategy_report import strategy_tables

    rows = [{"system": f"label-{st}-{f}", "model": "mmin", "base": "mmin(embd=8)", "strategy": st,
             "train_range": "20-40", "fold": f, "run": 0, "condition": "span20-40", "metric": "WA",
             "value": 0.5 + 0.1 * (st == "m3s") + 0.01 * f * f}
            for st in ("orig", "m3s", "none") for f in range(3)]
    text = strategy_tables(pa.Table.from_pylist(rows))
    assert "**mmin(embd=8) @train20-40**, test span20-40" in text
    assert "| ORIG + M3S | 61.67 ± 1.70 |" in text and "| Δ_ORIG (M3S) | ↑ 10.00 ✓ |" in text
    # a constant difference: the t-test is undefined, the Wilcoxon test is not
    assert "| mmin(embd=8) @train20-40 | span20-40 | ORIG + M3S vs ORIG | 3 | – | 0.25 |" in text


def test_merge_refuses_a_source_without_the_columns(tmp_path: Path) -> None:
    import json

    from pipeline.evaluation.merge import merge_results

    row = {"system": "ramer", "fold": 0, "run": 0, "condition": "a", "metric": "WA", "value": 0.5}
    full = {"model": "ramer", "strategy": "none", "train_range": "", "base": "ramer", "missing": True}
    for name, extra in (("new", full), ("old", {k: v for k, v in full.items() if k != "missing"})):
        (tmp_path / name).mkdir()
        pq.write_table(pa.Table.from_pylist([{**row, "system": name, **extra}]), tmp_path / name / "metrics.parquet")
        (tmp_path / name / "config.json").write_text(json.dumps({"experiment": {"dataset": "d", "seed": 0}}))
    with pytest.raises(RamerError, match=r"old/metrics\.parquet: no missing column.*rerun"):
        merge_results([tmp_path / "new", tmp_path / "old"], tmp_path / "out")


def test_validation_beside_test_orders_by_validation_and_averages_like_the_main_table(tmp_path: Path) -> None:
    """Validation is the mean of the units' selection scores; test the mean over units of
    the missing-condition average (the full condition left out); best validation first."""
    from pipeline.evaluation.report import validation_rows, validation_section

    fits = [{"system": s, "fold": f, "run": 0, "val_score": v}
            for s, vals in (("a", (0.70, 0.80)), ("b", (0.90, 0.92))) for f, v in enumerate(vals)]
    pq.write_table(pa.Table.from_pylist(fits), tmp_path / "fits.parquet")
    rows = [{"system": s, "fold": f, "run": 0, "condition": c, "missing": c != "av", "metric": "WA",
             "value": base + 0.1 * f + (0.2 if c == "v" else 0.0) + (0.5 if c == "av" else 0.0)}
            for s, base in (("a", 0.6), ("b", 0.4)) for f in range(2) for c in ("a", "v", "av")]
    metrics = pa.Table.from_pylist(rows)
    got = validation_rows(tmp_path, metrics, "WA")
    assert [r[0] for r in got] == ["b", "a"] and [r[3] for r in got] == [2, 2]
    assert got[0][1] == pytest.approx(0.91) and got[1][1] == pytest.approx(0.75)
    assert got[0][2] == pytest.approx(0.55) and got[1][2] == pytest.approx(0.75)  # (x + x + 0.2) / 2, then over f
    text = "\n".join(validation_section(tmp_path, metrics, "WA"))
    assert "| b | 0.9100 | 55.00 | 2 |" in text and text.index("| b |") < text.index("| a |")
    assert validation_section(tmp_path / "none", metrics, "WA") == []
