"""`ramer collections explore`: the page's points, colours and neighbour lists, read back
from the HTML it writes (its JSON block and plotly's figure JSON), on both the embedded
engine and the qdrant-client path a server uses."""

from __future__ import annotations

import json
import re
import sys
import types
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import typer
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from test_store import ENGINES, hidden_of, scratch_dir, settings_for, tiny_dataset
from typer.testing import CliRunner

from pipeline.data.dataset import Dataset
from pipeline.data.splits import FoldSplit, make_split
from pipeline.errors import RamerError
from pipeline.evaluation import explore
from pipeline.evaluation.explore import (
    GREY,
    SPLIT_COLORS,
    read_view_data,
    stratified_sample,
    write_experiment_views,
    write_view,
)
from pipeline.store import HiddenFeatureStore, collection_name, ingest_hidden

K = 5


class Store:
    """fold 0 of the tiny dataset ingested; the ground truth split comes from make_split,
    not from the payload the page reads."""

    def __init__(self, store: HiddenFeatureStore, ds: Dataset, split: FoldSplit, name: str) -> None:
        self.store, self.ds, self.split, self.name = store, ds, split, name
        self.truth = dict(zip(ds.samples, split.split_names(len(ds))))


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return tiny_dataset(tmp_path_factory.mktemp("data") / "tiny")


@pytest.fixture(scope="module", params=ENGINES)
def filled(request: pytest.FixtureRequest, ds: Dataset, tmp_path_factory: pytest.TempPathFactory):
    path = scratch_dir(tmp_path_factory, f"explore-{request.param}")
    split = make_split(ds.y, ds.labeled, ds.folds, 0, 0, 0)
    name = collection_name("tiny", "t", 0)
    with HiddenFeatureStore.open(settings_for(path, request.param)) as store:
        ingest_hidden(store, name, ds, split, hidden_of(ds), progress=False)
        yield Store(store, ds, split, name)


def figure_of(page: str) -> tuple[list[dict], dict]:
    """(traces, layout) that the page hands to Plotly.newPlot."""
    call = page.index("Plotly.newPlot(")
    start = page.index("[", page.index(",", call))
    decoder = json.JSONDecoder()
    traces, end = decoder.raw_decode(page, start)
    layout, _ = decoder.raw_decode(page, page.index("{", end))
    return traces, layout


def page_of(filled: Store, tmp: Path, **options) -> tuple[str, dict, list[dict]]:
    path, _ = write_view(filled.store, filled.name, tmp / "view.html", k=K, **options)
    text = path.read_text()
    return text, read_view_data(path), figure_of(text)[0]


def test_page_is_self_contained(filled: Store, tmp_path: Path) -> None:
    text, _, _ = page_of(filled, tmp_path)
    assert not re.search(r"<script[^>]*\bsrc=", text), "a script loaded from elsewhere: the page needs a network"
    assert not re.search(r"<link[^>]*\bhref=", text)
    assert "plotly.js v" in text and len(text) > 3_000_000  # plotly's bundle itself, not a CDN tag


def test_points_colours_and_hover(filled: Store, tmp_path: Path) -> None:
    ds = filled.ds
    _, data, traces = page_of(filled, tmp_path)
    assert [mv["name"] for mv in data["modalities"]] == ds.modalities  # the dataset's order
    assert data["sampled"] == data["points"] == len(ds)
    colours: dict[str, str] = {}
    for mv in data["modalities"]:
        assert mv["shown"] == int(ds.present[mv["name"]].sum())
        drawn = [t for t in traces if t["meta"] == mv["name"] and t.get("customdata")]
        points = [(c, t) for t in drawn for c in t["customdata"]]
        assert sorted(c[0] for c, _ in points) == list(range(mv["shown"]))  # every point once
        for (node, sample, split, label_name, fold), t in points:
            assert sample == mv["nodes"]["sample"][node] and split == filled.truth[sample]
            assert fold == int(ds.folds[int(sample[1:])])
            want = "unlabeled" if split == "unlabeled" else label_name
            assert t["name"] == want  # coloured by label; the pool is its own grey group
            colours.setdefault(t["name"], t["marker"]["color"])
            assert t["marker"]["color"] == colours[t["name"]]  # one colour per class, every map
        assert all("split: %{customdata[2]}" in t["hovertemplate"] for t in drawn)
    assert colours.pop("unlabeled") == GREY
    assert len(set(colours.values())) == len(colours) == len(set(ds.manifest.classes) & set(colours))


