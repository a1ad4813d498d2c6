"""The report's figures, drawn once here and used by every report kind and the results
notebook: each function returns a matplotlib `Figure` (no pyplot, so no global figure
state) that `save_figure` writes and a notebook shows as it is.

Every figure is laid out by matplotlib's constrained layout with its legend outside the
axes, so no title, label or legend is cut or covers data (tests/test_figures.py checks
this on every report kind). Systems keep one look in every figure: the reference system
(RAMER) a filled red diamond, its ablation `w/o retrieval` a hollow one, the linear
references (`lr`, `lr-knn`) hollow grey, every other system a colour of its own.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from pipeline.evaluation.stats import t_interval
from pipeline.evaluation.tables import ordered_unique, summarise

DPI = 120
REFERENCE_COLOUR = "#c0392b"
LINEAR_REFERENCES = {"lr": "s", "lr-knn": "^"}  # linear baselines: marker, hollow grey
ABLATIONS = {"w/o retrieval"}  # RAMER without retrieval: RAMER's marker, hollow
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#bcbd22", "#e377c2", "#7f7f00"]
MARKERS = ["o", "v", "P", "X", "h", "<", ">", "p", "*"]


def new_figure(figsize: tuple[float, float], columns: int = 1, sharey: bool = False) -> tuple[Figure, Sequence]:
    """A figure with one row of `columns` axes under constrained layout (it makes room
    for titles, labels and legends placed `outside`), on the Agg canvas: it draws
    without a display, and its renderer measures every text."""
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, columns, squeeze=False, sharey=sharey)[0]
    return fig, axes


def save_figure(fig: Figure, path: Path) -> None:
    """Write `fig` as PNG at the report resolution; written beside and renamed, so a
    failed drawing leaves no half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(tmp, dpi=DPI, format="png")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def system_styles(systems: Sequence[str], reference: str = "ramer") -> dict[str, dict]:
    """Per system: colour, marker, face colour (hollow = white), size, line style and
    z-order, the same in every figure of one report."""
    styles, others = {}, 0
    for s in systems:
        if s == reference:
            style = {"color": REFERENCE_COLOUR, "marker": "D", "face": REFERENCE_COLOUR, "size": 7.5, "ls": "-", "z": 5}
        elif s in ABLATIONS:
            style = {"color": REFERENCE_COLOUR, "marker": "D", "face": "white", "size": 6, "ls": ":", "z": 4}
        elif s in LINEAR_REFERENCES:
            style = {"color": "#555555", "marker": LINEAR_REFERENCES[s], "face": "white", "size": 6, "ls": "--", "z": 4}
        else:
            style = {"color": PALETTE[others % len(PALETTE)], "marker": MARKERS[others % len(MARKERS)],
                     "face": PALETTE[others % len(PALETTE)], "size": 5.5, "ls": "-", "z": 3}
            others += 1
        styles[s] = style
    return styles


LEGEND_ROWS = 16  # entries per legend column: a longer legend would outgrow the figure's height
LABEL_WIDTH = 36  # characters per line of a system's name in a legend or on an axis


def _wrapped(label: str) -> str:
    """A long system name (every option spelled out) over several lines, so it cannot
    squeeze the axes to nothing."""
    return textwrap.fill(label, LABEL_WIDTH, break_long_words=True, break_on_hyphens=False)


