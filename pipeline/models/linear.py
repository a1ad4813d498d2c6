"""Linear references, fitted by scikit-learn: the floor every deep system must clear.

`lr`: the fold's scaled features of every modality, concatenated; a missing modality is
zero (its training mean after stage 0). `lr-knn`: a missing modality is instead the mean
of the scaled raw features of the top-K neighbours retrieved through the available
modalities, from exactly RAMER's candidate set (train + pool of the DB scale, never
val / test, never the query), with RAMER's rule when two modalities remain.

Training sees every training row once under each missing condition of the protocol
(the expectation of the neural systems' random condition per row and epoch). The
regularisation strength is chosen on the validation rows, scored on every condition,
as the neural systems choose their epoch. Single-label: multinomial logistic
regression; multi-label: one-vs-rest logistic regressions; regression: ridge. The
strengths are fitted strongest first, each fit starting from the last, and the path
stops once `patience` weaker strengths have scored below the best on validation (the
weak end is the slow one: lbfgs needs more iterations as C grows). The fitted
coefficients are copied into one `nn.Linear`, so the linear model is saved, evaluated,
noised and served by `ramer predict` exactly like every other model.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pipeline.models.base import Batch, FoldResources, MERModel, ModelSpec, Output
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

    # ------------------------------------------------------------ scikit-learn fit
    @torch.no_grad()
    def design(self, bank: Any, rows: np.ndarray, conds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(len(conds) * n, sum D) features of `rows` under every condition, and targets."""
        self.eval()
        xs, ys = [], []
        for c in conds:
            batch = bank.batch(rows, np.broadcast_to(c, (len(rows), len(c))), with_full=False)
            xs.append(self.features(batch).float().cpu().numpy())
            ys.append(batch.y.cpu().numpy())
        return np.concatenate(xs), np.concatenate(ys)

    @torch.no_grad()
    def fit_direct(self, source: Any, score_fn: Any, cfg: Any) -> FitRecord:
        """`source`: the trainer's `ConditionBatches` (bank, train / val rows, conditions)."""
        bank, conds = source.bank, source.conds
        x, y = self.design(bank, source.train_rows, conds)
        val = [self.design(bank, source.val_rows, c[None]) for c in conds]  # per condition (x, y)
        best: tuple[float, int, np.ndarray, np.ndarray] | None = None
        history = []
        path: dict = {}  # the previous strength's fit, warm-starting the next one
        for i, strength in enumerate(self.cfg.strengths):
            weight, bias = _fit(self.spec.task, x, y, strength, self.spec.n_out, self.cfg.max_iter, cfg.seed, path)
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


def _fit(task: str, x: np.ndarray, y: np.ndarray, strength: float, n_out: int, max_iter: int,
         seed: int, path: dict) -> tuple[np.ndarray, np.ndarray]:
    """(weight (n_out, D), bias (n_out,)) of the task's linear model at one strength.
    Logistic fits start from the previous strength's solution in `path` (a warm-started
    regularisation path: the same objective and tolerance, 2.1x less time than cold
    starts over four strengths on the default synthetic set, where lbfgs over the
    21k x 2.8k design of every condition was the slowest stage of a unit)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, Ridge

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the val score judges the fit
        if task == "regression":
            reg = Ridge(alpha=1.0 / strength).fit(x, y)
            return reg.coef_.reshape(1, -1), np.atleast_1d(reg.intercept_)
        if task == "multi_label":
            weight, bias = np.zeros((n_out, x.shape[1])), np.zeros(n_out)
            for j in range(n_out):
                weight[j], bias[j] = _binary(x, y[:, j] > 0.5, strength, max_iter, seed, path, j)
            return weight, bias
        clf = path.setdefault("clf", LogisticRegression(max_iter=max_iter, random_state=seed, warm_start=True))
        clf.set_params(C=strength).fit(x, y)
        weight = np.zeros((n_out, x.shape[1]))
        bias = np.full(n_out, ABSENT_CLASS_LOGIT)
        classes = clf.classes_.astype(int)
        if len(classes) == 2:  # sklearn keeps one row: logit(class 1) - logit(class 0)
            weight[classes[1]], bias[classes[0]], bias[classes[1]] = clf.coef_[0], 0.0, clf.intercept_[0]
        else:
            weight[classes], bias[classes] = clf.coef_, clf.intercept_
        return weight, bias


def _binary(x: np.ndarray, y: np.ndarray, strength: float, max_iter: int, seed: int, path: dict,
            label: int) -> tuple[np.ndarray, float]:
    """One label of a multi-label task; a label constant in training gets a constant logit."""
    from sklearn.linear_model import LogisticRegression

    if y.all() or not y.any():
        return np.zeros(x.shape[1]), (-ABSENT_CLASS_LOGIT if y.all() else ABSENT_CLASS_LOGIT)
    clf = path.setdefault(label, LogisticRegression(max_iter=max_iter, random_state=seed, warm_start=True))
    clf.set_params(C=strength).fit(x, y)
    return clf.coef_[0], float(clf.intercept_[0])


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
