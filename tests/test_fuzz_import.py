"""Fuzzed bad input against the readers of user files: `ramer data import parquet`
(import_parquet), a dataset directory (`data validate` / `info`, load_dataset), the input
of `ramer predict` and checked .npy reading.

Whatever the file holds, a reader either returns what it read, or raises one `DataError`
(never another exception) and leaves no trace: no output directory, no temporary
directory beside it, and a previous good version intact. Every fuzz test runs under an
address-space cap (conftest `memory_cap`), so a reader that sizes an allocation by a
value in the file fails the test with a MemoryError instead of exhausting the machine.
Example counts come from the hypothesis profile: `ci` (the default: derandomised) or
`fuzz` (5,000 random examples per test, see conftest). Hand-picked bad inputs with their
exact messages live in test_bad_input.py."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pipeline.data import load_dataset
from pipeline.data.bounds import load_npy
from pipeline.data.importers import import_parquet
from pipeline.errors import DataError, RamerError
from pipeline.evaluation.predict import read_input

# No max_examples here: the profile sets it (ci: 100, fixed; fuzz: 5,000, random).
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
INT64 = st.integers(-(2**63), 2**63 - 1)
FLOATS = st.one_of(
    st.floats(-3, 3, allow_nan=False, width=32),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e39]),
)


def invalid_utf8(names: list[str | None], row: int) -> pa.Array:
    """A string array whose cell `row` is not UTF-8 (pyarrow never checks what it reads)."""
    cells = [b"" if v is None else v.encode() for v in names]
    cells[row] = b"s\xff" + cells[row]
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in cells])]).astype(np.int32)
    valid = pa.array([v is not None for v in names]).buffers()[1] if None in names else None
    return pa.Array.from_buffers(pa.string(), len(cells), [valid, pa.py_buffer(offsets.tobytes()),
                                                           pa.py_buffer(b"".join(cells))])


@st.composite
def sample_column(draw, n: int) -> pa.Array | None:
    kind = draw(st.sampled_from(["unique"] * 6 + ["dups", "nulls", "empty", "ints", "absent", "utf8"]))
    names = [f"s{i}" for i in range(n)]
    if kind == "absent":
        return None
    if kind == "ints":
        return pa.array(list(range(n)), pa.int64())
    if n and kind == "utf8":
        return invalid_utf8(names, draw(st.integers(0, n - 1)))
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
    # Small class indices mostly; any int64 on purpose (a flipped byte makes a label huge).
    value = st.one_of(st.none(), st.integers(-1, 4), st.integers(-1, 4), INT64)
    vals = draw(st.lists(value, min_size=n, max_size=n))
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


def good_table(n: int = 12) -> pa.Table:
    rng = np.random.default_rng(0)
    return pa.table({
        "sample": [f"g{i}" for i in range(n)],
        "label": pa.array([i % 2 for i in range(n)], pa.int64()),
        "audio": pa.array(rng.standard_normal((n, 3)).tolist(), pa.list_(pa.float32())),
    })


# Two inputs that once broke the importer, as fixed tables: a label that a
# flipped byte made huge (class names were sized by it), and a sample name that is not UTF-8.
HUGE_LABEL = good_table().set_column(1, "label", pa.array([0, 84606977] * 6, pa.int64()))
BAD_UTF8 = good_table().set_column(0, "sample", invalid_utf8([f"g{i}" for i in range(12)], 5))
NO_LABELED_ROW = pa.table({"sample": ["s0"], "label": pa.array([None], pa.null()),
                           "audio": pa.array([None], pa.list_(pa.float64())), "label_name": ["a"]})


def _good(out: Path) -> None:
    pq.write_table(good_table(), out.with_suffix(".parquet"))
    import_parquet(out.with_suffix(".parquet"), "good", out, folds=2)


def _overwrite(real: bytes, blob: bytes, cut: int, mode: str) -> bytes:
    """Random bytes, a truncated real file, or a real file with bytes overwritten (inside
    its data pages or its footer; the trailing length and magic stay)."""
    if mode == "random":
        return blob
    if mode == "truncated":
        return real[: cut % (len(real) - 1)]
    at = cut % (len(real) - 8)
    piece = blob[: len(real) - 8 - at]
    return real[:at] + piece + real[at + len(piece):]


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


@FUZZ
@example(table=HUGE_LABEL, folds=2, keep_previous=False)
@example(table=NO_LABELED_ROW, folds=2, keep_previous=False)  # found by the fuzz profile
@example(table=BAD_UTF8, folds=2, keep_previous=True)
@given(table=bad_table(), folds=st.integers(2, 3), keep_previous=st.booleans())
def test_fuzzed_tables_fail_cleanly(workdir: Path, memory_cap: int, table: pa.Table, folds: int,
                                    keep_previous: bool) -> None:
    src, out = workdir / "in.parquet", workdir / "out"
    shutil.rmtree(out, ignore_errors=True)
    pq.write_table(table, src)
    before = None
    if keep_previous:
        _good(out)
        before = (out / "features.parquet").read_bytes()
    _check_outcome(src, out, folds, before)


@FUZZ
@example(blob=b"\x8f8\x17\xe0\xf9", cut=579, mode="overwritten")  # metadata -> UnicodeDecodeError
@example(blob=b"L", cut=148, mode="overwritten")  # label -> 83,562,883,710,976: class names sized by it
@example(blob=b"\x97", cut=25, mode="overwritten")  # a sample name that is not UTF-8
@given(blob=st.one_of(st.binary(max_size=300), st.just(b"PAR1" + b"\0" * 64 + b"PAR1")),
       cut=st.integers(0, 2000), mode=st.sampled_from(["random", "truncated", "overwritten"]))
def test_fuzzed_bytes_fail_cleanly(workdir: Path, memory_cap: int, blob: bytes, cut: int, mode: str) -> None:
    """Random bytes, truncated real parquet files, and real ones with bytes overwritten."""
    src, out = workdir / "raw.parquet", workdir / "out_raw"
    shutil.rmtree(out, ignore_errors=True)
    good = workdir / "good.parquet"
    if not good.exists():
        _good(workdir / "good")
    src.write_bytes(_overwrite(good.read_bytes(), blob, cut, mode))
    _check_outcome(src, out, 2, None)


@pytest.fixture(scope="module")
def dataset_dir(workdir: Path) -> Path:
    """A small good dataset directory whose files the dataset fuzz test corrupts copies of."""
    root = workdir / "dsgood"
    if not root.exists():
        _good(root)
    return root


@FUZZ
# Corrupt chunk statistics: pyarrow aborts the process if its column chunk metadata is
# read directly, and reports an error when the data is read (bounds.parquet_footprint).
@example(blob=b"\xf5\x03\t", cut=2517, target="features.parquet")
@example(blob=b"\n", cut=288, target="features.parquet")  # a label_name '\n', quoted by the error: escaped
@given(blob=st.binary(min_size=1, max_size=16), cut=st.integers(0, 10_000),
       target=st.sampled_from(["features.parquet", "features.parquet", "manifest.json"]))
def test_fuzzed_dataset_directory_fails_cleanly(workdir: Path, dataset_dir: Path, memory_cap: int, blob: bytes,
                                                cut: int, target: str) -> None:
    """`ramer data validate` / `info` / every command's dataset reader on a corrupted copy."""
    root = workdir / "dsfuzz"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(dataset_dir, root)
    path = root / target
    path.write_bytes(_overwrite(path.read_bytes(), blob, cut, "overwritten"))
    try:
        ds = load_dataset(root)
    except DataError as exc:
        assert str(exc) and "\n" not in str(exc).strip(), "one line"
    else:
        assert len(ds) == 12


