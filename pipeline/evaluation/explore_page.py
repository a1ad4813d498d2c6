"""The page of `ramer collections explore` (see `pipeline.evaluation.explore`, which
builds the view): colours, the plotly figure, the JSON block the click handler reads, and
the HTML with its click script."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.store.qdrant_store import ALLOWED_SPLITS

if TYPE_CHECKING:
    from pipeline.evaluation.explore import ExploreView, ModalityView

DATA_ID = "ramer-explore-data"
PANEL_ID = "ramer-neighbours"
GREY = "#bdbdbd"  # unlabeled pool / points outside any fold: background, not a class
SPLIT_COLORS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#d62728", "unlabeled": GREY}


# ---------------------------------------------------------------- colours
def color_groups(view: ExploreView) -> list[tuple[str, str]]:
    """(group, colour) in legend order: classes / splits / folds, the grey pool last."""
    import plotly.colors

    values: dict[str, int] = {}  # group -> sort key
    for mv in view.modalities:
        for i in range(mv.shown):
            group, order = _group_of(mv.nodes, i, view.color)
            values.setdefault(group, order)
    if view.color == "split":
        order = [s for s in ("train", "val", "test", "unlabeled") if s in values]
        order += sorted(set(values) - set(order))
        return [(g, SPLIT_COLORS.get(g, "#7f7f7f")) for g in order]
    palette = plotly.colors.qualitative.D3 + plotly.colors.qualitative.Dark24
    coloured = sorted((g for g, o in values.items() if o >= 0), key=lambda g: (values[g], g))
    out = [(g, palette[i % len(palette)]) for i, g in enumerate(coloured)]
    return out + [(g, GREY) for g, o in sorted(values.items()) if o < 0]


def _group_of(nodes: dict[str, list[Any]], i: int, color: str) -> tuple[str, int]:
    """A node's legend group and sort key (-1 = the grey background group)."""
    if color == "split":
        return nodes["split"][i], 0
    if color == "fold":
        fold = nodes["fold"][i]
        return (f"fold {fold}", fold) if fold >= 0 else ("unlabeled pool", -1)
    if nodes["split"][i] == "unlabeled":
        return "unlabeled", -1
    return nodes["label_name"][i], nodes["label"][i]


# ---------------------------------------------------------------- the figure and the page
def build_figure(view: ExploreView) -> tuple[Any, dict[str, dict[str, int]]]:
    """The plotly figure, and per modality the indices of its two highlight traces."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    mvs = view.modalities
    titles = [_subplot_title(mv, view) for mv in mvs]
    fig = make_subplots(rows=1, cols=len(mvs), subplot_titles=titles, horizontal_spacing=0.04)
    groups = color_groups(view)
    highlight: dict[str, dict[str, int]] = {}
    for col, mv in enumerate(mvs, 1):
        members: dict[str, list[int]] = {}
        for i in range(mv.shown):
            members.setdefault(_group_of(mv.nodes, i, view.color)[0], []).append(i)
        # The grey pool is added first so it is drawn underneath; legendrank keeps the legend
        # in class order all the same.
        for rank, (group, colour) in reversed(list(enumerate(groups))):
            idx = members.get(group, [])
            background = colour == GREY
            fig.add_trace(go.Scatter(
                x=_round(mv.xy[idx, 0]), y=_round(mv.xy[idx, 1]), mode="markers", name=group,
                legendgroup=group, legendrank=rank, showlegend=col == 1, meta=mv.name,
                customdata=_custom(mv, idx),
                marker={"color": colour, "size": 5 if background else 6,
                        "opacity": 0.35 if background else 0.8},
                hovertemplate=_HOVER,
            ), row=1, col=col)
        # neighbours before the selected point, so its star is drawn on top of their rings
        highlight[mv.name] = {"neighbours": len(fig.data), "selected": len(fig.data) + 1}
        fig.add_trace(go.Scatter(
            x=[], y=[], mode="markers", name=f"its top-{view.k} neighbours", legendgroup="neighbours",
            legendrank=len(groups) + 2, showlegend=col == 1, meta=mv.name, hovertemplate=_HOVER,
            marker={"symbol": "circle-open", "size": 12, "color": "#111111", "line": {"width": 2}},
        ), row=1, col=col)
        fig.add_trace(go.Scatter(
            x=[], y=[], mode="markers", name="selected point", legendgroup="selected",
            legendrank=len(groups) + 1, showlegend=col == 1, meta=mv.name, hovertemplate=_HOVER,
            marker={"symbol": "star", "size": 17, "color": "#111111", "line": {"color": "white", "width": 1}},
        ), row=1, col=col)
        fig.update_xaxes(title_text=mv.axes[0], showticklabels=False, zeroline=False, row=1, col=col)
        fig.update_yaxes(title_text=mv.axes[1], showticklabels=False, zeroline=False, row=1, col=col)
    legend_title = {"label_name": "label", "split": "split", "fold": "fold"}[view.color]
    fig.update_layout(
        template="plotly_white", height=590, margin={"l": 30, "r": 10, "t": 60, "b": 40},
        legend={"title": {"text": legend_title}, "font": {"size": 14}, "itemsizing": "constant"},
        hoverlabel={"font": {"size": 13}}, clickmode="event",
    )
    return fig, highlight


_HOVER = ("<b>%{customdata[1]}</b><br>split: %{customdata[2]}<br>label: %{customdata[3]}"
          "<br>fold: %{customdata[4]}<extra>%{meta}</extra>")


def _round(values: np.ndarray) -> list[float]:
    """Plain JSON lists, 4 decimals: the page stays small and tests read it as numbers."""
    return [round(float(v), 4) for v in values]


def _custom(mv: ModalityView, idx: Sequence[int]) -> list[list[Any]]:
    """Per point [node, sample, split, label_name, fold]: hover text and the click's node."""
    n = mv.nodes
    return [[i, n["sample"][i], n["split"][i], n["label_name"][i], n["fold"][i]] for i in idx]


