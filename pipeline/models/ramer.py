"""RAMER: missing modalities filled with retrieved hidden features (paper 3.2.3).

Each modality has its (stage-1 pretrained) encoder. For a missing modality t, the
available modality's hidden vector queries its own database for the top-K most similar
samples; the K neighbours' stored t-vectors are summed and L2-normalised (`Filler`).
The completed [h_1 .. h_M] is concatenated and classified. With `retrieval=False` the
missing slots keep h^miss (the encoder's output on the zero input): "w/o retrieval".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from pipeline.errors import RamerError
from pipeline.models.base import Batch, FoldResources, MERModel, ModelSpec, Output, mlp
from pipeline.models.encoders import EncoderConfig, UnimodalEncoder, use_fast_dropout
from pipeline.models.registry import register_model


class Filler(Protocol):
    """Turns query vectors into fused vectors for the missing modalities
    (`pipeline.retrieval.fill.RetrievalFiller`)."""

    def fill(self, queries: list[np.ndarray], avail: np.ndarray, rows: np.ndarray) -> list[np.ndarray]:
        """queries M x (B, d_m), avail (B, M), rows (B,) -> M x (B, H) fills (0 if available)."""
        ...


QUERY_SPACES = ("hidden", "features")  # what the available modality searches its DB with
FILL_NORMS = ("unit", "stored")  # the length of a fill


@register_model("ramer")
class RAMER(MERModel):
    @dataclass
    class Config:
        d_model: int = 256  # encoder Transformer width (after input projection)
        hidden: int = 256  # h size; the database stores these
        layers: int = 2  # encoder Transformer layers
        heads: int = 8  # encoder attention heads
        ff: int = 512  # encoder feed-forward width
        encoder_classifier: tuple[int, ...] = (128,)  # stage-1 classifier MLP (kept for loading)
        dropout: float = 0.5  # paper: 0.5
        classifier: tuple[int, ...] = (256, 128)  # MLP over the concatenated h's
        retrieval: bool = True  # False = the "w/o retrieval" ablation
        l2_available: bool = False  # L2-normalise available h too (lower validation WA on synth data)
        finetune_encoders: bool = False  # False = stage-1 encoders frozen (retrieval cacheable)
        norm_first: bool = True  # encoder layers pre-norm (the reference code: post-norm)
        max_params: int = 400_000_000  # encoder size cap of d_model = 0 (EncoderConfig)

    def __init__(self, spec: ModelSpec, cfg: RAMER.Config):
        super().__init__()
        self.spec, self.cfg = spec, cfg
        self.encoder_cfg = enc_cfg = EncoderConfig(
            d_model=cfg.d_model, hidden=cfg.hidden, layers=cfg.layers, heads=cfg.heads,
            ff=cfg.ff, dropout=cfg.dropout, classifier=cfg.encoder_classifier, norm_first=cfg.norm_first,
            max_params=cfg.max_params,
        )
        self.encoders = nn.ModuleList(UnimodalEncoder(d, spec.n_out, enc_cfg) for d in spec.dims)
        m = len(spec.dims)
        self.head = mlp([cfg.hidden * m, *cfg.classifier, spec.n_out], dropout=cfg.dropout)
        self.drop = nn.Dropout(cfg.dropout)
        self.filler: Filler | None = None  # set by `attach` (not a parameter)
        # (M,) length of each modality's fills; a buffer so `.to(device)` moves it with the
        # model (a filler attached by hand, outside `attach`, found it left on the CPU)
        self.register_buffer("fill_length", torch.ones(len(spec.dims)), persistent=False)
        self.query_features = False  # retrieval queries with input features instead of h
        # Frozen encoders: h of every dataset row is already in the database, so the
        # training stage may hand over the stored (N, H) vectors instead of re-encoding.
        self.stored_hidden: list[Tensor] | None = None  # M x (N, H), by dataset row
        self._h_miss: Tensor | None = None  # (1, M, H) frozen encoders' output on zeros
        use_fast_dropout(self)  # the head's dropout cost more than its matmuls on CPU

    uses_stage1_encoders = True

    def attach(self, fold: FoldResources, retrieval: Any, inputs_as_stored: bool = True) -> None:
        """Stage-1 encoders from the fold's DB, and its retrieval filler. Frozen encoders
        on unperturbed inputs reproduce the stored vectors, so those stand in for
        re-encoding and every neighbour list is cached; otherwise (fine-tuned encoders,
        span / noise inputs) the model encodes its inputs and retrieves with them live."""
        concrete = retrieval.query_space in QUERY_SPACES and retrieval.fill_norm in FILL_NORMS
        if self.cfg.retrieval and not concrete:
            raise ValueError(f"RAMER needs a concrete query_space {QUERY_SPACES} and fill_norm {FILL_NORMS} "
                             f"('auto' is resolved per fold by the training stage), got "
                             f"{retrieval.query_space!r}, {retrieval.fill_norm!r}")
        raw = retrieval.db_source == "raw"  # the DB is projected raw features, not h
        if raw and not inputs_as_stored and self.cfg.retrieval:
            raise RamerError("the raw-feature DB ablation retrieves with stored projections only; "
                             "it cannot be evaluated on span or noise inputs")
        db = fold.database(retrieval.db_source, retrieval.leaks, self.encoder_cfg)
        self.load_encoders(db.encoders)
        self.to(fold.device)
        if inputs_as_stored and not self.cfg.finetune_encoders and not raw:
            self.stored_hidden = [torch.as_tensor(db.vectors[m], device=fold.device) for m in self.spec.modalities]
        if self.cfg.retrieval:
            # queries: the available modality's h (the paper), or its stage-0 scaled input
            # features (`query_space="features"`); the fills are hidden vectors either way
            self.query_features = retrieval.query_space == "features"
            keys = fold.scaled_features() if self.query_features else None
            stored_queries = raw or (inputs_as_stored and (self.query_features or not self.cfg.finetune_encoders))
            self.filler = fold.filler(db.vectors, retrieval, stored_queries=stored_queries, keys=keys,
                                      fuse=retrieval.fusion)
            # reuse across epochs is for moving encoders; frozen ones searching live (span or
            # noise inputs) get new query vectors in every batch, so they search every batch
            self.filler.refresh_every = retrieval.refresh_every if self.cfg.finetune_encoders else 1
            self.fill_length = torch.ones(len(self.spec.modalities), device=fold.device)  # (M,)
            if retrieval.fill_norm == "stored":
                cand = fold.candidates(retrieval)  # lengths from allowed rows only, never val / test
                self.fill_length = torch.tensor(
                    [float(np.linalg.norm(db.vectors[m][cand[m]], axis=1).mean()) for m in self.spec.modalities],
                    device=fold.device)

    def load_encoders(self, encoders: list[UnimodalEncoder]) -> None:
        """Start from the stage-1 encoders (paper: 'we first load the pretrained model')."""
        for mine, theirs in zip(self.encoders, encoders):
            mine.load_state_dict(theirs.state_dict())
        for p in self.encoders.parameters():
            p.requires_grad_(self.cfg.finetune_encoders)
        self._h_miss = None

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        self._h_miss = None  # new encoder weights may come with it
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _apply(self, fn: Any, recurse: bool = True) -> RAMER:
        self._h_miss = None  # .to(device) / .double(): encode it again where the weights are
        return super()._apply(fn, recurse)

    def train(self, mode: bool = True) -> RAMER:
        super().train(mode)
        if self.filler is not None and hasattr(self.filler, "set_training"):
            self.filler.set_training(mode)  # its epoch count for `refresh_every`
        if not self.cfg.finetune_encoders:
            # Frozen encoders stay in eval mode: their outputs must equal the stored vectors.
            self.encoders.eval()
        return self

    def encode(self, x: list[Tensor]) -> Tensor:
        return torch.stack([enc(xm) for enc, xm in zip(self.encoders, x)], dim=1)  # (B, M, H)

    def encode_batch(self, batch: Batch) -> Tensor:
        """(B, M, H) hidden of each modality; h^miss (encoder of zeros) where unavailable."""
        rows = batch.rows
        if self.stored_hidden is None or self.cfg.finetune_encoders or bool((rows < 0).any()):
            return self.encode(batch.x)
        h_miss = self.missing_hidden(batch.x)  # (1, M, H), identical for every sample
        stored = torch.stack([h[rows.to(h.device)] for h in self.stored_hidden], 1)  # (B, M, H)
        stored = stored.to(h_miss.device)
        return torch.where(batch.avail.unsqueeze(-1), stored, h_miss)

    def missing_hidden(self, x: list[Tensor]) -> Tensor:
        """(1, M, H) h^miss of frozen encoders (eval mode, no gradient): the same tensor
        for every step, so it is encoded once - per step it was 45 % of RAMER's forward."""
        zeros = [xm.new_zeros(1, xm.shape[1]) for xm in x]
        with torch.no_grad():
            if self.encoders.training:  # before the first .train(): dropout draws, nothing to cache
                return self.encode(zeros)
            if self._h_miss is None:
                self._h_miss = self.encode(zeros)
        return self._h_miss

    def complete(self, batch: Batch) -> Tensor:
        """(B, M, H): available h's plus retrieved (or h^miss) vectors for the missing ones."""
        h = self.encode_batch(batch)  # (B, M, H); missing slots hold h^miss
        if self.cfg.retrieval:
            if self.filler is None:
                raise RuntimeError("RAMER with retrieval needs a filler (set by the training stage)")
            queries = batch.x if self.query_features else h.unbind(1)  # M x (B, D_m) or M x (B, H)
            fill = self.filler.fill(
                [q.detach().float().cpu().numpy() for q in queries], batch.avail.cpu().numpy(),
                batch.rows.cpu().numpy(),
            )  # M x (B, H)
            fill_t = torch.as_tensor(np.stack(fill, 1), device=h.device, dtype=h.dtype)  # (B, M, H)
            fill_t = fill_t * self.fill_length[:, None]
            avail = batch.avail.unsqueeze(-1)  # (B, M, 1)
            if self.cfg.l2_available:
                h = nn.functional.normalize(h, dim=-1)
            h = torch.where(avail, h, fill_t)
        elif self.cfg.l2_available:
            h = nn.functional.normalize(h, dim=-1)
        return h

    def forward(self, batch: Batch) -> Output:
        h = self.complete(batch)  # (B, M, H)
        joint = h.flatten(1)  # (B, M*H)
        logits = self.head(self.drop(joint))  # (B, n_out)
        return Output(logits=logits, aux_loss=self.zero_aux(logits), hidden=joint)
