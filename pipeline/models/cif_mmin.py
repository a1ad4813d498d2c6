"""CIF-MMIN: contrastively learned invariant features + imagination (Liu et al., 2024).

As IF-MMIN, but the modality-invariant features come from their own per-modality
encoders trained contrastively in pretraining: the projections of two modalities of the
same sample are positives, the other samples of the batch negatives (symmetric InfoNCE
over every modality pair, learned temperature). In the imagination phase the invariant
feature of the available modalities guides every residual-AE block, an invariant-
consistency loss pulls it towards the frozen teacher's invariant feature of the complete
input, and the classifier reads the input embeddings plus the imagined ones (h + recon),
as the reference does.

Losses: CE + `mse_weight` x forward imagination + `inv_weight` x invariant consistency
(+ `cycle_weight` x cycle, 0 by default as in the reference); pretraining: CE +
`nce_weight` x InfoNCE.

Adapted: utterance-level MLP encoders (specific and invariant) instead of LSTM/TextCNN;
the reference weights the three pairs 0.25 / 0.25 / 0.5 (`pair_weights`, set by
`--preset paper`); by default all pairs weigh the same (any number of modalities). The invariant feature is the mean over the *available*
modalities instead of a concatenation including encodings of zero inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pipeline.models.base import Batch, ModelSpec, Output, mlp
from pipeline.models.imagination import (
    frozen_copy,
    info_nce,
    masked_mean,
    nonzero_rows,
    pairwise,
    utt_encoder,
)
from pipeline.models.mmin import MMIN, mse
from pipeline.models.registry import register_model


@register_model("cif-mmin")
class CIFMMIN(MMIN):
    @dataclass
    class Config(MMIN.Config):
        inv: int = 128  # invariant feature size (per-modality invariant encoders)
        nce_weight: float = 1.0  # cross-modal InfoNCE loss (pretraining)
        temperature: float = 0.1  # initial InfoNCE temperature (learned)
        inv_weight: float = 1.0  # invariant-consistency loss in the imagination phase
        cycle_weight: float = 0.0  # the CIF-MMIN reference has no backward imagination
        # InfoNCE weight of each modality pair in manifest order ((a,v), (a,l), (v,l) for
        # audio, visual, text); empty = equal weights (any number of modalities)
        pair_weights: tuple[float, ...] = ()

    def __init__(self, spec: ModelSpec, cfg: CIFMMIN.Config):
        super().__init__(spec, cfg)
        e, m, i = cfg.embd, len(spec.dims), cfg.inv
        self.inv_encoders = nn.ModuleList(
            utt_encoder(d, cfg.enc_hidden, i, cfg.dropout) for d in spec.dims
        )
        self.teacher_inv = frozen_copy(self.inv_encoders)
        self.proj = nn.ModuleList(mlp([i, i, i]) for _ in spec.dims)  # contrastive heads
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.temperature)))
        self.to_guide = nn.Linear(i, m * e)

    def head_dim(self) -> int:
        return len(self.spec.dims) * self.cfg.embd  # classifies h + recon

    def teacher_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.encoders, self.teacher), (self.inv_encoders, self.teacher_inv)]

    def pretrain_forward(self, batch: Batch) -> Output:
        h = torch.cat(self.embed(self.encoders, batch.x), dim=-1)  # (B, M*E)
        cs = self.embed(self.inv_encoders, batch.x)  # M x (B, I)
        zs = [p(c) for p, c in zip(self.proj, cs)]  # M x (B, I)
        nce = lambda a, b: info_nce(a, b, self.log_scale)
        aux = self.cfg.nce_weight * pairwise(nce, zs, batch.avail, weights=tuple(self.cfg.pair_weights))
        return Output(self.pre_head(h), aux, h)

    def invariant(self, batch: Batch, hs: list[Tensor]) -> tuple[Tensor, Tensor]:
        inv = masked_mean(self.embed(self.inv_encoders, batch.x), batch.avail)  # (B, I)
        return self.to_guide(inv), inv  # (B, M*E), (B, I)

    def invariant_loss(self, batch: Batch, inv: Tensor) -> Tensor:
        with torch.no_grad():
            cs = self.embed(self.teacher_inv, batch.x_full)  # M x (B, I)
            target = masked_mean(cs, nonzero_rows(batch.x_full))  # (B, I)
        return self.cfg.inv_weight * mse(inv, target)

    def classify(self, h: Tensor, recon: Tensor, latent: Tensor) -> tuple[Tensor, Tensor]:
        joint = h + recon  # (B, M*E) available embeddings completed by the imagination
        return self.head(joint), joint