def _subplot_title(mv: ModalityView, view: ExploreView) -> str:
    prec = "" if mv.precision is None else f" · test P@{view.k} {100 * mv.precision:.0f}%"
    return f"<b>{html.escape(mv.name)}</b> · {mv.shown} points{prec}"


def view_data(view: ExploreView, highlight: dict[str, dict[str, int]]) -> dict[str, Any]:
    """The JSON block: what the click handler needs, and what tests check."""
    return {
        "collection": view.collection, "k": view.k, "metric": view.metric, "color": view.color,
        "candidate_splits": list(ALLOWED_SPLITS), "scale": view.scale,
        "points": view.points, "sampled": view.sampled,
        "modalities": [{
            "name": mv.name, "shown": mv.shown, "nodes": mv.nodes,
            "x": _round(mv.xy[:, 0]), "y": _round(mv.xy[:, 1]),
            "neighbours": mv.neighbours.tolist(),
            "scores": [[round(float(s), 4) if j >= 0 else None for s, j in zip(srow, nrow)]
                       for srow, nrow in zip(mv.scores, mv.neighbours)],
            "precision": mv.precision, "traces": highlight[mv.name],
        } for mv in view.modalities],
    }


def render_html(view: ExploreView) -> str:
    """One self-contained page: header, the plotly maps (library embedded), the neighbour
    panel and the JSON block."""
    fig, highlight = build_figure(view)
    plot = fig.to_html(full_html=False, include_plotlyjs=True, post_script=_CLICK_JS,
                       config={"responsive": True, "displaylogo": False})
    data = json.dumps(view_data(view, highlight), separators=(",", ":")).replace("</", "<\\/")
    title = html.escape(f"{view.collection} · ramer collections explore")
    return _PAGE.format(title=title, header=_header(view), data_id=DATA_ID, data=data,
                        plot=plot, panel_id=PANEL_ID)


