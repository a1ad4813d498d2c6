"""MMIN: Missing Modality Imagination Network (Zhao, Li and Jin, ACL 2021).

Per-modality encoders embed the inputs (missing ones are zero inputs); a cascaded
residual autoencoder "imagines" the joint embedding of the missing modalities from the
concatenated embeddings (forward imagination), and a second one maps the imagination
back to the input embeddings (backward / cycle imagination). The classifier reads the
concatenated bottleneck latents of the imagination blocks. The imagination targets are
the embeddings of a teacher: the same encoders after a full-modality pretraining phase
(`pretrain_forward`: encoders + a fusion classifier), frozen.

Losses: CE (weight 1, added by the trainer) + `mse_weight` x MSE(imagined, teacher
target) + `cycle_weight` x MSE(backward imagination, input embeddings); 1 / 4 / 2 as in
the MMIN reference.

Adapted from the original sequence-level design: utterance vectors go through MLP
encoders instead of LSTM (audio, visual) and TextCNN (text); any number of modalities
and dims. As in the reference, the forward target is the teacher's embedding of the
input with the *available* modalities zeroed, i.e. of the missing part only
(`target_full=True` uses the teacher's embedding of the complete input instead).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pipeline.models.base import Batch, ModelSpec, Output, mlp
from pipeline.models.imagination import ResidualAE, TeacherStudent, frozen_copy, utt_encoder
from pipeline.models.registry import register_model

mse = nn.functional.mse_loss


@register_model("mmin")
class MMIN(TeacherStudent):
    @dataclass
    class Config:
        embd: int = 128  # per-modality embedding size (MMIN: 128)
        enc_hidden: int = 256  # hidden width of each utterance-level encoder MLP
        ae_layers: tuple[int, ...] = (256, 128, 64)  # encoder widths of one AE block (MMIN)
        n_blocks: int = 5  # residual AE blocks (MMIN: 5)
        classifier: tuple[int, ...] = (128, 128)  # hidden sizes of the classifiers (MMIN)
        dropout: float = 0.5  # encoders and classifiers (the AE blocks use none, as MMIN)
        mse_weight: float = 4.0  # forward imagination loss (MMIN: 4; CE is 1)
        cycle_weight: float = 2.0  # backward (cycle) imagination loss (MMIN: 2); 0 = no cycle AE
        target_full: bool = False  # True: target = teacher(complete input), not of the missing part

    def __init__(self, spec: ModelSpec, cfg: MMIN.Config):
        super().__init__()
        self.spec, self.cfg = spec, cfg
        m, e = len(spec.dims), cfg.embd
        self.encoders = nn.ModuleList(
            utt_encoder(d, cfg.enc_hidden, e, cfg.dropout) for d in spec.dims
        )
        self.teacher = frozen_copy(self.encoders)
        self.pre_head = mlp([self.pretrain_dim(), *cfg.classifier, spec.n_out], cfg.dropout)
        self.ae = ResidualAE(m * e, tuple(cfg.ae_layers), cfg.n_blocks)
        self.ae_cycle = (
            ResidualAE(m * e, tuple(cfg.ae_layers), cfg.n_blocks) if cfg.cycle_weight > 0 else None
        )
        self.head = mlp([self.head_dim(), *cfg.classifier, spec.n_out], cfg.dropout)

    # ------------------------------------------------------------ hooks for subclasses

    def pretrain_dim(self) -> int:
        return len(self.spec.dims) * self.cfg.embd

    def head_dim(self) -> int:
        return self.ae.latent_dim

    def teacher_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.encoders, self.teacher)]

    def invariant(self, batch: Batch, hs: list[Tensor]) -> tuple[Tensor | None, Tensor | None]:
        """(guide (B, M*E) added in every AE block, invariant feature); none for MMIN."""
        return None, None

    def invariant_loss(self, batch: Batch, inv: Tensor | None) -> Tensor:
        return batch.x[0].new_zeros(())

    def classify(self, h: Tensor, recon: Tensor, latent: Tensor) -> tuple[Tensor, Tensor]:
        """(logits, joint representation); MMIN classifies the AE block latents."""
        return self.head(latent), latent

    # ------------------------------------------------------------ the two phases

    @staticmethod
    def embed(encoders: nn.ModuleList, xs: list[Tensor]) -> list[Tensor]:
        return [enc(x) for enc, x in zip(encoders, xs)]  # M x (B, E)

    def pretrain_forward(self, batch: Batch) -> Output:
        """Full-modality fusion model: encoders -> concatenation -> classifier."""
        h = torch.cat(self.embed(self.encoders, batch.x), dim=-1)  # (B, M*E)
        return Output(self.pre_head(h), self.zero_aux(h), h)

    @torch.no_grad()
    def target(self, batch: Batch) -> Tensor:
        """The teacher's embeddings the imagination must reach, (B, M*E)."""
        xs = batch.x_full
        if not self.cfg.target_full:
            xs = [x * ~batch.avail[:, i : i + 1] for i, x in enumerate(xs)]  # missing part only
        return torch.cat(self.embed(self.teacher, xs), dim=-1)  # (B, M*E)

    def imagine(self, batch: Batch) -> Output:
        hs = self.embed(self.encoders, batch.x)  # M x (B, E); missing inputs are zeros
        h = torch.cat(hs, dim=-1)  # (B, M*E)
        guide, inv = self.invariant(batch, hs)  # (B, M*E) | None
        recon, latent = self.ae(h, guide)  # (B, M*E), (B, n_blocks*L)
        logits, joint = self.classify(h, recon, latent)  # (B, n_out), (B, J)
        aux = self.zero_aux(logits)
        if batch.x_full is not None:  # training: imagination losses against the teacher
            aux = aux + self.cfg.mse_weight * mse(recon, self.target(batch))
            if self.ae_cycle is not None:
                back, _ = self.ae_cycle(recon)  # (B, M*E)
                aux = aux + self.cfg.cycle_weight * mse(back, h.detach())
            aux = aux + self.invariant_loss(batch, inv)
        return Output(logits=logits, aux_loss=aux, hidden=joint)
