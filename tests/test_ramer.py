"""RAMER core: fusion math, leakage of the training-time filler, protocol resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config import Settings
from pipeline.data.scales import candidate_mask
from pipeline.data.splits import assign_folds, make_split
from pipeline.experiment import protocol
from pipeline.experiment.results import write_results
from pipeline.retrieval.fill import RetrievalFiller
from pipeline.retrieval.retriever import ModalityRetriever
from pipeline.training.config import load_experiment

MODS = ["audio", "visual", "text"]


def _db(n: int, d: int = 8, seed: int = 0) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    vecs = {m: rng.standard_normal((n, d)).astype(np.float32) for m in MODS}
    present = {m: np.ones(n, bool) for m in MODS}
    return vecs, present


def test_fill_is_sum_then_l2_of_the_neighbours_missing_vectors():
    vecs, present = _db(50)
    retr = ModalityRetriever(k=4).fit(vecs, present, np.ones(50, bool))
    filler = RetrievalFiller(retr, MODS, vecs, present, k=4, keys=vecs)
    rows = np.array([3, 7])
    avail = np.array([[True, False, False], [True, False, False]])
    out = filler(np.zeros((2, 3, 8), np.float32), avail, rows)
    nb, _ = retr.search("audio", vecs["audio"][rows], rows, 4)
    for i in range(2):
        for t in ("visual", "text"):
            s = vecs[t][nb[i]].sum(0)
            expected = s / np.linalg.norm(s)
            np.testing.assert_allclose(out[i, MODS.index(t)], expected, rtol=1e-5, atol=1e-6)
        assert np.all(out[i, 0] == 0), "available slots are not filled"


def test_kth_score_rule_uses_the_modality_with_the_closer_kth_neighbour():
    vecs, present = _db(80, seed=1)
    retr = ModalityRetriever(k=5).fit(vecs, present, np.ones(80, bool))
    row = np.array([10])
    kth = {}
    for m in ("audio", "visual"):
        nb, sc = retr.search(m, vecs[m][row], row, 5)
        kth[m] = (sc[0, -1], nb[0])
    best = max(kth, key=lambda m: kth[m][0])
    filler = RetrievalFiller(retr, MODS, vecs, present, k=5, rule="kth-score", keys=vecs)
    out = filler(np.zeros((1, 3, 8), np.float32), np.array([[True, True, False]]), row)
    s = vecs["text"][kth[best][1]].sum(0)
    np.testing.assert_allclose(out[0, 2], s / np.linalg.norm(s), rtol=1e-5, atol=1e-6)
    both = RetrievalFiller(retr, MODS, vecs, present, k=5, rule="both", keys=vecs)
    out2 = both(np.zeros((1, 3, 8), np.float32), np.array([[True, True, False]]), row)
    s2 = vecs["text"][np.concatenate([kth["audio"][1], kth["visual"][1]])].sum(0)
    np.testing.assert_allclose(out2[0, 2], s2 / np.linalg.norm(s2), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rule", ["kth-score", "both"])
def test_a_row_with_nothing_available_gets_a_zero_fill(rule):
    """Condition 'a' on a row whose audio is genuinely absent: no modality to query with.
    Its batch's only query modality is audio itself, so the audio fill has no source."""
    vecs, present = _db(40, seed=2)
    retr = ModalityRetriever(k=3).fit(vecs, present, np.ones(40, bool))
    filler = RetrievalFiller(retr, MODS, vecs, present, k=3, rule=rule, keys=vecs)
    avail = np.array([[True, False, False], [False, False, False]])  # row 6: nothing available
    out = filler(np.zeros((2, 3, 8), np.float32), avail, np.array([5, 6]))
    assert np.all(out[1] == 0) and np.all(out[0, 0] == 0)
    assert np.all(np.abs(np.linalg.norm(out[0, 1:], axis=-1) - 1) < 1e-5)  # row 5 filled from audio


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), fold=st.integers(0, 4), scale=st.sampled_from(["small", "medium", "large", "turbo"]))
def test_cached_neighbours_never_include_query_val_or_test(seed, fold, scale):
    rng = np.random.default_rng(seed)
    n_lab, n_pool = 120, 80
    labeled = np.r_[np.ones(n_lab, bool), np.zeros(n_pool, bool)]
    y = np.r_[rng.integers(0, 3, n_lab), np.full(n_pool, -1)]
    samples = np.array([f"s{i}" for i in range(len(y))])
    folds = assign_folds(y, labeled, 5, seed)
    split = make_split(y, labeled, folds, fold, run=0, seed=seed)
    cand = candidate_mask(samples, labeled, split.train, scale)
    vecs, present = _db(len(y), seed=seed)
    retr = ModalityRetriever(k=5).fit(vecs, present, cand)
    filler = RetrievalFiller(retr, MODS, vecs, present, k=5, keys=vecs)
    queries = np.concatenate([split.train, split.val, split.test])
    filler.precompute(queries)
    forbidden = np.zeros(len(y), bool)
    forbidden[split.val] = forbidden[split.test] = True
    for m in MODS:
        nb = filler.neighbours(m, None, queries).rows
        got = nb[nb >= 0]
        assert not forbidden[got].any(), "a val/test row was retrieved"
        assert cand[got].all()
        assert not (nb == queries[:, None]).any(), "a query retrieved itself"


