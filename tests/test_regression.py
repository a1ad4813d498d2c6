"""Regression targets (CMU-MOSI-like): synthetic data, metrics, the protocol end to end."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.data.synth_regression import RegressionSynthConfig, write_regression
from pipeline.evaluation.metrics import regression_metrics, task_metrics
from pipeline.models.scores import score_neg_mae, task_score

DIMS = {"audio": 16, "visual": 12, "text": 20}


def test_metrics_on_known_values():
    y = np.array([-2.0, -0.5, 0.0, 1.0, 2.9])
    pred = np.array([-1.0, 0.5, 0.2, 1.4, 4.0])[:, None]  # 4.0 is clipped to 3
    m = regression_metrics(y, pred)
    assert m["MAE"] == pytest.approx(np.mean([1.0, 1.0, 0.2, 0.4, 0.1]))
    assert m["Acc-2"] == pytest.approx(4 / 5)  # -0.5 predicted >= 0; 0.0 vs 0.2 both non-negative
    # np.round (as MMSA): y -> -2, -0, 0, 1, 3; pred -> -1, 0, 0, 1, 3: four of five agree
    assert m["Acc-7"] == pytest.approx(4 / 5)
    assert m["Corr"] == pytest.approx(np.corrcoef(np.clip(pred[:, 0], -3, 3), y)[0, 1])
    assert 0 <= m["F1"] <= 1
    assert task_metrics("regression", y, pred) == m
    assert task_score("regression") is score_neg_mae and score_neg_mae(y, pred) == -m["MAE"]


def test_constant_predictions_give_zero_corr_not_nan():
    assert regression_metrics(np.array([0.0, 1.0, -1.0]), np.zeros((3, 1)))["Corr"] == 0.0


def test_synthetic_regression_dataset(tmp_path):
    ds = write_regression(tmp_path / "reg", RegressionSynthConfig(labeled=300, unlabeled=40, dims=DIMS, seed=1))
    assert ds.manifest.task == "regression" and ds.y.dtype == np.float32
    lab = ds.y[ds.labeled]
    assert lab.min() >= -3 and lab.max() <= 3 and (lab < 0).mean() == pytest.approx(0.45, abs=0.08)
    assert set(ds.folds[ds.labeled]) == set(range(5)) and (ds.folds[~ds.labeled] == -1).all()
    # the features carry the target: a linear read-out of the text modality correlates with it
    x = ds.features["text"][ds.labeled]
    w, *_ = np.linalg.lstsq(np.c_[x, np.ones(len(x))], lab, rcond=None)
    assert np.corrcoef(np.c_[x, np.ones(len(x))] @ w, lab)[0, 1] > 0.5


def test_protocol_runs_on_regression_with_strategies(tmp_path):
    from pipeline.config import Settings
    from pipeline.experiment import protocol
    from pipeline.experiment.results import write_results
    from pipeline.training.config import load_experiment

    data = tmp_path / "reg"
    write_regression(data, RegressionSynthConfig(labeled=200, unlabeled=0, dims=DIMS, seed=2))
    cfg = load_experiment(
        None, dataset=str(data), experiment="reg", folds=[0], runs=1, ingest=False, systems=["mmin", "ramer"],
        strategy="orig,m3s", missing_rate=[0.2, 0.4],
        **{"train.epochs": 2, "pretrain.epochs": 1, "encoder.d_model": 16, "encoder.hidden": 16,
           "encoder.heads": 2, "encoder.ff": 32, "encoder.layers": 1, "retrieval.k": 3},
    )
    st_ = Settings(data_dir=tmp_path, results_dir=tmp_path / "results", runs_dir=tmp_path / "runs")
    path = write_results(protocol.run_experiment(cfg, st_), cfg, st_)
    table = pq.read_table(path.parent / "metrics.parquet")
    assert set(table.column("metric").to_pylist()) == {"MAE", "Corr", "Acc-2", "F1", "Acc-7"}
    assert set(table.column("condition").to_pylist()) == {"span20-40"}
    assert "| ORIG + M3S |" in path.read_text()


def test_every_score_and_metric_takes_y_true_first():
    """One argument order everywhere: (y_true, logits). A swapped call fails loudly here."""
    from pipeline.evaluation.metrics import METRICS_BY_TASK
    from pipeline.models.scores import SCORE_BY_TASK

    cases = {
        "single_label": (np.array([0, 1, 2, 1]), np.eye(3)[[0, 1, 2, 0]] * 5.0),  # 3 of 4 right
        "multi_label": (np.array([[1, 0], [0, 1], [1, 1]]), np.array([[5.0, -5], [-5, 5], [5, -5]])),
        "regression": (np.array([0.5, -1.0, 2.0]), np.array([[0.5], [-1.0], [1.0]])),
    }
    expected = {"single_label": 0.75, "multi_label": 6 / 7, "regression": -1 / 3}  # tp 3, 3 predicted, 4 true
    for task, (y, logits) in cases.items():
        assert SCORE_BY_TASK[task](y, logits) == pytest.approx(expected[task])
        assert METRICS_BY_TASK[task](y, logits)  # (y_true, logits) accepted
