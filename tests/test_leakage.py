"""Leakage through the path users run: the neighbours that actually fill train, val and
test queries of a trained system (frozen and fine-tuned encoders, hidden or feature
queries) are never the query itself nor a val / test row of the fold; the check is
shown to fail when the candidate rule is widened, and the published code's leak exists
only as a labelled diagnostic system."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.data.missing import condition_matrix
from pipeline.data.splits import make_split
from pipeline.data.synth import SynthConfig, write_synthetic
from pipeline.errors import RamerError
from pipeline.models.base import Batch
from pipeline.training.config import load_experiment
from pipeline.training.fold_run import FoldRun
from pipeline.training.stages import fold_context, model_spec
from pipeline.training.systems import parse_system

DIMS = {"audio": 12, "visual": 8, "text": 10}
SYSTEMS = [
    "ramer(query_space=hidden,fill_norm=unit)",  # frozen encoders: cached neighbour lists
    "ramer(query_space=features,fill_norm=stored)",  # feature queries
    "ramer(query_space=hidden,fill_norm=unit,finetune_encoders=true)",  # live queries every batch
    "lr-knn",
]


@pytest.fixture(scope="module")
def fold(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("leak")
    ds = write_synthetic(tmp / "tiny", SynthConfig(labeled=200, unlabeled=100, dims=DIMS, seed=13))
    cfg = load_experiment(None, dataset=str(ds.root), experiment="leak", folds=[0], runs=1, ingest=False,
                          **{"train.epochs": 2, "pretrain.epochs": 2, "encoder.d_model": 16, "encoder.hidden": 16,
                             "encoder.heads": 2, "encoder.ff": 32, "retrieval.k": 4, "retrieval.scale": "turbo"})
    split = make_split(ds.y, ds.labeled, ds.folds, 0, 0, cfg.seed)
    ctx = fold_context(ds, split, model_spec(ds), condition_matrix(ds.manifest), "cpu",
                       tmp / "runs" / "f0_r0", cfg.seed, cfg.preprocess)
    return FoldRun(ctx, cfg)


def used_neighbours(fr: FoldRun, model, rows: np.ndarray) -> np.ndarray:
    """(n, K') the dataset rows whose vectors filled the missing modalities of `rows`
    when only the first modality is available - asked of the trained model's filler with
    the queries the model itself sends (stored, encoded or feature vectors)."""
    avail = np.zeros((len(rows), 3), bool)
    avail[:, 0] = True
    batch = fr.ctx.bank.batch(rows, avail, with_full=False)
    with torch.no_grad():
        if getattr(model, "query_features", True):  # lr-knn and feature queries: the inputs
            queries = [x.numpy() for x in batch.x]
        else:
            queries = [h.numpy() for h in model.encode_batch(batch).unbind(1)]
    sources = model.filler.sources(queries, avail, rows)
    return np.concatenate([s.rows for s in sources if s is not None], axis=1)


def assert_no_leak(fr: FoldRun, model) -> None:
    split = fr.ctx.split
    forbidden = np.zeros(len(fr.ctx.ds), bool)
    forbidden[np.concatenate([split.val, split.test])] = True
    for name, rows in (("train", split.train), ("val", split.val), ("test", split.test)):
        nb = used_neighbours(fr, model, rows)
        assert (nb >= 0).any(), f"{name}: nothing was retrieved"
        got = nb[nb >= 0]
        assert not forbidden[got].any(), f"{name} queries were filled from val/test rows"
        assert not (nb == rows[:, None]).any(), f"a {name} query was filled with itself"


@pytest.mark.parametrize("system", SYSTEMS)
def test_trained_systems_never_retrieve_the_query_or_val_test(fold, system):
    model, _ = fold.train(parse_system(system, fold.cfg.retrieval))
    assert_no_leak(fold, model)


def test_the_check_fails_when_the_candidate_rule_is_widened(fold, monkeypatch):
    monkeypatch.setattr(FoldRun, "_candidate_rows", lambda self, r: np.ones(len(self.ctx.ds), bool))
    widened = FoldRun(fold.ctx, fold.cfg)  # a fresh one: nothing cached under the honest rule
    model = widened.build_model(parse_system(SYSTEMS[0], fold.cfg.retrieval))
    with pytest.raises(AssertionError, match="val/test"):
        assert_no_leak(widened, model)


def test_the_reference_leak_is_a_labelled_diagnostic_only(fold):
    leaky = parse_system("leaky[db]:ramer(query_space=hidden,fill_norm=unit)", fold.cfg.retrieval)
    assert leaky.label.startswith("leaky[db]:") and leaky.retrieval.leaks == ("db",) == leaky.leaks
    model = fold.build_model(leaky)
    with pytest.raises(AssertionError):
        assert_no_leak(fold, model)  # it does leak, which is what it is there to measure
    with pytest.raises(RamerError, match="diagnostic"):
        parse_system("ramer(leak_like_reference=true)", fold.cfg.retrieval)
    with pytest.raises(RamerError, match="diagnostic"):
        load_experiment(None, **{"retrieval.leaks": ["db"]})


def test_batch_rows_reach_retrieval_unchanged(fold):
    """The filler excludes by the batch's dataset rows: they must be the rows asked for."""
    rows = fold.ctx.split.test[:5]
    batch = fold.ctx.bank.batch(rows, np.ones((5, 3), bool), with_full=False)
    assert isinstance(batch, Batch) and batch.rows.tolist() == rows.tolist()



def test_stage_leaks_train_apart_and_see_test_rows(fold):
    """'encoders-test' trains stage 1 on the test rows too, in its own folder; the honest
    encoders of the fold are untouched; 'stage3-test' selects its epoch on the test rows."""
    honest = fold.encoders()
    leaky = fold.encoders(leaks=("encoders-test",))
    assert (fold.ctx.run_dir / "leaky-encoders-test" / "encoders.pt").is_file()
    diff = [not torch.equal(a, b) for e1, e2 in zip(honest, leaky)
            for a, b in zip(e1.state_dict().values(), e2.state_dict().values())]
    assert any(diff)
    ctx = fold._leaky_context(("encoders-test", "stage1-test"))
    assert set(fold.ctx.split.test) <= set(ctx.split.train) and np.array_equal(ctx.split.val, fold.ctx.split.test)
    system = parse_system("leaky[stage3-test]:lr", fold.cfg.retrieval)
    _, record = fold.train(system)
    assert record["system"] == "leaky[stage3-test]:lr" and system.leaks == ("stage3-test",)
    with pytest.raises(RamerError, match="stage 1"):
        parse_system("leaky[encoders-test]:lr", fold.cfg.retrieval)


def test_fillers_over_the_same_keys_share_one_search(fold):
    """A second stored-query filler over the same keys and search settings adopts the
    first one's neighbour lists (no second search) and they equal a fresh search; another
    K is searched apart."""
    from dataclasses import replace

    from pipeline.retrieval.fill import RetrievalFiller
    from pipeline.training.fold_run import Database

    r, keys = fold.cfg.retrieval, fold.scaled_features()
    hidden = fold.database("hidden").vectors
    first = fold.filler(keys, r, stored_queries=True, fuse="mean")
    searched = fold.timings["retrieval"]
    second = fold.filler(hidden, r, stored_queries=True, keys=keys)  # other fills, same keys
    assert fold.timings["retrieval"] == searched
    split = fold.ctx.split
    rows = np.concatenate([split.train, split.val, split.test])
    fresh = RetrievalFiller(fold.retriever(r, Database("keys", keys, [])),
                            list(fold.ctx.spec.modalities), hidden, fold.ctx.ds.present, k=r.k, keys=keys)
    fresh.precompute(rows)
    for m in fold.ctx.spec.modalities:
        for got in (first, second):
            nb = got.neighbours(m, None, rows)
            assert np.array_equal(nb.rows, fresh.neighbours(m, None, rows).rows)
    fold.filler(keys, replace(r, k=r.k - 1), stored_queries=True)
    assert fold.timings["retrieval"] > searched


def test_frozen_h_miss_is_encoded_once_and_follows_new_weights(fold):
    model = fold.build_model(parse_system(SYSTEMS[0], fold.cfg.retrieval)).train()  # encoders stay eval
    zeros = [torch.zeros(1, d) for d in fold.ctx.spec.dims]
    with torch.no_grad():
        once = model.missing_hidden(zeros)
        assert model.missing_hidden(zeros) is once  # cached
        assert torch.equal(once, model.encode(zeros))
        state = {k: v + 0.5 if k.startswith("encoders.") and v.is_floating_point() else v
                 for k, v in model.state_dict().items()}
        model.load_state_dict(state)
        assert torch.equal(model.missing_hidden(zeros), model.encode(zeros))
        assert not torch.equal(model.missing_hidden(zeros), once)


@pytest.mark.parametrize("rule", ["kth-score", "both"])
@pytest.mark.parametrize("fuse", ["sum-l2", "mean"])
def test_fill_tables_equal_the_per_batch_fill(fold, rule, fuse):
    """Stored queries read their fills from (modality, available others) tables built
    once; on random batches of train / val / test rows under random availability they
    are exactly the per-batch computation."""
    from dataclasses import replace

    r = replace(fold.cfg.retrieval, two_rule=rule)
    keys = fold.scaled_features()
    values = fold.database("hidden").vectors if fuse == "sum-l2" else keys
    filler = fold.filler(values, r, stored_queries=True, fuse=fuse, keys=keys)
    split, rng = fold.ctx.split, np.random.default_rng(3)
    rows_all = np.concatenate([split.train, split.val, split.test])
    present = fold.ctx.ds.present_matrix()
    for _ in range(5):
        rows = rng.choice(rows_all, 40, replace=False)
        avail = rng.random((40, 3)) < 0.5
        avail &= present[rows]
        h = [np.zeros((40, 1), np.float32)] * 3
        fast = filler.fill(h, avail, rows)
        slow = filler._fill_batch(h, avail, rows)
        assert filler._tables, "the tables were not used"
        for a, b in zip(fast, slow):
            assert np.array_equal(a, b)
