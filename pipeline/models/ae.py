"""AE: a multimodal autoencoder imputing missing inputs, trained jointly with the classifier.

Per-modality encoders embed the (masked) inputs; a joint encoder compresses their
concatenation into one latent z; per-modality decoders reconstruct the *complete* inputs
from z, and the classifier reads z. Losses: CE (added by the trainer) + `recon_weight` x
the reconstruction MSE averaged over modalities (so a wide modality does not dominate).
This is the denoising/imputation AE of the missing-modality MER baselines (Bengio et al.
2006; Lian et al. 2023): trained on randomly masked inputs, asked for the full ones.

Adapted: utterance-level vectors, MLP encoders and decoders, any modalities and dims.
The reconstruction is on the raw input scale (standardise features upstream if their
scales differ a lot).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.models.base import Batch, MERModel, ModelSpec, Output, mlp
from pipeline.models.imagination import utt_encoder
from pipeline.models.registry import register_model


@register_model("ae")
class AE(MERModel):
    @dataclass
    class Config:
        embd: int = 128  # per-modality embedding size
        enc_hidden: int = 256  # hidden width of the modality encoders and decoders
        latent: int = 128  # joint bottleneck size (what the classifier reads)
        classifier: tuple[int, ...] = (128,)  # classifier hidden sizes
        dropout: float = 0.5  # encoders and classifier
        recon_weight: float = 1.0  # reconstruction loss weight (CE is 1)

    def __init__(self, spec: ModelSpec, cfg: AE.Config):
        super().__init__()
        self.spec, self.cfg = spec, cfg
        m = len(spec.dims)
        self.encoders = nn.ModuleList(
            utt_encoder(d, cfg.enc_hidden, cfg.embd, cfg.dropout) for d in spec.dims
        )
        self.joint = mlp([m * cfg.embd, cfg.enc_hidden, cfg.latent])
        self.decoders = nn.ModuleList(mlp([cfg.latent, cfg.enc_hidden, d]) for d in spec.dims)
        self.head = mlp([cfg.latent, *cfg.classifier, spec.n_out], cfg.dropout)

    def forward(self, batch: Batch) -> Output:
        h = torch.cat([enc(x) for enc, x in zip(self.encoders, batch.x)], dim=-1)  # (B, M*E)
        z = self.joint(h)  # (B, latent)
        logits = self.head(z)  # (B, n_out)
        aux = self.zero_aux(logits)
        if batch.x_full is not None:
            recon = [dec(z) for dec in self.decoders]  # M x (B, D_m)
            err = [nn.functional.mse_loss(r, x) for r, x in zip(recon, batch.x_full)]
            aux = aux + self.cfg.recon_weight * torch.stack(err).mean()
        return Output(logits=logits, aux_loss=aux, hidden=z)
