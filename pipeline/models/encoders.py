"""RAMER's modality encoder network (paper 3.2.1, reference code's pretrain model).

Input utterance vector -> linear projection to d_model (the reference code runs the
Transformer at the input width, 5120 for text; projecting first keeps it cheap) ->
[CLS, x] as 2 tokens with learned positions -> Transformer encoder -> CLS output ->
linear to the 256-d hidden feature h (what the database stores) -> MLP classifier.
`d_model = 0` is the reference shape: no projection, the Transformer at the input width
(post-norm with `norm_first=False`, as PyTorch's default the reference uses), where that
is feasible (`encoder_width`).

Two things make it cheap on a CPU without changing what it computes: the last
layer runs attention and feed-forward for the CLS query only (the one output used; the
other token still gives its keys and values), and dropout draws its masks from numpy's
PCG64 generator, ~10x faster than torch's CPU Bernoulli on these shapes (there dropout
took more time than the matrix multiplies). Same parameters, same checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.models.base import mlp

FALLBACK_WIDTH = 256  # d_model when the input width is infeasible for d_model = 0


@dataclass
class EncoderConfig:
    d_model: int = 256  # Transformer width after the input projection; 0 = the input width (reference)
    hidden: int = 256  # size of h, the stored hidden feature (paper: 256)
    layers: int = 2  # Transformer layers (reference code: 2)
    heads: int = 8  # attention heads (reference code: 8)
    ff: int = 512  # feed-forward width
    dropout: float = 0.5  # paper: 0.5
    classifier: tuple[int, ...] = (128,)  # MLP hidden sizes after h (reference: [256, 128])
    norm_first: bool = True  # pre-norm layers; the reference code: post-norm (False)
    # d_model = 0 falls back to FALLBACK_WIDTH above this many parameters per encoder
    # (Adam holds ~4 copies: 400M parameters are ~6.4 GB)
    max_params: int = 400_000_000


def transformer_params(width: int, ff: int, layers: int) -> int:
    """Parameters of `layers` PyTorch Transformer encoder layers of this width."""
    attn = 4 * width * width + 4 * width  # in-proj (3 w^2 + 3w) + out-proj (w^2 + w)
    return layers * (attn + 2 * width * ff + ff + width + 4 * width)  # + feed-forward + 2 LayerNorms


def encoder_width(in_dim: int, cfg: EncoderConfig) -> tuple[int, str]:
    """(Transformer width, why): the input width for d_model = 0 unless the heads do not
    divide it or it would exceed `max_params`; then FALLBACK_WIDTH after a projection."""
    if cfg.d_model:
        return cfg.d_model, "projected"
    if in_dim % cfg.heads:
        return FALLBACK_WIDTH, f"input width {in_dim} is not divisible by {cfg.heads} heads"
    if transformer_params(in_dim, cfg.ff, cfg.layers) > cfg.max_params:
        return FALLBACK_WIDTH, f"input width {in_dim} needs more than max_params={cfg.max_params:,} parameters"
    return in_dim, "reference"


_MASKS = np.random.default_rng(0)  # dropout masks on CPU; reseeded by `seed_dropout`


def seed_dropout(seed: int) -> None:
    """Reseed the mask generator (the trainer's `seed_everything` does, with torch's)."""
    global _MASKS
    _MASKS = np.random.default_rng(seed)


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Inverted dropout; on CPU its keep-mask comes from numpy's PCG64 (fast)."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":  # GPU RNGs are fast already
        return F.dropout(x, p, True)
    keep = _MASKS.random(tuple(x.shape), dtype=np.float32) >= p  # same shape as x
    scale = np.float32(1.0 / (1.0 - p))
    return x * torch.from_numpy(keep.astype(np.float32) * scale)


class FastDropout(nn.Dropout):
    """nn.Dropout with `dropout`'s masks (a subclass: isinstance checks still hold)."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)


def use_fast_dropout(module: nn.Module) -> nn.Module:
    """Swap every nn.Dropout inside `module` for a FastDropout of the same p."""
    for parent in module.modules():
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, FastDropout(child.p))
    return module