def _outside_legend(fig: Figure, handles: list, labels: list[str], title: str) -> None:
    """The legend right of the axes, in as many columns as keep it within the figure."""
    if handles:
        fig.legend(handles, [_wrapped(t) for t in labels], loc="outside right upper", fontsize=8, title=title, title_fontsize=8,
                   ncols=-(-len(handles) // LEGEND_ROWS))


def _errorbar(ax, xs, means, spreads, style: dict, label: str, line: bool = False) -> None:
    """Marks (joined by a line when `line`) with vertical spread bars, in a system's style."""
    bars = ax.errorbar(xs, means, yerr=spreads, fmt=style["marker"], ls=style["ls"] if line else "none",
                       color=style["color"], mfc=style["face"], mec=style["color"], ms=style["size"],
                       capsize=2, elinewidth=1, lw=1.3, zorder=style["z"], label=label)
    if style["ls"] != "-":  # dashed/dotted spread bars: the references read as references
        for bar in bars[2]:
            bar.set_linestyle(style["ls"])


def _scale(metric: str) -> tuple[float, str]:
    """Multiplier and unit of a metric in figures: MAE in its own units, the rest in %."""
    return (1.0, "") if metric == "MAE" else (100.0, " (%)")


def _dodge(n: int, width: float = 0.8) -> np.ndarray:
    """x offsets of n marks sharing one position, spread over `width`."""
    return np.linspace(-width / 2, width / 2, n) if n > 1 else np.zeros(1)


def _units(table: pa.Table) -> int:
    return len(set(zip(table.column("fold").to_pylist(), table.column("run").to_pylist())))


def condition_figure(metrics: pa.Table, metric: str, reference: str = "ramer") -> Figure:
    """Per test condition one mark per system: mean over (fold, run) units with a bar of
    one std (the report table's mean ± std); the y-axis spans the data, not 0-100."""
    summ = summarise(metrics, ["system", "condition", "metric"])
    scored = {(s, m) for (s, _, m) in summ}
    systems = [s for s in ordered_unique(metrics.column("system").to_pylist()) if (s, metric) in scored]
    conds = ordered_unique(metrics.column("condition").to_pylist())
    scale, unit = _scale(metric)
    styles = system_styles(systems, reference)
    width = 2.8 + len(conds) * (0.4 + 0.08 * len(systems))  # room for every system's mark per condition
    fig, (ax,) = new_figure((min(max(6.0, width), 13.0), 4.2))
    x = np.arange(len(conds))
    for off, s in zip(_dodge(len(systems), 0.76), systems):
        vals = [summ.get((s, c, metric)) for c in conds]
        means = [scale * v[0] if v else np.nan for v in vals]
        stds = [scale * v[1] if v else 0.0 for v in vals]
        _errorbar(ax, x + off, means, stds, styles[s], s)
    for j in range(1, len(conds), 2):  # alternate shading keeps each condition's group apart
        ax.axvspan(j - 0.5, j + 0.5, color="0.94", zorder=0, lw=0)
    ax.set_xticks(x, conds)
    ax.set_xlim(-0.5, len(conds) - 0.5)
    ax.margins(y=0.06)
    ax.grid(axis="y", alpha=0.35)
    ax.set_xlabel("test condition (modalities available)")
    ax.set_ylabel(f"{metric}{unit}")
    ax.set_title(f"{metric} per condition: mean ± std over {_units(metrics)} fold x run units", fontsize=10)
    _outside_legend(fig, *ax.get_legend_handles_labels(), "system")
    return fig


def paired_figure(differences: Mapping[str, Mapping[str, np.ndarray]], reference: str = "ramer",
                  level: float = 0.95, unit_value: str = "") -> Figure:
    """Forest plot, one panel per metric: for each system the per-unit differences
    `reference` minus the system (positive = `reference` better; for MAE the sign is
    turned so that this still holds), their mean with its `level` t-interval, and zero.
    `differences`: metric -> system -> differences over the (fold, run) units, already
    in the unit the axis shows (points for %, raw for MAE); `unit_value` says what one
    unit's value is (e.g. its average over the missing conditions), for the title."""
    metrics = list(differences)
    systems = ordered_unique([s for m in metrics for s in differences[m]])
    styles = system_styles([reference, *systems], reference)
    fig, axes = new_figure((3.6 * len(metrics) + 1.6, 0.42 * len(systems) + 2.0), columns=len(metrics), sharey=True)
    jitter = np.random.default_rng(0)  # fixed: the same report draws the same picture
    for ax, metric in zip(axes, metrics):
        for row, s in enumerate(systems):
            d = np.asarray(differences[metric].get(s, []), np.float64)
            if not d.size:
                continue
            style = styles[s]
            ax.scatter(d, -row + jitter.uniform(-0.16, 0.16, d.size), s=11, color=style["color"], alpha=0.45,
                       lw=0, zorder=2)
            lo, hi = t_interval(d, level)
            if np.isfinite(lo):
                ax.plot([lo, hi], [-row, -row], color=style["color"], lw=2.4, solid_capstyle="butt", zorder=3)
            ax.plot(d.mean(), -row, marker="D", ms=6, color=style["color"], mec="black", mew=0.8, zorder=4)
            wins = int((d > 0).sum())
            ax.annotate(f"{d.mean():+.2f}  ({wins}/{d.size})", (d.mean(), -row), xytext=(0, 7),
                        textcoords="offset points", ha="center", fontsize=7, zorder=5,
                        bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})
        ax.axvline(0, color="0.25", lw=1, ls="--", zorder=1)
        ax.set_yticks(-np.arange(len(systems)), [_wrapped(s) for s in systems])
        ax.set_ylim(-len(systems) + 0.45, 0.7)
        ax.margins(x=0.12)
        ax.grid(axis="x", alpha=0.35)
        ax.set_title(metric, fontsize=10)
        ax.set_xlabel(f"system − {reference} (MAE; > 0: {reference} lower)" if metric == "MAE"
                      else f"{reference} − system (points)", fontsize=9)
    what = f", {unit_value}" if unit_value else ""
    fig.suptitle(f"{reference} minus each system, one point per fold x run unit{what}\n"
                 f"(> 0: {reference} better)", fontsize=10)
    legend = [Line2D([], [], ls="none", marker="o", ms=4, color="0.4", alpha=0.6, label="one unit"),
              Line2D([0, 1], [0, 0], color="0.4", lw=2.4, marker="D", ms=6, mec="black", mfc="0.4",
                     label=f"mean, {level:.0%} t-interval  (label: mean, {reference} wins / units)")]
    fig.legend(handles=legend, loc="outside lower center", ncols=2, fontsize=8)
    return fig


def precision_figure(precision: pa.Table) -> Figure:
    """precision@K against K, one line per modality, mean ± std over units; the modalities
    are dodged along K so that their bars do not cover each other."""
    summ = summarise(precision, ["modality", "k"], value="precision")
    mods = ordered_unique(precision.column("modality").to_pylist())
    ks = sorted({k for (_, k) in summ})
    step = min(np.diff(ks)) if len(ks) > 1 else 1.0
    fig, (ax,) = new_figure((6.2, 3.6))
    styles = {m: {"color": PALETTE[i % len(PALETTE)], "marker": MARKERS[i % len(MARKERS)],
                  "face": PALETTE[i % len(PALETTE)], "size": 5.5, "ls": "-", "z": 3} for i, m in enumerate(mods)}
    for off, m in zip(_dodge(len(mods), 0.3 * step), mods):
        mk = [k for k in ks if (m, k) in summ]
        _errorbar(ax, np.asarray(mk, float) + off, [100 * summ[(m, k)][0] for k in mk],
                  [100 * summ[(m, k)][1] for k in mk], styles[m], m, line=True)
    ax.set_xticks(ks)
    ax.grid(axis="y", alpha=0.35)
    ax.set_xlabel("K (neighbours retrieved)")
    ax.set_ylabel("precision@K (%)")
    ax.set_title(f"Retrieval precision@K, mean ± std over {_units(precision)} fold x run units", fontsize=10)
    _outside_legend(fig, *ax.get_legend_handles_labels(), "modality")
    return fig


def noise_figure(summ: Mapping[tuple, tuple], systems: Sequence[str], kinds: Sequence[str], metric: str,
                 units: int, reference: str = "ramer") -> Figure:
    """One panel per noise type: `metric` against intensity (0 = clean), a line per
    system with its std over units. `summ`: (system, noise, intensity, metric) ->
    (mean, std, n), noise 'none' at intensity 0 being the clean score."""
    scale, unit = _scale(metric)
    styles = system_styles(systems, reference)
    fig, axes = new_figure((4.4 * max(len(kinds), 1) + 1.8, 3.8), columns=max(len(kinds), 1), sharey=True)
    for ax, kind in zip(axes, kinds):
        ts = [0] + sorted({t for (_, k, t, _) in summ if k == kind})
        for off, s in zip(_dodge(len(systems), 0.06 * max(ts[-1], 1)), systems):
            pts = [summ.get((s, "none" if t == 0 else kind, t, metric)) for t in ts]
            _errorbar(ax, np.asarray(ts, float) + off, [scale * p[0] if p else np.nan for p in pts],
                      [scale * p[1] if p else 0.0 for p in pts], styles[s], s, line=True)
        ax.set_xticks(ts)
        ax.grid(axis="y", alpha=0.35)
        ax.set_xlabel("noise intensity t (0 = clean)")
        ax.set_title(f"{kind} noise", fontsize=10)
    axes[0].set_ylabel(f"{metric}{unit}")
    fig.suptitle(f"{metric} under noise, mean ± std over {units} fold x run units", fontsize=10)
    _outside_legend(fig, *axes[0].get_legend_handles_labels(), "system")
    return fig
