"""M3S: the missing-span transform, the meta-sampling step, strategies in the protocol."""

from __future__ import annotations

import math

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.data.bank import FeatureBank
from pipeline.data.spans import (
    SpanPlan,
    parse_range,
    parse_ranges,
    range_name,
    span_bank,
    span_keep,
    span_masks,
)
from pipeline.errors import RamerError
from pipeline.models.base import Batch, ModelSpec
from pipeline.models.registry import create_model
from pipeline.training.strategies import (
    M3SConfig,
    SpanBatches,
    expand_systems,
    fit_strategy,
    m3s_step,
    split_strategy,
    train_range_of,
)
from pipeline.training.trainer import TrainConfig, plain_step

DIMS = (16, 12, 20)


@settings(max_examples=60, deadline=None)
@given(dim=st.integers(1, 300), rate=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1))
def test_span_zeroes_exactly_floor_d_r_contiguous_values_inside_bounds(dim, rate, seed):
    keep = span_keep(dim, torch.tensor([rate], dtype=torch.float64), torch.Generator().manual_seed(seed))[0]
    zeros = np.flatnonzero(~keep.numpy())
    k = math.floor(dim * rate + 1e-9)
    assert len(zeros) == k
    if k:
        assert zeros[-1] - zeros[0] == k - 1, "zeros are not one contiguous span"
        assert 0 <= zeros[0] and zeros[-1] < dim


def test_span_start_is_uniform_over_every_valid_position():
    gen = torch.Generator().manual_seed(0)
    keep = span_keep(10, torch.full((20000,), 0.5, dtype=torch.float64), gen)  # k = 5, starts 0..5
    starts = (~keep).float().argmax(1).numpy()
    counts = np.bincount(starts, minlength=6)
    assert len(counts) == 6 and counts.min() > 0.8 * 20000 / 6


def test_rates_follow_each_modality_range():
    masks = span_masks(4000, [100, 100], [(0.2, 0.4), (0.6, 0.8)], torch.Generator().manual_seed(1))
    share = [1 - m.float().mean(1) for m in masks]
    assert 0.19 <= float(share[0].min()) and float(share[0].max()) <= 0.4
    assert 0.59 <= float(share[1].min()) and float(share[1].max()) <= 0.8


def test_parse_range_and_names():
    assert parse_range("0.4-0.6") == (0.4, 0.6)
    assert parse_range("40-60") == (0.4, 0.6)
    assert range_name((0.6, 0.8)) == "span60-80"
    with pytest.raises(ValueError):
        parse_range("0.6-0.4")


def test_systems_expand_per_strategy():
    assert expand_systems(["mmin", "ramer+m3s"], "orig,m3s") == ["mmin+orig", "mmin+m3s", "ramer+m3s"]
    assert expand_systems(["mmin"], "none") == ["mmin"]
    assert split_strategy("ramer(k=5)+spl-trn") == ("ramer(k=5)", "spl-trn")


def test_several_training_ranges_tag_every_system_with_its_range():
    ranges = parse_ranges("20-40,60-80")
    assert ranges == [(0.2, 0.4), (0.6, 0.8)]
    assert parse_ranges([0.4, 0.6]) == [(0.4, 0.6)] and parse_ranges([[0.2, 0.4]]) == [(0.2, 0.4)]
    assert expand_systems(["mmin"], "orig,m3s", ranges) == [
        "mmin+orig@20-40", "mmin+m3s@20-40", "mmin+orig@60-80", "mmin+m3s@60-80"]
    assert expand_systems(["mmin"], "m3s", ranges[:1]) == ["mmin+m3s"]  # one range: no tag
    assert split_strategy("mmin(embd=8)+m3s@20-40") == ("mmin(embd=8)", "m3s")
    assert train_range_of("mmin+m3s@20-40") == (0.2, 0.4)
    assert train_range_of("mmin+m3s") is None and train_range_of("mmin") is None


