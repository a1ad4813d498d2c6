"""Qdrant hidden-feature store: spec, ingest payloads/ids, leakage filter, FAISS parity,
locked folder, unreachable server, and the `ramer collections` CLI. Tiny sizes (300 rows)."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pipeline.config import Settings
from pipeline.data.dataset import Dataset, build_table, write_dataset
from pipeline.data.scales import candidate_mask
from pipeline.data.schema import Manifest, ModalitySpec
from pipeline.data.splits import FoldSplit, assign_folds, make_split
from pipeline.errors import RamerError, StoreError
from pipeline.retrieval import fast_index_from_store
from pipeline.store import HiddenFeatureStore, collection_name, ingest_hidden, load_spec, point_id
from pipeline.store.backends import Where
from pipeline.store.spec import packaged_spec_path

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ["edge", "local"]
CLASSES = ["neutral", "angry", "happy", "sad", "worried", "surprise"]
DIM = 32  # hidden size in tests (the spec's 256 is exercised by the CLI test)
PAYLOAD_KEYS = {"sample", "split", "fold", "label", "label_name", "dataset", "scale", "modalities"}


def tiny_dataset(out: Path, n_lab: int = 150, n_unl: int = 150, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    n = n_lab + n_unl
    manifest = Manifest(name="tiny", classes=CLASSES, folds=5, seed=seed,
                        modalities=[ModalitySpec(name="audio", dim=24), ModalitySpec(name="visual", dim=16),
                                    ModalitySpec(name="text", dim=20)])
    labeled = np.arange(n) < n_lab
    y = np.where(labeled, rng.integers(0, len(CLASSES), n), -1)
    folds = assign_folds(y, labeled, 5, seed)
    feats = {m.name: rng.standard_normal((n, m.dim)).astype(np.float32) for m in manifest.modalities}
    present = {m: rng.random(n) > 0.15 for m in feats}
    present["text"] |= ~(present["audio"] | present["visual"])  # every sample keeps one modality
    samples = np.array([f"s{i:04d}" for i in range(n)])
    return write_dataset(out, manifest, build_table(manifest, samples, y, labeled, folds, feats, present))


def hidden_of(ds: Dataset, seed: int = 1) -> dict[str, np.ndarray]:
    """Continuous random hidden vectors (no ties), (N, DIM) per modality."""
    rng = np.random.default_rng(seed)
    return {m: rng.standard_normal((len(ds), DIM)).astype(np.float32) for m in ds.modalities}


def settings_for(path: Path, engine: str, url: str | None = None) -> Settings:
    return Settings(_env_file=None, data_dir=path, qdrant_path=path / "qdrant",
                    qdrant_engine=engine, qdrant_url=url)


def scratch_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A tmpfs folder when the machine has one: the stores fsync every write, which costs
    seconds on a disk and tells these tests nothing (durability is Qdrant's job)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        path = Path(tempfile.mkdtemp(prefix=f"ramer-{name}-", dir=shm))
        _SCRATCH.append(path)
        return path
    return tmp_path_factory.mktemp(name)


_SCRATCH: list[Path] = []


@pytest.fixture(scope="module", autouse=True)
def _cleanup_scratch():
    yield
    while _SCRATCH:
        shutil.rmtree(_SCRATCH.pop(), ignore_errors=True)


@pytest.fixture()
def fast_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scratch_dir(tmp_path_factory, "t")


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return tiny_dataset(tmp_path_factory.mktemp("data") / "tiny")


class Filled:
    """A store with lazily ingested per-fold collections (hypothesis draws folds)."""

    def __init__(self, store: HiddenFeatureStore, ds: Dataset) -> None:
        self.store, self.ds, self.hidden = store, ds, hidden_of(ds)
        self.splits: dict[int, FoldSplit] = {}

    def fold(self, f: int) -> tuple[str, FoldSplit]:
        name = collection_name("tiny", "t", f)
        if f not in self.splits:
            self.splits[f] = make_split(self.ds.y, self.ds.labeled, self.ds.folds, f, 0, 0)
            ingest_hidden(self.store, name, self.ds, self.splits[f], self.hidden, progress=False)
        return name, self.splits[f]


@pytest.fixture(scope="module", params=ENGINES)
def filled(request: pytest.FixtureRequest, ds: Dataset, tmp_path_factory: pytest.TempPathFactory):
    path = scratch_dir(tmp_path_factory, f"store-{request.param}")
    with HiddenFeatureStore.open(settings_for(path, request.param)) as store:
        yield Filled(store, ds)


# ---------------------------------------------------------------- spec


def test_packaged_spec_is_the_user_facing_one() -> None:
    assert packaged_spec_path().read_bytes() == (ROOT / "collections" / "hidden_features.json").read_bytes()
    spec = load_spec()
    assert spec.vectors.size == 256 and spec.vectors.distance == "Cosine"
    assert set(spec.payload) == PAYLOAD_KEYS
    assert {"split", "label", "scale"} <= set(spec.indexes)
    assert spec.indexes["label"] == "integer" and spec.indexes["split"] == "keyword"


def test_spec_ships_in_the_wheel() -> None:
    """A non-editable install only finds the spec if setuptools packages the JSON."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    data = project["tool"]["setuptools"].get("package-data", {})
    globs = [*(f"store/{g}" for g in data.get("pipeline.store", [])), *data.get("pipeline", [])]
    assert any(fnmatch.fnmatch("store/hidden_features.json", g) for g in globs)


