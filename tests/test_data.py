"""Importing bring-your-own parquet features, validate and info (happy paths)."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline.data.importers import import_parquet
from pipeline.data.importers.folds import FoldOptions
from pipeline.data.info import dataset_info

CLASSES = ["neutral", "angry", "happy", "sad"]


def byo_table(
    n=60,
    dims=(6, 4, 5),
    seed=0,
    string_labels=False,
    fixed=False,
    dtype=np.float64,
    unlabeled=10,
    missing_visual=(),
):
    """A user's feature file: sample, nullable label, speaker, one list column per modality."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(CLASSES)
    mask = np.zeros(n, bool)
    mask[n - unlabeled :] = True
    cols = {"sample": pa.array([f"utt{i:03d}" for i in range(n)])}
    if string_labels:
        cols["label"] = pa.array([None if m else CLASSES[v] for v, m in zip(y, mask)], pa.string())
    else:
        cols["label"] = pa.array(y, pa.int64(), mask=mask)
    cols["speaker"] = pa.array([f"s{i % 7}" for i in range(n)])
    for name, d in zip(("audio", "visual", "text"), dims):
        x = rng.standard_normal((n, d)).astype(dtype)
        null = np.zeros(n, bool)
        if name == "visual":
            null[list(missing_visual)] = True
        if fixed:
            cols[name] = pa.FixedSizeListArray.from_arrays(
                pa.array(x.ravel()), d, mask=pa.array(null)
            )
        else:
            offsets = pa.array(np.arange(n + 1, dtype=np.int32) * d)
            cols[name] = pa.ListArray.from_arrays(offsets, pa.array(x.ravel()), mask=pa.array(null))
    return pa.table(cols), y, mask


def write(tmp_path, table, name="in.parquet", **kw):
    path = tmp_path / name
    pq.write_table(table, path, **kw)
    return path