# ---------------------------------------------------------------- the meta step


def _batch(seed: int, b: int = 12) -> Batch:
    g = torch.Generator().manual_seed(seed)
    full = [torch.randn(b, d, generator=g) for d in DIMS]
    return Batch(x=[x.clone() for x in full], avail=torch.ones(b, 3, dtype=torch.bool),
                 rows=torch.arange(b), y=torch.randint(0, 4, (b,), generator=g), x_full=full)


def _model():
    torch.manual_seed(0)
    spec = ModelSpec(("audio", "visual", "text"), DIMS, 4)
    return create_model("ae", spec, embd=16, enc_hidden=24, latent=16, classifier=(16,), dropout=0.0)


@pytest.mark.parametrize("second_order", [False, True])
def test_m3s_with_alpha_zero_is_a_plain_step_on_the_query_batch(second_order):
    plain, meta = _model(), _model()
    opt_p = torch.optim.AdamW(plain.parameters(), lr=1e-2)
    opt_m = torch.optim.AdamW(meta.parameters(), lr=1e-2)
    cfg = M3SConfig(inner_lr=0.0, inner_steps=1, second_order=second_order)
    for step in range(3):  # several steps: the optimizer states must agree too
        support, query = _batch(100 + step), _batch(200 + step)
        lp = plain_step(plain, opt_p, lambda m, b: m(b))(query, np.random.default_rng(0))
        lm = m3s_step(meta, opt_m, support, query, cfg)
        assert lm == pytest.approx(lp, rel=1e-6)
    for (n, a), b in zip(plain.named_parameters(), meta.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=f"{n} differs")


def test_m3s_inner_step_changes_the_update_and_second_order_differs_from_first():
    results = []
    for so in (False, True):
        m = _model()
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        m3s_step(m, opt, _batch(1), _batch(2), M3SConfig(inner_lr=0.5, inner_steps=2, second_order=so))
        results.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
    ref = _model()
    plain_step(ref, torch.optim.SGD(ref.parameters(), lr=0.1), lambda m, b: m(b))(_batch(2), np.random.default_rng(0))
    ref_v = torch.cat([p.detach().flatten() for p in ref.parameters()])
    assert torch.isfinite(results[1]).all()
    assert not torch.allclose(results[0], ref_v) and not torch.allclose(results[0], results[1])


# ---------------------------------------------------------------- strategies end to end


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from pipeline.data.synth import SynthConfig, write_synthetic

    path = tmp_path_factory.mktemp("m3s") / "tiny"
    return write_synthetic(path, SynthConfig(labeled=240, unlabeled=0, dims={"audio": 16, "visual": 12, "text": 20}, seed=3))


def test_span_bank_is_seeded_and_touches_only_its_rows(tiny):
    bank = FeatureBank(tiny, np.flatnonzero(tiny.labeled))
    rows = np.arange(0, 240, 3)
    a, b = span_bank(bank, rows, [(0.4, 0.6)] * 3, 7), span_bank(bank, rows, [(0.4, 0.6)] * 3, 7)
    other = np.setdiff1d(np.arange(240), rows)
    for xa, xb, x in zip(a.x, b.x, bank.x):
        assert torch.equal(xa, xb)
        assert torch.equal(xa[other], x[other])
        share = (xa[rows] == 0).float().mean().item() - (x[rows] == 0).float().mean().item()
        assert 0.35 < share < 0.6


