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
This module samples, projects and searches (the view); `explore_page` draws the page.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import Settings
from pipeline.errors import RamerError
from pipeline.evaluation.explore_page import DATA_ID, GREY, SPLIT_COLORS, render_html
from pipeline.retrieval.retriever import fast_index_from_store
from pipeline.store.backends import Where
from pipeline.store.ingest import collection_name
from pipeline.store.qdrant_store import ALLOWED_SPLITS, HiddenFeatureStore, StoredMatrix

__all__ = [  # GREY and SPLIT_COLORS: the page's colours (explore_page), importable from here too
    "COLOR_FIELDS", "DEFAULT_MAX_POINTS", "GREY", "METRICS", "PROJECTIONS", "SPLIT_COLORS", "VIEWS_DIR",
    "ExploreView", "ModalityView", "build_view", "project", "read_view_data", "render_view", "stratified_sample",
    "write_experiment_views", "write_view",
]

COLOR_FIELDS = ("label_name", "split", "fold")
PROJECTIONS = ("pca", "tsne", "umap")
DEFAULT_MAX_POINTS = 5000  # SVG scatter stays responsive; the demo's 4,200 points fit whole
VIEWS_DIR = "views"  # results/<experiment>/views/<collection>.html, linked from report.md
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
                                        metric=view.metric, device="cpu", fetched=mat)
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


# ---------------------------------------------------------------- files
def render_view(store: HiddenFeatureStore, collection: str, **options: Any) -> str:
    """The page of `collection` (build_view's options), as HTML text."""
    return render_html(build_view(store, collection, **options))


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
