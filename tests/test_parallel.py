"""`--jobs N`: (fold, run) units in worker processes give the serial run's numbers, the
parent alone writes the embedded store, resume works, and a failing unit is one error."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.experiment import protocol
from pipeline.experiment.parallel import threads_per_job
from pipeline.experiment.results import write_results
from pipeline.store.ingest import collection_name
from pipeline.store.qdrant_store import HiddenFeatureStore
from pipeline.training.config import load_experiment

TINY = {"folds": [0, 1], "runs": 1, "train.epochs": 2, "pretrain.epochs": 2, "encoder.d_model": 16,
        "encoder.hidden": 16, "encoder.heads": 2, "encoder.ff": 32, "encoder.layers": 1, "retrieval.k": 3,
        "systems": ["ramer", "lr"]}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from pipeline.data.synth import SynthConfig, write_synthetic

    data = tmp_path_factory.mktemp("par") / "tiny"
    write_synthetic(data, SynthConfig(labeled=150, unlabeled=60, dims={"audio": 8, "visual": 6, "text": 10}, seed=4))
    return data


def _setup(tmp: Path, data: Path, name: str):
    cfg = load_experiment(None, dataset=str(data), experiment=name, **TINY)
    st = Settings(_env_file=None, data_dir=tmp, results_dir=tmp / "results", runs_dir=tmp / "runs", threads=1)
    return cfg, st


def _metrics(out: protocol.RunOutputs) -> list:
    return [(r["system"], r["fold"], r["run"], m["condition"], m["metric"], m["value"])
            for r in out.records for m in r["metrics"]]


def _stored(st: Settings, data: Path, experiment: str) -> dict:
    with HiddenFeatureStore.open(st) as store:
        out = {}
        for fold in (0, 1):
            mat = store.fetch_matrix(collection_name(data.name, experiment, fold), "audio")
            order = np.argsort(mat.samples)
            out[fold] = (mat.samples[order], mat.vectors[order], mat.payload["split"][order])
        return out


@pytest.fixture(scope="module")
def serial(tmp_path_factory, tiny_data):
    """The reference: one process, folds 0 and 1, results written."""
    root = tmp_path_factory.mktemp("serial")
    cfg, st = _setup(root, tiny_data, "serial")
    out = protocol.run_experiment(cfg, st, jobs=1)
    write_results(out, cfg, st)
    return root, st, out


def test_jobs_2_gives_the_serial_metrics_store_and_resume(serial, tiny_data):
    root, st, ref = serial
    cfg2, _ = _setup(root, tiny_data, "par")
    protocol.run_experiment(cfg2, st, stop_after="pretrain", jobs=2)  # "killed" after stage 1
    par = protocol.run_experiment(cfg2, st, resume=True, jobs=2)
    assert par.jobs == 2 and len(_metrics(par)) > 0
    assert _metrics(par) == _metrics(ref), "same seeds, same numbers, same order"
    assert par.precision == ref.precision and par.diagnostics == ref.diagnostics
    a, b = _stored(st, tiny_data, "serial"), _stored(st, tiny_data, "par")
    for fold in (0, 1):  # the parent wrote each fold's vectors, exactly what a serial run stores
        assert (a[fold][0] == b[fold][0]).all() and (a[fold][2] == b[fold][2]).all()
        np.testing.assert_array_equal(a[fold][1], b[fold][1])
    assert all((root / "runs" / "par" / f"f{f}_r0" / "precision.json").is_file() for f in (0, 1))


def test_array_tasks_merged_equal_one_run(serial, tiny_data, monkeypatch):
    """docs/parallel.md's Slurm pattern: each array task runs its own folds as its own
    experiment; `ramer report --merge` gives the metrics one run over every fold gives."""
    import pyarrow.parquet as pq

    from pipeline.cli import main

    root, st, _ = serial
    for fold in (1, 0):  # tasks finish in any order
        cfg, _ = _setup(root, tiny_data, f"task{fold}")
        cfg = replace(cfg, folds=[fold])
        write_results(protocol.run_experiment(cfg, st), cfg, st)
    res = st.results_dir
    with pytest.raises(SystemExit) as done:
        main(["report", str(res / "merged"), "--merge", str(res / "task0"), "--merge", str(res / "task1")])
    assert done.value.code == 0
    for name in ("metrics.parquet", "precision.parquet", "diagnostics.parquet"):
        merged, one = (sorted(map(str, pq.read_table(res / d / name).to_pylist())) for d in ("merged", "serial"))
        assert merged == one and merged, name
    with pytest.raises(SystemExit) as twice:  # one unit from two sources: refused, nothing averaged twice
        main(["report", str(res / "bad"), "--merge", str(res / "task0"), "--merge", str(res / "serial")])
    assert twice.value.code == 1


def _break_unit(tmp: Path, experiment: str) -> None:
    """Fold 1's checkpoints claim other data: its worker refuses them (a RamerError)."""
    bad = tmp / "runs" / experiment / "f1_r0"
    bad.mkdir(parents=True)
    (bad / "unit.json").write_text(json.dumps({"data_fingerprint": "not-this-data"}))


