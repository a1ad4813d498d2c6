"""Importers keep each speaker (group) on one side of every fold, and find rows whose
features duplicate a labeled row under another name."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from pipeline.cli.data import app
from pipeline.data.dataset import load_dataset
from pipeline.data.duplicates import find_duplicates
from pipeline.data.importers import import_mer2024, import_parquet
from pipeline.data.importers.folds import FoldOptions
from pipeline.data.splits import assign_folds
from pipeline.errors import DataError

DIMS = {"audio": 6, "visual": 4, "text": 5}


def _lists(x: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    n, d = x.shape
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * d)
    return pa.ListArray.from_arrays(offsets, pa.array(x.ravel()), mask=None if null is None else pa.array(null))


def table(feats: dict[str, np.ndarray], labels: list, speaker: list | None = None, null: dict | None = None):
    n = len(labels)
    cols = {"sample": pa.array([f"u{i:03d}" for i in range(n)]), "label": pa.array(labels, pa.int64())}
    if speaker is not None:
        cols["speaker"] = pa.array(speaker, pa.string())
    for m, x in feats.items():
        cols[m] = _lists(x, (null or {}).get(m))
    return pa.table(cols)


def crafted(rng: np.random.Generator, n: int = 80, pool: int = 30):
    """n labeled rows (4 classes) + `pool` unlabeled rows, all distinct Gaussian features."""
    feats = {m: rng.standard_normal((n + pool, d)) for m, d in DIMS.items()}
    labels = [i % 4 for i in range(n)] + [None] * pool
    return feats, labels


def write(tmp_path, tbl, name="in.parquet"):
    pq.write_table(tbl, tmp_path / name)
    return tmp_path / name


# ---------------------------------------------------------------- groups


@given(st.integers(0, 10_000), st.integers(5, 30), st.integers(2, 6))
def test_groups_never_straddle_folds(seed, n_groups, k):
    rng = np.random.default_rng(seed)
    n = 120
    groups = rng.integers(0, n_groups, n)
    labeled = rng.random(n) < 0.8
    y = rng.integers(0, 3, n)
    if len(np.unique(groups[labeled])) < k:
        return
    folds = assign_folds(y, labeled, k, seed, groups)
    assert (folds[~labeled] == -1).all() and set(folds[labeled]) == set(range(k))
    for g in np.unique(groups[labeled]):
        assert len(set(folds[labeled & (groups == g)])) == 1
    assert (assign_folds(y, labeled, k, seed, groups) == folds).all()  # deterministic in the seed


def test_speaker_column_groups_by_default_and_none_turns_it_off(tmp_path):
    rng = np.random.default_rng(0)
    feats, labels = crafted(rng)
    speaker = [f"s{i % 9}" for i in range(len(labels))]
    src = write(tmp_path, table(feats, labels, speaker))
    ds = import_parquet(src, "g", tmp_path / "g")
    assert ds.manifest.group_by == "speaker" and ds.manifest.provenance["folds"]["groups"] == 9
    spk = ds.extra["speaker"]
    for s in set(spk[ds.labeled]):
        assert len(set(ds.folds[ds.labeled & (spk == s)])) == 1
    off = import_parquet(src, "g", tmp_path / "off", fold_options=FoldOptions(group_by="none"))
    assert off.manifest.group_by is None
    straddle = [s for s in set(spk[off.labeled]) if len(set(off.folds[off.labeled & (off.extra["speaker"] == s)])) > 1]
    assert straddle  # without grouping the speakers do cross folds: the default is what keeps them apart
    assert "group_by" not in json.loads((tmp_path / "off" / "manifest.json").read_text())


def test_group_by_another_column_and_its_errors(tmp_path):
    rng = np.random.default_rng(1)
    feats, labels = crafted(rng)
    tbl = table(feats, labels).append_column("session", pa.array([f"ses{i % 6}" for i in range(len(labels))]))
    src = write(tmp_path, tbl)
    ds = import_parquet(src, "s", tmp_path / "s", fold_options=FoldOptions(group_by="session"))
    session = np.array([f"ses{i % 6}" for i in range(len(labels))])
    for g in set(session):
        assert len(set(ds.folds[ds.labeled & (session == g)])) == 1
    plain = write(tmp_path, table(feats, labels), "plain.parquet")
    with pytest.raises(DataError, match=r"plain\.parquet: --group-by column 'speaker' not found"):
        import_parquet(plain, "s", tmp_path / "bad", fold_options=FoldOptions(group_by="speaker"))
    nulls = [None if i == 3 else f"s{i % 9}" for i in range(len(labels))]
    with pytest.raises(DataError, match="group column 'speaker' is null on 1 labeled row"):
        import_parquet(write(tmp_path, table(feats, labels, nulls), "n.parquet"), "s", tmp_path / "bad")
    with pytest.raises(DataError, match="3 group\\(s\\) in 'speaker' cannot fill 5 folds"):
        import_parquet(write(tmp_path, table(feats, labels, [f"s{i % 3}" for i in range(len(labels))]), "f.parquet"),
                       "s", tmp_path / "bad")
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad*"))  # nothing left behind


def test_validate_refuses_a_straddling_speaker(tmp_path):
    rng = np.random.default_rng(2)
    feats, labels = crafted(rng)
    ds = import_parquet(write(tmp_path, table(feats, labels, [f"s{i % 9}" for i in range(len(labels))])),
                        "v", tmp_path / "v")
    t = pq.read_table(tmp_path / "v" / "features.parquet")
    folds = t.column("fold").to_numpy().copy()
    first = int(np.flatnonzero(ds.labeled)[0])
    folds[first] = (folds[first] + 1) % ds.manifest.folds
    pq.write_table(t.set_column(t.schema.get_field_index("fold"), "fold", pa.array(folds, pa.int8())),
                   tmp_path / "v" / "features.parquet")
    with pytest.raises(DataError, match="speaker 's0' is in folds .* grouped by 'speaker'"):
        load_dataset(tmp_path / "v")


# ---------------------------------------------------------------- duplicates


def with_copies(rng):
    """Crafted rows: pool rows 80, 81 copy labeled rows 0, 1 (81 rescaled and slightly
    perturbed: a near-duplicate), labeled row 79 copies labeled row 2 except for its
    missing visual, pool row 82 copies only row 3's audio (not a duplicate: it has its
    own visual and text)."""
    feats, labels = crafted(rng)
    for m in feats:
        feats[m][80] = feats[m][0]
        noise = rng.standard_normal(DIMS[m]) / np.sqrt(DIMS[m])  # cosine ~ 1 - 5e-5 after a 1 % perturbation
        feats[m][81] = 1.01 * feats[m][1] + 0.01 * np.linalg.norm(feats[m][1]) * noise
        feats[m][79] = feats[m][2]
    feats["audio"][82] = feats["audio"][3]
    null = {"visual": np.arange(len(labels)) == 79}
    return feats, labels, null


def test_duplicates_found_near_and_exact_and_partial(tmp_path):
    rng = np.random.default_rng(3)
    feats, labels, null = with_copies(rng)
    present = {m: ~null.get(m, np.zeros(len(labels), bool)) for m in feats}
    labeled = np.array([v is not None for v in labels])
    d = find_duplicates({m: x.astype(np.float32) for m, x in feats.items()}, present, labeled)
    assert d.pool_rows.tolist() == [80, 81] and d.labeled_pairs.tolist() == [[2, 79]]
    strict = find_duplicates({m: x.astype(np.float32) for m, x in feats.items()}, present, labeled, threshold=1.0)
    assert strict.pool_rows.tolist() == [80]  # the perturbed copy is near, not identical


def test_import_reports_and_drops_duplicates(tmp_path):
    rng = np.random.default_rng(4)
    feats, labels, null = with_copies(rng)
    src = write(tmp_path, table(feats, labels, null=null))
    ds = import_parquet(src, "d", tmp_path / "d")
    dup = ds.manifest.provenance["duplicates"]
    assert (dup["pool_rows"], dup["labeled_pairs"], dup["dropped_pool_rows"]) == (2, 1, 0) and len(ds) == 110
    assert dup["cross_fold_pairs"] == int(ds.folds[2] != ds.folds[79])
    dropped = import_parquet(src, "d", tmp_path / "dd", fold_options=FoldOptions(drop_duplicates=True))
    assert len(dropped) == 108 and not {"u080", "u081"} & set(dropped.samples)
    assert dropped.folds[2] == dropped.folds[79]  # labeled duplicates kept in one fold
    rec = dropped.manifest.provenance["duplicates"]
    assert (rec["dropped_pool_rows"], rec["cross_fold_pairs"]) == (2, 0)


def test_cli_summary_counts_and_bad_threshold(tmp_path):
    rng = np.random.default_rng(5)
    feats, labels, null = with_copies(rng)
    src = write(tmp_path, table(feats, labels, null=null))
    runner = CliRunner()
    res = runner.invoke(app, ["import", "parquet", str(src), "--name", "c", "--out", str(tmp_path / "c"),
                              "--drop-duplicates"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())  # rich wraps lines at the terminal width
    assert "2 pool row(s) duplicate a labeled row, 1 labeled pair(s), 0 across folds" in text and "2 dropped" in text
    info = runner.invoke(app, ["info", str(tmp_path / "c")])
    assert "2 pool row(s) duplicate a labeled row" in " ".join(info.output.split())
    bad = runner.invoke(app, ["import", "parquet", str(src), "--name", "c", "--out", str(tmp_path / "x"),
                              "--duplicate-threshold", "1.5"])
    assert bad.exit_code != 0 and not (tmp_path / "x").exists()


def test_mer2024_unlisted_pool_copy_is_counted_and_dropped(tmp_path):
    from tests.test_importers import EXTRACTORS, write_mer2024

    root = tmp_path / "src"
    root.mkdir()
    write_mer2024(root)
    for ext in EXTRACTORS.values():  # an unlisted pool file that is a labeled sample's copy
        folder = root / "features" / f"{ext}-UTT"
        np.save(folder / "pool_00000.npy", np.load(folder / "sample_00007.npy"))
    ds = import_mer2024(root, "mer", tmp_path / "mer", EXTRACTORS, unlisted=True, folds=2)
    assert ds.manifest.provenance["duplicates"]["pool_rows"] == 1
    dropped = import_mer2024(root, "mer", tmp_path / "mer2", EXTRACTORS, unlisted=True, folds=2,
                             fold_options=FoldOptions(drop_duplicates=True))
    assert len(dropped) == len(ds) - 1 and "pool_00000" not in set(dropped.samples)


def test_blocked_search_matches_one_block(monkeypatch):
    """Blocks bound memory; they must not change what is found."""
    import pipeline.data.duplicates as dmod

    rng = np.random.default_rng(6)
    n = 300
    x = rng.standard_normal((n, 8)).astype(np.float32)
    x[200:260] = x[:60] + 1e-5  # 60 pool copies
    labeled = np.arange(n) < 150
    whole = dmod.find_duplicates({"a": x}, {"a": np.ones(n, bool)}, labeled)
    monkeypatch.setattr(dmod, "BLOCK_FLOATS", 500)  # ~1 query row per block
    blocked = dmod.find_duplicates({"a": x}, {"a": np.ones(n, bool)}, labeled)
    assert whole.pool_rows.tolist() == blocked.pool_rows.tolist() == list(range(200, 260))


def test_offset_features_and_placeholder_rows():
    """A large common offset (raw cosine ~1 for every pair) does not make rows duplicates;
    a placeholder vector (the column means) agrees only with another placeholder."""
    rng = np.random.default_rng(7)
    n = 200
    x = (1000.0 + rng.standard_normal((n, 16))).astype(np.float32)  # every raw cosine > 0.999
    t = rng.standard_normal((n, 8)).astype(np.float32)
    x[150], t[150] = x[5], t[5]  # pool copy of labeled row 5 on both modalities
    holders = [7, 160, 165]
    t[holders] = t[np.setdiff1d(np.arange(n), holders)].mean(0)  # so the column means stay the same
    x[160] = x[6]  # copies row 6's audio, but row 6 has real text: not a duplicate
    x[165] = x[7]  # copies row 7's audio, and both texts are placeholders: a duplicate
    labeled = np.arange(n) < 100
    d = find_duplicates({"audio": x, "text": t}, {"audio": np.ones(n, bool), "text": np.ones(n, bool)}, labeled)
    assert d.pool_rows.tolist() == [150, 165] and not len(d.labeled_pairs)
