"""Training strategies for partial (span) missing data, usable with any registered model.

The M3S paper (section 4.4) compares three ways to train on inputs whose modalities
each miss a contiguous span (`pipeline.data.spans`):

- ORIG: each training sample gets one missing rate (and span) drawn once; it is kept
  for the whole training, as in a fixed corrupted dataset.
- SPL-TRN: the transform is redrawn for every batch (augmented sampling).
- M3S (Algorithm 1): per step a query batch X2 (the epoch's permutation, so every row is
  a query once per epoch) and an independent support batch X1 of the same size, both
  with fresh spans. K inner SGD steps on X1 with lr alpha give theta*; the outer Adam
  step (lr beta) uses the gradient of the X2 loss at theta*. First order: that gradient
  is applied to theta as is (Algorithm 1 literally, FOMAML); second order: it is
  backpropagated through the inner steps (MAML), written with
  `torch.func.functional_call` so any model is a function of its parameters.

Under a strategy every modality is available (avail = True) and only spans are zeroed;
the clean inputs stay in `Batch.x_full` as training targets (MMIN's imagination).
Validation uses fixed seeded spans at the training range; model selection, early
stopping and the loss (task loss + the model's aux loss) are as in `trainer.fit`.

RAMER under a strategy: its (frozen) encoders encode the span-zeroed inputs (the stored
clean vectors are not used) and the classifier is trained on them. Its retrieval fills
whole-missing modalities: on a dataset where samples really lack a modality, those are
filled by neighbours of the span-zeroed available ones' encodings (searched live, never
from lists cached on clean features); with every modality present it does not act.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.func import functional_call

from pipeline.data.bank import FeatureBank
from pipeline.data.spans import Range, SpanPlan, range_tag, span_bank
from pipeline.errors import RamerError
from pipeline.models.base import Batch, MERModel
from pipeline.models.inference import predict
from pipeline.models.scores import Score
from pipeline.training.trainer import (
    FitResult,
    Forward,
    Step,
    StepFactory,
    TrainConfig,
    fit,
    model_loss,
)

STRATEGIES = ("orig", "spl-trn", "m3s")


@dataclass
class M3SConfig:
    inner_lr: float = 2e-4  # alpha, SGD on the support batch (paper, MMIN: 2e-4)
    outer_lr: float | None = None  # beta, Adam on the query batch; None = train.lr (paper, MMIN: 1e-4)
    inner_steps: int = 1  # K inner iterations
    second_order: bool = False  # backpropagate through the inner steps (MAML) or not (FOMAML)


def parse_strategies(text: str | Sequence[str]) -> list[str]:
    """'orig,spl-trn,m3s' -> ['orig', 'spl-trn', 'm3s']; 'none' -> []."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out = [s.strip().lower() for s in items if s.strip() and s.strip().lower() != "none"]
    bad = [s for s in out if s not in STRATEGIES]
    if bad:
        raise ValueError(f"unknown strategy {bad}; use none or a comma list of {STRATEGIES}")
    return out


def expand_systems(
    systems: Sequence[str], strategy: str | Sequence[str], train_ranges: Sequence[Range] = ()
) -> list[str]:
    """systems x strategies -> 'mmin+orig', 'mmin+m3s', ... (labels already suffixed stay).

    With several training ranges every pair is trained once per range and tagged with it:
    'mmin+m3s@20-40', 'mmin+m3s@40-60', ... (M3S Table 4: train range x test range)."""
    strats = parse_strategies(strategy)
    if not strats:
        return list(systems)
    tags = [""] if len(train_ranges) <= 1 else ["@" + range_tag(r) for r in train_ranges]
    out = []
    for s in systems:
        if split_strategy(s)[1] != "none":
            out.append(s)
        else:
            out += [f"{s}+{st}{tag}" for tag in tags for st in strats]
    return out


def split_strategy(label: str) -> tuple[str, str]:
    """'mmin(embd=64)+m3s@20-40' -> ('mmin(embd=64)', 'm3s'); no suffix -> (label, 'none')."""
    base, plus, suffix = label.strip().rpartition("+")
    strat = suffix.split("@", 1)[0].strip().lower()
    if plus and strat in STRATEGIES:
        return base.strip(), strat
    return label.strip(), "none"


def train_range_of(label: str) -> Range | None:
    """'mmin+m3s@20-40' -> (0.2, 0.4); None when the label carries no training range."""
    from pipeline.data.spans import parse_range

    _, plus, suffix = label.strip().rpartition("+")
    if plus and "@" in suffix and split_strategy(label)[1] != "none":
        return parse_range(suffix.split("@", 1)[1].strip())
    return None


def strategy_overrides(config_fields: set[str], overrides: dict) -> dict:
    """Model options a strategy implies: MMIN-family imagination targets the teacher's
    embedding of the complete input (every modality is 'available' under spans, so the
    'missing part only' target would be the embedding of zeros)."""
    if "target_full" in config_fields and "target_full" not in overrides:
        return {**overrides, "target_full": True}
    return overrides


def batch_loss(model: MERModel, batch: Batch, params: dict | None = None) -> torch.Tensor:
    out = model(batch) if params is None else functional_call(model, params, (batch,))
    return model_loss(model, out, batch.y)