@pytest.mark.parametrize("strategy", ["orig", "spl-trn", "m3s"])
def test_every_strategy_trains_a_registered_model(tiny, strategy):
    from pipeline.models.scores import score_accuracy

    bank = FeatureBank(tiny, np.flatnonzero(tiny.labeled))
    train, val = np.flatnonzero(tiny.folds >= 1), np.flatnonzero(tiny.folds == 0)
    spec = ModelSpec(tuple(tiny.modalities), tuple(tiny.manifest.dims), 6)
    torch.manual_seed(0)
    model = create_model("mmin", spec, embd=16, enc_hidden=32, ae_layers=(32, 16), n_blocks=2, classifier=(16,), target_full=True)
    source = SpanBatches(bank, train, val, strategy, [(0.4, 0.6)] * 3, seed=0, val_seed=1)
    res = fit_strategy(model, source, score_accuracy, TrainConfig(epochs=2, batch_size=64, patience=5, seed=0),
                       M3SConfig(inner_lr=1e-3))
    assert len(res.history) == 2 and all(np.isfinite(h["loss"]) for h in res.history)


def test_protocol_runs_strategies_and_writes_the_m3s_tables(tmp_path):
    from pipeline.config import Settings
    from pipeline.data.synth import SynthConfig, write_synthetic
    from pipeline.experiment import protocol
    from pipeline.experiment.results import write_results
    from pipeline.training.config import load_experiment

    data = tmp_path / "tiny"
    write_synthetic(data, SynthConfig(labeled=200, unlabeled=0, dims={"audio": 16, "visual": 12, "text": 20}, seed=3))
    cfg = load_experiment(
        None, dataset=str(data), experiment="m3s", folds=[0, 1], runs=1, ingest=False, systems=["ae", "ramer"],
        strategy="orig,m3s", missing_rate=[0.4, 0.6], test_missing_rate=[0.6, 0.8],
        **{"train.epochs": 2, "pretrain.epochs": 1, "encoder.d_model": 16, "encoder.hidden": 16,
           "encoder.heads": 2, "encoder.ff": 32, "encoder.layers": 1, "retrieval.k": 3},
    )
    st_ = Settings(data_dir=tmp_path, results_dir=tmp_path / "results", runs_dir=tmp_path / "runs")
    out = protocol.run_experiment(cfg, st_)
    path = write_results(out, cfg, st_)
    table = pq.read_table(path.parent / "metrics.parquet")
    assert set(table.column("system").to_pylist()) == {"ae+orig", "ae+m3s", "ramer+orig", "ramer+m3s"}
    assert set(table.column("condition").to_pylist()) == {"span60-80"}
    text = path.read_text()
    assert "ORIG + M3S" in text and "t-test" in text
    # The test spans are seeded per (fold, run) only: identical inputs for every system.
    again = protocol.run_experiment(cfg, st_, resume=True)
    assert sorted(map(str, again.records)) == sorted(map(str, out.records))


def test_training_range_x_test_range_grid(tmp_path):
    """M3S Table 4: one command trains per training range and scores every model on every test range."""
    from pipeline.config import Settings
    from pipeline.data.synth import SynthConfig, write_synthetic
    from pipeline.experiment import protocol
    from pipeline.experiment.results import write_results
    from pipeline.training.config import load_experiment

    data = tmp_path / "tiny"
    write_synthetic(data, SynthConfig(labeled=150, unlabeled=0, dims={"audio": 16, "visual": 12, "text": 20}, seed=4))
    cfg = load_experiment(
        None, dataset=str(data), experiment="grid", folds=[0, 1], runs=1, ingest=False, systems=["ae"],
        strategy="orig,spl-trn", missing_rate=[[0.2, 0.4], [0.6, 0.8]], test_missing_rate=[[0.2, 0.4], [0.6, 0.8]],
        **{"train.epochs": 2},
    )
    st_ = Settings(data_dir=tmp_path, results_dir=tmp_path / "results", runs_dir=tmp_path / "runs")
    out = protocol.run_experiment(cfg, st_)
    path = write_results(out, cfg, st_)
    table = pq.read_table(path.parent / "metrics.parquet")
    assert set(table.column("system").to_pylist()) == {
        "ae+orig@20-40", "ae+spl-trn@20-40", "ae+orig@60-80", "ae+spl-trn@60-80"}
    assert set(table.column("condition").to_pylist()) == {"span20-40", "span60-80"}
    text = path.read_text()
    assert "Training range x test range" in text and "| 20-40 | ORIG |" in text and "| 60-80 | ORIG + SPL-TRN |" in text
    # every model scored once per (fold, test range)
    units = [(r["system"], r["condition"], r["fold"]) for r in table.to_pylist() if r["metric"] == "WA"]
    assert len(units) == len(set(units)) == 4 * 2 * 2


