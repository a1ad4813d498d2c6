"""CRA: cascaded residual autoencoder imputation (Tran, Liu, Zhou and Jin, CVPR 2017).

The concatenated (masked) inputs go through a stack of residual autoencoders: block k
adds a correction to the running estimate, x_k = x_{k-1} + AE_k(x_{k-1}), so the stack
restores the complete input step by step. Missing slots are filled with the restored
values (available ones stay as observed) and the classifier reads the completed vector.
Losses: CE (added by the trainer) + `recon_weight` x MSE(restored, complete input),
averaged per modality so a wide modality does not dominate.

Adapted: the original restores raw feature vectors with a separately trained stack;
here it is trained jointly with the classifier, on utterance-level vectors of any
modalities and dims. The restoration is on the raw input scale (standardise features
upstream if their scales differ a lot).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.models.base import Batch, MERModel, ModelSpec, Output, mlp
from pipeline.models.imagination import ResidualAE
from pipeline.models.registry import register_model


@register_model("cra")
class CRA(MERModel):
    @dataclass
    class Config:
        ae_layers: tuple[int, ...] = (256, 128)  # encoder widths of one residual AE block
        n_blocks: int = 3  # residual AE blocks in the cascade
        ae_dropout: float = 0.0  # dropout inside the AE blocks
        classifier: tuple[int, ...] = (256, 128)  # classifier hidden sizes
        dropout: float = 0.5  # classifier dropout
        recon_weight: float = 1.0  # restoration loss weight (CE is 1)

    def __init__(self, spec: ModelSpec, cfg: CRA.Config):
        super().__init__()
        self.spec, self.cfg = spec, cfg
        total = sum(spec.dims)
        self.cra = ResidualAE(
            total, tuple(cfg.ae_layers), cfg.n_blocks, cfg.ae_dropout, transition=False
        )
        self.head = mlp([total, *cfg.classifier, spec.n_out], cfg.dropout)

    def forward(self, batch: Batch) -> Output:
        dims = list(self.spec.dims)
        x = torch.cat(batch.x, dim=-1)  # (B, sum D)
        restored, _ = self.cra(x)  # (B, sum D)
        keep = torch.cat(
            [batch.avail[:, i : i + 1].expand(-1, d) for i, d in enumerate(dims)], dim=-1
        )
        filled = torch.where(keep, x, restored)  # (B, sum D) observed slots kept, missing restored
        logits = self.head(filled)  # (B, n_out)
        aux = self.zero_aux(logits)
        if batch.x_full is not None:
            parts = restored.split(dims, dim=-1)  # M x (B, D_m)
            err = [nn.functional.mse_loss(r, x) for r, x in zip(parts, batch.x_full)]
            aux = aux + self.cfg.recon_weight * torch.stack(err).mean()
        return Output(logits=logits, aux_loss=aux, hidden=filled)
