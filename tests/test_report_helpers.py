"""The helpers every report shares: the markdown table, the missing-condition rule, the
paired test and the strategy tables' refusal of old metrics files."""

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


def test_missing_conditions_read_the_column_and_fall_back_for_old_files() -> None:
    conds = ["a", "av", "avl", "a"]
    assert missing_conditions(_metrics(conds)) == ["a", "av"]  # old file: shorter name than the longest
    # the column wins over the names: here 'avl' lacks a modality and 'a' does not
    assert missing_conditions(_metrics(conds, [False, True, True, False])) == ["av", "avl"]
    assert missing_conditions(_metrics(["span20-40", "span60-80"], [False, False])) == []
    assert missing_conditions(_metrics(["span20-40", "span60-80"])) == []


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
    with pytest.raises(RamerError, match=r"metrics\.parquet: no base, strategy, train_range.*ramer report"):
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


def test_merge_refuses_sources_with_and_without_the_new_columns(tmp_path: Path) -> None:
    import json

    from pipeline.evaluation.merge import merge_results

    row = {"system": "ramer", "fold": 0, "run": 0, "condition": "a", "metric": "WA", "value": 0.5}
    for name, extra in (("new", {"missing": True}), ("old", {})):
        (tmp_path / name).mkdir()
        pq.write_table(pa.Table.from_pylist([{**row, "system": name, **extra}]), tmp_path / name / "metrics.parquet")
        (tmp_path / name / "config.json").write_text(json.dumps({"experiment": {"dataset": "d", "seed": 0}}))
    with pytest.raises(RamerError, match=r"old/metrics\.parquet: no missing column.*ramer report"):
        merge_results([tmp_path / "new", tmp_path / "old"], tmp_path / "out")
