"""One training loop for every registered model and strategy (`fit`).

What varies is where the batches come from (a `BatchSource`: random whole-missing
conditions per row and epoch - the papers' protocol - or span-missing inputs) and what
one step does (plain, or M3S's meta-learning step). Model selection and early stopping
use the validation split only. Unavailable modalities reach the model as zeros plus a
mask.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from pipeline.data.bank import FeatureBank
from pipeline.models.base import Batch, MERModel, Output, task_loss
from pipeline.models.encoders import seed_dropout
from pipeline.models.inference import predict
from pipeline.models.scores import Score

Forward = Callable[[MERModel, Batch], Output]


OPTIMIZERS = ("adamw", "adam")
SCHEDULES = ("constant", "linear-decay", "warmup-linear")


@dataclass
class TrainConfig:
    epochs: int = 40  # paper: 40 per fold
    batch_size: int = 128  # paper: 128
    lr: float = 1e-3
    weight_decay: float = 1e-5
    patience: int = 10  # epochs without validation gain before stopping
    full_prob: float = 0.0  # share of training samples shown with every modality
    seed: int = 0
    optimizer: str = "adamw"  # adamw | adam (Adam's weight decay is L2 in the gradient)
    beta1: float = 0.9  # Adam's first-moment decay (the MMIN code family: 0.5)
    # constant | linear-decay (flat for the first half of the steps, then linearly to 0:
    # MMIN's niter = niter_decay) | warmup-linear (linear warm-up over `warmup` of the
    # steps, then linearly to 0: CARAT)
    schedule: str = "constant"
    warmup: float = 0.1  # share of the steps spent warming up (warmup-linear only)
    clip: float = 5.0  # gradient-norm clip (the MMIN / RAMER reference code: 1.0)
    # Budgets that mean the same on 140 training rows as on 100k: an epoch of
    # ceil(rows / batch_size) batches is 2 optimizer steps at 10 % labeled mfeat, 6 at
    # 50 %, so 40 epochs were 80 steps on small data, too few to train. An epoch (one
    # validation round: what `epochs` and `patience` count) is at least this many steps:
    # as many passes over the rows as reach it. 6 = an epoch of the 50 % labeled mfeat
    # folds (700 rows): there and on larger data nothing changes. 1 = one pass, always
    # (`--preset paper`: the paper's 40 epochs).
    min_epoch_steps: int = 6


@dataclass
class FitResult:
    best_epoch: int
    best_score: float
    history: list[dict] = field(default_factory=list)  # per epoch: loss, val score
    budget: Budget | None = None  # the epochs / patience this fit resolved to


@dataclass(frozen=True)
class Budget:
    """A fit's resolved budget (`resolve_budget`): recorded with every fit."""

    epochs: int  # validation rounds at most
    patience: int  # rounds without validation gain before stopping
    passes: int  # passes over the training rows per round
    steps_per_epoch: int  # optimizer steps per round

    def as_record(self) -> dict:
        return {"epochs_budget": self.epochs, "patience_budget": self.patience,
                "passes_per_epoch": self.passes, "steps_per_epoch": self.steps_per_epoch}


def steps_per_pass(n_rows: int, batch_size: int) -> int:
    """Optimizer steps of one pass over n_rows (a 1-row tail batch is skipped)."""
    full, tail = divmod(n_rows, batch_size)
    return max(1, full + (tail >= 2))