def test_known_samples_list_exactly_the_store_search(filled: Store, tmp_path: Path) -> None:
    ds, split = filled.ds, filled.split
    _, data, _ = page_of(filled, tmp_path)
    for mv in data["modalities"]:
        m, nodes = mv["name"], mv["nodes"]
        at = {s: i for i, s in enumerate(nodes["sample"][: mv["shown"]])}
        for q in (split.train[0], split.test[0], split.val[0], np.flatnonzero(~ds.labeled)[0]):
            sample = str(ds.samples[q])
            if not ds.present[m][q]:
                assert sample not in at
                continue
            i = at[sample]
            hits = filled.store.search_sample(filled.name, sample, m, k=K)
            listed = [nodes["sample"][j] for j in mv["neighbours"][i]]
            assert listed == [h.sample for h in hits]
            np.testing.assert_allclose(mv["scores"][i], [h.score for h in hits], atol=1e-3)


def test_no_val_test_neighbour_is_ever_listed(filled: Store, tmp_path: Path) -> None:
    _, data, _ = page_of(filled, tmp_path)
    seen = Counter()
    for mv in data["modalities"]:
        nodes = mv["nodes"]
        for i, row in enumerate(mv["neighbours"]):
            assert len(row) == K and -1 not in row  # 300 rows: always K candidates
            for j in row:
                assert nodes["sample"][j] != nodes["sample"][i]
                truth = filled.truth[nodes["sample"][j]]
                assert truth in ("train", "unlabeled") and nodes["split"][j] == truth
                seen[truth] += 1
            seen[f"query {nodes['split'][i]}"] += 1
    assert seen["query val"] and seen["query test"] and seen["train"] and seen["unlabeled"]


def test_scale_restricts_the_candidates(filled: Store, tmp_path: Path) -> None:
    _, data, _ = page_of(filled, tmp_path, scale="small")
    for mv in data["modalities"]:
        listed = {mv["nodes"]["split"][j] for row in mv["neighbours"] for j in row if j >= 0}
        assert listed == {"train"}  # small = the fold's labeled train rows only


def test_large_collection_is_a_stratified_sample_and_says_so(filled: Store, tmp_path: Path) -> None:
    text, data, traces = page_of(filled, tmp_path, max_points=60)
    assert data["sampled"] == 60 and data["points"] == len(filled.ds)
    assert "stratified sample by split and label" in text and "--max-points 60" in text
    off_map = 0
    for mv in data["modalities"]:
        assert mv["shown"] <= 60
        assert sum(len(t.get("customdata") or []) for t in traces if t["meta"] == mv["name"]) == mv["shown"]
        sample = mv["nodes"]["sample"][0]
        hits = filled.store.search_sample(filled.name, sample, mv["name"], k=K)
        assert [mv["nodes"]["sample"][j] for j in mv["neighbours"][0]] == [h.sample for h in hits]
        off_map += sum(j >= mv["shown"] for row in mv["neighbours"] for j in row)
    assert off_map > 0  # neighbours off the map are still listed: searched among all candidates


@pytest.mark.parametrize("color", ["split", "fold"])
def test_colour_by_split_or_fold(filled: Store, tmp_path: Path, color: str) -> None:
    _, _, traces = page_of(filled, tmp_path, color=color)
    drawn = [t for t in traces if t.get("customdata")]
    for t in drawn:
        values = {c[2] if color == "split" else c[4] for c in t["customdata"]}
        assert len(values) == 1
        value = values.pop()
        if color == "split":
            assert t["name"] == value and t["marker"]["color"] == SPLIT_COLORS[value]
        else:
            assert t["name"] == (f"fold {value}" if value >= 0 else "unlabeled pool")


