"""Training budgets that mean the same at any data size: an epoch - one
validation round, what `epochs` and `patience` count - is at least
`TrainConfig.min_epoch_steps` optimizer steps, as many passes over few rows as reach it;
with enough rows it is one pass, exactly as before."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from pipeline.models.base import Batch, MERModel, ModelSpec, Output
from pipeline.training.config import resolve_layers
from pipeline.training.trainer import TrainConfig, fit, resolve_budget, steps_per_pass


@pytest.mark.parametrize(("rows", "batch", "steps"), [(140, 128, 2), (700, 128, 6), (129, 128, 1), (128, 128, 1)])
def test_steps_per_pass_skip_a_one_row_tail(rows, batch, steps):
    assert steps_per_pass(rows, batch) == steps


def test_few_rows_get_several_passes_per_epoch_many_rows_one():
    cfg = TrainConfig(epochs=40, patience=10, batch_size=128, min_epoch_steps=6)
    small, large = resolve_budget(cfg, 140), resolve_budget(cfg, 700)  # 10 % / 50 % labeled mfeat folds
    assert (small.passes, small.steps_per_epoch, small.epochs, small.patience) == (3, 6, 40, 10)
    assert (large.passes, large.steps_per_epoch) == (1, 6)  # unchanged where an epoch has the steps
    assert resolve_budget(cfg, 100_000).passes == 1
    assert resolve_budget(TrainConfig(min_epoch_steps=1), 140).passes == 1  # one pass, always


def test_the_paper_preset_keeps_one_pass_per_epoch_and_the_default_does_not():
    paper, default = resolve_layers(preset="paper"), resolve_layers()
    assert paper.train.min_epoch_steps == paper.pretrain.min_epoch_steps == 1
    assert default.train.min_epoch_steps == default.pretrain.min_epoch_steps == 6


class _Linear(MERModel):
    def __init__(self):
        super().__init__()
        self.spec = ModelSpec(("a",), (3,), 2, "single_label")
        self.lin = torch.nn.Linear(3, 2)

    def forward(self, batch: Batch) -> Output:
        logits = self.lin(batch.x[0])  # (B, 2)
        return Output(logits=logits, aux_loss=self.zero_aux(logits))


@dataclass
class _Counting:
    """A batch source over `rows` random rows whose validation score never improves."""

    train_rows: np.ndarray
    val_rows: np.ndarray
    batches: int = 0
    rounds: int = 0
    bank: object = None

    def epoch(self, rng, order, batch_size, with_seq):
        for i in range(0, len(order), batch_size):
            rows = order[i : i + batch_size]
            if len(rows) >= 2:
                self.batches += 1
                x = torch.as_tensor(rng.normal(size=(len(rows), 3)), dtype=torch.float32)  # (B, 3)
                y = torch.as_tensor(rng.integers(0, 2, len(rows)))
                yield Batch(x=[x], avail=torch.ones(len(rows), 1, dtype=torch.bool), y=y,
                            rows=torch.as_tensor(rows))

    def validate(self, model, score_fn):
        self.rounds += 1
        return 0.5


def test_fit_takes_the_resolved_steps_and_stops_after_the_resolved_patience():
    source = _Counting(np.arange(140), np.arange(140, 160))
    cfg = TrainConfig(epochs=40, patience=4, batch_size=128, min_epoch_steps=6)
    result = fit(_Linear(), source, lambda y, p: 0.0, cfg)
    # the first round sets the best score, 4 stale rounds stop it: 5 rounds of 3 passes x 2 steps
    assert source.rounds == 5 and source.batches == 5 * 6
    assert result.budget is not None and result.budget.as_record()["steps_per_epoch"] == 6