def test_bad_spec_is_one_line_error(tmp_path: Path) -> None:
    bad = json.loads(packaged_spec_path().read_text())
    bad["payload"]["split"]["index"] = False
    (tmp_path / "s.json").write_text(json.dumps(bad))
    with pytest.raises(StoreError, match=r"s\.json: invalid collection spec.*split"):
        load_spec(tmp_path / "s.json")
    with pytest.raises(StoreError, match="not found"):
        load_spec(tmp_path / "missing.json")


# ---------------------------------------------------------------- ingest


def test_ingest_twice_same_points_exact_payload(filled: Filled) -> None:
    store, ds = filled.store, filled.ds
    name, split = filled.fold(0)
    n = ingest_hidden(store, name, ds, split, filled.hidden, progress=False)  # second time
    assert n == len(ds) and store.count(name) == len(ds)
    names = split.split_names(len(ds))
    recs = [r for batch in store.backend.scroll(name, Where(), list(ds.modalities), 64) for r in batch]
    assert len(recs) == len(ds)
    row = {s: i for i, s in enumerate(ds.samples)}
    for r in recs:
        p = r.payload
        i = row[p["sample"]]
        assert set(p) == PAYLOAD_KEYS
        assert r.id == point_id("tiny", ds.samples[i])
        assert p["split"] == names[i] and p["dataset"] == "tiny" and p["fold"] == int(ds.folds[i])
        if ds.labeled[i]:
            assert p["label"] == ds.y[i] and p["label_name"] == CLASSES[ds.y[i]]
            assert set(p["scale"]) == {"small", "train", "train+half-pool", "train+pool", "turbo"}
        else:
            assert p["label"] == -1 and p["label_name"] == "unlabeled" and p["split"] == "unlabeled"
            assert {"large", "turbo"} <= set(p["scale"]) and "small" not in p["scale"]
        have = [m for m in ds.modalities if ds.present[m][i]]
        assert p["modalities"] == have
        assert sorted(r.vectors) == sorted(have)  # absent modality -> no vector at all
    for m in ds.modalities:
        mat = store.fetch_matrix(name, m)
        assert sorted(mat.samples) == sorted(ds.samples[ds.present[m]])
        i = np.array([row[s] for s in mat.samples])
        ref = filled.hidden[m][i] / np.linalg.norm(filled.hidden[m][i], axis=1, keepdims=True)
        np.testing.assert_allclose(mat.vectors, ref, atol=1e-5)  # Cosine stores unit vectors


def test_split_none_marks_labeled_train(filled: Filled) -> None:
    store, ds = filled.store, filled.ds
    rows = np.arange(0, len(ds), 7)
    ingest_hidden(store, "tiny__nosplit__f0", ds, None, {m: v[rows] for m, v in filled.hidden.items()},
                  rows, progress=False)
    assert store.count("tiny__nosplit__f0") == len(rows)
    assert store.count("tiny__nosplit__f0", split="train") == int(ds.labeled[rows].sum())
    assert store.count("tiny__nosplit__f0", split="val") == 0
    store.drop("tiny__nosplit__f0")
    assert "tiny__nosplit__f0" not in store.list_collections()


def test_bad_vectors_write_nothing(filled: Filled) -> None:
    store, ds = filled.store, filled.ds
    bad = {m: v.copy() for m, v in filled.hidden.items()}
    bad["audio"][np.flatnonzero(ds.present["audio"])[3], 0] = np.nan
    with pytest.raises(StoreError, match="NaN/inf"):
        ingest_hidden(store, "tiny__bad__f0", ds, None, bad, progress=False)
    assert store.count("tiny__bad__f0") == 0
    with pytest.raises(StoreError, match="exists with vectors"):
        store.apply("tiny__bad__f0", ["audio"], dim=DIM)
    store.drop("tiny__bad__f0")


