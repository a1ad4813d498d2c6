"""Every figure of every report kind fits its canvas: rendered from tiny metrics frames
through the report renderers themselves, each figure is checked at the moment it is
saved (matplotlib's renderer, `Figure.savefig` watched): no text leaves the figure, no
legend sits on an axes' data area. And the paired figure draws the paired table's pairs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.text import Text

from pipeline.evaluation.stats import paired_test, t_interval

# Long names on purpose: the legend has to make room for them outside the data.
SYSTEMS = ["ramer", "w/o retrieval", "lr", "lr-knn", "ae", "cra", "mmin", "if-mmin", "cif-mmin", "nmer(vae=false)"]
CONDITIONS = ["a", "v", "l", "av", "al", "vl", "avl"]
UNITS = [(f, r) for f in range(2) for r in range(2)]


def _metrics(metric_names: dict[str, float], systems: list[str] = SYSTEMS, conditions: list[str] = CONDITIONS,
             extra: dict[str, object] | None = None) -> pa.Table:
    """Long-format metrics, one row per system x unit x condition x metric; values spread
    around each metric's `base` so that systems differ (seeded)."""
    rng = np.random.default_rng(0)
    longest = max(map(len, conditions))
    rows = []
    for i, s in enumerate(systems):
        for f, r in UNITS:
            for c in conditions:
                for m, base in metric_names.items():
                    rows.append({"system": s, "fold": f, "run": r, "condition": c, "missing": len(c) < longest,
                                 "metric": m, "value": float(base + 0.02 * i + rng.normal(0, 0.03)), **(extra or {})})
    return pa.Table.from_pylist(rows)


def _precision(modalities: list[str]) -> pa.Table:
    rng = np.random.default_rng(1)
    rows = [{"modality": m, "k": k, "precision": float(rng.uniform(0.4, 0.9)), "labeled_share": 1.0, "fold": f,
             "run": r} for m in modalities for k in (1, 5, 10, 15) for f, r in UNITS]
    return pa.Table.from_pylist(rows)