def m3s_step(
    model: MERModel, opt: torch.optim.Optimizer, support: Batch, query: Batch, cfg: M3SConfig,
    clip: float = 5.0,
) -> float:
    """One iteration of Algorithm 1 (lines 4-11); returns the query loss."""
    theta = {n: p for n, p in model.named_parameters() if p.requires_grad}
    fast = theta if cfg.second_order else {n: p.detach().requires_grad_() for n, p in theta.items()}
    for _ in range(cfg.inner_steps):  # meta-train: theta_{n+1} = theta_n - alpha grad l(X1)
        loss1 = batch_loss(model, support, fast)
        grads = torch.autograd.grad(loss1, list(fast.values()), create_graph=cfg.second_order, allow_unused=True)
        fast = {
            n: w if g is None else w - cfg.inner_lr * g
            for (n, w), g in zip(fast.items(), grads)
        }
        if not cfg.second_order:
            fast = {n: w.detach().requires_grad_() for n, w in fast.items()}
    loss2 = batch_loss(model, query, fast)  # meta-update at theta*
    opt.zero_grad(set_to_none=True)
    if cfg.second_order:
        loss2.backward()  # d l(X2; theta*(theta)) / d theta, through the inner steps
    else:
        grads = torch.autograd.grad(loss2, list(fast.values()), allow_unused=True)
        for p, g in zip(theta.values(), grads):
            p.grad = None if g is None else g.detach()
    torch.nn.utils.clip_grad_norm_(list(theta.values()), clip)
    opt.step()
    return float(loss2.detach())


@dataclass
class SpanBatches:
    """Span-missing training (M3S section 4.4): every modality available, a contiguous
    span of each zeroed - drawn once per row and kept (`orig`) or redrawn per batch
    (`spl-trn`, `m3s`); validation on fixed seeded spans at the same ranges. The clean
    inputs stay in `Batch.x_full` (imagination targets)."""

    bank: FeatureBank
    train_rows: np.ndarray
    val_rows: np.ndarray
    strategy: str
    ranges: Sequence[Range]  # one (lo, hi) per modality
    seed: int  # training spans
    val_seed: int  # the fixed validation spans
    over: str = "auto"  # spans over frames where the dataset keeps them | "dims" (SpanPlan)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy '{self.strategy}'; use one of {STRATEGIES}")
        self.gen = torch.Generator().manual_seed(self.seed)
        self.dims = [x.shape[1] for x in self.bank.x]
        self.plan = SpanPlan(self.bank, self.ranges, self.over)
        # orig: one span per row for the whole training, by bank position
        self.fixed = self.plan.draw(self.bank.rows, self.gen) if self.strategy == "orig" else None
        self.val_bank = span_bank(self.bank, self.val_rows, self.ranges, self.val_seed, self.over)

    def spanned(self, rows: np.ndarray) -> Batch:
        b = self.bank.batch(rows, np.ones((len(rows), len(self.dims)), bool), with_full=True)
        p = torch.as_tensor(self.bank.pos[rows])
        spans = ([(s[p], k[p]) for s, k in self.fixed] if self.fixed is not None
                 else self.plan.draw(rows, self.gen))
        b.x = self.plan.apply(rows, b.x, spans)  # x_full stays clean
        return b

    def epoch(self, rng: np.random.Generator, order: np.ndarray, batch_size: int, with_seq: bool) -> Iterator[Batch]:
        """Spans act on the pooled vectors: a frame model trains on them too (`with_seq` unused)."""
        for i in range(0, len(order), batch_size):
            rows = order[i : i + batch_size]
            if len(rows) >= 2:
                yield self.spanned(rows)

    def support(self, rng: np.random.Generator, n: int) -> Batch:
        """M3S's support batch X1: n rows drawn independently of the query, fresh spans."""
        rows = rng.choice(self.train_rows, size=n, replace=n > len(self.train_rows))
        return self.spanned(rows)

    def validate(self, model: MERModel, score_fn: Score) -> float:
        y = self.bank.targets(self.val_rows)
        return score_fn(y, predict(model, self.val_bank, self.val_rows, np.ones(len(self.dims), bool)))


def m3s_steps(source: SpanBatches, cfg: M3SConfig, clip: float = 5.0) -> StepFactory:
    """Algorithm 1 as the loop's step: the epoch's batch is the query X2, a fresh support
    batch X1 of the same size is drawn for each (first-order or second-order MAML)."""

    def make(model: MERModel, opt: torch.optim.Optimizer, forward: Forward) -> Step:
        model.prepare_functional()  # e.g. the MMIN teacher snapshot, outside functional calls
        return lambda query, rng: m3s_step(model, opt, source.support(rng, len(query.rows)), query, cfg, clip)

    return make


def fit_strategy(
    model: MERModel, source: SpanBatches, score_fn: Score, cfg: TrainConfig, m3s: M3SConfig | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
) -> FitResult:
    """`fit` under a span strategy: M3S's meta-learning step (outer lr beta) or plain steps."""
    if model.fit_direct is not None:
        raise RamerError(f"{type(model).__name__} is fitted in closed form; span strategies train by gradient steps")
    if source.strategy != "m3s":
        return fit(model, source, score_fn, cfg, on_epoch=on_epoch)
    m3s = m3s or M3SConfig()
    return fit(model, source, score_fn, cfg, make_step=m3s_steps(source, m3s, cfg.clip), lr=m3s.outer_lr or cfg.lr,
               on_epoch=on_epoch)


def config_fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls.Config)}
