"""Nested selection: a system with 'a|b' options (or RAMER's 'auto' retrieval options)
trains every variant and uses, in each (fold, run), the variant with the best validation
score of that very unit - never another fold's choice, never a test label."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.data.dataset import build_table, write_dataset
from pipeline.data.synth import SynthConfig, write_synthetic
from pipeline.errors import RamerError
from pipeline.experiment import protocol
from pipeline.training.checkpoint import load_json
from pipeline.training.config import RetrievalConfig, load_experiment
from pipeline.training.systems import parse_system, selection_variants

DIMS = {"audio": 12, "visual": 8, "text": 10}


def test_variants_are_every_combination_in_order():
    assert selection_variants("ramer(k=5|10,metric=cosine|euclidean)+m3s") == [
        "ramer(k=5,metric=cosine)+m3s", "ramer(k=5,metric=euclidean)+m3s",
        "ramer(k=10,metric=cosine)+m3s", "ramer(k=10,metric=euclidean)+m3s",
    ]
    assert selection_variants("ramer(k=5)") == [] and selection_variants("mmin") == []
    with pytest.raises(RamerError, match="key=a"):
        selection_variants("ramer(k=5|)")


def test_auto_retrieval_options_become_a_selection():
    base = RetrievalConfig()
    auto = parse_system("ramer", base)
    assert [c.label for c in auto.candidates] == [
        "ramer [hidden, unit]", "ramer [hidden, stored]", "ramer [features, unit]", "ramer [features, stored]"]
    fixed = parse_system("ramer(query_space=hidden,fill_norm=unit)", base)
    assert not fixed.candidates and (fixed.retrieval.query_space, fixed.retrieval.fill_norm) == ("hidden", "unit")
    assert not parse_system("w/o retrieval", base).candidates  # nothing is retrieved: nothing to choose


def _experiment(data: Path, tmp: Path, name: str, systems: list[str]):
    cfg = load_experiment(
        None, dataset=str(data), experiment=name, systems=systems, folds=[0, 1], runs=1, ingest=False,
        **{"train.epochs": 2, "pretrain.epochs": 2, "encoder.d_model": 16, "encoder.hidden": 16,
           "encoder.heads": 2, "encoder.ff": 32, "retrieval.k": 3})
    st_ = Settings(data_dir=tmp, results_dir=tmp / "results", runs_dir=tmp / "runs")
    return cfg, st_


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("sel") / "tiny", SynthConfig(labeled=200, unlabeled=100, dims=DIMS, seed=7))


def test_each_unit_uses_its_own_best_validation_variant(tiny, tmp_path):
    systems = ["ramer(k=2|4,query_space=hidden,fill_norm=unit)", "ramer"]
    cfg, st_ = _experiment(tiny.root, tmp_path, "sel", systems)
    out = protocol.run_experiment(cfg, st_)
    for rec in out.records:
        unit = st_.runs_dir / "sel" / f"f{rec['fold']}_r{rec['run']}"
        system = parse_system(rec["system"], cfg.retrieval)
        scores = {c.label: load_json(unit / f"{c.slug}.fit.json")["val_score"] for c in system.candidates}
        best = max(scores, key=scores.get)
        assert rec["chosen"] == best and load_json(unit / f"{system.slug}.choice.json")["chosen"] == best
        assert rec["val_score"] == scores[best]


def test_test_labels_cannot_move_the_choice(tiny, tmp_path):
    """Scrambling fold 0's labels (its test rows) changes neither its choice nor its val
    scores (fold 1 trains on those rows, so only fold 0 is compared)."""
    rng = np.random.default_rng(0)
    y = tiny.y.copy()
    test = np.flatnonzero(tiny.labeled & (tiny.folds == 0))
    y[test] = rng.integers(0, tiny.manifest.n_classes, len(test))
    extra = {k: v for k, v in tiny.extra.items() if k != "label_name"}  # it would name the old labels
    table = build_table(tiny.manifest, tiny.samples, y, tiny.labeled, tiny.folds, tiny.features, tiny.present, extra)
    scrambled = write_dataset(tmp_path / "scrambled", tiny.manifest, table)
    systems = ["ramer(k=2|4,query_space=hidden,fill_norm=unit)"]
    choices = []
    for data, name in ((tiny.root, "clean"), (scrambled.root, "scrambled")):
        cfg, st_ = _experiment(data, tmp_path, name, systems)
        cfg.folds = [0]
        choices.append([(r["chosen"], r["val_score"]) for r in protocol.run_experiment(cfg, st_).records])
    assert choices[0] == choices[1]