def test_m3s_options_per_system(tmp_path, monkeypatch):
    """'mmin(inner_lr=0.01)+m3s' carries its own alpha; M3S options without +m3s are refused."""
    from pipeline.config import Settings
    from pipeline.data.synth import SynthConfig, write_synthetic
    from pipeline.errors import RamerError
    from pipeline.experiment import protocol
    from pipeline.training.config import RetrievalConfig, load_experiment
    from pipeline.training.systems import parse_system

    s = parse_system("mmin(inner_lr=0.01,embd=8)+m3s", RetrievalConfig())
    assert s.m3s == {"inner_lr": 0.01} and s.overrides["embd"] == 8 and s.strategy == "m3s"
    with pytest.raises(RamerError, match="only apply with the \\+m3s"):
        parse_system("mmin(inner_lr=0.01)+orig", RetrievalConfig())
    data = tmp_path / "tiny"
    write_synthetic(data, SynthConfig(labeled=120, unlabeled=0, dims={"audio": 8, "visual": 6, "text": 10}, seed=5))
    st_ = Settings(data_dir=tmp_path, results_dir=tmp_path / "results", runs_dir=tmp_path / "runs")
    cfg = load_experiment(None, dataset=str(data), experiment="bad", folds=[0], runs=1, ingest=False,
                          systems=["ae(inner_lr=0.1)"])
    with pytest.raises(RamerError, match="need --strategy m3s"):
        protocol.run_experiment(cfg, st_)
    from pipeline.training import strategies

    seen, original = {}, strategies.fit_strategy

    def spy(model, *args, **kw):
        seen[len(seen)] = args[3].inner_lr  # fit_strategy(model, source, score, cfg, m3s)
        return original(model, *args, **kw)

    monkeypatch.setattr(strategies, "fit_strategy", spy)
    cfg = load_experiment(None, dataset=str(data), experiment="alpha", folds=[0], runs=1, ingest=False,
                          systems=["ae", "ae(inner_lr=0.5)"], strategy="m3s", **{"train.epochs": 1})
    out = protocol.run_experiment(cfg, st_)
    assert {r["system"] for r in out.records} == {"ae+m3s", "ae(inner_lr=0.5)+m3s"}
    assert sorted(seen.values()) == [cfg.m3s.inner_lr, 0.5]  # the experiment's alpha, then the system's


def test_grid_table_with_cells_missing_for_a_training_range():
    """Merged or partial results: a (training range, test range) with no runs shows '–'."""
    import pyarrow as pa

    from pipeline.evaluation.strategy_report import grid_table

    rows = [{"system": f"ae+{st}@{tr}", "model": "ae", "strategy": st, "train_range": tr, "base": "ae",
             "missing": False, "fold": f, "run": 0, "condition": c, "metric": "WA", "value": 0.5 + 0.1 * f + d}
            for st, tr, c, d in [("orig", "20-40", "span20-40", 0.0), ("m3s", "20-40", "span20-40", 0.1),
                                 ("orig", "60-80", "span60-80", 0.0)] for f in (0, 1)]
    text = grid_table(pa.Table.from_pylist(rows))
    assert "| 20-40 | ORIG + M3S | **65.00 ± 5.00** | – |" in text
    assert "| 60-80 | ORIG | – | 55.00 ± 5.00 |" in text  # a lone strategy is not "best"


# ---------------------------------------------------------------- spans over frames