def resolve_budget(cfg: TrainConfig, n_rows: int) -> Budget:
    """An epoch of n_rows training rows: as many passes as reach `cfg.min_epoch_steps`
    optimizer steps (one where a pass has that many), so `epochs` x that is the run's
    step budget whatever the data's size."""
    per_pass = steps_per_pass(n_rows, cfg.batch_size)
    passes = max(1, -(-cfg.min_epoch_steps // per_pass))
    return Budget(cfg.epochs, cfg.patience, passes, passes * per_pass)


class EarlyStopping:
    """Keeps the weights of the best validation epoch; says when patience has run out."""

    def __init__(self, model: MERModel, patience: int):
        self.result = FitResult(best_epoch=-1, best_score=-np.inf)
        self.state = copy.deepcopy(model.state_dict())
        self.patience, self.stale = patience, 0

    def update(self, model: MERModel, epoch: int, loss: float, score: float,
               on_epoch: Callable[[int, dict], None] | None = None) -> bool:
        """Record one epoch; True = stop training."""
        rec = {"epoch": epoch, "loss": loss, "val": score}
        self.result.history.append(rec)
        if on_epoch is not None:
            on_epoch(epoch, rec)
        if score > self.result.best_score:
            self.result.best_epoch, self.result.best_score, self.stale = epoch, score, 0
            self.state = copy.deepcopy(model.state_dict())
            return False
        self.stale += 1
        return self.stale >= self.patience

    def restore(self, model: MERModel) -> FitResult:
        model.load_state_dict(self.state)
        return self.result


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    seed_dropout(seed)  # the encoders' CPU dropout masks
    return torch.Generator().manual_seed(seed)


def sample_conditions(rng: np.random.Generator, n: int, conds: np.ndarray, full_prob: float) -> np.ndarray:
    """(n, M) availability: a uniformly drawn condition per sample (or all, w.p. full_prob)."""
    out = conds[rng.integers(0, len(conds), size=n)]
    if full_prob > 0:
        out = out.copy()
        out[rng.random(n) < full_prob] = True
    return out


class BatchSource(Protocol):
    """Where an epoch's training batches and the validation score come from: whole
    missing conditions (`ConditionBatches`) or span-missing inputs
    (`pipeline.training.strategies.SpanBatches`)."""

    bank: FeatureBank
    train_rows: np.ndarray
    val_rows: np.ndarray

    def epoch(self, rng: np.random.Generator, order: np.ndarray, batch_size: int, with_seq: bool) -> Iterator[Batch]:
        """The training batches of one epoch over `order` (the epoch's permutation);
        `with_seq`: the model reads frames (`MERModel.uses_sequences`)."""
        ...

    def validate(self, model: MERModel, score_fn: Score) -> float:
        """The validation score of `model` (higher is better)."""
        ...


@dataclass
class ConditionBatches:
    """The papers' protocol: every training row gets a random missing condition from
    `conds` (C, M) each epoch; validation averages the score over every condition."""

    bank: FeatureBank
    train_rows: np.ndarray
    val_rows: np.ndarray
    conds: np.ndarray  # (C, M) bool
    full_prob: float = 0.0  # share of training rows shown complete

    def epoch(self, rng: np.random.Generator, order: np.ndarray, batch_size: int, with_seq: bool) -> Iterator[Batch]:
        avail = sample_conditions(rng, len(order), self.conds, self.full_prob)
        for i in range(0, len(order), batch_size):
            rows = order[i : i + batch_size]
            if len(rows) < 2:
                continue  # BatchNorm-free models are fine, but a 1-row step is pure noise
            yield self.bank.batch(rows, avail[i : i + batch_size], with_full=True, with_seq=with_seq)

    def validate(self, model: MERModel, score_fn: Score) -> float:
        y = self.bank.targets(self.val_rows)
        return float(np.mean([score_fn(y, predict(model, self.bank, self.val_rows, c)) for c in self.conds]))


Step = Callable[[Batch, np.random.Generator], float]  # one optimisation step -> its loss


def make_optimizer(params: list[torch.nn.Parameter], cfg: TrainConfig, lr: float) -> torch.optim.Optimizer:
    if cfg.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer '{cfg.optimizer}'; choose one of {OPTIMIZERS}")
    kind = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    # fused into one kernel where torch has it for these tensors: the per-tensor update
    # cost 9.5 ms of a 65 ms encoder step on CPU, fused 2.7 ms
    fusable = all(p.dtype in (torch.float32, torch.float16, torch.bfloat16) and p.device.type in ("cpu", "cuda")
                  for p in params)
    return kind(params, lr=lr, betas=(cfg.beta1, 0.999), weight_decay=cfg.weight_decay, fused=fusable or None)


def lr_factor(schedule: str, step: int, total: int, warmup: float) -> float:
    """The multiplier of the base learning rate at optimiser step `step` of `total`."""
    if schedule == "constant":
        return 1.0
    if schedule == "linear-decay":  # MMIN: niter flat epochs, then niter_decay to zero
        half = total // 2
        return 1.0 if step < half else max(0.0, 1.0 - (step - half + 1) / max(total - half, 1))
    if schedule == "warmup-linear":  # CARAT: linear warm-up, then linear decay to zero
        warm = max(1, int(warmup * total))
        return (step + 1) / warm if step < warm else max(0.0, (total - step) / max(total - warm, 1))
    raise ValueError(f"unknown schedule '{schedule}'; choose one of {SCHEDULES}")


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped once per optimiser step; `total_steps` is the full run's (epochs x batches)."""
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule '{cfg.schedule}'; choose one of {SCHEDULES}")
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda i: lr_factor(cfg.schedule, i, total_steps, cfg.warmup))


def model_loss(model: MERModel, out: Output, y: torch.Tensor) -> torch.Tensor:
    """What one step minimises: the task loss on the final prediction, weighted by the
    model's `output_loss_weight` (CARAT's eq. 15 has none: 0), + its weighted aux loss."""
    w = model.output_loss_weight
    return (w * task_loss(model.spec.task, out.logits, y) if w else 0.0) + out.aux_loss


def plain_step(model: MERModel, opt: torch.optim.Optimizer, forward: Forward, clip: float = 5.0) -> Step:
    """The usual step: task loss + the model's weighted aux loss, clipped gradients."""
    params = [p for p in model.parameters() if p.requires_grad]

    def step(batch: Batch, rng: np.random.Generator) -> float:
        out = forward(model, batch)
        loss = model_loss(model, out, batch.y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        return float(loss.detach())

    return step


StepFactory = Callable[[MERModel, torch.optim.Optimizer, Forward], Step]


def default_step(cfg: TrainConfig) -> StepFactory:
    return lambda model, opt, forward: plain_step(model, opt, forward, clip=cfg.clip)


def fit(
    model: MERModel,
    source: BatchSource,
    score_fn: Score,
    cfg: TrainConfig,
    make_step: StepFactory | None = None,
    forward: Forward | None = None,
    lr: float | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
) -> FitResult:
    """The one training loop: epochs of `source`'s batches through `make_step` (plain,
    M3S, ...), the validation score after each, early stopping, the best state kept.

    `forward` defaults to `model(batch)`; the teacher phase of the MMIN family passes
    `model.pretrain_forward`. A model with `fit_direct` (closed form) fits itself.
    """
    seed_everything(cfg.seed)
    direct = model.fit_direct
    if direct is not None and forward is None:
        return direct(source, score_fn, cfg)
    rng = np.random.default_rng(cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, cfg, lr or cfg.lr)
    budget = resolve_budget(cfg, len(source.train_rows))
    # an upper bound of the run's steps (1-row tail batches are skipped), so a schedule
    # that decays to zero gets there no earlier than the last epoch
    sched = make_scheduler(opt, cfg, budget.epochs * budget.passes * -(-len(source.train_rows) // cfg.batch_size))
    step = (make_step or default_step(cfg))(model, opt, forward or (lambda m, b: m(b)))
    keeper = EarlyStopping(model, budget.patience)
    keeper.result.budget = budget
    for epoch in range(budget.epochs):
        model.train()
        total, n = 0.0, 0
        for _ in range(budget.passes):  # one pass unless the rows are few (min_epoch_steps)
            order = rng.permutation(source.train_rows)
            for batch in source.epoch(rng, order, cfg.batch_size, model.uses_sequences):
                total += step(batch, rng) * len(batch.rows)
                n += len(batch.rows)
                sched.step()
        if keeper.update(model, epoch, total / max(n, 1), source.validate(model, score_fn), on_epoch):
            break
    return keeper.restore(model)
