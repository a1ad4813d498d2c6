"""`ramer predict` under bad input, bad output paths and corrupt checkpoints:
every case is one error line, exit 1, the input untouched and no output or temporary
file left; `--overwrite` is the only way to replace an existing output (never the input).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.config import Settings
from pipeline.data.synth import SynthConfig, write_synthetic
from pipeline.experiment import protocol
from pipeline.training.config import load_experiment

DIMS = {"audio": 6, "visual": 4, "text": 5}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("predfault")
    ds = write_synthetic(root / "tiny", SynthConfig(labeled=120, unlabeled=0, dims=DIMS, seed=5))
    cfg = load_experiment(None, dataset=str(ds.root), experiment="p", systems=["lr"], folds=[0], runs=1,
                          ingest=False, **{"train.epochs": 2, "pretrain.epochs": 2})
    protocol.run_experiment(cfg, Settings(_env_file=None, data_dir=root, results_dir=root / "results",
                                          runs_dir=root / "runs", threads=1))
    return ds, root


@pytest.fixture()
def world(trained, tmp_path, monkeypatch):
    """A copy of the trained experiment (a test may corrupt it) and a good input."""
    ds, root = trained
    shutil.copytree(root / "runs", tmp_path / "runs")
    monkeypatch.setenv("RAMER_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("RAMER_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("RAMER_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    good = tmp_path / "in.parquet"
    pq.write_table(_table(ds, range(4)), good)
    return ds, tmp_path, good


def _table(ds, rows, **replace) -> pa.Table:
    cols = {"sample": pa.array([ds.samples[r] for r in rows])}
    for m in ds.modalities:
        cols[m] = pa.array([ds.features[m][r].tolist() for r in rows], pa.list_(pa.float32()))
    cols.update(replace)
    return pa.table(cols)


def _predict(capsys, *args: str) -> tuple[int, list[str]]:
    with pytest.raises(SystemExit) as done:
        main(["predict", "-e", "p", "--system", "lr", *args])
    err = capsys.readouterr().err
    return done.value.code, [ln for ln in err.splitlines() if ln.strip()]


def _refused(capsys, *args: str, says: str) -> str:
    code, lines = _predict(capsys, *args)
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error:"), lines
    assert says in lines[0], lines[0]
    return lines[0]


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if "runs" not in p.parts}


def test_the_output_never_replaces_the_input_nor_an_existing_file(world, capsys):
    _, tmp, good = world
    original = good.read_bytes()
    _refused(capsys, "-i", str(good), "-o", str(good), says="is the input file")
    _refused(capsys, "-i", str(good), "-o", f"{tmp}/./in.parquet", "--overwrite", says="is the input file")
    assert good.read_bytes() == original
    other = tmp / "old.parquet"
    other.write_bytes(b"keep me")
    _refused(capsys, "-i", str(good), "-o", str(other), says="pass --overwrite")
    assert other.read_bytes() == b"keep me"
    _refused(capsys, "-i", str(good), "-o", str(tmp), says="is a folder")
    code, _ = _predict(capsys, "-i", str(good), "-o", str(other), "--overwrite")
    assert code == 0 and pq.read_table(other).num_rows == 4
    assert not [p for p in tmp.iterdir() if p.name.startswith(".")], "a temporary file was left"


def test_a_read_only_output_folder_is_one_line(world, capsys):
    _, tmp, good = world
    out = tmp / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        import os

        if os.access(out, os.W_OK):  # root: a read-only folder is writable all the same
            pytest.skip("running as root")
        _refused(capsys, "-i", str(good), "-o", str(out / "p.parquet"), says="cannot write")
    finally:
        out.chmod(0o755)
    assert list(out.iterdir()) == []


BAD_INPUTS = {
    "zero rows": (lambda ds: _table(ds, []), "no rows"),
    "duplicate samples": (lambda ds: _table(ds, [0, 1, 0]), "appears 2 times"),
    "misspelled modality": (lambda ds: _table(ds, range(3)).rename_columns(["sample", "audio", "visual", "sound"]),
                            "'sound'"),
    "string lists": (lambda ds: _table(ds, range(2), audio=pa.array([["1"] * 6] * 2)), "column 'audio'"),
    "bool lists": (lambda ds: _table(ds, range(2), audio=pa.array([[True] * 6] * 2)), "column 'audio'"),
    "huge values": (lambda ds: _table(ds, range(3), audio=pa.array([[3e38] * 6] * 3, pa.list_(pa.float32())),
                                      visual=pa.array([[-3e38] * 4] * 3, pa.list_(pa.float32()))),
                    "non-finite"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_and_writes_nothing(world, capsys, case):
    ds, tmp, _ = world
    make, says = BAD_INPUTS[case]
    path = tmp / "bad.parquet"
    pq.write_table(make(ds), path)
    before = _files(tmp)
    _refused(capsys, "-i", str(path), says=says)
    assert _files(tmp) == before


def test_duplicate_columns_are_one_line(world, capsys):
    ds, tmp, _ = world
    t = _table(ds, range(2))
    dup = pa.Table.from_arrays([t.column(0), t.column(1), t.column(1)], names=["sample", "audio", "audio"])
    path = tmp / "dup.parquet"
    pq.write_table(dup, path)
    _refused(capsys, "-i", str(path), says="more than once")


def _run_dir(tmp: Path) -> Path:
    return tmp / "runs" / "p" / "f0_r0"


CORRUPT = {
    "truncated model": (lambda d: (d / "lr.pt").write_bytes((d / "lr.pt").read_bytes()[:50]), "lr.pt"),
    "empty model": (lambda d: (d / "lr.pt").write_bytes(b""), "lr.pt"),
    "bad preprocessing": (lambda d: (d / "preprocess.npz").write_bytes(b"PK\x03\x04garbage"), "preprocess.npz"),
    "bad unit record": (lambda d: (d / "unit.json").write_text("{nope"), "unit.json"),
    "unit record a list": (lambda d: (d / "unit.json").write_text("[1, 2]"), "unit.json"),
    "bad experiment config": (lambda d: (d.parent / "config.json").write_text('{"runs": "x"'), "config.json"),
    "wrong config value": (lambda d: (d.parent / "config.json").write_text('{"runs": "three"}'), "config.json"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_a_corrupt_checkpoint_is_one_line_naming_it_and_the_way_out(world, capsys, case):
    _, tmp, good = world
    corrupt, name = CORRUPT[case]
    corrupt(_run_dir(tmp))
    line = _refused(capsys, "-i", str(good), says=name)
    assert any(way in line for way in ("--fresh", "re-run", "delete")), line
    assert not (tmp / "in.preds.parquet").exists()


def test_valid_input_still_predicts(world, capsys):
    ds, tmp, good = world
    code, lines = _predict(capsys, "-i", str(good))
    assert code == 0, lines
    table = pq.read_table(tmp / "in.preds.parquet")
    assert table.column("sample").to_pylist() == [ds.samples[r] for r in range(4)]
    assert np.isfinite(np.array([table.column(c).to_pylist() for c in table.column_names if c.startswith("p_")])).all()