def _tiny_experiment(tmp_path: Path, name: str, **over):
    from pipeline.data.synth import SynthConfig, write_synthetic

    data = tmp_path / "tiny"
    if not data.exists():
        write_synthetic(data, SynthConfig(labeled=240, unlabeled=120, dims={"audio": 16, "visual": 12, "text": 20}, seed=3))
    options = {"folds": [0], "runs": 1, "ingest": False, "train.epochs": 3, "pretrain.epochs": 2,
               "encoder.d_model": 32, "encoder.hidden": 32, "encoder.heads": 4, "encoder.ff": 64,
               "retrieval.k": 3, **over}
    cfg = load_experiment(None, dataset=str(data), experiment=name, **options)
    st_ = Settings(data_dir=tmp_path, results_dir=tmp_path / "results", runs_dir=tmp_path / "runs")
    return cfg, st_


def _metrics(out: protocol.RunOutputs) -> list:
    return sorted((r["system"], m["condition"], m["metric"], round(m["value"], 10)) for r in out.records for m in r["metrics"])


def test_resume_after_interruption_reproduces_the_uninterrupted_metrics(tmp_path):
    cfg, st_ = _tiny_experiment(tmp_path, "whole")
    whole = protocol.run_experiment(cfg, st_)
    cfg2, _ = _tiny_experiment(tmp_path, "split")
    protocol.run_experiment(cfg2, st_, stop_after="pretrain")  # "killed" after stage 1
    protocol.run_experiment(cfg2, st_, stop_after="train")  # and again before stage 4
    resumed = protocol.run_experiment(cfg2, st_, resume=True)
    assert _metrics(whole) == _metrics(resumed)
    path = write_results(resumed, cfg2, st_)
    table = pq.read_table(path.parent / "metrics.parquet")
    assert set(table.column("condition").to_pylist()) == {"a", "v", "l", "av", "al", "vl", "avl"}
    assert (path.parent / "wa_by_condition.png").is_file()
    assert "ramer" in path.read_text()
    import csv

    with (path.parent / "summary.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    wa = [r for r in rows if r["system"] == "ramer" and r["condition"] == "a" and r["metric"] == "WA"]
    mine = [v for (s, c, m, v) in _metrics(resumed) if (s, c, m) == ("ramer", "a", "WA")]
    assert len(wa) == 1 and int(wa[0]["n"]) == len(mine)
    assert abs(float(wa[0]["mean"]) - sum(mine) / len(mine)) < 1e-5


def test_rerun_without_resume_is_refused(tmp_path):
    from pipeline.errors import RamerError

    cfg, st_ = _tiny_experiment(tmp_path, "twice")
    protocol.run_experiment(cfg, st_, stop_after="pretrain")
    with pytest.raises(RamerError, match="--resume"):
        protocol.run_experiment(cfg, st_)


def test_reference_leak_mode_is_what_the_published_code_does():
    """Diagnostic mode: no id exclusion, first column dropped. With live (changed) queries
    the query itself can survive in the neighbours - the leak our default forbids."""
    vecs, present = _db(30, seed=2)
    retr = ModalityRetriever(k=3).fit(vecs, present, np.ones(30, bool))
    rows = np.arange(30)
    leaky = RetrievalFiller(retr, MODS, vecs, present, k=3, drop_first_hit=True)
    shifted = vecs["audio"] + 0.9 * np.random.default_rng(0).standard_normal(vecs["audio"].shape).astype(np.float32)
    nb = leaky.neighbours("audio", shifted, rows).rows
    assert (nb == rows[:, None]).any(), "a perturbed query finds itself after rank 1"
    honest = RetrievalFiller(retr, MODS, vecs, present, k=3)
    assert not (honest.neighbours("audio", shifted, rows).rows == rows[:, None]).any()


def test_resume_accepts_options_added_later_but_not_changed_ones(tmp_path):
    import json

    from pipeline.errors import RamerError

    cfg, st_ = _tiny_experiment(tmp_path, "older")
    protocol.run_experiment(cfg, st_, stop_after="pretrain")
    saved_path = st_.runs_dir / "older" / "config.json"
    saved = json.loads(saved_path.read_text())
    del saved["retrieval"]["leaks"]  # as written by a version before the option
    del saved["strategy"]
    saved["retrieval"]["refresh_every"] = 1  # the default then: moot for frozen encoders
    saved_path.write_text(json.dumps(saved))
    protocol.run_experiment(cfg, st_, stop_after="pretrain", resume=True)
    more_runs, _ = _tiny_experiment(tmp_path, "older", runs=2)
    protocol.run_experiment(more_runs, st_, stop_after="pretrain", resume=True)  # runs can grow
    changed, _ = _tiny_experiment(tmp_path, "older", **{"retrieval.k": 4})
    with pytest.raises(RamerError, match=r"different config .*\(retrieval\.k 3 -> 4\)"):
        protocol.run_experiment(changed, st_, resume=True)


def test_toml_config_layers_under_flags(tmp_path):
    from pipeline.errors import RamerError

    path = tmp_path / "exp.toml"
    path.write_text('dataset = "d"\nruns = 2\nsystems = ["ramer", "mmin"]\n[train]\nepochs = 7\n[retrieval]\nk = 5\n')
    cfg = load_experiment(path, **{"retrieval.k": 3, "runs": None})
    assert (cfg.dataset, cfg.runs, cfg.systems, cfg.train.epochs, cfg.retrieval.k) == ("d", 2, ["ramer", "mmin"], 7, 3)
    assert cfg.pretrain.epochs == 40  # untouched defaults stay
    path.write_text("[train]\nepoch = 7\n")
    with pytest.raises(RamerError, match="unknown option 'epoch'"):
        load_experiment(path)


def test_systems_override_stage3_training_options(tmp_path):
    """'ae(epochs=1,lr=0.01)': training keys go to the trainer, the rest to the model Config."""
    from pipeline.training.config import RetrievalConfig
    from pipeline.training.systems import parse_system

    s = parse_system("carat(lr=0.0003,d_model=64)", RetrievalConfig())
    assert s.train == {"lr": 0.0003} and s.overrides == {"d_model": 64}
    assert parse_system("ramer(k=5,epochs=7)", RetrievalConfig()).train == {"epochs": 7}
    cfg, st_ = _tiny_experiment(tmp_path, "over", systems=["ae", "ae(epochs=1)"], **{"train.patience": 50})
    out = protocol.run_experiment(cfg, st_)
    runs = {r["system"]: r["epochs_run"] for r in out.records}
    assert runs == {"ae": 3, "ae(epochs=1)": 1}


def test_resume_refuses_checkpoints_of_regenerated_data(tmp_path):
    """Same path, other data (regenerated: other rows, other folds): the encoders of the
    old data must not be reused - neither by --resume nor by a unit's own checkpoints."""
    import shutil

    from pipeline.data.synth import SynthConfig, write_synthetic
    from pipeline.errors import RamerError

    cfg, st_ = _tiny_experiment(tmp_path, "fp")
    protocol.run_experiment(cfg, st_, stop_after="pretrain")
    shutil.rmtree(tmp_path / "tiny")
    write_synthetic(tmp_path / "tiny", SynthConfig(labeled=240, unlabeled=120, dims={"audio": 16, "visual": 12, "text": 20}, seed=4))
    with pytest.raises(RamerError, match="other data"):
        protocol.run_experiment(cfg, st_, resume=True)
    (st_.runs_dir / "fp" / "config.json").unlink()  # the experiment record gone: the unit still knows
    with pytest.raises(RamerError, match="other data"):
        protocol.run_experiment(cfg, st_, resume=True)
