"""Linear references: the floor every deep system must clear.

`lr`: the fold's scaled features of every modality, concatenated; a missing modality is
zero (its training mean after stage 0). `lr-knn`: a missing modality is instead the mean
of the scaled raw features of the top-K neighbours retrieved through the available
modalities, from exactly RAMER's candidate set (train + pool of the DB scale, never
val / test, never the query), with RAMER's rule when two modalities remain.

Training sees every training row once under each missing condition of the protocol
(the expectation of the neural systems' random condition per row and epoch). The
regularisation strength is chosen on the validation rows, scored on every condition,
as the neural systems choose their epoch. Single-label: multinomial logistic
regression; multi-label: one-vs-rest logistic regressions; both by L-BFGS on
scikit-learn's objective over the distinct blocks of the stacked conditions
(`logistic.py`); regression: scikit-learn's ridge. The strengths are fitted strongest
first, each fit starting from the last, and the path stops once `patience` weaker
strengths have scored below the best on validation (the weak end is the slow one:
lbfgs needs more iterations as C grows). The fitted
coefficients are copied into one `nn.Linear`, so the linear model is saved, evaluated,
noised and served by `ramer predict` exactly like every other model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pipeline.models.base import Batch, FoldResources, MERModel, ModelSpec, Output
from pipeline.models.logistic import BlockDesign, fit_logistic
from pipeline.models.registry import register_model

ABSENT_CLASS_LOGIT = -1e4  # a class with no training row can never be predicted


@dataclass
class FitRecord:
    """What `fit_direct` returns: the trainer's FitResult fields (duck-typed)."""

    best_epoch: int  # index of the chosen regularisation strength
    best_score: float
    history: list[dict]


class _Linear(MERModel):
    """Shared by `lr` and `lr-knn`: features(batch) -> one linear layer."""

    @dataclass
    class Config:
        # C (logistic) or 1/alpha (ridge), chosen on val, fitted strongest first
        strengths: tuple[float, ...] = (1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0)
        patience: int = 1  # strengths past the best that score lower on val before the path stops
        max_iter: int = 2000  # lbfgs iterations per fit
        k: int = 10  # lr-knn: neighbours averaged per missing modality

    def __init__(self, spec: ModelSpec, cfg: Any):
        super().__init__()
        self.spec, self.cfg = spec, cfg
        self.linear = nn.Linear(sum(spec.dims), spec.n_out)

    def features(self, batch: Batch) -> Tensor:
        return torch.cat(batch.x, dim=-1)  # (B, sum D); unavailable modalities are zeros

    def forward(self, batch: Batch) -> Output:
        logits = self.linear(self.features(batch))  # (B, n_out)
        return Output(logits=logits, aux_loss=self.zero_aux(logits))

    # ------------------------------------------------------------ the direct fit
    @torch.no_grad()
    def design(self, bank: Any, rows: np.ndarray, conds: np.ndarray) -> tuple[BlockDesign, np.ndarray]:
        """`rows` under every condition as one block design (`logistic.BlockDesign`), and
        their targets (the same under every condition)."""
        per_cond = [self._rows(bank, rows, c) for c in conds]  # C x ((n, sum D), (n,))
        return BlockDesign.from_conditions([x for x, _ in per_cond], tuple(self.spec.dims)), per_cond[-1][1]

    @torch.no_grad()
    def _rows(self, bank: Any, rows: np.ndarray, cond: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, sum D) features of `rows` under one condition (eval mode), and their targets."""
        self.eval()
        batch = bank.batch(rows, np.broadcast_to(cond, (len(rows), len(cond))), with_full=False)
        return self.features(batch).float().cpu().numpy(), batch.y.cpu().numpy()

    @torch.no_grad()
    def fit_direct(self, source: Any, score_fn: Any, cfg: Any) -> FitRecord:
        """`source`: the trainer's `ConditionBatches` (bank, train / val rows, conditions)."""
        bank, conds = source.bank, source.conds
        design, y = self.design(bank, source.train_rows, conds)
        val = [self._rows(bank, source.val_rows, c) for c in conds]  # per condition (x, y)
        best: tuple[float, int, np.ndarray, np.ndarray] | None = None
        history = []
        path: dict = {}  # the previous strength's solution, warm-starting the next one
        for i, strength in enumerate(self.cfg.strengths):
            weight, bias = _fit(self.spec.task, design, y, strength, self.spec.n_out, self.cfg.max_iter, path)
            score = float(np.mean([score_fn(yv, xv @ weight.T + bias) for xv, yv in val]))
            history.append({"epoch": i, "strength": strength, "loss": float("nan"), "val": score})
            if best is None or score > best[0]:
                best = (score, i, weight, bias)
            elif i - best[1] >= self.cfg.patience:  # weaker regularisation kept losing on val
                break
        score, index, weight, bias = best
        self.linear.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        self.linear.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
        return FitRecord(index, score, history)