def layout_problems(fig: Figure) -> list[str]:
    """What a reader would stumble on, found with the figure's own renderer: drawn text
    whose bounding box leaves the figure, a legend overlapping an axes' area."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    canvas = fig.bbox.padded(1.0)  # a pixel of rounding
    problems = []
    for text in _drawn_texts(fig):
        box = text.get_window_extent(renderer)
        if not (canvas.contains(box.x0, box.y0) and canvas.contains(box.x1, box.y1)):
            problems.append(f"text {text.get_text()!r} leaves the figure (x, y, w, h: "
                            f"{[round(v) for v in box.bounds]} in {[round(v) for v in fig.bbox.bounds]})")
    for legend in fig.findobj(Legend):
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            if box.overlaps(ax.get_window_extent(renderer)):
                problems.append(f"legend of {[t.get_text() for t in legend.get_texts()][:3]}... overlaps the data "
                                f"area of axes {ax.get_title()!r}")
    return problems


def _drawn_texts(fig: Figure) -> list[Text]:
    """Every visible, non-empty text of the figure; of the tick labels only those of ticks
    inside the view (matplotlib keeps, but does not draw, the others)."""
    every_label, in_view = set(), set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                ids = {id(tick.label1), id(tick.label2)}
                every_label |= ids
                if tick.get_loc() is not None and lo - 1e-9 <= tick.get_loc() <= hi + 1e-9:
                    in_view |= ids
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()
            and (id(t) not in every_label or id(t) in in_view)]


@pytest.fixture
def saved(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Watch every figure the renderers save: file name -> its layout problems."""
    seen: dict[str, list[str]] = {}
    original = Figure.savefig

    def checked(fig: Figure, fname, *args, **kwargs):
        name = Path(fname).name.strip(".").removesuffix(".tmp")
        seen[name] = layout_problems(fig)
        return original(fig, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", checked)
    return seen


def _write(d: Path, metrics: pa.Table, precision: pa.Table | None = None) -> Path:
    d.mkdir()
    pq.write_table(metrics, d / "metrics.parquet")
    if precision is not None:
        pq.write_table(precision, d / "precision.parquet")
    return d


def _assert_fit(saved: dict[str, list[str]], expected: set[str]) -> None:
    bad = {name: problems for name, problems in saved.items() if problems}
    assert not bad, bad
    assert set(saved) == expected


def test_main_report_figures_fit(tmp_path: Path, saved: dict[str, list[str]]) -> None:
    from pipeline.evaluation.report import render_report

    d = _write(tmp_path / "main", _metrics({"WA": 0.9, "UA": 0.85, "F1w": 0.88}), _precision(["audio", "visual", "text"]))
    text = render_report(d).read_text()
    _assert_fit(saved, {"wa_by_condition.png", "paired_differences.png", "precision_at_k.png"})
    for name in saved:
        assert f"]({name})" in text and (d / name).is_file()
    # the paired figure is linked right under the paired table
    assert text.index("](paired_differences.png)") > text.index("| system | metric | Δ mean (points)")


def test_many_systems_still_fit(tmp_path: Path, saved: dict[str, list[str]]) -> None:
    from pipeline.evaluation.report import render_report

    every_option = "mmin(" + ",".join(f"option{i}=value{i}" for i in range(24)) + ")"  # a name wider than a figure
    many = [f"ramer(scale=small,k={k},fill=auto)" for k in range(40)] + ["ramer", every_option]
    render_report(_write(tmp_path / "many", _metrics({"WA": 0.9, "UA": 0.85}, systems=many)))
    _assert_fit(saved, {"wa_by_condition.png", "paired_differences.png"})


def test_multilabel_and_regression_report_figures_fit(tmp_path: Path, saved: dict[str, list[str]]) -> None:
    from pipeline.evaluation.report import render_report

    multi = _metrics({"Acc": 0.4, "F1": 0.5, "P": 0.6, "R": 0.5, "thr": 0.4}, systems=["carat", "ramer", "tailor"],
                     conditions=["avl"])
    render_report(_write(tmp_path / "multi", multi, _precision(["audio", "visual", "text"])))
    _assert_fit(saved, {"acc_by_condition.png", "paired_differences.png", "precision_at_k.png"})
    saved.clear()
    regression = _metrics({"MAE": 0.8, "Corr": 0.6, "Acc-2": 0.7}, systems=["ramer", "mmin", "nmer"])
    render_report(_write(tmp_path / "reg", regression))
    _assert_fit(saved, {"mae_by_condition.png", "paired_differences.png"})


def test_strategy_report_figures_fit(tmp_path: Path, saved: dict[str, list[str]]) -> None:
    from pipeline.evaluation.report import render_report
    from pipeline.evaluation.strategy_report import append_strategy_report

    parts = []
    for strategy, suffix in (("orig", ""), ("spl-trn", "+spl-trn"), ("m3s", "+m3s")):
        parts.append(_metrics({"MAE": 0.9, "Corr": 0.6, "Acc-2": 0.7, "F1": 0.7}, systems=[f"mmin{suffix}"],
                              conditions=["span20-40", "span40-60", "span60-80"],
                              extra={"base": "mmin", "strategy": strategy, "train_range": ""}))
    d = _write(tmp_path / "m3s", pa.concat_tables(parts))
    render_report(d)
    append_strategy_report(d)
    _assert_fit(saved, {"mae_by_condition.png"})  # no `ramer`: no paired figure; the M3S tables draw none


def test_noise_report_figure_fits(tmp_path: Path, saved: dict[str, list[str]]) -> None:
    from pipeline.evaluation.robustness import render_noise_report

    rng = np.random.default_rng(2)
    rows = [{"system": s, "fold": f, "run": r, "noise": kind, "intensity": t, "metric": m,
             "value": float(0.8 - 0.006 * t + rng.normal(0, 0.02))}
            for s in ["nmer", "nmer(vae=false)", "ramer", "mmin"] for f, r in UNITS for m in ("WA", "UA")
            for kind, t in [("none", 0)] + [(k, t) for k in ("gaussian", "impulse") for t in (20, 40, 60, 80, 100)]]
    d = tmp_path / "noise"
    d.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), d / "noise.parquet")
    render_noise_report(d)
    _assert_fit(saved, {"noise_wa.png"})


