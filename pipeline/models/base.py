"""What every model consumes and returns, so one trainer and one evaluator serve all.

A model sees a `Batch` whose unavailable modalities are already zeroed (the papers'
convention) plus the availability mask, and returns an `Output`: logits and its own
auxiliary loss (reconstruction, cycle, contrastive, KL ...) already weighted. A model
that sets `uses_sequences` also gets the frame sequences (`Batch.seq`) when the
dataset keeps them; everyone else never pays for reading them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from torch import Tensor, nn

from pipeline.data.batch import Batch, Frames  # noqa: F401  (what models consume; re-exported)


@dataclass(frozen=True)
class ModelSpec:
    """The data-dependent shape of a model."""

    modalities: tuple[str, ...]  # manifest order, e.g. ("audio", "visual", "text")
    dims: tuple[int, ...]  # input dim per modality
    n_out: int  # classes (single/multi-label) or 1 (regression)
    task: str = "single_label"  # single_label | multi_label | regression


@dataclass
class Output:
    logits: Tensor  # (B, n_out)
    aux_loss: Tensor  # () weighted sum of the model's extra losses; 0 when none
    hidden: Tensor | None = None  # (B, H) joint representation, for analysis


class FoldResources(Protocol):
    """What one (fold, run) offers a model that sets itself up from it (`MERModel.attach`).

    The training layer implements it; models see only this interface. Every retrieval
    it hands out searches the fold's allowed candidates only (train + pool rows of the
    DB scale, never val / test, never the query itself)."""

    device: str

    def database(self, source: str, leaks: tuple[str, ...] = (), encoder: Any = None) -> Any:
        """The fold's retrieval DB: `.vectors` (m -> (N, H) by dataset row) and
        `.encoders` (the stage-1 encoders that made them); `leaks`: a diagnostic's;
        `encoder`: the model's own `EncoderConfig` (other shapes get encoders of their own)."""
        ...

    def scaled_features(self) -> dict[str, np.ndarray]:
        """m -> (N, D_m) features of every dataset row after the fold's stage-0 scaling."""
        ...

    def candidates(self, retrieval: Any) -> dict[str, np.ndarray]:
        """m -> (N,) bool: the rows retrieval may return for modality m (DB scale,
        never val / test) that have m."""
        ...

    def filler(self, vectors: dict[str, np.ndarray], retrieval: Any, *, stored_queries: bool,
               fuse: str = "sum-l2", keys: dict[str, np.ndarray] | None = None) -> Any:
        """A `RetrievalFiller` that fills with `vectors`, searching `keys` (default: the
        vectors) with the system's retrieval options; `stored_queries`: the model's
        queries are the stored keys of its rows (cacheable)."""
        ...


class MERModel(nn.Module):
    """Base class: subclasses set `spec` and implement `forward(batch) -> Output`.

    Optional hooks, each found on the model (the trainer never asks for a model's name):
    - `pretrain_forward(batch) -> Output` with `has_teacher_phase`: a first training phase
      on full-modality data (MMIN-style teachers);
    - `attach(fold, retrieval, inputs_as_stored)`: take what the model needs from its
      (fold, run) (`FoldResources`: stage-1 encoders, the retrieval DB) before training
      or evaluation; `inputs_as_stored` is False when the inputs are perturbed (spans,
      noise), so nothing cached from the clean stored features may stand in for them;
    - `fit_direct(source, score_fn, cfg) -> FitResult`: a closed-form / scikit-learn fit
      of the trainer's batch source that replaces the epoch loop (linear references).
    `uses_sequences = True` asks for `Batch.seq` / `seq_full` (frames, when kept).
    `uses_stage1_encoders = True` builds the model with the experiment's encoder shape.
    `has_teacher_phase = True` runs `pretrain_forward` (a full-modality first phase) first.
    """

    spec: ModelSpec
    uses_sequences: bool = False
    uses_stage1_encoders: bool = False
    has_teacher_phase: bool = False
    fit_direct: Any = None  # the closed-form fit hook (a method), None for gradient-trained models
    filler: Any = None  # a retrieving model's `RetrievalFiller`, set by its `attach`

    @property
    def output_loss_weight(self) -> float:
        """Weight of the task loss the trainer puts on `Output.logits` (0: the model's
        own aux loss is its whole objective, as CARAT's eq. 15)."""
        return 1.0

    def zero_aux(self, ref: Tensor) -> Tensor:
        return ref.new_zeros(())

    def attach(self, fold: FoldResources, retrieval: Any, inputs_as_stored: bool = True) -> None:
        """Set up from the (fold, run); most models need nothing from it."""

    def prepare_functional(self) -> None:
        """Called before training through `torch.func` calls (M3S): take every state
        change a first forward would make now, outside the functional calls."""


def task_loss(task: str, logits: Tensor, y: Tensor) -> Tensor:
    """CE for single-label, BCE for multi-label, L1 (MAE, as MMSA) for regression."""
    if task == "single_label":
        return nn.functional.cross_entropy(logits, y)
    if task == "multi_label":
        return nn.functional.binary_cross_entropy_with_logits(logits, y.float())
    return nn.functional.l1_loss(logits.squeeze(-1), y.float())


def mlp(sizes: list[int], dropout: float = 0.0, last_act: bool = False) -> nn.Sequential:
    """Linear-ReLU-Dropout stack; no activation after the last layer unless asked."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or last_act:
            layers += [nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)