@FUZZ
@given(blob=st.binary(min_size=1, max_size=16), cut=st.integers(0, 5000),
       mode=st.sampled_from(["truncated", "overwritten", "overwritten"]))
def test_fuzzed_predict_input_fails_cleanly(workdir: Path, memory_cap: int, blob: bytes, cut: int, mode: str) -> None:
    """`ramer predict --input`: any subset of modalities per row, each checked like an import."""
    good = workdir / "predict_good.parquet"
    if not good.exists():
        rng = np.random.default_rng(1)
        rows = [None if i % 4 == 0 else rng.standard_normal(2).tolist() for i in range(10)]
        pq.write_table(pa.table({"sample": [f"p{i}" for i in range(10)],
                                 "audio": pa.array(rng.standard_normal((10, 3)).tolist(), pa.list_(pa.float32())),
                                 "text": pa.array(rows, pa.list_(pa.float32()))}), good)
    src = workdir / "predict_in.parquet"
    src.write_bytes(_overwrite(good.read_bytes(), blob, cut, mode))
    try:
        samples, xs, avail = read_input(src, ["audio", "text"], [3, 2])
    except DataError as exc:
        assert str(exc) and "\n" not in str(exc).strip(), "one line"
    else:
        assert [x.shape[1] for x in xs] == [3, 2] and avail.shape == (len(samples), 2)