def test_tsne_and_umap_projections(filled: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, data, _ = page_of(filled, tmp_path, projection="tsne", modalities=["text"])
    assert [mv["name"] for mv in data["modalities"]] == ["text"]
    assert np.isfinite(data["modalities"][0]["x"]).all() and np.std(data["modalities"][0]["x"]) > 0

    monkeypatch.setitem(sys.modules, "umap", None)  # not installed
    with pytest.raises(RamerError, match=r"umap-learn: pip install 'ramer\[umap\]'"):
        page_of(filled, tmp_path, projection="umap")
    calls = []

    class UMAP:  # stands in for umap-learn's estimator: records how it is called
        def __init__(self, **kw):
            calls.append(kw)

        def fit_transform(self, x):
            return x[:, :2] * 2

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=UMAP))
    _, data, _ = page_of(filled, tmp_path, projection="umap", modalities=["audio"], seed=3)
    assert calls == [{"n_components": 2, "metric": "cosine", "random_state": 3}]
    assert data["modalities"][0]["x"] != [0.0] * data["modalities"][0]["shown"]


@given(sizes=st.lists(st.integers(1, 40), min_size=1, max_size=6), n=st.integers(1, 120), seed=st.integers(0, 3))
@hsettings(max_examples=60, deadline=None)
def test_stratified_sample_keeps_every_share(sizes: list[int], n: int, seed: int) -> None:
    keys = [f"g{g}" for g, size in enumerate(sizes) for _ in range(size)]
    picked = stratified_sample(keys, n, seed)
    assert len(picked) == min(n, len(keys)) and len(set(picked)) == len(picked)
    assert (picked == stratified_sample(keys, n, seed)).all()  # the same page every time
    got = Counter(keys[i] for i in picked)
    for g, size in enumerate(sizes):
        share = size * min(n, len(keys)) / len(keys)
        assert np.floor(share) <= got[f"g{g}"] <= np.ceil(share)


def test_cli_writes_the_page_and_errors_list_choices(ds: Dataset, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.cli import explore as explore_cli

    settings = settings_for(tmp_path, "edge")
    name = collection_name("tiny", "cli", 0)
    with HiddenFeatureStore.open(settings) as store:
        split = make_split(ds.y, ds.labeled, ds.folds, 0, 0, 0)
        ingest_hidden(store, name, ds, split, hidden_of(ds), progress=False)
    app = typer.Typer()
    app.callback()(lambda: None)  # a group, as `ramer collections` is
    explore_cli.register(app)
    run = CliRunner()
    monkeypatch.delenv("QDRANT_URL", raising=False)
    base = ["--store", str(settings.store_path), "--engine", "edge"]
    out = tmp_path / "v.html"
    res = run.invoke(app, ["explore", name, "-m", "visual", "--out", str(out), *base], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "no server needed" in res.output and out.is_file()
    assert [mv["name"] for mv in read_view_data(out)["modalities"]] == ["visual"]
    for args, needle in (
        (["nope"], f"collection 'nope' not found at edge {settings.store_path} (collections: {name})"),
        ([name, "-m", "smell"], f"modality smell: collection '{name}' has audio, visual, text"),
        ([name, "--color", "speaker"], "--color 'speaker': choose one of label_name, split, fold"),
        ([name, "--projection", "mds"], "--projection 'mds': choose one of pca, tsne, umap"),
        ([name, "--scale", "huge"], "--scale 'huge': choose one of small, medium, large, turbo"),
    ):
        res = run.invoke(app, ["explore", *args, "--out", str(tmp_path / "x.html"), *base])
        assert isinstance(res.exception, RamerError), res.output
        assert str(res.exception).startswith(needle) and "\n" not in str(res.exception)
    assert not (tmp_path / "x.html").exists()


def test_experiment_views_one_per_existing_fold(ds: Dataset, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "edge")
    split = make_split(ds.y, ds.labeled, ds.folds, 1, 0, 0)
    with HiddenFeatureStore.open(settings) as store:
        ingest_hidden(store, collection_name("tiny", "exp", 1), ds, split, hidden_of(ds), progress=False)
    paths = write_experiment_views(settings, ds.root, "exp", [0, 1], tmp_path / "results", scale="small", k=3)
    assert paths == [tmp_path / "results" / explore.VIEWS_DIR / "tiny__exp__f1.html"]
    data = read_view_data(paths[0])
    assert data["k"] == 3 and data["scale"] == "small"
    assert all(len(row) == 3 for mv in data["modalities"] for row in mv["neighbours"])