def test_import_int_labels_roundtrip(tmp_path):
    table, y, unl = byo_table(missing_visual=(3, 50))
    src = write(tmp_path, table, row_group_size=16)  # several row groups, streamed
    # its speaker column would group the folds (tests/test_groups_duplicates.py): off here
    ds = import_parquet(src, "byo", tmp_path / "byo", folds=5, seed=0, classes=CLASSES,
                        fold_options=FoldOptions(group_by="none"))
    assert ds.manifest.classes == CLASSES and ds.manifest.dims == [6, 4, 5]
    assert ds.manifest.modality_names == ["audio", "visual", "text"]
    assert (ds.y[~unl] == y[~unl]).all() and (ds.y[unl] == -1).all()
    assert (ds.folds[unl] == -1).all() and set(ds.folds[~unl]) == set(range(5))
    # stratified: every class spread over the folds as evenly as possible
    for c in range(len(CLASSES)):
        per_fold = np.bincount(ds.folds[~unl & (ds.y == c)], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1
    src_x = np.asarray(table.column("audio").combine_chunks().flatten()).reshape(60, 6)
    np.testing.assert_allclose(ds.features["audio"], src_x.astype(np.float32))
    assert ds.features["audio"].dtype == np.float32 and isinstance(ds.features["audio"], np.ndarray)
    assert not ds.present["visual"][[3, 50]].any() and ds.present["visual"].sum() == 58
    assert (ds.features["visual"][3] == 0).all()
    assert (ds.extra["label_name"][~unl] == np.array(CLASSES, object)[y[~unl]]).all()
    assert all(v is None for v in ds.extra["label_name"][unl])
    assert list(ds.extra["speaker"][:2]) == ["s0", "s1"]
    prov = ds.manifest.provenance
    assert prov["importer"] == "parquet" and prov["source"] == str(src.resolve())
    assert prov["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert sorted(p.name for p in (tmp_path / "byo").iterdir()) == [
        "features.parquet",
        "manifest.json",
    ]


def test_import_string_labels_and_fixed_lists(tmp_path):
    table, y, unl = byo_table(string_labels=True, fixed=True, dtype=np.float32)
    ds = import_parquet(write(tmp_path, table), "s", tmp_path / "s", folds=3)
    assert ds.manifest.classes == sorted(CLASSES)  # inferred, sorted
    names = np.array(sorted(CLASSES), object)[ds.y[~unl]]
    assert (names == np.array(CLASSES, object)[y[~unl]]).all()
    # with explicit classes the index order is the user's
    ds2 = import_parquet(write(tmp_path, table), "s", tmp_path / "s2", folds=3, classes=CLASSES)
    assert (ds2.y[~unl] == y[~unl]).all()


def test_import_int_labels_with_label_name_column(tmp_path):
    table, y, unl = byo_table()
    names = [None if m else CLASSES[v] for v, m in zip(y, unl)]
    table = table.append_column("label_name", pa.array(names, pa.string()))
    ds = import_parquet(write(tmp_path, table), "n", tmp_path / "n", folds=2)
    assert ds.manifest.classes == CLASSES


def test_reimport_replaces_atomically(tmp_path):
    table, _, _ = byo_table()
    src = write(tmp_path, table)
    out = tmp_path / "data" / "x"
    import_parquet(src, "x", out, folds=5, seed=0, classes=CLASSES)
    first = (out / "features.parquet").read_bytes()
    ds = import_parquet(src, "x", out, folds=5, seed=1, classes=CLASSES)
    assert ds.manifest.seed == 1 and (out / "features.parquet").read_bytes() != first
    assert sorted(p.name for p in out.parent.iterdir()) == ["x"]  # no tmp / old leftovers


def test_cli_import_default_dir_validate_info(tmp_path, monkeypatch):
    from pipeline.cli.data import app

    table, _, _ = byo_table(missing_visual=(1,))
    src = write(tmp_path, table)
    monkeypatch.setenv("RAMER_DATA_DIR", str(tmp_path / "datadir"))
    runner = CliRunner()
    res = runner.invoke(
        app, ["import", "parquet", str(src), "--name", "mine", "--classes", ",".join(CLASSES)]
    )
    assert res.exit_code == 0, res.output
    out = tmp_path / "datadir" / "mine"
    assert (out / "manifest.json").is_file() and "60 samples" in res.output
    res = runner.invoke(app, ["validate", str(out)])
    assert res.exit_code == 0 and res.output.startswith("OK"), res.output
    res = runner.invoke(app, ["info", str(out)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for word in ("neutral", "fold 4", "unlabeled", "98.3 %", "features.parquet", "audio", "train"):
        assert word in res.output, word


def test_dataset_info_counts(tmp_path):
    table, y, unl = byo_table(n=80, unlabeled=20)
    ds = import_parquet(write(tmp_path, table), "i", tmp_path / "i", folds=4, classes=CLASSES)
    info = dataset_info(ds)
    assert info.n == 80 and info.n_labeled == 60 and info.n_unlabeled == 20
    assert info.class_by_fold.shape == (4, 4) and info.class_by_fold.sum() == 60
    assert info.class_by_fold.sum(1).tolist() == np.bincount(y[~unl], minlength=4).tolist()
    assert info.split_sizes["test"] == info.class_by_fold[:, 0].sum()
    assert info.split_sizes["unlabeled"] == 20
    assert set(info.files) == {"manifest.json", "features.parquet"} and info.total_bytes > 0
    assert info.presence["audio"]["all"] == 1.0


@pytest.mark.parametrize("dtype", [np.float16, np.int32])
def test_import_casts_numeric_lists_to_float32(tmp_path, dtype):
    table, _, _ = byo_table(dtype=np.float64)
    x = np.arange(60 * 6).astype(dtype)
    audio = pa.ListArray.from_arrays(pa.array(np.arange(61, dtype=np.int32) * 6), pa.array(x))
    table = table.set_column(table.schema.get_field_index("audio"), "audio", audio)
    ds = import_parquet(write(tmp_path, table), "c", tmp_path / "c", folds=2)
    assert ds.features["audio"].dtype == np.float32
    np.testing.assert_array_equal(ds.features["audio"].ravel(), x.astype(np.float32))
