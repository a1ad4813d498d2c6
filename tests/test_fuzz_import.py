"""Fuzzed bad input against `ramer data import parquet` (import_parquet).

Whatever the file holds, the importer either publishes a dataset that loads and
validates, or raises one `DataError` (never another exception) and leaves no trace: no
output directory, no temporary directory beside it, and a previous good version intact.
Hand-picked bad inputs with their exact messages live in test_bad_input.py."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pipeline.data import load_dataset
from pipeline.data.importers import import_parquet
from pipeline.errors import DataError, RamerError

FLOATS = st.one_of(
    st.floats(-3, 3, allow_nan=False, width=32),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e39]),
)


@st.composite
def sample_column(draw, n: int) -> pa.Array | None:
    kind = draw(st.sampled_from(["unique"] * 6 + ["dups", "nulls", "empty", "ints", "absent"]))
    names = [f"s{i}" for i in range(n)]
    if kind == "absent":
        return None
    if kind == "ints":
        return pa.array(list(range(n)), pa.int64())
    if n and kind == "dups":
        names[draw(st.integers(0, n - 1))] = names[0]
    if n and kind == "empty":
        names[draw(st.integers(0, n - 1))] = ""
    if n and kind == "nulls":
        names[draw(st.integers(0, n - 1))] = None
    return pa.array(names, pa.string())


@st.composite
def label_column(draw, n: int) -> pa.Array | None:
    kind = draw(st.sampled_from(["int"] * 5 + ["str", "float", "bool", "allnull", "absent"]))
    if kind == "absent":
        return None
    if kind == "allnull":
        return pa.array([None] * n, pa.null())
    vals = draw(st.lists(st.one_of(st.none(), st.integers(-1, 4)), min_size=n, max_size=n))
    if kind == "int":
        return pa.array(vals, pa.int64())
    if kind == "str":
        return pa.array([None if v is None else ["calm", "joy", "fear", "x"][v % 4] for v in vals], pa.string())
    if kind == "float":
        return pa.array([None if v is None else v + 0.5 for v in vals], pa.float64())
    return pa.array([None if v is None else bool(v % 2) for v in vals], pa.bool_())


@st.composite
def modality_column(draw, n: int) -> pa.Array:
    kind = draw(st.sampled_from(["list"] * 6 + ["fixed", "strings", "scalar"]))
    dim = draw(st.integers(1, 3))
    if kind == "scalar":
        return pa.array(draw(st.lists(FLOATS, min_size=n, max_size=n)), pa.float64())
    rows = []
    for _ in range(n):
        if draw(st.integers(0, 9)) == 0:
            rows.append(None)  # absent modality: allowed
            continue
        d = dim if draw(st.integers(0, 14)) else dim + 1  # occasionally ragged
        row = draw(st.lists(FLOATS, min_size=d, max_size=d)) if draw(st.integers(0, 3)) else [0.5] * d
        if draw(st.integers(0, 19)) == 0:
            row[0] = None  # a null inside a present value
        rows.append(row)
    if kind == "strings":
        return pa.array([None if r is None else [str(v) for v in r] for r in rows], pa.list_(pa.string()))
    if kind == "fixed":
        rows = [None if r is None else (r + [0.0] * dim)[:dim] for r in rows]
        return pa.array(rows, pa.list_(pa.float32(), dim))
    return pa.array(rows, pa.list_(pa.float64()))


@st.composite
def bad_table(draw) -> pa.Table:
    n = draw(st.integers(0, 8))
    cols: dict[str, pa.Array] = {}
    for name, strategy in (("sample", sample_column(n)), ("label", label_column(n))):
        col = draw(strategy)
        if col is not None:
            cols[name] = col
    for m in draw(st.lists(st.sampled_from(["audio", "visual", "text", "aux"]), max_size=3, unique=True)):
        cols[m] = draw(modality_column(n))
    extra = draw(st.sampled_from([None, "speaker", "fold", "labels", "weird", "label_name"]))
    if extra is not None:
        cols[extra] = pa.array([draw(st.sampled_from(["a", "b", None])) for _ in range(n)], pa.string())
    if not cols:
        cols["sample"] = pa.array([], pa.string())
    return pa.table(cols)


def _good(out: Path) -> None:
    rng = np.random.default_rng(0)
    table = pa.table({
        "sample": [f"g{i}" for i in range(12)],
        "label": pa.array([i % 2 for i in range(12)], pa.int64()),
        "audio": pa.array(rng.standard_normal((12, 3)).tolist(), pa.list_(pa.float32())),
    })
    pq.write_table(table, out.with_suffix(".parquet"))
    import_parquet(out.with_suffix(".parquet"), "good", out, folds=2)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _check_outcome(src: Path, out: Path, folds: int, before: bytes | None) -> None:
    try:
        ds = import_parquet(src, "fz", out, folds=folds)
    except DataError as exc:
        assert str(exc) and "\n" not in str(exc).strip(), "one line"
        if before is None:
            assert not out.exists(), "nothing written on error"
        else:
            assert (out / "features.parquet").read_bytes() == before, "the previous good version stays"
    else:
        assert load_dataset(out).manifest.name == ds.manifest.name == "fz"
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    assert not leftovers, f"half-written directories left: {leftovers}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=bad_table(), folds=st.integers(2, 3), keep_previous=st.booleans())
def test_fuzzed_tables_fail_cleanly(workdir: Path, table: pa.Table, folds: int, keep_previous: bool) -> None:
    src, out = workdir / "in.parquet", workdir / "out"
    shutil.rmtree(out, ignore_errors=True)
    pq.write_table(table, src)
    before = None
    if keep_previous:
        _good(out)
        before = (out / "features.parquet").read_bytes()
    _check_outcome(src, out, folds, before)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(blob=b"\x8f8\x17\xe0\xf9", cut=579, mode="overwritten")  # metadata -> UnicodeDecodeError
@given(blob=st.one_of(st.binary(max_size=300), st.just(b"PAR1" + b"\0" * 64 + b"PAR1")),
       cut=st.integers(0, 2000), mode=st.sampled_from(["random", "truncated", "overwritten"]))
def test_fuzzed_bytes_fail_cleanly(workdir: Path, blob: bytes, cut: int, mode: str) -> None:
    """Random bytes, truncated real parquet files, and real ones with bytes overwritten."""
    src, out = workdir / "raw.parquet", workdir / "out_raw"
    shutil.rmtree(out, ignore_errors=True)
    good = workdir / "good.parquet"
    if not good.exists():
        _good(workdir / "good")
    real = good.read_bytes()
    if mode == "random":
        data = blob
    elif mode == "truncated":
        data = real[: cut % (len(real) - 1)]
    else:  # inside the data pages or the footer: decoding must fail cleanly, or succeed
        at = cut % (len(real) - 8)
        data = real[:at] + blob[: len(real) - 8 - at] + real[at + len(blob[: len(real) - 8 - at]):]
    src.write_bytes(data)
    _check_outcome(src, out, 2, None)


def test_cli_reports_a_fuzzed_failure_as_one_line(workdir: Path) -> None:
    """The CLI path: a DataError reaches `main()`, which prints one red line and exits 1."""
    from pipeline.cli import _register, app

    _register()
    src = workdir / "cli.parquet"
    pq.write_table(pa.table({"sample": ["a", "a"], "label": [0, 1], "audio": [[1.0], [2.0]]}), src)
    res = CliRunner().invoke(app, ["data", "import", "parquet", str(src), "--name", "c", "--out", str(workdir / "cli_out")])
    assert isinstance(res.exception, RamerError) and "duplicate sample name 'a'" in str(res.exception)
    assert not (workdir / "cli_out").exists()
