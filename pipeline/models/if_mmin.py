"""IF-MMIN: MMIN guided by modality-invariant features (Zuo et al., ICASSP 2023).

Pretraining adds one encoder shared by all modalities on top of the modality-specific
embeddings; its outputs (the invariant features) are pulled together across modalities
by a central moment discrepancy (CMD) loss, and the fusion classifier reads specific and
invariant features. In the imagination phase the invariant feature of the available
modalities guides every residual-AE block, and an invariant-consistency loss pulls it
towards the frozen teacher's invariant feature of the complete input.

Losses: CE + `mse_weight` x forward imagination + `inv_weight` x invariant consistency
(+ `cycle_weight` x cycle: the IF-MMIN reference drops the backward AE, so 0 by default);
pretraining: CE + `cmd_weight` x CMD over modality pairs.
`mse_weight` is inherited from MMIN (4); the IF-MMIN script uses 1 (`--preset paper`).

Adapted: utterance-level MLP encoders instead of LSTM/TextCNN; the shared encoder ends
in tanh (CMD assumes bounded features). The reference concatenates the invariant features
of all modalities, missing ones included (encodings of zero inputs); here the invariant
feature is the mean over the *available* modalities (its teacher target: the mean over
every modality present in the complete input), mapped by a linear layer to the AE width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pipeline.models.base import Batch, ModelSpec, Output
from pipeline.models.imagination import cmd, frozen_copy, masked_mean, nonzero_rows, pairwise
from pipeline.models.mmin import MMIN, mse
from pipeline.models.registry import register_model


@register_model("if-mmin")
class IFMMIN(MMIN):
    @dataclass
    class Config(MMIN.Config):
        inv: int = 128  # invariant feature size (output of the shared encoder)
        cmd_weight: float = 1.0  # CMD loss between modalities' invariant features (pretraining)
        cmd_moments: int = 5  # highest central moment matched by CMD (reference: 5)
        inv_weight: float = 1.0  # invariant-consistency loss in the imagination phase
        cycle_weight: float = 0.0  # the IF-MMIN reference has no backward imagination

    def __init__(self, spec: ModelSpec, cfg: IFMMIN.Config):
        super().__init__(spec, cfg)
        e, m = cfg.embd, len(spec.dims)
        self.shared = nn.Sequential(
            nn.Linear(e, cfg.inv), nn.ReLU(), nn.Linear(cfg.inv, cfg.inv), nn.Tanh()
        )
        self.teacher_shared = frozen_copy(self.shared)
        self.to_guide = nn.Linear(cfg.inv, m * e)

    def pretrain_dim(self) -> int:
        return len(self.spec.dims) * (self.cfg.embd + self.cfg.inv)  # [specific, invariant]

    def teacher_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.encoders, self.teacher), (self.shared, self.teacher_shared)]

    def pretrain_forward(self, batch: Batch) -> Output:
        hs = self.embed(self.encoders, batch.x)  # M x (B, E)
        ss = [self.shared(h) for h in hs]  # M x (B, I)
        joint = torch.cat(hs + ss, dim=-1)  # (B, M*(E+I))
        moments = lambda a, b: cmd(a, b, self.cfg.cmd_moments)
        aux = self.cfg.cmd_weight * pairwise(moments, ss, batch.avail)
        return Output(self.pre_head(joint), aux, joint)

    def invariant(self, batch: Batch, hs: list[Tensor]) -> tuple[Tensor, Tensor]:
        inv = masked_mean([self.shared(h) for h in hs], batch.avail)  # (B, I)
        return self.to_guide(inv), inv  # (B, M*E), (B, I)

    def invariant_loss(self, batch: Batch, inv: Tensor) -> Tensor:
        with torch.no_grad():
            ss = [
                self.teacher_shared(h) for h in self.embed(self.teacher, batch.x_full)
            ]  # M x (B, I)
            target = masked_mean(ss, nonzero_rows(batch.x_full))  # (B, I)
        return self.cfg.inv_weight * mse(inv, target)
