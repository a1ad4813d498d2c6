"""What a model consumes: a `Batch` of rows (and their frames), built by `FeatureBank`.

Unavailable modalities are already zeroed (the papers' convention) and flagged in the
availability mask; the complete inputs ride along only as training targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Frames:
    """Frame sequences of a batch: frames [0, length) of a row are real, the rest is zero
    padding. A modality kept without frames arrives as its utterance vector (T_m = 1)."""

    x: list[Tensor]  # per modality (B, T_m, D_m)
    lengths: Tensor  # (B, M) long; 0 = no frame (modality unavailable or absent)

    def to(self, device: torch.device | str) -> Frames:
        return Frames([t.to(device) for t in self.x], self.lengths.to(device))

    def masked(self, avail: Tensor) -> Frames:
        """Unavailable modalities (avail (B, M) False) zeroed, with length 0."""
        xs = [x * avail[:, i, None, None] for i, x in enumerate(self.x)]
        return Frames(xs, self.lengths * avail)


@dataclass
class Batch:
    x: list[Tensor]  # per modality (B, D_m); zeros where unavailable
    avail: Tensor  # (B, M) bool, True = modality given to the model
    rows: Tensor  # (B,) long, dataset row of each sample (retrieval, caches)
    y: Tensor | None = None  # (B,) long | (B, C) float multi-hot | (B,) float target
    x_full: list[Tensor] | None = None  # complete inputs; training-time targets only
    seq: Frames | None = None  # frames of the same inputs (unavailable: zeros, length 0)
    seq_full: Frames | None = None  # complete frames; training-time targets only

    def to(self, device: torch.device | str) -> Batch:
        mv = lambda t: None if t is None else t.to(device, non_blocking=True)
        return Batch(
            x=[t.to(device) for t in self.x], avail=self.avail.to(device), rows=self.rows,
            y=mv(self.y), x_full=None if self.x_full is None else [t.to(device) for t in self.x_full],
            seq=None if self.seq is None else self.seq.to(device),
            seq_full=None if self.seq_full is None else self.seq_full.to(device),
        )