def layer_forward(layer: nn.TransformerEncoderLayer, x: Tensor, cls_only: bool) -> Tensor:
    """One encoder layer as nn.TransformerEncoderLayer computes it: pre-norm (its
    `norm_first=True`) x + SA(norm1(x)), then + FF(norm2(.)); post-norm norm1(x + SA(x)),
    then norm2(. + FF(.)). `cls_only`: outputs for token 0 only, the CLS query attending
    over all tokens (B, 1, d); otherwise every token (B, T, d). (Computing the first
    layer's CLS projections once, not per row, as they do not depend on x, saved only 3 %
    of a stage-1 step on CPU: not done.)"""
    sa = layer.self_attn
    B, T, d = x.shape
    heads = sa.num_heads
    hd = d // heads
    pre = layer.norm_first
    w, b = sa.in_proj_weight, sa.in_proj_bias  # (3d, d), (3d,)
    h = layer.norm1(x) if pre else x  # (B, T, d)
    q = F.linear(h[:, :1] if cls_only else h, w[:d], b[:d])  # (B, Tq, d)
    kv = F.linear(h, w[d:], b[d:])  # (B, T, 2d)
    Tq = q.shape[1]
    q = q.reshape(B, Tq, heads, hd).transpose(1, 2)  # (B, H, Tq, hd)
    k, v = kv.reshape(B, T, 2, heads, hd).permute(2, 0, 3, 1, 4)  # 2 x (B, H, T, hd)
    att = torch.softmax(q @ k.transpose(-1, -2) / hd**0.5, dim=-1)  # (B, H, Tq, T)
    att = dropout(att, sa.dropout, layer.training)
    mixed = (att @ v).transpose(1, 2).reshape(B, Tq, d)  # (B, Tq, d)
    x = x[:, :Tq] + layer.dropout1(sa.out_proj(mixed))  # (B, Tq, d)
    if not pre:
        x = layer.norm1(x)
    ff = layer.linear2(layer.dropout(layer.activation(layer.linear1(layer.norm2(x) if pre else x))))  # (B, Tq, d)
    return x + layer.dropout2(ff) if pre else layer.norm2(x + layer.dropout2(ff))


class UnimodalEncoder(nn.Module):
    """One modality: x (B, D) -> h (B, hidden); `classify(h)` -> logits (B, n_out)."""

    def __init__(self, in_dim: int, n_out: int, cfg: EncoderConfig):
        super().__init__()
        width, self.shape = encoder_width(in_dim, cfg)
        # the reference feeds x to the Transformer as it is; a projection otherwise
        self.proj = (nn.Identity() if self.shape == "reference"
                     else nn.Sequential(nn.Linear(in_dim, width), nn.LayerNorm(width)))
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.pos = nn.Parameter(torch.zeros(1, 2, width))
        nn.init.trunc_normal_(self.cls, std=0.02)
        nn.init.trunc_normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(
            width, cfg.heads, cfg.ff, cfg.dropout, batch_first=True, norm_first=cfg.norm_first
        )
        self.transformer = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.to_hidden = nn.Linear(width, cfg.hidden)
        self.width = width
        self.head = mlp([cfg.hidden, *cfg.classifier, n_out], dropout=cfg.dropout)
        self.drop = nn.Dropout(cfg.dropout)
        use_fast_dropout(self)

    def forward(self, x: Tensor) -> Tensor:
        tok = self.proj(x).unsqueeze(1)  # (B, 1, d)
        cls = self.cls.expand(x.shape[0], -1, -1)  # (B, 1, d)
        seq = torch.cat([cls, tok], dim=1) + self.pos  # (B, 2, d)
        layers = self.transformer.layers
        for i, layer in enumerate(layers):  # only the CLS output of the last layer is used
            seq = layer_forward(layer, seq, cls_only=i == len(layers) - 1)  # (B, 2, d); last (B, 1, d)
        return self.to_hidden(seq[:, 0])  # (B, hidden)

    def classify(self, h: Tensor) -> Tensor:
        return self.head(self.drop(torch.relu(h)))  # (B, n_out)


def describe_encoders(encoders: list[UnimodalEncoder], names: tuple[str, ...], cfg: EncoderConfig) -> list[str]:
    """One line per modality: its exact parameter count and shape, and why a reference
    shape (d_model = 0) was not used where it was infeasible."""
    lines = []
    for name, enc in zip(names, encoders):
        n = sum(p.numel() for p in enc.parameters())
        line = f"stage-1 encoder {name}: {n:,} parameters ({cfg.layers} layers at width {enc.width}, ff {cfg.ff})"
        if cfg.d_model == 0 and enc.shape != "reference":
            line += f"; reference shape infeasible: {enc.shape}, projected to {enc.width} instead"
        lines.append(line)
    return lines


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