@FUZZ
@example(blob=b"(4000000000,)}", cut=60)  # a header shape (16 GB) numpy would allocate before reading
@given(blob=st.binary(min_size=1, max_size=16), cut=st.integers(0, 200))
def test_fuzzed_npy_fails_cleanly(workdir: Path, memory_cap: int, blob: bytes, cut: int) -> None:
    """Per-sample .npy features (MER2024), IEMOCAP's targets, sequences/ lengths."""
    good = workdir / "good.npy"
    if not good.exists():
        np.save(good, np.arange(10, dtype=np.float32))
    src = workdir / "fuzz.npy"
    src.write_bytes(_overwrite(good.read_bytes(), blob, cut, "overwritten"))
    try:
        arr = load_npy(src)
    except DataError as exc:
        assert str(exc) and "\n" not in str(exc).strip(), "one line"
    else:
        assert arr.nbytes <= src.stat().st_size


def test_cli_reports_a_fuzzed_failure_as_one_line(workdir: Path) -> None:
    """The CLI path: a DataError reaches `main()`, which prints one red line and exits 1."""
    from pipeline.cli import _register, app

    _register()
    src = workdir / "cli.parquet"
    pq.write_table(pa.table({"sample": ["a", "a"], "label": [0, 1], "audio": [[1.0], [2.0]]}), src)
    res = CliRunner().invoke(app, ["data", "import", "parquet", str(src), "--name", "c", "--out", str(workdir / "cli_out")])
    assert isinstance(res.exception, RamerError) and "duplicate sample name 'a'" in str(res.exception)
    assert not (workdir / "cli_out").exists()


# Runs `main()` on each file in one child process under an 8 GB address-space limit;
# prints, per file, its exit code and stderr between markers.
UNDER_8GB = r"""
import contextlib, io, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (8 << 30, resource.getrlimit(resource.RLIMIT_AS)[1]))
from pipeline.cli import main
for src, out in zip(sys.argv[1::2], sys.argv[2::2]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(["data", "import", "parquet", src, "--name", "x", "--out", out])
            code = 0
        except SystemExit as exc:
            code = exc.code
    print(f"=== {code}\n{err.getvalue()}", end="")
"""


def test_the_issue_files_give_one_line_under_8gb(tmp_path: Path) -> None:
    """The entry point under an 8 GB address-space limit, on both kinds of input as tables
    and as the real file with the byte overwritten: one line, exit 1, no traceback,
    nothing written."""
    pq.write_table(good_table(), tmp_path / "good.parquet")
    real = (tmp_path / "good.parquet").read_bytes()
    cases = {"huge_label": HUGE_LABEL, "invalid_utf8": BAD_UTF8,
             "huge_label_bytes": (b"L", 148), "invalid_utf8_bytes": (b"\x97", 25)}
    args = []
    for case, made in cases.items():
        src = tmp_path / f"{case}.parquet"
        if isinstance(made, pa.Table):
            pq.write_table(made, src)
        else:
            src.write_bytes(_overwrite(real, *made, "overwritten"))
        args += [str(src), str(tmp_path / f"out_{case}")]
    res = subprocess.run([sys.executable, "-c", UNDER_8GB, *args], capture_output=True, text=True, timeout=300,
                         check=False)
    assert res.returncode == 0 and "Traceback" not in res.stdout + res.stderr, res.stdout[-2000:] + res.stderr[-2000:]
    reports = res.stdout.split("=== ")[1:]
    assert len(reports) == len(cases), res.stdout
    for case, report in zip(cases, reports):
        code, *lines = [ln for ln in report.splitlines() if ln.strip()]
        assert code == "1" and len(lines) == 1 and lines[0].startswith("error:"), (case, report)
        assert f"{case}.parquet" in lines[0]
        assert ("out of range" if "label" in case else "not valid UTF-8") in lines[0], (case, lines[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["good.parquet", *(f"{c}.parquet" for c in cases)])
