"""CARAT's first step (see `pipeline.models.carat`): per modality a Transformer over
tokens or frames and a label-wise attention that give one vector per label, U^m (B, C, d)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.nn import functional as F

if TYPE_CHECKING:
    from pipeline.models.carat import CARAT


def pool_windows(x: Tensor, lengths: Tensor, max_frames: int) -> tuple[Tensor, Tensor]:
    """(B, T, D) frames (valid first) -> means over windows of k = ceil(T / max_frames)
    frames, so at most `max_frames` remain; (B,) lengths follow (ceil(len / k))."""
    B, T, D = x.shape
    if T <= max_frames:
        return x, lengths
    k = -(-T // max_frames)
    w = -(-T // k)  # windows
    valid = (torch.arange(T, device=x.device)[None, :] < lengths[:, None]).to(x.dtype)  # (B, T)
    sums = F.pad(x * valid[..., None], (0, 0, 0, w * k - T)).view(B, w, k, D).sum(2)  # (B, w, D)
    cnt = F.pad(valid, (0, w * k - T)).view(B, w, k).sum(2)  # (B, w)
    return sums / cnt.clamp_min(1)[..., None], (lengths + k - 1) // k


class LabelExtractor(nn.Module):
    """x (B, D) -> T tokens, or frames (B, T, D) -> Transformer -> label-wise attention -> U (B, C, d)."""

    def __init__(self, in_dim: int, n_labels: int, cfg: CARAT.Config, layers: int | None = None):
        super().__init__()
        self.t, self.d = cfg.tokens, cfg.d_model
        self.proj = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, cfg.tokens * cfg.d_model))
        self.pos = nn.Parameter(torch.zeros(1, cfg.tokens, cfg.d_model))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.frame_proj = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, cfg.d_model))
        self.frame_pos = nn.Parameter(torch.zeros(1, cfg.max_frames, cfg.d_model))
        nn.init.trunc_normal_(self.frame_pos, std=0.02)
        layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.heads, cfg.ff, cfg.dropout, batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers or cfg.layers, enable_nested_tensor=False)
        self.label_query = nn.Linear(cfg.d_model, n_labels, bias=False)  # w_j of the label attention

    def forward(self, x: Tensor) -> Tensor:
        h = self.proj(x).view(-1, self.t, self.d) + self.pos  # (B, T, d)
        h = self.transformer(h)  # (B, T, d)
        att = torch.softmax(self.label_query(h), dim=1)  # (B, T, C), over tokens
        return torch.einsum("btc,btd->bcd", att, h)  # (B, C, d)

    def frames(self, x: Tensor, lengths: Tensor) -> Tensor:
        """Frames (B, T, D) with (B,) valid counts -> U (B, C, d); padding is never read.
        A row without frames (modality unavailable) sees one zero frame, as the vector
        path sees a zero vector."""
        x, lengths = pool_windows(x, lengths, self.frame_pos.shape[1])
        T = x.shape[1]
        pad = torch.arange(T, device=x.device)[None, :] >= lengths[:, None]  # (B, T) True = padding
        x = x.masked_fill(pad[..., None], 0.0)
        pad[:, 0] = False
        h = self.frame_proj(x) + self.frame_pos[:, :T]  # (B, T, d)
        h = self.transformer(h, src_key_padding_mask=pad)  # (B, T, d)
        score = self.label_query(h).masked_fill(pad[..., None], float("-inf"))  # (B, T, C)
        att = torch.softmax(score, dim=1)  # over valid frames
        return torch.einsum("btc,btd->bcd", att, h)  # (B, C, d)
