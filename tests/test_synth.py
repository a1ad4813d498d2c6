"""The synthetic MER2024-like generator: shape, determinism, no label leak, informativeness."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

from pipeline.data import load_dataset
from pipeline.data.synth import (
    CLASSES,
    MER2024_COUNTS,
    ORACLE,
    SynthConfig,
    class_counts,
    make_synthetic,
    write_synthetic,
)

TINY = {"labeled": 300, "unlabeled": 200, "dims": {"audio": 32, "visual": 24, "text": 40}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "tiny"
    return write_synthetic(out, SynthConfig(**TINY))


def test_class_counts_follow_mer2024():
    assert class_counts(5030).tolist() == MER2024_COUNTS
    small = class_counts(300, min_count=5)
    assert small.sum() == 300 and small.min() >= 5
    assert np.argsort(-small, kind="stable").tolist() == list(range(6))  # same order of frequency
    assert class_counts(100, min_count=10).min() >= 10


def test_layout_and_contract(tiny):
    ds = tiny
    man = ds.manifest
    assert man.classes == CLASSES and man.modality_names == ["audio", "visual", "text"]
    assert man.dims == [32, 24, 40] and man.folds == 5
    assert len(ds) == 500 and ds.labeled.sum() == 300
    assert ds.features["text"].dtype == np.float32 and ds.features["text"].shape == (500, 40)
    assert set(ds.folds[ds.labeled]) == set(range(5)) and (ds.folds[~ds.labeled] == -1).all()
    counts = np.bincount(ds.y[ds.labeled], minlength=6)
    assert counts.tolist() == class_counts(300, 5).tolist()
    assert (ds.extra["label_name"][ds.labeled] == np.array(CLASSES, object)[ds.y[ds.labeled]]).all()
    assert 1 < len(set(ds.extra["speaker"])) <= 200
    assert ds.present_matrix().all()


def test_unlabeled_labels_only_in_oracle(tiny):
    root = tiny.root
    table = pq.read_table(root / "features.parquet")
    unl = ~np.asarray(table.column("label").is_valid())
    assert unl.sum() == 200
    assert table.column("label_name").filter(unl).null_count == 200
    oracle = pq.read_table(root / ORACLE)
    assert oracle.num_rows == 200
    assert set(oracle.column("sample").to_pylist()) == set(tiny.samples[~tiny.labeled])
    assert set(oracle.column("label_name").to_pylist()) <= set(CLASSES)
    assert ORACLE in tiny.manifest.provenance["oracle"]
    # the unlabeled pool follows the same class mixture
    assert (
        np.bincount(oracle.column("label").to_numpy(), minlength=6).tolist()
        == class_counts(200).tolist()
    )


def test_deterministic_bytes(tmp_path):
    cfg = SynthConfig(**TINY, seed=3)
    a = write_synthetic(tmp_path / "a", cfg)
    b = write_synthetic(tmp_path / "b", cfg)
    assert (a.root / "features.parquet").read_bytes() == (b.root / "features.parquet").read_bytes()
    assert (a.root / ORACLE).read_bytes() == (b.root / ORACLE).read_bytes()
    _, t_other, _ = make_synthetic(SynthConfig(**TINY, seed=4))
    assert not np.array_equal(
        np.asarray(t_other.column("text").combine_chunks().values), a.features["text"].ravel()
    )


def test_missing_rate_never_drops_every_modality(tmp_path):
    ds = write_synthetic(tmp_path / "m", SynthConfig(**TINY, missing_rate=0.4))
    pm = ds.present_matrix()
    assert pm.any(axis=1).all()
    share = 1 - pm.mean()
    assert 0.25 < share < 0.45
    assert (ds.features["audio"][~ds.present["audio"]] == 0).all()
    col = pq.read_table(ds.root / "features.parquet").column("audio")
    assert col.null_count == int((~ds.present["audio"]).sum())


def test_conflict_share_is_recorded():
    _, _, oracle = make_synthetic(
        SynthConfig(labeled=300, unlabeled=3000, dims={"audio": 8, "visual": 8, "text": 8})
    )
    share = 1 - oracle.column("conflict_modality").null_count / oracle.num_rows
    assert 0.07 < share < 0.13


def _probe(x, y, tr, te):
    sc = StandardScaler().fit(x[tr])
    clf = LogisticRegression(max_iter=1000).fit(sc.transform(x[tr]), y[tr])
    return (clf.predict(sc.transform(x[te])) == y[te]).mean()


def test_informativeness_ordering_and_retrieval():
    """full > text > audio > visual under a linear probe; audio neighbours share the emotion."""
    # Fold 0 holds only 300 samples (±2.7 points of sampling noise); seed 3 is a draw whose
    # gaps sit near the population ones (text ~67, audio ~58, visual ~47, full ~83).
    cfg = SynthConfig(
        labeled=1500, unlabeled=0, dims={"audio": 128, "visual": 96, "text": 128}, seed=3
    )
    man, table, _ = make_synthetic(cfg)
    from pipeline.data.dataset import _dataset_from_table

    ds = _dataset_from_table(man, None, table, "memory")
    tr = np.flatnonzero(ds.folds != 0)
    te = np.flatnonzero(ds.folds == 0)
    acc = {m: _probe(ds.features[m], ds.y, tr, te) for m in ds.modalities}
    full = _probe(np.concatenate(ds.x(), axis=1), ds.y, tr, te)
    assert full > acc["text"] > acc["audio"] > acc["visual"], (full, acc)
    assert full >= 0.75, (full, acc)
    # Retrieval through audio finds samples of the same emotion far above chance.
    x = ds.features["audio"]
    x = (x - x.mean(0)) / x.std(0)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sims = x[te] @ x[tr].T
    nn = np.argsort(-sims, axis=1)[:, :10]
    same = (ds.y[tr][nn] == ds.y[te][:, None]).mean()
    prior = np.bincount(ds.y[tr]) / len(tr)
    assert same > (prior**2).sum() + 0.08, same


def test_cli_synth(tmp_path):
    from pipeline.cli.data import app

    out = tmp_path / "cli"
    res = CliRunner().invoke(
        app,
        [
            "synth",
            "--out",
            str(out),
            "--labeled",
            "120",
            "--unlabeled",
            "30",
            "--dims",
            "audio=8,visual=6,text=10",
            "--seed",
            "1",
            "--folds",
            "3",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "150 samples" in res.output and "120 labeled" in res.output
    ds = load_dataset(out)
    assert ds.manifest.dims == [8, 6, 10] and ds.manifest.folds == 3 and ds.manifest.seed == 1
    bad = CliRunner().invoke(app, ["synth", "--out", str(tmp_path / "x"), "--dims", "audio:8"])
    assert bad.exit_code == 2 and not (tmp_path / "x").exists()


def test_streamed_writer_matches_the_in_memory_one(tmp_path):
    """The bounded-memory writer (paper-scale benchmark) produces the same dataset."""
    from pipeline.data import load_dataset
    from pipeline.data.synth import SynthConfig, write_synthetic
    from pipeline.data.synth_stream import write_synthetic_streamed

    cfg = SynthConfig(labeled=120, unlabeled=80, dims={"audio": 8, "visual": 6, "text": 10}, seed=5)
    a = write_synthetic(tmp_path / "a", cfg, name="s")
    b = load_dataset(write_synthetic_streamed(tmp_path / "b", cfg, name="s"))
    np.testing.assert_array_equal(a.samples, b.samples)
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.folds, b.folds)
    for m in a.modalities:
        np.testing.assert_array_equal(a.features[m], b.features[m])
        np.testing.assert_array_equal(a.present[m], b.present[m])