def _fit(task: str, design: BlockDesign, y: np.ndarray, strength: float, n_out: int, max_iter: int,
         path: dict) -> tuple[np.ndarray, np.ndarray]:
    """(weight (n_out, D), bias (n_out,)) of the task's linear model at one strength.
    Logistic fits start from the previous strength's solution in `path` (a warm-started
    regularisation path: the same objective, 2.1x less time than cold starts over four
    strengths on the default synthetic set)."""
    d = sum(design.dims)
    if task == "regression":
        from sklearn.linear_model import Ridge

        reg = Ridge(alpha=1.0 / strength).fit(design.dense(), np.tile(y, len(design.refs)))
        return reg.coef_.reshape(1, -1), np.atleast_1d(reg.intercept_)
    weight, bias = np.zeros((n_out, d)), np.full(n_out, ABSENT_CLASS_LOGIT)
    if task == "multi_label":
        on = y > 0.5  # (n, L)
        fitted = np.flatnonzero(on.any(axis=0) & ~on.all(axis=0))  # a constant label gets a constant logit
        bias[on.all(axis=0)] = -ABSENT_CLASS_LOGIT
        if len(fitted):
            w, b = _warm(path, design, on[:, fitted], "sigmoid", strength, max_iter)
            weight[fitted], bias[fitted] = w, b
        return weight, bias
    labels = y.astype(np.int64)
    classes = np.unique(labels)  # a class with no training row keeps ABSENT_CLASS_LOGIT
    if len(classes) == 1:
        bias[classes[0]] = 0.0
    elif len(classes) == 2:  # one logit row, as sklearn: logit(class 1) - logit(class 0)
        w, b = _warm(path, design, (labels == classes[1])[:, None], "sigmoid", strength, max_iter)
        weight[classes[1]], bias[classes[0]], bias[classes[1]] = w[0], 0.0, b[0]
    else:
        w, b = _warm(path, design, np.searchsorted(classes, labels), "softmax", strength, max_iter)
        weight[classes], bias[classes] = w, b
    return weight, bias


def _warm(path: dict, design: BlockDesign, targets: np.ndarray, loss: str, strength: float,
          max_iter: int) -> tuple[np.ndarray, np.ndarray]:
    weight, bias, path["theta"] = fit_logistic(design, targets, loss, strength, max_iter, path.get("theta"))
    return weight, bias


@register_model("lr")
class LinearReference(_Linear):
    """Scaled features, missing modalities zero-imputed, one linear model."""


@register_model("lr-knn")
class LinearKNN(_Linear):
    """Missing modalities imputed by the mean scaled features of retrieved neighbours."""

    def __init__(self, spec: ModelSpec, cfg: Any):
        super().__init__(spec, cfg)
        self.filler: Any = None  # set by `attach` (not a parameter)

    def attach(self, fold: FoldResources, retrieval: Any, inputs_as_stored: bool = True) -> None:
        from dataclasses import replace

        values = fold.scaled_features()  # m -> (N, D_m) every row after stage 0
        knn = replace(retrieval, k=self.cfg.k)
        self.filler = fold.filler(values, knn, stored_queries=inputs_as_stored, fuse="mean")

    def features(self, batch: Batch) -> Tensor:
        if self.filler is None:
            raise RuntimeError("lr-knn needs its fold's neighbour filler (set by `attach`)")
        xs = [x.float().cpu().numpy() for x in batch.x]  # M x (B, D_m), zeros where missing
        avail = batch.avail.cpu().numpy()
        fills = self.filler.fill(xs, avail, batch.rows.cpu().numpy())  # M x (B, D_m)
        done = [np.where(avail[:, i : i + 1], x, f) for i, (x, f) in enumerate(zip(xs, fills))]
        return torch.as_tensor(np.concatenate(done, axis=1), device=batch.x[0].device)
