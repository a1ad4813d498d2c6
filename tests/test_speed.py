"""The stage-1 speed-ups compute what the plain modules compute: the CLS-only last
layer equals nn.TransformerEncoder's CLS output, and the fast dropout is dropout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.models.encoders import (
    EncoderConfig,
    FastDropout,
    UnimodalEncoder,
    dropout,
    seed_dropout,
)


def _reference(enc: UnimodalEncoder, x: torch.Tensor) -> torch.Tensor:
    """The encoder as torch's own modules run it (every token through every layer)."""
    tok = enc.proj(x).unsqueeze(1)  # (B, 1, d)
    seq = torch.cat([enc.cls.expand(len(x), -1, -1), tok], dim=1) + enc.pos  # (B, 2, d)
    return enc.to_hidden(enc.transformer(seq)[:, 0])  # (B, hidden)


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("norm_first", [True, False])  # pre-norm (default) and post-norm (the reference's)
def test_cls_only_encoder_equals_torch_transformer(layers, train, norm_first):
    torch.manual_seed(layers)
    cfg = EncoderConfig(d_model=32, hidden=16, layers=layers, heads=4, ff=48, dropout=0.0 if train else 0.5,
                        norm_first=norm_first)
    enc = UnimodalEncoder(20, 3, cfg).train(train)
    x = torch.randn(9, 20)
    torch.testing.assert_close(enc(x), _reference(enc, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm_first", [True, False])
def test_cls_only_encoder_gradients_equal_torch_transformer(norm_first):
    torch.manual_seed(0)
    cfg = EncoderConfig(d_model=16, hidden=8, heads=2, ff=24, dropout=0.0, norm_first=norm_first)
    enc = UnimodalEncoder(12, 3, cfg).train()
    x = torch.randn(7, 12)
    grads = []
    for forward in (enc, lambda v: _reference(enc, v)):
        enc.zero_grad()
        forward(x).square().sum().backward()
        grads.append([p.grad.clone() for p in enc.parameters() if p.grad is not None])  # the head has none
    assert len(grads[0]) == len(grads[1]) > 10
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_fast_dropout_keeps_one_minus_p_scaled_and_is_seeded():
    x = torch.ones(400, 500, requires_grad=True)
    seed_dropout(3)
    out = dropout(x, 0.3, True)
    kept = out.detach() > 0
    assert abs(kept.float().mean().item() - 0.7) < 0.01
    torch.testing.assert_close(out.detach()[kept], torch.full_like(out.detach()[kept], 1 / 0.7))
    out.sum().backward()  # the gradient is the same mask
    assert torch.equal(x.grad, out.detach())
    seed_dropout(3)
    assert torch.equal(dropout(x, 0.3, True), out)
    assert torch.equal(dropout(x, 0.3, False), x) and torch.equal(dropout(x, 0.0, True), x)


def test_encoder_uses_only_fast_dropout():
    enc = UnimodalEncoder(8, 2, EncoderConfig(d_model=16, hidden=8, heads=2, ff=16))
    drops = [m for m in enc.modules() if isinstance(m, nn.Dropout)]
    assert drops and all(isinstance(m, FastDropout) for m in drops)
    assert np.isclose(drops[0].p, 0.5)


def _live_filler(n: int = 60, k: int = 4):
    from pipeline.retrieval.fill import RetrievalFiller
    from pipeline.retrieval.retriever import ModalityRetriever

    rng = np.random.default_rng(0)
    mods = ["a", "b"]
    vecs = {m: rng.standard_normal((n, 8)).astype(np.float32) for m in mods}
    present = {m: np.ones(n, bool) for m in mods}
    filler = RetrievalFiller(ModalityRetriever(k=k).fit(vecs, present, np.ones(n, bool)), mods, vecs, present, k=k)
    calls = []
    search = filler._search
    filler._search = lambda m, q, r: (calls.append(len(r)), search(m, q, r))[1]
    return filler, vecs, calls, search


def test_evaluation_remembers_live_searches_exactly():
    filler, vecs, calls, search = _live_filler()
    rows = np.arange(10, 30)
    q = vecs["a"][rows] + 0.1  # a fine-tuned encoder's query, not the stored vector
    filler.set_training(False)
    first = filler.neighbours("a", q, rows)
    again = filler.neighbours("a", q, rows)  # another condition, the same query vectors
    moved = filler.neighbours("a", q + 0.5, rows)  # other weights / noisy inputs: searched again
    assert calls == [20, 20]
    direct = search("a", q + 0.5, rows)
    assert np.array_equal(moved.rows, direct[0]) and np.array_equal(first.rows, again.rows)
    assert np.array_equal(first.rows, search("a", q, rows)[0])


def test_refresh_every_reuses_training_lists_for_that_many_epochs():
    filler, vecs, calls, _ = _live_filler()
    rows = np.arange(20)
    for every, expected in ((1, [20, 20, 20, 20]), (2, [20, 20]), (0, [20])):
        filler._stale.clear()  # a new training run
        filler.refresh_every, calls[:] = every, []
        for epoch in range(4):
            filler.set_training(True)
            got = filler.neighbours("b", vecs["b"][rows] + epoch, rows)
            filler.set_training(False)
            assert (got.rows >= 0).all() and not (got.rows == rows[:, None]).any()  # never the query
        assert calls == expected, every
