"""Building blocks of the imputation baselines (CRA, MMIN, IF-MMIN, CIF-MMIN).

- `utt_encoder`: an utterance-level MLP, standing in for MMIN's LSTM / TextCNN encoders
  (our inputs are one vector per utterance, not frame sequences).
- `ResidualAE`: a cascade of small autoencoders. Each block sees the input plus every
  earlier block's output, so each adds a residual correction (Tran et al. 2017, MMIN).
- `cmd`, `info_nce`: the invariance losses of IF-MMIN (CMD) and CIF-MMIN (contrastive).
- `TeacherStudent`: the two-phase life of the MMIN family: `pretrain_forward` trains the
  encoders on full-modality data, then a frozen copy of them becomes the teacher whose
  embeddings of the complete input are the imagination targets.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from itertools import combinations

import torch
from torch import Tensor, nn

from pipeline.models.base import Batch, MERModel, Output, mlp


def utt_encoder(d_in: int, hidden: int, d_out: int, dropout: float) -> nn.Sequential:
    """x (B, d_in) -> (B, d_out): Linear-ReLU-Dropout twice (MMIN's FcEncoder shape)."""
    return mlp([d_in, hidden, d_out], dropout=dropout, last_act=True)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy that never trains (the teacher); refreshed by `load_state_dict`."""
    twin = copy.deepcopy(module)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


def masked_mean(feats: list[Tensor], mask: Tensor) -> Tensor:
    """Mean of M x (B, H) over the modalities where mask (B, M) is True; 0 when none."""
    stack = torch.stack(feats, dim=1)  # (B, M, H)
    w = mask.to(stack.dtype).unsqueeze(-1)  # (B, M, 1)
    return (stack * w).sum(1) / w.sum(1).clamp(min=1.0)  # (B, H)


def nonzero_rows(xs: list[Tensor]) -> Tensor:
    """(B, M) bool: a modality whose input is all zeros counts as absent."""
    return torch.stack([x.abs().sum(-1) > 0 for x in xs], dim=1)


class ResidualAE(nn.Module):
    """Cascaded residual autoencoder over vectors of size `dim`.

    Block k encodes x_k = x_{k-1} + out_{k-1} (+ an optional guidance vector, IF-MMIN's
    invariant feature) to a latent and decodes a correction out_k. Returns the restored
    vector (x_K + out_K, through a small transition MLP when `transition`) and the
    concatenated block latents (MMIN classifies from those).
    """

    def __init__(
        self,
        dim: int,
        layers: tuple[int, ...],
        n_blocks: int,
        dropout: float = 0.0,
        transition: bool = True,
    ):
        super().__init__()
        self.enc = nn.ModuleList(mlp([dim, *layers], dropout) for _ in range(n_blocks))
        self.dec = nn.ModuleList(mlp([*layers[::-1], dim], dropout) for _ in range(n_blocks))
        self.transition = (
            nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))
            if transition
            else nn.Identity()
        )
        self.latent_dim = layers[-1] * n_blocks

    def forward(self, x: Tensor, guide: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x_in, out = x, torch.zeros_like(x)  # (B, dim)
        latents = []
        for enc, dec in zip(self.enc, self.dec):
            x_in = x_in + out if guide is None else x_in + out + guide  # (B, dim)
            z = enc(x_in)  # (B, layers[-1])
            out = dec(z)  # (B, dim) this block's residual correction
            latents.append(z)
        return self.transition(x_in + out), torch.cat(latents, dim=-1)  # (B, dim), (B, latent_dim)


def cmd(a: Tensor, b: Tensor, moments: int = 5) -> Tensor:
    """Central moment discrepancy between two (B, H) samples (Zellinger et al. 2017).

    Distance of the means plus of the central moments 2..K, without the support-range
    scaling (inputs are expected in [-1, 1], e.g. tanh features). The eps keeps the
    gradient of the norm finite when two moments coincide.
    """
    l2 = lambda t: torch.sqrt((t * t).sum() + 1e-12)
    ma, mb = a.mean(0), b.mean(0)  # (H,)
    ca, cb = a - ma, b - mb  # (B, H)
    total = l2(ma - mb)
    for k in range(2, moments + 1):
        total = total + l2((ca**k).mean(0) - (cb**k).mean(0))
    return total


def info_nce(a: Tensor, b: Tensor, log_scale: Tensor) -> Tensor:
    """Symmetric InfoNCE: row i of `a` and row i of `b` (same sample) are the positives."""
    a, b = nn.functional.normalize(a, dim=-1), nn.functional.normalize(b, dim=-1)  # (B, H)
    logits = a @ b.T * log_scale.clamp(max=4.6).exp()  # (B, B); scale <= 100 as in CLIP
    target = torch.arange(len(a), device=a.device)
    ce = nn.functional.cross_entropy
    return 0.5 * (ce(logits, target) + ce(logits.T, target))


def pairwise(loss_fn, feats: list[Tensor], present: Tensor, min_rows: int = 2,
             weights: tuple[float, ...] = ()) -> Tensor:
    """Mean of loss_fn(f_i, f_j) over modality pairs (in `combinations` order: (0, 1),
    (0, 2), (1, 2), ...), each on the rows having both; `weights` (one per pair, empty =
    equal) make it a weighted mean over the pairs that have enough rows."""
    pairs = list(combinations(range(len(feats)), 2))
    if weights and len(weights) != len(pairs):
        raise ValueError(f"{len(weights)} pair weights for {len(pairs)} modality pairs")
    losses, ws = [], []
    for p, (i, j) in enumerate(pairs):
        rows = present[:, i] & present[:, j]  # (B,)
        if int(rows.sum()) >= min_rows:
            losses.append(loss_fn(feats[i][rows], feats[j][rows]))
            ws.append(weights[p] if weights else 1.0)
    if not losses:
        return feats[0].new_zeros(())
    w = torch.tensor(ws, dtype=losses[0].dtype, device=losses[0].device)
    return (torch.stack(losses) * w).sum() / w.sum()


class TeacherStudent(MERModel, ABC):
    """Base of the MMIN family: a pretraining phase, then a frozen teacher.

    `pretrain_forward` (run first by the training stage, on full-modality data) trains
    the student encoders. The first training-mode `forward` after it copies them into the
    teacher (`freeze_teacher`, also callable explicitly) and switches to imagination.
    Until then an eval-mode `forward` answers with the pretraining classifier, so the
    pretraining phase is validated on what it trains. The teacher lives in the state
    dict (saved with the model) and always runs in eval mode.
    """

    has_teacher_phase = True

    def __init__(self):
        super().__init__()
        self.register_buffer("teacher_ready", torch.zeros((), dtype=torch.bool))

    def prepare_functional(self) -> None:
        if not bool(self.teacher_ready):
            self.freeze_teacher()  # the snapshot a first imagination step would take

    @abstractmethod
    def teacher_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(student, teacher) module pairs; the teacher is a `frozen_copy` of the student."""

    @abstractmethod
    def pretrain_forward(self, batch: Batch) -> Output:
        """The pretraining phase: the student encoders on full-modality data."""

    @abstractmethod
    def imagine(self, batch: Batch) -> Output:
        """The imagination phase, trained towards the frozen teacher's embeddings of the complete input."""

    @torch.no_grad()
    def freeze_teacher(self) -> None:
        for student, teacher in self.teacher_pairs():
            teacher.load_state_dict(student.state_dict())
        self.teacher_ready.fill_(True)

    def train(self, mode: bool = True) -> TeacherStudent:
        super().train(mode)
        for _, teacher in self.teacher_pairs():
            teacher.eval()
        return self

    def forward(self, batch: Batch) -> Output:
        if not bool(self.teacher_ready):
            if not self.training:
                out = self.pretrain_forward(batch)
                return Output(out.logits, self.zero_aux(out.logits), out.hidden)
            self.freeze_teacher()
        return self.imagine(batch)
