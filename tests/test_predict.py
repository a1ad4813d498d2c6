"""`ramer predict` fills missing modalities exactly as training does, never with the
query itself, and never with a val / test sample of the fold (--explain shows which)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import Settings
from pipeline.data.missing import condition_matrix
from pipeline.data.splits import make_split
from pipeline.data.synth import SynthConfig, write_synthetic
from pipeline.experiment import protocol
from pipeline.experiment.predict import predict_file
from pipeline.models.inference import predict
from pipeline.training.config import load_experiment
from pipeline.training.fold_run import FoldRun
from pipeline.training.stages import fold_context, model_spec
from pipeline.training.systems import parse_system

DIMS = {"audio": 12, "visual": 8, "text": 10}
SYSTEMS = ["ramer(query_space=hidden,fill_norm=unit)", "ramer(query_space=features,fill_norm=stored)", "lr-knn"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pred")
    ds = write_synthetic(tmp / "tiny", SynthConfig(labeled=200, unlabeled=120, dims=DIMS, seed=11))
    cfg = load_experiment(None, dataset=str(ds.root), experiment="p", systems=SYSTEMS, folds=[0], runs=1,
                          ingest=False, **{"train.epochs": 2, "pretrain.epochs": 2, "encoder.d_model": 16,
                                           "encoder.hidden": 16, "encoder.heads": 2, "encoder.ff": 32,
                                           "retrieval.k": 4})
    st_ = Settings(data_dir=tmp, results_dir=tmp / "results", runs_dir=tmp / "runs")
    protocol.run_experiment(cfg, st_)
    return ds, cfg, st_, tmp


def _input(ds, rows: np.ndarray, drop: int, path: Path) -> Path:
    """The given dataset rows as a predict input, modality `drop` missing."""
    cols = {"sample": pa.array(ds.samples[rows].tolist())}
    for j, m in enumerate(ds.modalities):
        vals = [None if j == drop else ds.features[m][r].tolist() for r in rows]
        cols[m] = pa.array(vals, pa.list_(pa.float32()))
    pq.write_table(pa.table(cols), path)
    return path


@pytest.mark.parametrize("system", SYSTEMS)
def test_predict_equals_training_and_never_leaks(trained, system, tmp_path):
    ds, cfg, st_, _ = trained
    split = make_split(ds.y, ds.labeled, ds.folds, 0, 0, cfg.seed)
    rows = np.concatenate([split.train[:6], split.test[:6]])  # known samples of both kinds
    out, n = predict_file(st_, "p", _input(ds, rows, 1, tmp_path / "in.parquet"), tmp_path / "o.parquet",
                          0, system, explain=True)
    table = pq.read_table(out)
    names = table.column("fill_visual").to_pylist()
    allowed = set(ds.samples[np.concatenate([split.train, split.unlabeled])].tolist())
    for sample, fill in zip(table.column("sample").to_pylist(), names):
        assert fill, f"{sample}: visual was missing but nothing filled it"
        assert sample not in fill, f"{sample} retrieved itself"
        assert set(fill) <= allowed, f"{sample}: filled from a val/test sample {set(fill) - allowed}"
    assert table.column("fill_audio").to_pylist() == [[]] * n  # given modalities are not filled

    # the training path (stored inputs, cached neighbour lists) on the same rows, same condition
    ctx = fold_context(ds, split, model_spec(ds), condition_matrix(ds.manifest), "cpu",
                       st_.runs_dir / "p" / "f0_r0", cfg.seed, cfg.preprocess)
    fr = FoldRun(ctx, cfg)
    model, _ = fr.train(parse_system(system, cfg.retrieval))
    avail = np.array([True, False, True])
    probs = np.stack([table.column(f"p_{c}").to_numpy() for c in ds.manifest.classes], 1)
    logits = predict(model, ctx.bank, rows, avail)
    want = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(probs, want / want.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)


def test_widened_candidates_are_caught(trained, tmp_path, monkeypatch):
    """The check above can fail: letting every row be a candidate puts val/test samples
    (and the query itself) into the fills."""
    ds, cfg, st_, _ = trained
    monkeypatch.setattr(FoldRun, "_candidate_rows", lambda self, r: np.ones(len(self.ctx.ds), bool))
    split = make_split(ds.y, ds.labeled, ds.folds, 0, 0, cfg.seed)
    rows = split.test[:8]
    out, _ = predict_file(st_, "p", _input(ds, rows, 1, tmp_path / "in.parquet"), tmp_path / "o.parquet",
                          0, SYSTEMS[0], explain=True)
    fills = pq.read_table(out).column("fill_visual").to_pylist()
    allowed = set(ds.samples[np.concatenate([split.train, split.unlabeled])].tolist())
    assert any(not set(f) <= allowed for f in fills)