def test_apply_idempotent_and_indexes(filled: Filled) -> None:
    store = filled.store
    assert store.apply("tiny__apply__f0", ["audio", "text"], dim=8) is True
    assert store.apply("tiny__apply__f0", ["audio", "text"], dim=8) is False
    info = store.info("tiny__apply__f0")
    assert info.points == 0 and set(info.vectors) == {"audio", "text"}
    if store.kind == "edge":  # local mode ignores payload indexes by design
        assert info.payload_schema["split"] == "keyword" and info.payload_schema["label"] == "integer"
        assert info.disk_bytes and info.disk_bytes > 0
    store.drop("tiny__apply__f0")


def test_server_only_guard(filled: Filled) -> None:
    with pytest.raises(StoreError, match="needs a Qdrant server"):
        filled.store.snapshot("whatever")


# ---------------------------------------------------------------- leakage filter


@hsettings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(fold=st.integers(0, 4), q=st.integers(0, 299), k=st.integers(1, 25),
       modality=st.sampled_from(["audio", "visual", "text"]),
       scale=st.sampled_from([None, "small", "medium", "large", "turbo"]))
def test_search_never_leaks(filled: Filled, fold: int, q: int, k: int, modality: str, scale: str | None) -> None:
    ds = filled.ds
    name, split = filled.fold(fold)
    if not ds.present[modality][q]:
        with pytest.raises(StoreError, match="has no"):
            filled.store.search_sample(name, ds.samples[q], modality, k)
        return
    hits = filled.store.search_sample(name, ds.samples[q], modality, k, scale=scale)
    names = split.split_names(len(ds))
    row = {s: i for i, s in enumerate(ds.samples)}
    # The payload filter must reproduce the canonical candidate rule of pipeline.data.scales.
    allowed = candidate_mask(ds.samples, ds.labeled, split.train, scale or "turbo") & ds.present[modality]
    allowed[q] = False
    assert len(hits) == min(k, int(allowed.sum()))
    for h in hits:
        assert h.sample != ds.samples[q]
        assert h.split in ("train", "unlabeled") and names[row[h.sample]] == h.split
        assert allowed[row[h.sample]]
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_faiss_and_qdrant_agree(filled: Filled) -> None:
    ds, store = filled.ds, filled.store
    name, _ = filled.fold(0)
    rng = np.random.default_rng(7)
    k = 10
    for m in ds.modalities:
        index, mat = fast_index_from_store(store, name, m, device="cpu")
        assert set(mat.payload["split"]) <= {"train", "unlabeled"}
        pos = {pid: i for i, pid in enumerate(mat.ids)}
        stored = rng.choice(np.flatnonzero(ds.present[m]), 12, replace=False)
        queries = np.concatenate([filled.hidden[m][stored], rng.standard_normal((4, DIM)).astype(np.float32)])
        qids = [point_id("tiny", ds.samples[r]) for r in stored] + [None] * 4
        exclude = np.array([pos.get(pid, -1) if pid else -1 for pid in qids], np.int64)
        scores, found = index.search(queries, k, exclude_ids=exclude)
        for b, pid in enumerate(qids):
            hits = store.search(name, m, queries[b], k, exclude_id=pid)
            assert [h.id for h in hits] == list(mat.ids[found[b]])
            np.testing.assert_allclose([h.score for h in hits], scores[b], atol=1e-4)


# ---------------------------------------------------------------- opening the store


HOLDER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from pipeline.config import Settings
    from pipeline.store import HiddenFeatureStore
    p = Path(sys.argv[1])
    s = Settings(_env_file=None, data_dir=p, qdrant_path=p / "qdrant", qdrant_engine=sys.argv[2], qdrant_url=None)
    with HiddenFeatureStore.open(s):
        print("ready", flush=True)
        sys.stdin.read()
