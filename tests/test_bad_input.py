"""Bad input: one clear DataError line (file, row/sample, rule), exit 1, nothing written.

Every importer case runs through the Python API and the CLI and checks that the output
directory does not exist afterwards, and that a previous good version survives.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_fuzz_import import invalid_utf8
from typer.testing import CliRunner

from pipeline.data import load_dataset, write_dataset
from pipeline.data.importers import import_parquet
from pipeline.data.synth import SynthConfig, write_synthetic
from pipeline.errors import DataError

CLASSES = ["neutral", "angry", "happy"]
N = 30


def good_columns() -> dict[str, pa.Array]:
    rng = np.random.default_rng(0)
    cols = {
        "sample": pa.array([f"u{i:02d}" for i in range(N)]),
        "label": pa.array(np.arange(N) % 3, pa.int64(), mask=np.arange(N) >= 24),
    }
    for name, d in (("audio", 4), ("text", 3)):
        cols[name] = pa.array(rng.standard_normal((N, d)).tolist(), pa.list_(pa.float64()))
    return cols


def with_col(name, values, type_=None):
    def edit(cols):
        cols[name] = pa.array(values, type_)
        return cols

    return edit


def set_row(col, row, value):
    def edit(cols):
        rows = cols[col].to_pylist()
        rows[row] = value
        cols[col] = pa.array(rows, cols[col].type)
        return cols

    return edit


def _dup(cols):
    names = cols["sample"].to_pylist()
    names[7] = names[2]
    cols["sample"] = pa.array(names)
    return cols


def _no_modality(cols):
    for m in ("audio", "text"):
        rows = cols[m].to_pylist()
        rows[5] = None
        cols[m] = pa.array(rows, cols[m].type)
    return cols


def _rename(old, new):
    def edit(cols):
        cols[new] = cols.pop(old)
        return cols

    return edit


# id -> (edit of the good columns, extra import kwargs, fragments the message must contain)
CASES = {
    "duplicate_sample": (_dup, {}, ["duplicate sample name 'u02'", "rows 2 and 7", "unique"]),
    # a value quoted from the file keeps the message one line: its line break is escaped
    "line_break_in_name": (
        lambda c: {**c, "sample": pa.array(["a\nb" if i in (2, 7) else f"u{i:02d}" for i in range(N)])},
        {},
        ["duplicate sample name 'a\\nb'", "rows 2 and 7"],
    ),
    "ragged_dims": (
        set_row("audio", 9, [1.0, 2.0]),
        {},
        ["column 'audio' row 9 'u09'", "2 values, expected 4", "ragged"],
    ),
    "nan_value": (
        set_row("text", 11, [0.0, float("nan"), 1.0]),
        {},
        ["column 'text' row 11 'u11'", "NaN/inf"],
    ),
    "inf_value": (
        set_row("audio", 0, [0.0, float("inf"), 1.0, 2.0]),
        {},
        ["row 0 'u00'", "NaN/inf"],
    ),
    "null_inside_value": (
        set_row("audio", 4, [0.0, None, 1.0, 2.0]),
        {},
        ["row 4 'u04'", "null value"],
    ),
    "label_out_of_range": (
        set_row("label", 13, 5),
        {"classes": CLASSES},
        ["label 5 at row 13 'u13'", "out of range 0..2"],
    ),
    "label_negative": (set_row("label", 1, -1), {}, ["label -1 at row 1 'u01'", "out of range"]),
    # a flipped byte made a label huge: checked before any class list is sized by it
    "label_beyond_class_bound": (
        set_row("label", 13, 84606977),
        {},
        ["label 84606977 at row 13 'u13'", "out of range 0..999", "--classes"],
    ),
    "label_gap": (
        with_col("label", [(i % 2) * 2 for i in range(N)], pa.int64()),
        {},
        ["int labels run 0..2", "class(es) [1] have no labeled row", "contiguous"],
    ),
    "sample_invalid_utf8": (
        lambda c: {**c, "sample": invalid_utf8(c["sample"].to_pylist(), 4)},
        {},
        ["column 'sample' row 4", "not valid UTF-8"],
    ),
    "label_name_unknown": (
        with_col(
            "label", [["neutral", "angry", "happy"][i % 3] if i != 6 else "bored" for i in range(N)]
        ),
        {"classes": CLASSES},
        ["label 'bored' at row 6 'u06'", "not one of the classes"],
    ),
    "label_name_disagrees": (
        with_col("label_name", [CLASSES[i % 3] if i != 7 else "happy" for i in range(N)]),
        {"classes": CLASSES},
        ["label_name 'happy' at row 7 'u07'", "disagrees with label"],
    ),
    "float_labels": (
        with_col("label", np.arange(N) * 0.5),
        {},
        ["column 'label'", "int class indices or string"],
    ),
    "unknown_modality": (
        _rename("text", "depth"),
        {"modalities": ["audio", "text"]},
        ["['depth']", "unknown modality"],
    ),
    "unknown_column": (
        with_col("valence", np.zeros(N)),
        {},
        ["column 'valence'", "unknown column"],
    ),
    "non_numeric_modality": (
        with_col("text", [["a", "b"]] * N),
        {},
        ["modality column 'text'", "not numbers"],
    ),
    "no_modality_for_sample": (_no_modality, {}, ["row 5 'u05'", "no modality"]),
    "null_sample": (set_row("sample", 3, None), {}, ["row 3", "no sample name"]),
    "missing_label_column": (
        lambda c: {k: v for k, v in c.items() if k != "label"},
        {},
        ["missing required column 'label'"],
    ),
    "too_few_labeled": (
        with_col("label", [0, 1] + [None] * (N - 2), pa.int64()),
        {},
        ["2 labeled row(s)", "5 folds"],
    ),
    "all_null_modality": (
        with_col("text", [None] * N, pa.list_(pa.float32())),
        {},
        ["'text' is null on every row"],
    ),
}


def make_input(tmp_path, case) -> tuple:
    edit, kwargs, fragments = CASES[case]
    path = tmp_path / f"{case}.parquet"
    pq.write_table(pa.table(edit(good_columns())), path, row_group_size=8)
    return path, kwargs, fragments


def test_good_columns_import(tmp_path):
    path = tmp_path / "good.parquet"
    pq.write_table(pa.table(good_columns()), path)
    ds = import_parquet(path, "good", tmp_path / "good", classes=CLASSES)
    assert ds.manifest.dims == [4, 3]


@pytest.mark.parametrize("case", sorted(CASES))
def test_import_rejects_via_api(tmp_path, case):
    src, kwargs, fragments = make_input(tmp_path, case)
    out = tmp_path / "out"
    with pytest.raises(DataError) as err:
        import_parquet(src, "x", out, **kwargs)
    msg = str(err.value)
    assert "\n" not in msg and str(src) in msg
    for f in fragments:
        assert f in msg, (f, msg)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]  # no temp dirs either


@pytest.fixture(scope="module")
def cli():
    import pipeline.cli as root

    if not any(g.name == "data" for g in root.app.registered_groups):
        root._register()
    runner = CliRunner()

    def run(*args: str):
        res = runner.invoke(root.app, [str(a) for a in args])
        exc = res.exception
        msg = str(exc) if exc is not None and not isinstance(exc, SystemExit) else res.output
        code = 1 if isinstance(exc, DataError) else res.exit_code  # main() maps RamerError -> 1
        return code, msg

    return run


@pytest.mark.parametrize("case", sorted(CASES))
def test_import_rejects_via_cli(tmp_path, cli, case):
    src, kwargs, fragments = make_input(tmp_path, case)
    out = tmp_path / "out"
    args = ["data", "import", "parquet", src, "--name", "x", "--out", out]
    if "classes" in kwargs:
        args += ["--classes", ",".join(kwargs["classes"])]
    if "modalities" in kwargs:
        args += ["--modalities", ",".join(kwargs["modalities"])]
    code, msg = cli(*args)
    assert code == 1
    for f in fragments:
        assert f in msg, (f, msg)
    assert not out.exists()


def test_previous_good_version_stays(tmp_path):
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table(good_columns()), good)
    out = tmp_path / "ds"
    import_parquet(good, "ds", out, classes=CLASSES)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    src, kwargs, _ = make_input(tmp_path, "nan_value")
    with pytest.raises(DataError):
        import_parquet(src, "ds", out, **kwargs)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ds", "good.parquet", src.name])
    # and the same through write_dataset with a table that breaks a rule
    ds = load_dataset(out)
    table = pq.read_table(out / "features.parquet")
    bad = table.set_column(0, "sample", pa.array(["u00"] * table.num_rows))
    with pytest.raises(DataError, match="duplicate sample names"):
        write_dataset(out, ds.manifest, bad)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("kind", ["missing", "empty_bytes", "csv", "zero_rows", "directory"])
def test_bad_input_file(tmp_path, cli, kind):
    src = tmp_path / "in.parquet"
    fragment = {
        "missing": "input file not found",
        "empty_bytes": "not a parquet file",
        "csv": "not a parquet file",
        "zero_rows": "empty file",
        "directory": "not a file",
    }[kind]
    if kind == "empty_bytes":
        src.write_bytes(b"")
    elif kind == "csv":
        src = tmp_path / "in.csv"
        src.write_text("sample,label\na,1\n")
    elif kind == "zero_rows":
        pq.write_table(pa.table(good_columns()).slice(0, 0), src)
    elif kind == "directory":
        src.mkdir()
    out = tmp_path / "out"
    with pytest.raises(DataError, match=fragment) as err:
        import_parquet(src, "x", out)
    assert str(src.resolve()) in str(err.value)
    code, msg = cli("data", "import", "parquet", src, "--name", "x", "--out", out)
    assert code == 1 and fragment in msg
    assert not out.exists()


# ---------------------------------------------------------------- existing dataset directories


@pytest.fixture()
def dataset(tmp_path):
    cfg = SynthConfig(labeled=60, unlabeled=20, dims={"audio": 4, "visual": 3, "text": 5}, folds=3)
    return write_synthetic(tmp_path / "ds", cfg).root


def _edit_manifest(fn):
    def edit(root):
        path = root / "manifest.json"
        man = json.loads(path.read_text())
        fn(man)
        path.write_text(json.dumps(man))

    return edit


def _edit_table(fn):
    def edit(root):
        path = root / "features.parquet"
        table = pq.read_table(path)
        pq.write_table(fn(table), path)

    return edit


def _set_column(name, values_fn):
    def fn(t):
        return t.set_column(t.schema.get_field_index(name), name, values_fn(t))

    return fn


def _nan_in_text(t):
    x = np.asarray(t.column("text").combine_chunks().flatten()).copy()
    x[5 * 5 + 2] = np.nan
    return pa.FixedSizeListArray.from_arrays(pa.array(x, pa.float32()), 5)


DIR_CASES = {
    "manifest_dim_mismatch": (
        _edit_manifest(lambda m: m["modalities"][2].update(dim=6)),
        ["column 'text'", "fixed_size_list<float32>[6]", "manifest disagrees with table"],
    ),
    "manifest_extra_modality": (
        _edit_manifest(lambda m: m["modalities"].append({"name": "physio", "dim": 2})),
        ["missing column 'physio'", "manifest disagrees"],
    ),
    "table_unknown_modality": (
        _edit_manifest(lambda m: m["modalities"].pop(1)),
        ["['visual']", "unknown modality"],
    ),
    "manifest_invalid_field": (
        _edit_manifest(lambda m: m.update(folds=1)),
        ["manifest.json", "invalid manifest field 'folds'"],
    ),
    "manifest_too_many_folds": (
        _edit_manifest(lambda m: m.update(folds=1_000_000)),
        ["manifest.json", "invalid manifest field 'folds'", "127"],
    ),
    "features_invalid_utf8": (
        _edit_table(_set_column("speaker", lambda t: invalid_utf8([f"spk{i}" for i in range(t.num_rows)], 3))),
        ["column 'speaker' row 3", "not valid UTF-8"],
    ),
    "manifest_not_json": (
        lambda root: (root / "manifest.json").write_text("{oops"),
        ["not valid JSON"],
    ),
    "manifest_missing": (lambda root: (root / "manifest.json").unlink(), ["manifest not found"]),
    "features_missing": (
        lambda root: (root / "features.parquet").unlink(),
        ["features table not found"],
    ),
    "features_not_parquet": (
        lambda root: (root / "features.parquet").write_text("x"),
        ["not a readable parquet"],
    ),
    "duplicate_sample": (
        _edit_table(
            _set_column(
                "sample", lambda t: pa.array(["lab_000001"] + t.column("sample").to_pylist()[1:])
            )
        ),
        ["duplicate sample names ['lab_000001']"],
    ),
    "nan_value": (
        _edit_table(_set_column("text", _nan_in_text)),
        ["NaN/inf in modality 'text'", "row 5 'lab_000005'"],
    ),
    "label_out_of_range": (
        _edit_table(
            _set_column(
                "label", lambda t: pa.array([9] + t.column("label").to_pylist()[1:], pa.int32())
            )
        ),
        ["label out of range 0..5", "row 0 'lab_000000'"],
    ),
    "label_name_not_in_manifest": (
        _edit_table(
            _set_column(
                "label_name", lambda t: pa.array(["bored"] + t.column("label_name").to_pylist()[1:])
            )
        ),
        ["label_name 'bored' of row 0 'lab_000000'", "manifest.json"],
    ),
    "unlabeled_with_label_name": (
        _edit_table(
            _set_column(
                "label_name", lambda t: pa.array(t.column("label_name").to_pylist()[:-1] + ["sad"])
            )
        ),
        ["unlabeled row(s) carry a label_name", "unl_000019"],
    ),
    "bad_fold": (
        _edit_table(
            _set_column(
                "fold", lambda t: pa.array([7] + t.column("fold").to_pylist()[1:], pa.int8())
            )
        ),
        ["'fold' must be 0..2", "row 0"],
    ),
    "empty_table": (_edit_table(lambda t: t.slice(0, 0)), ["empty table"]),
    "duplicate_column": (
        _edit_table(lambda t: pa.Table.from_arrays([*t.columns, t.column("sample")], names=[*t.column_names, "sample"])),
        ["duplicate column name(s) ['sample']"],
    ),
}


@pytest.mark.parametrize("case", sorted(DIR_CASES))
def test_validate_rejects(dataset, cli, case):
    edit, fragments = DIR_CASES[case]
    edit(dataset)
    with pytest.raises(DataError) as err:
        load_dataset(dataset)
    msg = str(err.value)
    assert "\n" not in msg and str(dataset) in msg
    for f in fragments:
        assert f in msg, (f, msg)
    for cmd in ("validate", "info"):
        code, out = cli("data", cmd, dataset)
        assert code == 1 and fragments[0] in out, out


def test_missing_dataset_directory(tmp_path, cli):
    with pytest.raises(DataError, match="dataset directory not found"):
        load_dataset(tmp_path / "nope")
    code, msg = cli("data", "validate", tmp_path / "nope")
    assert code == 1 and "dataset directory not found" in msg


def _ramer(*args):
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_console_entry_point_exit_codes(tmp_path, dataset):
    """The real entry point: one red line on stderr, exit 1, no traceback, no output dir."""
    src, _, _ = make_input(tmp_path, "duplicate_sample")
    out = tmp_path / "out"
    res = _ramer("data", "import", "parquet", src, "--name", "x", "--out", out)
    assert res.returncode == 1, res.stderr
    assert "error:" in res.stderr and "duplicate sample name 'u02'" in res.stderr
    assert "Traceback" not in res.stderr and not out.exists()
    res = _ramer("data", "validate", dataset)
    assert res.returncode == 0 and res.stdout.startswith("OK"), res.stdout + res.stderr
