"""RAMER's modality encoder network (paper 3.2.1, reference code's pretrain model).

Input utterance vector -> linear projection to d_model (the reference code runs the
Transformer at the input width, 5120 for text; projecting first keeps it cheap) ->
[CLS, x] as 2 tokens with learned positions -> Transformer encoder -> CLS output ->
linear to the 256-d hidden feature h (what the database stores) -> MLP classifier.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pipeline.models.base import mlp


@dataclass
class EncoderConfig:
    d_model: int = 256  # Transformer width after the input projection
    hidden: int = 256  # size of h, the stored hidden feature (paper: 256)
    layers: int = 2  # Transformer layers (reference code: 2)
    heads: int = 8  # attention heads (reference code: 8)
    ff: int = 512  # feed-forward width
    dropout: float = 0.5  # paper: 0.5
    classifier: tuple[int, ...] = (128,)  # MLP hidden sizes after h (reference: [256, 128])


class UnimodalEncoder(nn.Module):
    """One modality: x (B, D) -> h (B, hidden); `classify(h)` -> logits (B, n_out)."""

    def __init__(self, in_dim: int, n_out: int, cfg: EncoderConfig):
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(in_dim, cfg.d_model), nn.LayerNorm(cfg.d_model))
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.d_model))
        self.pos = nn.Parameter(torch.zeros(1, 2, cfg.d_model))
        nn.init.trunc_normal_(self.cls, std=0.02)
        nn.init.trunc_normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(
            cfg.d_model, cfg.heads, cfg.ff, cfg.dropout, batch_first=True, norm_first=True
        )
        self.transformer = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.to_hidden = nn.Linear(cfg.d_model, cfg.hidden)
        self.head = mlp([cfg.hidden, *cfg.classifier, n_out], dropout=cfg.dropout)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        tok = self.proj(x).unsqueeze(1)  # (B, 1, d)
        cls = self.cls.expand(x.shape[0], -1, -1)  # (B, 1, d)
        seq = torch.cat([cls, tok], dim=1) + self.pos  # (B, 2, d)
        out = self.transformer(seq)[:, 0]  # (B, d) CLS output
        return self.to_hidden(out)  # (B, hidden)

    def classify(self, h: Tensor) -> Tensor:
        return self.head(self.drop(torch.relu(h)))  # (B, n_out)


class FusedEncoders(nn.Module):
    """Several unimodal encoders sharing one classifier over the concatenated h's.

    Used for the "multimodal h_s" ablation: hidden features learned with multimodal
    fusion in pretraining instead of one classifier per modality.
    """

    def __init__(self, dims: list[int], n_out: int, cfg: EncoderConfig):
        super().__init__()
        self.encoders = nn.ModuleList(UnimodalEncoder(d, n_out, cfg) for d in dims)
        self.head = mlp([cfg.hidden * len(dims), *cfg.classifier, n_out], dropout=cfg.dropout)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, xs: list[Tensor]) -> Tensor:
        hs = [enc(x) for enc, x in zip(self.encoders, xs)]  # M x (B, hidden)
        return self.head(self.drop(torch.relu(torch.cat(hs, dim=-1))))  # (B, n_out)