""")


@pytest.mark.parametrize("engine", ENGINES)
def test_folder_in_use_by_another_process(fast_tmp: Path, engine: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(fast_tmp), engine], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        with pytest.raises(StoreError, match=r"qdrant is in use by another process \(close it or set QDRANT_URL\)"):
            HiddenFeatureStore.open(settings_for(fast_tmp, engine))
    finally:
        proc.communicate("", timeout=30)
    with HiddenFeatureStore.open(settings_for(fast_tmp, engine)) as store:  # released on close
        assert store.list_collections() == []


def test_unreachable_server_is_quick_one_liner(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    with pytest.raises(StoreError, match=r"^cannot reach Qdrant at http://127\.0\.0\.1:9: ") as err:
        HiddenFeatureStore.open(settings_for(tmp_path, "edge", url="http://127.0.0.1:9"), timeout=2)
    assert "\n" not in str(err.value)
    assert time.perf_counter() - t0 < 10


# ---------------------------------------------------------------- CLI


def test_cli_apply_ingest_list_info_search_drop(fast_tmp: Path, ds: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.cli.collections import app

    monkeypatch.delenv("QDRANT_URL", raising=False)
    monkeypatch.setenv("RAMER_QDRANT_PATH", str(fast_tmp / "q"))
    monkeypatch.setenv("RAMER_QDRANT_ENGINE", "edge")
    run = CliRunner()

    def ok(*args: str) -> str:
        res = run.invoke(app, list(args), catch_exceptions=False)
        assert res.exit_code == 0, res.output
        return res.output

    assert "Create the dataset's per-fold" in ok("apply", "--help")
    assert "created: tiny__raw__f0" in ok("apply", str(ds.root), "--fold", "0")
    assert "up to date: tiny__raw__f0" in ok("apply", str(ds.root), "--fold", "0")
    ok("ingest", str(ds.root), "--fold", "0", "--scale", "small")
    out = ok("ingest", str(ds.root), "--fold", "0")  # turbo: everything; labeled rows updated, not duplicated
    assert f"({len(ds)} stored)" in out
    assert "tiny__raw__f0" in ok("list") and str(len(ds)) in ok("list")
    info = ok("info", "tiny__raw__f0")
    assert "256-d Cosine" in info and "split:keyword" in info
    split = make_split(ds.y, ds.labeled, ds.folds, 0, 0, ds.manifest.seed)
    q = int(split.test[np.flatnonzero(ds.present["audio"][split.test])[0]])
    out = ok("search", "tiny__raw__f0", "--sample", str(ds.samples[q]), "--modality", "audio", "-k", "5")
    names = split.split_names(len(ds))
    shown = [s for s in ds.samples if f" {s} " in out]
    assert len(shown) == 6  # the query in the title + 5 neighbours
    assert all(names[int(s[1:])] in ("train", "unlabeled") for s in shown if s != ds.samples[q])
    res = run.invoke(app, ["drop", "tiny__raw__f0"])  # no TTY, no --yes: refuse
    assert res.exit_code != 0 and isinstance(res.exception, RamerError) and "--yes" in str(res.exception)
    assert "dropped tiny__raw__f0" in ok("drop", "tiny__raw__f0", "--yes")
    assert "tiny__raw__f0" not in ok("list")
    res = run.invoke(app, ["search", "nope", "--sample", "x", "--modality", "audio"])
    assert isinstance(res.exception, StoreError) and "not found" in str(res.exception)


def test_matrix_subset_in_memory_equals_the_filtered_fetch(tmp_path):
    """`StoredMatrix.where` (explore's single read) returns exactly the rows, in the same
    order, that a filtered `fetch_matrix` reads from the store."""
    from pipeline.config import Settings
    from pipeline.data.splits import make_split
    from pipeline.data.synth import SynthConfig, write_synthetic
    from pipeline.store.ingest import ingest_hidden
    from pipeline.store.qdrant_store import ALLOWED_SPLITS, HiddenFeatureStore

    ds = write_synthetic(tmp_path / "d", SynthConfig(labeled=60, unlabeled=40, dims={"a": 4, "b": 3}, seed=2))
    split = make_split(ds.y, ds.labeled, ds.folds, 0, 0, 0)
    rng = np.random.default_rng(0)
    vecs = {m: rng.normal(size=(len(ds), 5)).astype(np.float32) for m in ds.modalities}
    with HiddenFeatureStore.open(Settings(qdrant_path=tmp_path / "q")) as store:
        ingest_hidden(store, "c", ds, split, vecs, progress=False)
        for m in ds.modalities:
            everything = store.fetch_matrix("c", m)
            for splits, scale in ((ALLOWED_SPLITS, None), (ALLOWED_SPLITS, "small"), (None, "large"), (("test", "val"), None)):
                want = store.fetch_matrix("c", m, splits=splits, scale=scale)
                got = everything.where(splits, scale)
                assert len(want) > 0 and list(got.ids) == list(want.ids)
                assert np.array_equal(got.vectors, want.vectors)
