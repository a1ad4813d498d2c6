"""Batched inference of any model over rows of a feature bank (eval mode, no shuffle)."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.data.bank import FeatureBank
from pipeline.models.base import MERModel


@torch.no_grad()
def predict(model: MERModel, bank: FeatureBank, rows: np.ndarray, avail: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Logits (n, n_out) for `rows` with availability (M,) or (n, M); eval mode, no shuffle."""
    model.eval()
    avail = np.broadcast_to(avail, (len(rows), avail.shape[-1]))
    outs = []
    for i in range(0, len(rows), batch_size):
        b = bank.batch(rows[i : i + batch_size], avail[i : i + batch_size], with_full=False,
                       with_seq=getattr(model, "uses_sequences", False))
        outs.append(model(b).logits.float().cpu())
    return torch.cat(outs).numpy()
