"""A self-contained HTML view of one hidden-feature collection (`ramer collections explore`).

The Qdrant Web UI shows collections only on a server; the embedded store every new user
has offers nothing to look at. This page fills that gap: per modality a 2-D map of the
stored vectors (PCA, t-SNE or UMAP), coloured by a payload field, and for every point on
the map its top-K neighbours under RAMER's leakage filter, highlighted when the point is
clicked. The neighbours come from `fast_index_from_store`, the very FAISS search stage 3
uses, over the candidates `split` in {train, unlabeled} (of the DB scale, if given), the
query excluded by id. Plotly draws; its JavaScript is embedded so the file opens offline.

The page carries its data twice on purpose: in plotly's traces (what is drawn) and in one
JSON block (`<script id="ramer-explore-data">`) that the click handler reads and tests parse.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import Settings
from pipeline.errors import RamerError
from pipeline.retrieval.retriever import fast_index_from_store
from pipeline.store.backends import Where
from pipeline.store.ingest import collection_name
from pipeline.store.qdrant_store import ALLOWED_SPLITS, HiddenFeatureStore, StoredMatrix

COLOR_FIELDS = ("label_name", "split", "fold")
PROJECTIONS = ("pca", "tsne", "umap")
DEFAULT_MAX_POINTS = 5000  # SVG scatter stays responsive; the demo's 4,200 points fit whole
VIEWS_DIR = "views"  # results/<experiment>/views/<collection>.html, linked from report.md
DATA_ID = "ramer-explore-data"
PANEL_ID = "ramer-neighbours"
GREY = "#bdbdbd"  # unlabeled pool / points outside any fold: background, not a class
SPLIT_COLORS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#d62728", "unlabeled": GREY}
METRICS = {"Cosine": "cosine", "Euclid": "euclidean"}  # Qdrant distance -> FastIndex metric


@dataclass
class ModalityView:
    """One modality's map. Nodes 0..shown-1 are the points on the map; later nodes are
    neighbours that the sample left off the map (listed, not drawn)."""

    name: str
    shown: int
    nodes: dict[str, list[Any]]  # sample, split, label_name, label, fold -> one value per node
    xy: np.ndarray  # (shown, 2) map coordinates
    neighbours: np.ndarray  # (shown, K) node indices, best first; -1 = fewer candidates than K
    scores: np.ndarray  # (shown, K) cosine similarity or L2 distance, as the store scores
    axes: tuple[str, str]  # axis titles
    precision: float | None  # share of labeled neighbours of test points with their label_name


@dataclass
class ExploreView:
    collection: str
    where: str  # "edge data/qdrant" or "server http://..."
    points: int  # points in the collection (any modality)
    sampled: int  # distinct samples chosen for the maps
    max_points: int
    k: int
    metric: str
    scale: str | None
    projection: str
    color: str
    seed: int
    modalities: list[ModalityView] = field(default_factory=list)

    @property
    def is_sample(self) -> bool:
        return self.sampled < self.points


# ---------------------------------------------------------------- sampling and projection
def stratified_sample(keys: Sequence[str], n: int, seed: int = 0) -> np.ndarray:
    """Sorted row indices of `n` of `keys` (all if fewer), each key's share kept: a key
    holding a fraction p of the rows gets floor or ceil of p * n of them (largest
    remainders take the ceilings). Seeded, so the same page comes back every time."""
    keys = np.asarray(keys, dtype=str)
    if n >= len(keys):
        return np.arange(len(keys))
    _, inverse, sizes = np.unique(keys, return_inverse=True, return_counts=True)
    exact = sizes * n / len(keys)  # (G,) proportional quotas
    quota = np.floor(exact).astype(int)
    short = n - quota.sum()
    quota[np.argsort(-(exact - quota), kind="stable")[:short]] += 1
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(inverse == g), q, replace=False) for g, q in enumerate(quota) if q]
    return np.sort(np.concatenate(picked)) if picked else np.array([], np.int64)


def project(x: np.ndarray, method: str, seed: int, metric: str = "cosine") -> tuple[np.ndarray, tuple[str, str]]:
    """(N, d) -> (N, 2) map coordinates and axis titles."""
    if method not in PROJECTIONS:
        raise RamerError(f"projection '{method}': choose one of {', '.join(PROJECTIONS)}")
    if len(x) < 3:  # no 2-D structure to find; put the points at the origin
        return np.zeros((len(x), 2), np.float32), ("", "")
    if method == "pca":
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=seed)
        xy = pca.fit_transform(x)
        var = 100 * pca.explained_variance_ratio_
        return xy.astype(np.float32), (f"PC1 ({var[0]:.0f}% of variance)", f"PC2 ({var[1]:.0f}%)")
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(30.0, (len(x) - 1) / 3)  # t-SNE needs perplexity < N
        xy = TSNE(n_components=2, init="pca", metric=metric, perplexity=perplexity,
                  random_state=seed).fit_transform(x)
        return xy.astype(np.float32), ("t-SNE 1", "t-SNE 2")
    try:
        import umap
    except ImportError:
        raise RamerError("--projection umap needs umap-learn: pip install 'ramer[umap]'") from None
    xy = umap.UMAP(n_components=2, metric=metric, random_state=seed).fit_transform(x)
    return np.asarray(xy, np.float32), ("UMAP 1", "UMAP 2")


# ---------------------------------------------------------------- building the view
def build_view(
    store: HiddenFeatureStore,
    collection: str,
    modalities: Sequence[str] | None = None,
    color: str = "label_name",
    max_points: int = DEFAULT_MAX_POINTS,
    projection: str = "pca",
    k: int = 10,
    scale: str | None = None,
    seed: int = 0,
) -> ExploreView:
    """Read `collection`, sample it, project each modality and precompute neighbours."""
    vectors, stored = _check_request(store, collection, modalities, color, projection, k, max_points)
    names = list(modalities) if modalities else stored
    distances = {vectors[m].distance for m in names}
    if not distances <= set(METRICS):
        raise RamerError(f"collection '{collection}': explore supports Cosine and Euclid vectors, "
                         f"not {sorted(distances - set(METRICS))}")
    mats = {m: store.fetch_matrix(collection, m) for m in names}
    chosen, total = _choose_samples(mats, max_points, seed)
    metric = METRICS[vectors[names[0]].distance]
    view = ExploreView(
        collection=collection, where=f"{store.kind} {store.backend.location}", points=total,
        sampled=len(chosen), max_points=max_points, k=k, metric=metric, scale=scale,
        projection=projection, color=color, seed=seed,
    )
    for m in names:
        view.modalities.append(_modality_view(store, collection, m, mats[m], chosen, view))
    return view


def _check_request(store: HiddenFeatureStore, collection: str, modalities: Sequence[str] | None,
                   color: str, projection: str, k: int, max_points: int) -> tuple[dict, list[str]]:
    """One-line errors that list the valid choices, before any data is read. Returns the
    collection's vector configs and its modalities in the dataset's order."""
    existing = store.list_collections()
    if collection not in existing:
        listed = ", ".join(existing[:20]) + (", ..." if len(existing) > 20 else "") or "none"
        raise RamerError(f"collection '{collection}' not found at {store.kind} {store.backend.location} "
                         f"(collections: {listed})")
    vectors = store.backend.vectors(collection)
    stored = _stored_order(store, collection, list(vectors))
    unknown = [m for m in modalities or [] if m not in vectors]
    if unknown:
        raise RamerError(f"modality {', '.join(unknown)}: collection '{collection}' has {', '.join(stored)}")
    if color not in COLOR_FIELDS:
        raise RamerError(f"--color '{color}': choose one of {', '.join(COLOR_FIELDS)}")
    if projection not in PROJECTIONS:
        raise RamerError(f"--projection '{projection}': choose one of {', '.join(PROJECTIONS)}")
    if k < 1 or max_points < 1:
        raise RamerError(f"-k ({k}) and --max-points ({max_points}) must be at least 1")
    return vectors, stored


def _stored_order(store: HiddenFeatureStore, collection: str, names: list[str]) -> list[str]:
    """Modalities in the dataset's order (a point's `modalities` payload keeps it; the
    engine may list named vectors in any order)."""
    first = next(store.backend.scroll(collection, Where(), [], batch=1), [])
    order = [m for m in (first[0].payload.get("modalities", []) if first else []) if m in names]
    return order + [m for m in names if m not in order]


def _choose_samples(mats: dict[str, StoredMatrix], max_points: int, seed: int) -> tuple[set[str], int]:
    """Samples for the maps, stratified by (split, label) over every sample of the chosen
    modalities, so each map shows the same samples (those that have that modality)."""
    meta: dict[str, str] = {}
    for mat in mats.values():
        for s, sp, lab in zip(mat.samples, mat.payload["split"], mat.payload["label_name"]):
            meta.setdefault(str(s), f"{sp}|{lab}")
    names = sorted(meta)
    picked = stratified_sample([meta[s] for s in names], max_points, seed)
    return {names[i] for i in picked}, len(names)


def _modality_view(store: HiddenFeatureStore, collection: str, m: str, mat: StoredMatrix,
                   chosen: set[str], view: ExploreView) -> ModalityView:
    rows = np.flatnonzero(np.isin(mat.samples, sorted(chosen)))  # (n,) rows on the map
    xy, axes = project(mat.vectors[rows], view.projection, view.seed, view.metric)
    index, cand = fast_index_from_store(store, collection, m, ALLOWED_SPLITS, view.scale,
                                        metric=view.metric, device="cpu")
    cand_row = {pid: r for r, pid in enumerate(cand.ids)}
    exclude = np.array([cand_row.get(pid, -1) for pid in mat.ids[rows]], np.int64)  # the query itself
    scores, found = index.search(mat.vectors[rows], view.k, exclude_ids=exclude)  # (n, K) each
    nodes = {key: _column(mat, key, rows) for key in ("sample", "split", "label_name", "label", "fold")}
    node_of = {pid: i for i, pid in enumerate(mat.ids[rows])}
    neighbours = np.full(found.shape, -1, np.int64)
    for (i, j), r in np.ndenumerate(found):
        if r < 0:
            continue
        pid = cand.ids[r]
        if pid not in node_of:  # a neighbour the sample left off the map: listed only
            node_of[pid] = len(nodes["sample"])
            for key, values in nodes.items():
                values.append(_column(cand, key, [r])[0])
        neighbours[i, j] = node_of[pid]
    return ModalityView(m, len(rows), nodes, xy, neighbours, scores, axes,
                        _test_precision(nodes, neighbours))


def _column(mat: StoredMatrix, key: str, rows: Sequence[int] | np.ndarray) -> list[Any]:
    """Payload values as JSON-able Python values (label/fold int, -1 when absent)."""
    values = mat.samples[rows] if key == "sample" else mat.payload[key][rows]
    if key in ("label", "fold"):
        return [-1 if v is None else int(v) for v in values]
    return [str(v) for v in values]


def _test_precision(nodes: dict[str, list[Any]], neighbours: np.ndarray) -> float | None:
    """Like the report's precision@K: over test points on the map, the share of their
    labeled neighbours that carry the same label_name."""
    same = labeled = 0
    for i, row in enumerate(neighbours):
        if nodes["split"][i] != "test":
            continue
        for j in row[row >= 0]:
            if nodes["split"][j] != "unlabeled":
                labeled += 1
                same += nodes["label_name"][j] == nodes["label_name"][i]
    return same / labeled if labeled else None


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


# ---------------------------------------------------------------- files
def write_view(store: HiddenFeatureStore, collection: str, out: Path, **options: Any) -> tuple[Path, ExploreView]:
    """Build the view of `collection` and write it to `out` (parent folders made)."""
    view = build_view(store, collection, **options)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(view), encoding="utf-8")
    return out, view


def read_view_data(path: Path) -> dict[str, Any]:
    """The JSON block of a written page (for scripts and tests)."""
    text = Path(path).read_text(encoding="utf-8")
    start = text.index(f'id="{DATA_ID}">') + len(f'id="{DATA_ID}">')
    return json.loads(text[start:text.index("</script>", start)])


def write_experiment_views(settings: Settings, dataset_dir: Path, experiment: str, folds: Sequence[int],
                           results_dir: Path, scale: str | None = None, k: int = 10) -> list[Path]:
    """One view per fold's collection into `results_dir/views/` (the report links them),
    with the experiment's DB scale and K. Folds without a collection are skipped."""
    from pipeline.data.schema import MANIFEST, Manifest

    dataset = Manifest.load(Path(dataset_dir) / MANIFEST).name
    paths = []
    with HiddenFeatureStore.open(settings) as store:
        existing = set(store.list_collections())
        for fold in folds:
            name = collection_name(dataset, experiment, fold)
            if name in existing:
                out = Path(results_dir) / VIEWS_DIR / f"{name}.html"
                paths.append(write_view(store, name, out, scale=scale, k=k)[0])
    return paths
