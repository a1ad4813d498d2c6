"""Under noise, RAMER retrieves with the encoding of the *noisy* query, never with neighbour
lists cached from the clean stored vectors.

The dataset has genuinely absent modalities (synthetic, 30 % of values null), so test
rows need a fill at evaluation time. Every search made by the noise evaluation is
recorded: on clean inputs the live queries reproduce the stored vectors (frozen
encoders), under noise they differ, and test rows are among the searched rows.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.data.synth import SynthConfig, write_synthetic
from pipeline.experiment import protocol
from pipeline.experiment.noise import evaluate_noise
from pipeline.experiment.results import write_results
from pipeline.retrieval.fill import RetrievalFiller
from pipeline.training.config import load_experiment


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("live")
    data = tmp / "gappy"
    write_synthetic(data, SynthConfig(labeled=200, unlabeled=60, dims={"audio": 16, "visual": 12, "text": 20},
                                      missing_rate=0.3, seed=5))
    cfg = load_experiment(
        None, dataset=str(data), experiment="live", folds=[0], runs=1, ingest=False,
        systems=["ramer(query_space=hidden,fill_norm=unit)"],
        **{"train.epochs": 2, "pretrain.epochs": 1, "encoder.d_model": 16, "encoder.hidden": 16,
           "encoder.heads": 2, "encoder.ff": 32, "encoder.layers": 1, "retrieval.k": 3},
    )
    st = Settings(data_dir=tmp, results_dir=tmp / "results", runs_dir=tmp / "runs")
    write_results(protocol.run_experiment(cfg, st), cfg, st)
    return cfg, st


def _spy_on_searches(monkeypatch) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Record (rows, queries, stored vectors of those rows) of every search from now on."""
    calls: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    original = RetrievalFiller._search

    def spy(self, m, queries, rows):
        rows = np.asarray(rows)
        calls.append((rows.copy(), np.array(queries, copy=True), np.array(self.values[m][rows], copy=True)))
        return original(self, m, queries, rows)

    monkeypatch.setattr(RetrievalFiller, "_search", spy)
    return calls


def _recorded_searches(monkeypatch, cfg, st, noises) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every search the noise evaluation makes."""
    calls = _spy_on_searches(monkeypatch)
    evaluate_noise(cfg, st, noises)
    monkeypatch.undo()
    return calls


def _assert_live(clean, both) -> None:
    assert clean, "test rows with an absent modality must be filled by retrieval"
    assert len(both) == 2 * len(clean), "one clean pass, then one noisy pass of the same searches"
    for rows, q, stored in clean:  # frozen encoders on clean inputs reproduce the stored h
        np.testing.assert_allclose(q, stored, atol=1e-4)
    for (rows_c, _, _), (rows_n, q, stored) in zip(clean, both[len(clean):]):
        np.testing.assert_array_equal(rows_c, rows_n)
        # a cached or stored query would equal the clean vector; the noisy encoding does not
        assert np.abs(q - stored).max() > 1e-2


def test_noisy_queries_are_encoded_live_not_taken_from_the_clean_store(trained, monkeypatch):
    cfg, st = trained
    clean = _recorded_searches(monkeypatch, cfg, st, [])
    both = _recorded_searches(monkeypatch, cfg, st, [("gaussian", [80])])
    _assert_live(clean, both)


def test_the_check_fails_when_noise_evaluation_reuses_the_clean_store(trained, monkeypatch):
    """The assertion above can fail: build the evaluated model as if its inputs were the
    stored clean features (the old behaviour) and the check must catch it."""
    from pipeline.training.fold_run import FoldRun

    cfg, st = trained
    build = FoldRun.build_model

    def as_stored(self, system, inputs_as_stored=None):
        return build(self, system, inputs_as_stored=True)

    clean = _recorded_searches(monkeypatch, cfg, st, [])
    monkeypatch.setattr(FoldRun, "build_model", as_stored)
    calls = _spy_on_searches(monkeypatch)
    evaluate_noise(cfg, st, [("gaussian", [80])])
    with pytest.raises(AssertionError):
        _assert_live(clean, calls)
