"""CARAT specifics beyond the registry tests: ablation flags, training-only state
(queue, prototypes, shuffle), missing modalities, and learning a tiny multi-label task."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.data.bank import FeatureBank
from pipeline.evaluation.metrics import multilabel_metrics
from pipeline.models.base import Batch, ModelSpec, task_loss
from pipeline.models.inference import predict
from pipeline.models.registry import create_model
from pipeline.models.scores import score_micro_f1
from pipeline.training.trainer import ConditionBatches, TrainConfig, fit

DIMS = (10, 8, 12)
SPEC = ModelSpec(("audio", "visual", "text"), DIMS, 6, "multi_label")
SMALL = {"d_model": 16, "tokens": 2, "layers": 1, "heads": 2, "ff": 32, "latent": 8, "queue": 64, "anchors": 32}


def batch(b=12, avail=None, seed=0, full=True) -> Batch:
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(b, d, generator=g) for d in DIMS]
    av = torch.ones(b, 3, dtype=torch.bool) if avail is None else torch.as_tensor(avail)
    y = (torch.rand(b, 6, generator=g) > 0.6).float()
    return Batch(x=[x * av[:, i : i + 1] for i, x in enumerate(xs)], avail=av, rows=torch.arange(b), y=y,
                 x_full=xs if full else None)


@pytest.mark.parametrize("flags", [{}, {"contrastive": False}, {"reconstruction": False}, {"shuffle": False},
                                   {"contrastive": False, "reconstruction": False, "shuffle": False}])
def test_ablations_train_step(flags):
    torch.manual_seed(0)
    m = create_model("carat", SPEC, **SMALL, **flags)
    m.train()
    b = batch()
    out = m(b)
    loss = task_loss("multi_label", out.logits, b.y) + out.aux_loss
    loss.backward()
    assert torch.isfinite(loss) and out.logits.shape == (12, 6)


def test_training_state_only_moves_in_training():
    torch.manual_seed(0)
    m = create_model("carat", SPEC, **SMALL)
    m.eval()
    with torch.no_grad():
        m(batch(full=False))
    assert int(m.queue_ptr) == 0 and float(m.protos.abs().sum()) == 0.0
    m.train()
    m(batch())
    assert int(m.queue_ptr) > 0 and (m.queue_label >= 0).any()
    assert torch.allclose(m.protos.norm(dim=-1), torch.ones(3, 2, 6), atol=1e-5)  # seen classes, normalised


def test_missing_modality_input_is_ignored():
    """An unavailable modality's input values do not reach the prediction (eval)."""
    torch.manual_seed(0)
    m = create_model("carat", SPEC, **SMALL)
    m.train()
    m(batch())  # prototypes set
    m.eval()
    avail = np.array([[True, False, True]] * 4)
    b = batch(4, avail, full=False)
    noisy = Batch(x=[b.x[0], torch.randn(4, DIMS[1]), b.x[2]], avail=b.avail, rows=b.rows)
    with torch.no_grad():
        torch.testing.assert_close(m(b).logits, m(noisy).logits)


def test_shuffle_targets_follow_their_vectors():
    """The shuffled aggregation loss is minimal for a classifier that reads each label
    vector's own source label: with vectors = one-hot of their label bit, a perfect agg
    head scores near-zero loss after shuffling."""
    torch.manual_seed(0)
    m = create_model("carat", ModelSpec(("a", "v", "t"), DIMS, 2, "multi_label"), **SMALL)
    B, M, C, d = 16, 3, 2, 16
    pol = (torch.rand(B, C) > 0.5).float()
    beta = torch.zeros(B, M, C, d)
    beta[..., 0] = pol[:, None, :] * 2 - 1  # each vector carries its own sample's bit
    with torch.no_grad():  # agg: logit_c = 20 * first feature of label vector c
        m.agg[0].weight.zero_(), m.agg[0].bias.zero_(), m.agg[3].weight.zero_(), m.agg[3].bias.zero_()
        for c in range(C):
            m.agg[0].weight[c, c * d] = 1.0
            m.agg[3].weight[c, c] = 20.0
        m.agg[0].bias.fill_(1.0)  # keep the ReLU open: input in {0, 2}
        m.agg[3].bias.fill_(-20.0)
        loss = m._shuffled(beta, pol, torch.ones(B, M, dtype=torch.bool))
    assert float(loss) < 1e-3


def test_learns_tiny_multilabel(tmp_path):
    """Labels drive every modality's mean: CARAT beats the best constant predictor."""
    from pipeline.data.dataset import build_table, write_dataset
    from pipeline.data.schema import Manifest, ModalitySpec

    rng = np.random.default_rng(0)
    n, dims = 400, dict(zip(("audio", "visual", "text"), DIMS))
    y = (rng.random((n, 6)) < 0.3).astype(np.float32)
    feats = {m: (y @ rng.normal(0, 1, (6, d)) + rng.normal(0, 1, (n, d))).astype(np.float32) for m, d in dims.items()}
    man = Manifest(name="t", task="multi_label", classes=[f"c{i}" for i in range(6)],
                   modalities=[ModalitySpec(name=m, dim=d) for m, d in dims.items()], folds=5)
    table = build_table(man, np.array([f"s{i}" for i in range(n)]), y, np.ones(n, bool), (np.arange(n) % 5).astype(np.int8), feats)
    ds = write_dataset(tmp_path / "t", man, table)
    bank = FeatureBank(ds, np.arange(n))
    train, val, test = (np.flatnonzero(np.isin(ds.folds, f)) for f in ([0, 1, 2], [3], [4]))
    torch.manual_seed(0)
    m = create_model("carat", SPEC, **SMALL)
    fit(m, ConditionBatches(bank, train, val, np.ones((1, 3), bool)), score_micro_f1,
        TrainConfig(epochs=10, batch_size=32, lr=3e-3, patience=10, seed=0))
    f1 = multilabel_metrics(ds.y[test], predict(m, bank, test, np.ones(3, bool)), threshold=0.4)["F1"]
    every = multilabel_metrics(ds.y[test], np.ones((len(test), 6)), threshold=0.4)["F1"]  # best constant
    assert f1 > every + 0.06, (f1, every)


def test_text_layers_deepen_only_the_text_extractor():
    """The paper's extractor depth: 6 layers for text, 4 for audio / visual (`text_layers`)."""
    spec = ModelSpec(("audio", "visual", "text"), (6, 5, 7), 3, "multi_label")
    model = create_model("carat", spec, **{**SMALL, "layers": 1, "text_layers": 3})
    assert [len(e.transformer.layers) for e in model.extract] == [1, 1, 3]
    plain = create_model("carat", spec, **{**SMALL, "layers": 2})  # 0 = every modality `layers`
    assert [len(e.transformer.layers) for e in plain.extract] == [2, 2, 2]