def test_a_failing_unit_is_one_error_line_and_no_results(tmp_path, tiny_data, capsys, monkeypatch):
    from pipeline.cli import main

    _break_unit(tmp_path, "broken")
    for k, v in {"RAMER_DATA_DIR": tmp_path, "RAMER_RESULTS_DIR": tmp_path / "results",
                 "RAMER_RUNS_DIR": tmp_path / "runs"}.items():
        monkeypatch.setenv(k, str(v))
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--dataset", str(tiny_data), "--experiment", "broken", "--folds", "0,1", "--runs", "1",
              "--epochs", "1", "--pretrain-epochs", "1", "--systems", "lr", "--jobs", "2"])
    assert exit_.value.code == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: fold 2/2 run 1/1:") and "other data" in err[0]
    assert not (tmp_path / "results" / "broken").exists(), "no partial results"


def test_threads_share_the_cores_unless_set(monkeypatch):
    monkeypatch.setattr("pipeline.experiment.parallel.available_cores", lambda: 8)
    monkeypatch.delenv("RAMER_THREADS", raising=False)
    assert threads_per_job(Settings(_env_file=None), 2) == 4
    assert threads_per_job(Settings(_env_file=None), 16) == 1
    assert threads_per_job(Settings(_env_file=None, threads=3), 2) == 3  # explicit wins
    assert threads_per_job(Settings(_env_file=None), 1) == 1  # serial keeps the default


def test_set_threads_also_limits_blas():
    """numpy's BLAS follows RAMER_THREADS too: a serial run and a worker then sum large
    products in the same order (lr-knn's lbfgs differed in the last bits without it)."""
    from threadpoolctl import threadpool_info

    from pipeline.experiment.parallel import set_threads

    for n in (2, 1):  # the suite runs with 1 (conftest): 2 first, so the check can fail
        set_threads(n)
        blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
        assert blas and all(p["num_threads"] == n for p in blas), (n, blas)


def test_a_write_a_later_unit_overwrites_is_skipped(tmp_path):
    """Runs 0 and 1 of a fold write nothing when run 2 of the same command will (its
    checkpoint missing); a run whose later run is already done still writes."""
    from types import SimpleNamespace

    from pipeline.experiment.finish import PRECISION_FILE, _superseded

    def task(fold, run, ingest=True, stop_after=None):
        d = tmp_path / f"f{fold}_r{run}"
        d.mkdir(exist_ok=True)
        return SimpleNamespace(fold=fold, run=run, run_dir=d, stop_after=stop_after, cfg=SimpleNamespace(ingest=ingest))

    tasks = [task(f, r) for f in (0, 1) for r in range(3)]
    assert _superseded(tasks) == [True, True, False, True, True, False]
    (tasks[5].run_dir / PRECISION_FILE).write_text("[]")  # fold 1 run 2 finished before
    assert _superseded(tasks) == [True, True, False, True, False, False]
    assert _superseded([task(2, 0), task(2, 1, stop_after="pretrain")]) == [False, False]
    assert _superseded([task(3, 0, ingest=False), task(3, 1, ingest=False)]) == [False, False]


def test_views_are_staged_during_the_run_and_moved_into_the_results(serial, tiny_data):
    """The parent renders each fold's view right after the fold's last store write
    (runs/<experiment>/views/); write_results moves them into results/<experiment>/views/."""
    _, st, _ = serial
    pages = sorted(p.name for p in (st.results_dir / "serial" / "views").glob("*.html"))
    assert pages == [f"{collection_name(tiny_data.name, 'serial', f)}.html" for f in (0, 1)]
    assert not list((st.runs_dir / "serial" / "views").glob("*")), "nothing left in the staging folder"


def test_a_units_stage1_runs_beside_the_previous_units_rest(tiny_data, tmp_path):
    from pipeline.experiment.units import UnitTask, experiment_units

    cfg, st = _setup(tmp_path, tiny_data, "order")
    cfg = replace(cfg, runs=2)
    tasks = [UnitTask(cfg, st, u, "cpu", "fp", None, tmp_path) for u in experiment_units(cfg, None)]
    pool, unit_of, after = protocol.pool_tasks(tasks)
    kinds = [("P" if t.stop_after == "pretrain" else "R") + str(i) for t, i in zip(pool, unit_of)]
    assert kinds == ["P0", "P1", "R0", "P2", "R1", "P3", "R2", "R3"]
    assert [after[j] is None for j in range(len(pool))] == [k[0] == "P" for k in kinds]
    assert all(kinds[after[j]] == "P" + kinds[j][1:] for j in range(len(pool)) if after[j] is not None)
    linear_only = [replace(t, cfg=replace(cfg, systems=["lr"])) for t in tasks]  # no stage-1 encoders
    assert protocol.pool_tasks(linear_only)[0] == linear_only