@pytest.fixture(scope="module")
def framed(tmp_path_factory):
    """A tiny MMSA import with its frames kept: the pooled vectors are the frames' means."""
    from test_importers import write_mmsa

    from pipeline.data.importers import import_mmsa

    root = tmp_path_factory.mktemp("frames")
    write_mmsa(root / "mosi.pkl", sizes=(60, 20, 20), frames=(9, 7, 11), rng=np.random.default_rng(7))
    return import_mmsa(root / "mosi.pkl", "mosi", root / "mosi", folds=2, keep_sequences=True)


def test_frame_span_takes_whole_frames_out_of_the_pooled_vector(framed):
    bank = FeatureBank(framed, np.arange(len(framed)))
    rows = np.arange(0, len(framed), 2)
    plan = SpanPlan(bank, [(0.3, 0.7)])
    assert plan.over_frames == [True, True, True]
    spans = plan.draw(rows, torch.Generator().manual_seed(5))
    out = plan.apply(rows, [x[torch.as_tensor(rows)] for x in bank.x], spans)
    for i, m in enumerate(framed.modalities):
        seq, (start, k) = framed.sequences[m], spans[i]
        for j, r in enumerate(rows):
            n = int(seq.lengths[r])
            assert 0 <= int(start[j]) and int(start[j] + k[j]) <= n  # inside the valid frames
            assert math.floor(n * 0.3 + 1e-9) <= int(k[j]) <= math.floor(n * 0.7 + 1e-9)
            frames = seq.values[r, :n].copy()
            frames[int(start[j]) : int(start[j] + k[j])] = 0.0  # the span's frames zeroed, then pooled
            np.testing.assert_allclose(out[i][j].numpy(), frames.sum(0) / max(n, 1), rtol=1e-4, atol=1e-5)


def test_frame_spans_at_rate_zero_leave_the_inputs_alone_and_dims_spans_are_unchanged(framed, tiny):
    bank = FeatureBank(framed, np.arange(len(framed)))
    rows = np.arange(len(framed))
    zero = span_bank(bank, rows, [(0.0, 0.0)], seed=3)
    for a, b in zip(zero.x, bank.x):
        torch.testing.assert_close(a, b)
    # span_over = "dims" (and a dataset without frames): the utterance vector's dims, as `span_masks`
    for ds, over in ((framed, "dims"), (tiny, "auto")):
        bank = FeatureBank(ds, np.flatnonzero(ds.labeled))
        rows = np.sort(bank.rows[::3])
        got = span_bank(bank, rows, [(0.4, 0.6)], seed=11, over=over)
        keep = span_masks(len(rows), [x.shape[1] for x in bank.x], [(0.4, 0.6)], torch.Generator().manual_seed(11))
        p = torch.as_tensor(bank.pos[rows])
        for x, k, g in zip(bank.x, keep, got.x):
            assert torch.equal(g[p], x[p] * k)


def test_m3s_on_frames_end_to_end_differs_from_dims_spans(framed, tmp_path):
    from pipeline.config import Settings
    from pipeline.experiment import protocol
    from pipeline.training.config import load_experiment

    runs = {}
    for over in ("auto", "dims"):
        cfg = load_experiment(
            None, dataset=str(framed.root), experiment=f"frames-{over}", folds=[0], runs=1, ingest=False,
            systems=["ae"], strategy="m3s", missing_rate=[0.4, 0.6], span_over=over, **{"train.epochs": 2},
        )
        st_ = Settings(data_dir=tmp_path, results_dir=tmp_path / "results", runs_dir=tmp_path / "runs")
        runs[over] = protocol.run_experiment(cfg, st_).records
    wa = {over: [m["value"] for r in recs for m in r["metrics"]] for over, recs in runs.items()}
    assert all(np.isfinite(wa["auto"])) and wa["auto"] != wa["dims"]
    with pytest.raises(RamerError, match="span_over 'frames'"):
        protocol.run_experiment(load_experiment(None, dataset=str(framed.root), span_over="frames", strategy="m3s",
                                                systems=["ae"]), st_)
