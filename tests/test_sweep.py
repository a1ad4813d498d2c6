"""`ramer sweep` writes validation scores only: no test metric file, nothing that moves when
the test split's labels do, and leak diagnostics refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.config import Settings
from pipeline.data.dataset import build_table, write_dataset
from pipeline.data.synth import SynthConfig, write_synthetic
from pipeline.errors import RamerError
from pipeline.experiment import protocol
from pipeline.experiment.sweep import write_validation
from pipeline.training.checkpoint import load_json
from pipeline.training.config import load_experiment
from pipeline.training.systems import parse_system

DIMS = {"audio": 12, "visual": 8, "text": 10}
SYSTEMS = ["ramer(k=2|4,query_space=hidden,fill_norm=unit)", "w/o retrieval"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("sweep") / "tiny",
                           SynthConfig(labeled=200, unlabeled=100, dims=DIMS, seed=3))


def experiment(data: Path, tmp: Path, name: str, systems=SYSTEMS, folds=(0, 1)):
    """A tiny experiment's config and settings."""
    cfg = load_experiment(
        None, dataset=str(data), experiment=name, systems=list(systems), folds=list(folds), runs=1,
        **{"train.epochs": 2, "pretrain.epochs": 2, "encoder.d_model": 16, "encoder.hidden": 16,
           "encoder.heads": 2, "encoder.ff": 32, "retrieval.k": 3})
    return cfg, Settings(data_dir=tmp, results_dir=tmp / "results", runs_dir=tmp / "runs")


def sweep(data: Path, tmp: Path, name: str, systems=SYSTEMS, folds=(0, 1)) -> tuple[Path, Path]:
    """Run a tiny sweep the way `ramer sweep` does; (results dir, runs dir)."""
    cfg, st_ = experiment(data, tmp, name, systems, folds)
    out = protocol.run_experiment(cfg, st_, stop_after="sweep")
    write_validation(out.records, out.results_dir, name, "single_label", "fp")
    return out.results_dir, st_.runs_dir / name


def test_sweep_writes_validation_only(tiny, tmp_path):
    results, runs = sweep(tiny.root, tmp_path, "sw")
    assert sorted(p.name for p in results.iterdir()) == ["validation.md", "validation.parquet"]
    units = sorted(runs.glob("f*_r*"))
    assert len(units) == 2
    for unit in units:  # no precision@K (scored on test queries), no stage-4 record (test metrics)
        assert not (unit / "precision.json").exists() and not (unit / "diagnostics.json").exists()
        for path in unit.glob("*.json"):
            record = load_json(path)
            assert not (isinstance(record, dict) and "metrics" in record), path
    rows = pq.read_table(results / "validation.parquet").to_pylist()
    assert {r["system"] for r in rows} == set(SYSTEMS) and {r["fold"] for r in rows} == {0, 1}
    assert not any("test" in c for c in pq.read_table(results / "validation.parquet").column_names)
    sel = parse_system(SYSTEMS[0], load_experiment(None).retrieval)
    for fold in (0, 1):  # the rows are the unit's own fit scores, and its choice
        unit = runs / f"f{fold}_r0"
        choice = load_json(unit / f"{sel.slug}.choice.json")
        mine = [r for r in rows if r["system"] == SYSTEMS[0] and r["fold"] == fold]
        assert {r["variant"]: r["val_score"] for r in mine} == choice["val_scores"]
        assert [r["variant"] for r in mine if r["chosen"]] == [choice["chosen"]]
    # a later `ramer run` reuses the sweep's checkpoints: it tests each unit's own choice, and
    # its stage-4 records are exactly what the check above would have caught
    cfg, st_ = experiment(tiny.root, tmp_path, "sw")
    run = protocol.run_experiment(cfg, st_, resume=True)
    chosen = {(r["fold"], r["variant"]) for r in rows if r["chosen"] and r["system"] == SYSTEMS[0]}
    assert {(r["fold"], r["chosen"]) for r in run.records if r["system"] == SYSTEMS[0]} == chosen
    assert any("metrics" in load_json(p) for p in (runs / "f0_r0").glob("*.json") if p.name != "precision.json")
    md = (results / "validation.md").read_text()
    assert "| ramer(k=2|4,query_space=hidden,fill_norm=unit) | ramer(k=2,query_space=hidden,fill_norm=unit) |" in md


def test_test_labels_cannot_change_any_sweep_output(tiny, tmp_path):
    """Permuting fold 0's test labels leaves every output of a fold-0 sweep byte-equal."""
    rng = np.random.default_rng(1)
    y = tiny.y.copy()
    test = np.flatnonzero(tiny.labeled & (tiny.folds == 0))
    y[test] = rng.permutation(y[test])
    assert (y[test] != tiny.y[test]).any()
    extra = {k: v for k, v in tiny.extra.items() if k != "label_name"}
    table = build_table(tiny.manifest, tiny.samples, y, tiny.labeled, tiny.folds, tiny.features, tiny.present, extra)
    permuted = write_dataset(tmp_path / "permuted", tiny.manifest, table)
    outs = [sweep(d, tmp_path, name, folds=(0,))[0] for d, name in ((tiny.root, "a"), (permuted.root, "b"))]
    for f in ("validation.parquet", "validation.md"):
        a, b = ((o / f).read_bytes().replace(b"# a:", b"# x:").replace(b"# b:", b"# x:") for o in outs)
        assert a == b, f
    # the permutation is not vacuous: the same models' test scores do move with it
    tested = []
    for d, name in ((tiny.root, "a"), (permuted.root, "b")):
        cfg, st_ = experiment(d, tmp_path, name, folds=(0,))
        tested.append([m["value"] for r in protocol.run_experiment(cfg, st_, resume=True).records
                       for m in r["metrics"]])
    assert tested[0] != tested[1]


def test_sweep_refuses_systems_that_look_at_test(tiny, tmp_path):
    with pytest.raises(RamerError, match="never looks at test rows"):
        sweep(tiny.root, tmp_path, "leak", systems=["leaky[stage3-test]:ramer(query_space=hidden,fill_norm=unit)"])


def test_cli_sweep_prints_the_validation_table(tiny, tmp_path, monkeypatch, capsys):
    from pipeline.cli import main

    toml = tmp_path / "tiny.toml"
    toml.write_text('systems = ["ramer(k=2|4,query_space=hidden,fill_norm=unit)"]\nfolds = [0]\nruns = 1\n'
                    "[train]\nepochs = 1\n[pretrain]\nepochs = 1\n"
                    "[encoder]\nd_model = 16\nhidden = 16\nheads = 2\nff = 32\n")
    monkeypatch.setenv("RAMER_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("RAMER_RUNS_DIR", str(tmp_path / "runs"))
    with pytest.raises(SystemExit) as done:
        main(["sweep", str(toml), "--dataset", str(tiny.root), "--experiment", "cli"])
    assert done.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "test never scored" in out and "1/1" in out
    assert sorted(p.name for p in (tmp_path / "results" / "cli").iterdir()) == ["validation.md", "validation.parquet"]
