"""The multi-label task end to end: MOSEI-shaped synthetic data, CARAT's metrics, the
validation-chosen threshold, and the protocol + report on multi-label data."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
from sklearn.metrics import f1_score, jaccard_score, precision_score, recall_score

from pipeline.config import Settings
from pipeline.data.dataset import load_dataset
from pipeline.data.synth_multilabel import (
    EMOTIONS,
    MOSEI_CARD,
    MOSEI_FREQ,
    MultiLabelSynthConfig,
    draw_label_sets,
    make_multilabel,
    write_multilabel,
)
from pipeline.evaluation.metrics import multilabel_metrics
from pipeline.evaluation.report import condition_table, headline_metrics
from pipeline.evaluation.tables import records_to_table
from pipeline.evaluation.thresholds import GRID, choose_threshold
from pipeline.experiment import protocol
from pipeline.experiment.results import write_results
from pipeline.models.scores import score_micro_f1
from pipeline.training.config import load_experiment

SMALL_DIMS = {"audio": 10, "visual": 8, "text": 12}


def test_label_statistics_follow_mosei():
    y = draw_label_sets(40000, np.random.default_rng(0))
    card = np.bincount(y.sum(1).astype(int), minlength=7) / len(y)
    np.testing.assert_allclose(card, np.array(MOSEI_CARD) / sum(MOSEI_CARD), atol=0.01)
    np.testing.assert_allclose(y.mean(0), np.array(MOSEI_FREQ) / sum(MOSEI_CARD), atol=0.015)
    assert 1.5 < y[y.sum(1) > 0].sum(1).mean() < 1.7  # ~1.6 labels per labeled clip


def test_generator_deterministic_and_valid(tmp_path):
    cfg = MultiLabelSynthConfig(labeled=300, unlabeled=50, dims=SMALL_DIMS, seed=4)
    _, t1, o1 = make_multilabel(cfg)
    _, t2, o2 = make_multilabel(cfg)
    assert t1.equals(t2) and o1.equals(o2)
    ds = write_multilabel(tmp_path / "ml", cfg)
    assert ds.manifest.task == "multi_label" and ds.manifest.classes == EMOTIONS
    assert ds.y.shape == (350, 6) and set(np.unique(ds.y)) <= {0.0, 1.0}
    assert (ds.y[ds.labeled].sum(1) == 0).any()  # "None" clips exist
    assert not ds.y[~ds.labeled].any()  # the pool's labels live only in the oracle file
    assert sorted(np.unique(ds.folds[ds.labeled])) == list(range(5))
    assert load_dataset(tmp_path / "ml").y.shape == (350, 6)


def test_metrics_match_sklearn_and_hand_values():
    y = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 0]], float)
    pred = np.array([[1, 0, 0], [0, 0, 0], [1, 1, 0], [0, 0, 1]], bool)
    logits = np.where(pred, 3.0, -3.0)
    m = multilabel_metrics(y, logits)
    # Jaccard per sample: 1/2, 1 (both empty), 1/2, 0 -> 0.5
    assert abs(m["Acc"] - 0.5) < 1e-9
    assert abs(m["Acc"] - jaccard_score(y, pred, average="samples", zero_division=1.0)) < 1e-9
    assert abs(m["P"] - precision_score(y, pred, average="micro")) < 1e-9
    assert abs(m["R"] - recall_score(y, pred, average="micro")) < 1e-9
    assert abs(m["F1"] - f1_score(y, pred, average="micro")) < 1e-9
    assert abs(score_micro_f1(y, logits) - m["F1"]) < 1e-9  # the selection score, same order


def test_threshold_search_finds_a_shifted_threshold():
    rng = np.random.default_rng(0)
    y = (rng.random((500, 6)) < 0.3).astype(float)
    logits = np.where(y > 0, -0.5, -2.5) + 0.3 * rng.standard_normal(y.shape)  # well ranked, shifted low
    t = choose_threshold(y, logits)
    assert t in GRID and t < 0.5
    assert multilabel_metrics(y, logits, t)["F1"] > multilabel_metrics(y, logits, 0.5)["F1"] + 0.3
    assert choose_threshold(y, np.zeros_like(y)) <= 0.5


def test_test_labels_cannot_move_the_threshold(tmp_path):
    """Through the protocol: scrambling the test fold's label sets changes its scores but
    not the decision threshold each system uses on it (chosen on validation only)."""
    from pipeline.data.dataset import build_table, write_dataset

    ds = write_multilabel(tmp_path / "ml", MultiLabelSynthConfig(labeled=160, unlabeled=40, dims=SMALL_DIMS, seed=3))
    y = ds.y.copy()
    test = np.flatnonzero(ds.labeled & (ds.folds == 0))
    y[test] = (np.random.default_rng(1).random((len(test), y.shape[1])) < 0.5).astype(np.float32)
    extra = {k: v for k, v in ds.extra.items() if k != "label_name"}
    table = build_table(ds.manifest, ds.samples, y, ds.labeled, ds.folds, ds.features, ds.present, extra)
    write_dataset(tmp_path / "scrambled", ds.manifest, table)
    st = Settings(data_dir=tmp_path, results_dir=tmp_path / "results", runs_dir=tmp_path / "runs")
    found = {}
    for name in ("ml", "scrambled"):
        cfg = load_experiment(
            None, dataset=str(tmp_path / name), experiment=name, folds=[0], runs=1, ingest=False,
            systems=["ramer(query_space=hidden,fill_norm=unit)", "mmin"],
            **{"train.epochs": 2, "pretrain.epochs": 1, "encoder.d_model": 16, "encoder.hidden": 16,
               "encoder.heads": 2, "encoder.ff": 32, "retrieval.k": 3})
        out = protocol.run_experiment(cfg, st)
        found[name] = {(r["system"], m["condition"], m["metric"]): m["value"] for r in out.records for m in r["metrics"]}
    thr = {k: v for k, v in found["ml"].items() if k[2] == "thr"}
    assert thr and all(found["scrambled"][k] == v for k, v in thr.items())
    f1 = [k for k in found["ml"] if k[2] == "F1"]
    assert any(found["scrambled"][k] != found["ml"][k] for k in f1)  # the test labels did change


def test_condition_table_takes_metric_names_from_data():
    what = {"model": "mmin", "strategy": "none", "train_range": "", "base": "s"}
    rec = [{"system": "s", **what, "fold": 0, "run": 0, "metrics": [
        {"condition": c, "missing": True, "metric": k, "value": 0.5}
        for c in ("a", "av") for k in ("Acc", "P", "R", "F1", "thr")]}]
    t = records_to_table(rec)
    assert headline_metrics(t) == ("Acc", "F1")
    assert "a Acc" in condition_table(t) and "WA" not in condition_table(t)
    rec[0]["metrics"] = [{"condition": "a", "missing": True, "metric": k, "value": 0.5} for k in ("WA", "UA", "F1w")]
    assert headline_metrics(records_to_table(rec)) == ("WA", "UA")


def test_protocol_on_multilabel_data(tmp_path):
    """RAMER, its ablation, MMIN and CARAT run on multi-label data; the report shows the
    multi-label metrics; the threshold comes from validation; precision@K counts shared labels."""
    write_multilabel(tmp_path / "ml", MultiLabelSynthConfig(labeled=160, unlabeled=60, dims=SMALL_DIMS, seed=2))
    cfg = load_experiment(
        None, dataset=str(tmp_path / "ml"), experiment="ml", folds=[0], runs=1, ingest=False,
        systems=["ramer", "w/o retrieval", "mmin", "carat"],
        **{"train.epochs": 1, "pretrain.epochs": 1, "encoder.d_model": 16, "encoder.hidden": 16,
           "encoder.heads": 2, "encoder.ff": 32, "retrieval.k": 3, "precision_ks": [1, 3]},
    )
    st = Settings(data_dir=tmp_path, results_dir=tmp_path / "results", runs_dir=tmp_path / "runs")
    out = protocol.run_experiment(cfg, st)
    report = write_results(out, cfg, st).read_text()
    table = pq.read_table(tmp_path / "results/ml/metrics.parquet")
    assert set(table.column("system").to_pylist()) == {"ramer", "w/o retrieval", "mmin", "carat"}
    assert {"Acc", "P", "R", "F1", "thr"} <= set(table.column("metric").to_pylist())
    thr = {v for m, v in zip(table.column("metric").to_pylist(), table.column("value").to_pylist()) if m == "thr"}
    assert thr <= set(GRID.tolist())
    assert "Acc / F1" in report and "P / R" in report and "sharing at least one label" in report
    assert (tmp_path / "results/ml/acc_by_condition.png").is_file()
    prec = [r["precision"] for r in out.precision]
    assert all(0.0 <= p <= 1.0 for p in prec if not np.isnan(p))


def test_info_label_sets_per_class(tmp_path):
    """`ramer data info` on multi-label data: samples carrying each class (x fold), their
    share, the mean label-set size and the empty set (MOSEI's "None")."""
    from typer.testing import CliRunner

    from pipeline.cli.data import app
    from pipeline.data.info import dataset_info

    ds = write_multilabel(tmp_path / "ml", MultiLabelSynthConfig(labeled=300, unlabeled=40, dims=SMALL_DIMS, seed=2))
    info = dataset_info(ds)
    y = ds.y[ds.labeled]
    assert info.label_by_fold.shape == (6, 5) and len(info.class_by_fold) == 0
    assert info.label_by_fold.sum(1).tolist() == y.sum(0).astype(int).tolist()  # unlabeled pool not counted
    assert info.label_by_fold[:, 0].sum() == y[ds.folds[ds.labeled] == 0].sum()
    assert info.none_by_fold.sum() == (y.sum(1) == 0).sum() > 0
    assert abs(info.labels_per_sample - y.sum(1).mean()) < 1e-9
    res = CliRunner().invoke(app, ["info", str(tmp_path / "ml")], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    happy = int(y[:, 0].sum())
    for word in ("carrying each class", "(no label)", f"{happy} │ {100 * happy / 300:.1f} %",
                 f"{y.sum(1).mean():.2f} labels per labeled sample",
                 f"{100 * (y.sum(1) == 0).mean():.1f} % carry none"):
        assert word in res.output, word