def test_sweep_report_draws_no_figure(tmp_path: Path, saved: dict[str, list[str]]) -> None:
    from pipeline.experiment.sweep import COLUMNS, write_validation

    rows = [{c: 0 for c in COLUMNS} | {"system": "ramer", "variant": "k=5", "fold": f, "run": r, "val_score": 0.5,
                                       "val_chance": 0.1, "chosen": True} for f, r in UNITS]
    write_validation(rows, tmp_path / "sweep", "sweep", "single_label", "x")
    assert saved == {} and not list((tmp_path / "sweep").glob("*.png"))


def test_the_check_catches_a_cut_title_and_a_legend_on_the_data() -> None:
    from pipeline.evaluation.figures import new_figure

    fig, (ax,) = new_figure((3, 2))
    ax.plot([0, 1], [0, 1], label="a line")
    ax.set_title("a title far too long for a figure three inches wide, cut at the right edge")
    ax.legend(loc="center")
    problems = layout_problems(fig)
    assert any("leaves the figure" in p for p in problems) and any("overlaps" in p for p in problems)


def test_paired_figure_draws_the_paired_tables_pairs(tmp_path: Path) -> None:
    from pipeline.evaluation.report import (
        paired_comparison,
        paired_difference_figure,
        paired_differences,
    )

    metrics = _metrics({"WA": 0.9, "UA": 0.85}, systems=["ramer", "lr", "mmin"])
    pairs = paired_differences(metrics, ("WA", "UA"))
    fig = paired_difference_figure(metrics, ("WA", "UA"))
    assert [ax.get_title() for ax in fig.axes] == ["WA", "UA"]
    table = "\n".join(paired_comparison(metrics, ("WA", "UA")))
    for ax, metric in zip(fig.axes, ("WA", "UA")):
        points = [c.get_offsets()[:, 0] for c in ax.collections]  # one scatter per system, in table order
        for (system, (ref, other)), xs in zip(pairs[metric].items(), points):
            assert np.allclose(sorted(xs), sorted(100 * (ref - other)))
            mean = 100 * paired_test(ref, other).mean_difference
            assert f"| {system} | {metric} | {mean:+.2f} |" in table
            assert any(t.get_text().startswith(f"{mean:+.2f}") for t in ax.texts)


def test_t_interval_agrees_with_the_paired_t_test() -> None:
    from scipy import stats

    rng = np.random.default_rng(3)
    for shift in (0.0, 0.01, 0.03, 0.1):
        x, y = rng.normal(0.9, 0.02, 15), rng.normal(0.9 - shift, 0.02, 15)
        lo, hi = t_interval(x - y)
        ref = stats.t.interval(0.95, 14, loc=np.mean(x - y), scale=stats.sem(x - y))
        assert (lo, hi) == pytest.approx(ref)
        assert (lo > 0 or hi < 0) == (paired_test(x, y).t_p < 0.05)
    assert all(math.isnan(v) for v in t_interval(np.array([0.1])))
    assert t_interval(np.array([0.2, 0.2, 0.2])) == pytest.approx((0.2, 0.2))


def test_save_figure_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.evaluation.figures import new_figure, save_figure

    fig, (ax,) = new_figure((3, 2))
    ax.plot([0, 1], [0, 1])
    save_figure(fig, tmp_path / "ok.png")
    assert (tmp_path / "ok.png").read_bytes()[:4] == b"\x89PNG"

    def failing(self, fname, *args, **kwargs):
        Path(fname).write_bytes(b"half")
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(Figure, "savefig", failing)
    with pytest.raises(RuntimeError):
        save_figure(fig, tmp_path / "bad.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.png"]