def _header(view: ExploreView) -> str:
    if view.is_sample:
        shown = (f"showing <b>{view.sampled}</b> of {view.points} samples: a stratified sample by split "
                 f"and label (--max-points {view.max_points}, seed {view.seed}); neighbours are still "
                 "searched among all candidates, so some listed neighbours are not on the map")
    else:
        shown = f"showing all <b>{view.points}</b> samples"
    scale = f", DB scale '{html.escape(view.scale)}'" if view.scale else ""
    score = "cosine similarity" if view.metric == "cosine" else "L2 distance"
    proj = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}[view.projection]
    return (
        f"<h1>{html.escape(view.collection)}</h1>"
        f"<p>{html.escape(view.where)} · {shown}. Map: {proj} of the stored hidden vectors, per "
        f"modality; colour: <code>{html.escape(view.color)}</code>.</p>"
        f"<p>Click a point: it and its top-{view.k} neighbours in that modality's database are "
        f"marked on every map and listed below. Neighbours are searched as RAMER does (FAISS, "
        f"{score}): candidates have <code>split</code> in {{{', '.join(ALLOWED_SPLITS)}}}{scale}, "
        "never the point itself, never a val/test point.</p>"
    )


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 16px 24px; color: #222; }}
h1 {{ font-size: 20px; margin: 0 0 6px 0; }}
p {{ margin: 4px 0; font-size: 14px; max-width: 1200px; }}
#{panel_id} {{ display: flex; gap: 24px; flex-wrap: wrap; font-size: 13px; }}
#{panel_id} > p {{ flex-basis: 100%; font-weight: bold; margin: 0; }}
#{panel_id} div p {{ margin: 0 0 2px 0; }}
#{panel_id} table {{ border-collapse: collapse; }}
#{panel_id} td, #{panel_id} th {{ padding: 1px 8px; text-align: left; }}
#{panel_id} tr.off td {{ color: #888; }}
</style>
</head>
<body>
{header}
<script type="application/json" id="{data_id}">{data}</script>
<div style="height:600px">{plot}</div>
<div id="{panel_id}"><p>Click a point to list its neighbours.</p></div>
</body>
</html>
"""

# Runs after plotly has drawn (plotly's post_script). It only moves two highlight traces
# per map and fills a table; plotly does all the drawing. `#sample=NAME` in the URL
# selects a sample on load (how the docs' screenshot shows a selection).
_CLICK_JS = """
var gd = document.getElementById('{plot_id}');
var view = JSON.parse(document.getElementById('ramer-explore-data').textContent);
var byName = {};
view.modalities.forEach(function (mv) {
  byName[mv.name] = mv;
  mv.lookup = {};
  for (var i = 0; i < mv.shown; i++) { mv.lookup[mv.nodes.sample[i]] = i; }
});
function custom(mv, i) {
  return [i, mv.nodes.sample[i], mv.nodes.split[i], mv.nodes.label_name[i], mv.nodes.fold[i]];
}
function row(table, cells, tag, cls) {
  var tr = document.createElement('tr');
  if (cls) { tr.className = cls; }
  cells.forEach(function (c) {
    var td = document.createElement(tag); td.textContent = c; tr.appendChild(td);
  });
  table.appendChild(tr);
}
function listFor(mv, i) {
  var box = document.createElement('div');
  var head = document.createElement('p');
  var table = document.createElement('table');
  head.textContent = mv.name + ' neighbours (' + view.metric + ')';
  box.appendChild(head);
  row(table, ['#', 'sample', 'label', 'split', 'score', ''], 'th');
  mv.neighbours[i].forEach(function (j, r) {
    if (j < 0) { return; }
    var off = j >= mv.shown;
    row(table, [r + 1, mv.nodes.sample[j], mv.nodes.label_name[j], mv.nodes.split[j],
                mv.scores[i][r].toFixed(3), off ? 'not on the map' : ''], 'td', off ? 'off' : '');
  });
  box.appendChild(table);
  return box;
}
function select(sample) {
  var panel = document.getElementById('ramer-neighbours');  // below the plot: parsed later
  panel.replaceChildren();
  var info = null;
  var update = {x: [], y: [], customdata: []}, traces = [];
  view.modalities.forEach(function (mv) {
    var i = mv.lookup[sample];
    var sel = [], nb = [];
    if (i !== undefined) {
      info = info || mv.nodes.label_name[i] + ', ' + mv.nodes.split[i] + ', fold ' + mv.nodes.fold[i];
      sel = [i];
      nb = mv.neighbours[i].filter(function (j) { return j >= 0 && j < mv.shown; });
      panel.appendChild(listFor(mv, i));
    }
    [sel, nb].forEach(function (idx) {
      update.x.push(idx.map(function (j) { return mv.x[j]; }));
      update.y.push(idx.map(function (j) { return mv.y[j]; }));
      update.customdata.push(idx.map(function (j) { return custom(mv, j); }));
    });
    traces.push(mv.traces.selected, mv.traces.neighbours);
  });
  Plotly.restyle(gd, update, traces);
  var title = document.createElement('p');
  title.textContent = info ? 'selected: ' + sample + ' (' + info + ')' : 'sample ' + sample + ' is not on the map';
  panel.prepend(title);
  history.replaceState(null, '', '#sample=' + encodeURIComponent(sample));
}
gd.on('plotly_click', function (ev) {
  var p = ev.points[0];
  var mv = byName[p.data.meta];
  if (mv && p.customdata) { select(mv.nodes.sample[p.customdata[0]]); }
});
function fromHash() {
  if (location.hash.indexOf('#sample=') === 0) { select(decodeURIComponent(location.hash.slice(8))); }
}
if (document.readyState === 'loading') { document.addEventListener('DOMContentLoaded', fromHash); } else { fromHash(); }
"""
