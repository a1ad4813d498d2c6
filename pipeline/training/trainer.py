"""One trainer for every registered model.

Each training sample gets a random missing condition every epoch (the papers'
protocol); model selection and early stopping use the validation split only, scored
on every condition. Unavailable modalities reach the model as zeros plus a mask.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from pipeline.data.dataset import Dataset
from pipeline.data.preprocess import Scaler
from pipeline.data.sequences import Sequences
from pipeline.models.base import Batch, Frames, MERModel, task_loss

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 40  # paper: 40 per fold
    batch_size: int = 128  # paper: 128
    lr: float = 1e-3
    weight_decay: float = 1e-5
    patience: int = 10  # epochs without validation gain before stopping
    full_prob: float = 0.0  # share of training samples shown with every modality
    seed: int = 0


@dataclass
class FitResult:
    best_epoch: int
    best_score: float
    history: list[dict] = field(default_factory=list)  # per epoch: loss, val score


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


class FeatureBank:
    """Dataset rows as float32 tensors on the device, addressed by dataset row.

    Frame sequences (if the dataset keeps them) stay memory-mapped: a batch asked
    `with_seq` reads only its own rows' frames. Replacing `x` (span or noise
    perturbations of a copy) drops them, so frames never show an input other than `x`.
    """

    def __init__(self, ds: Dataset, rows: np.ndarray, device: torch.device | str = "cpu",
                 scaler: Scaler | None = None):
        self.rows = np.sort(np.asarray(rows, dtype=np.int64))
        self.pos = np.full(len(ds), -1, dtype=np.int64)
        self.pos[self.rows] = np.arange(len(self.rows))
        self.scaler = scaler  # the fold's stage-0 scaling; None = features as stored
        self.x = [torch.tensor(self._scaled(ds, m), device=device) for m in ds.modalities]
        self.present = torch.tensor(ds.present_matrix()[self.rows], device=device)
        y = ds.y[self.rows]
        self.y = torch.tensor(y, device=device)
        self.device = device
        self.modality_names = list(ds.modalities)
        # per modality, in manifest order; None = no frames kept for that modality
        self.seq: list[Sequences | None] | None = (
            None if ds.sequences is None else [ds.sequences.get(m) for m in ds.modalities]
        )
        # (modality index, rows, frames (B, T, D)) -> perturbed frames; set on a noisy copy
        # (pipeline.evaluation.robustness) so frames carry the same kind of noise as `x`
        self.frame_noise: Callable[[int, np.ndarray, torch.Tensor], torch.Tensor] | None = None

    def _scaled(self, ds: Dataset, m: str) -> np.ndarray:
        x = ds.features[m][self.rows]  # (n, D_m)
        return x if self.scaler is None else self.scaler.transform(m, x, ds.present[m][self.rows])

    @property
    def x(self) -> list[torch.Tensor]:
        return self._x

    @x.setter
    def x(self, xs: list[torch.Tensor]) -> None:
        if hasattr(self, "_x"):  # new inputs: the stored frames no longer match them
            self.seq = None
        self._x = xs

    def with_rows(
        self, pos: torch.Tensor, values: list[torch.Tensor],
        frame_noise: Callable[[int, np.ndarray, torch.Tensor], torch.Tensor] | None = None,
    ) -> FeatureBank:
        """A shallow copy whose bank positions `pos` hold `values` (M x (n, D_m)): the
        perturbed val / test inputs of the span and noise transforms. Its frames are
        dropped (they would show the unperturbed input) unless `frame_noise` perturbs
        them the same way as they are read."""
        out = copy.copy(self)
        xs = []
        for x, v in zip(self.x, values):
            x = x.clone()
            x[pos] = v.to(x.device, x.dtype)
            xs.append(x)
        out.x = xs  # the setter drops the frames ...
        if frame_noise is not None:  # ... unless they get the same perturbation
            out.seq, out.frame_noise = self.seq, frame_noise
        return out

    def batch(self, rows: np.ndarray, avail: np.ndarray | torch.Tensor, with_full: bool,
              with_seq: bool = False) -> Batch:
        p = torch.as_tensor(self.pos[rows], device=self.device)
        if (p < 0).any():
            raise IndexError("rows outside the feature bank")
        av = torch.as_tensor(np.array(avail, dtype=bool), device=self.device) & self.present[p]  # (B, M)
        full = [x[p] for x in self.x]  # M x (B, D_m)
        xs = [xm * av[:, i : i + 1] for i, xm in enumerate(full)]  # zero the unavailable
        seq_full = self.frames(rows, p, full) if with_seq and self.seq is not None else None
        return Batch(
            x=xs, avail=av, rows=torch.as_tensor(rows), y=self.y[p],
            x_full=full if with_full else None,
            seq=None if seq_full is None else seq_full.masked(av),
            seq_full=seq_full if with_full else None,
        )

    def frames(self, rows: np.ndarray, p: torch.Tensor, full: list[torch.Tensor]) -> Frames:
        """Complete frames of `rows`, trimmed to the batch's longest; a modality kept
        without frames is its utterance vector as one frame."""
        rows = np.asarray(rows)
        order = np.argsort(rows, kind="stable")  # read the map in file order
        xs, lens = [], []
        for i, s in enumerate(self.seq):
            if s is None:
                xs.append(full[i][:, None, :])  # (B, 1, D_m)
                lens.append(self.present[p, i].long())
                continue
            ln = np.asarray(s.lengths[rows], np.int64)
            t = max(1, int(ln.max(initial=0)))
            vals = np.empty((len(rows), t, s.values.shape[2]), np.float32)
            vals[order] = s.values[rows[order], :t]
            if self.scaler is not None:  # frames get the utterance vectors' scaling ...
                vals = self.scaler.transform(self.modality_names[i], vals)
                vals[np.arange(t)[None, :] >= ln[:, None]] = 0.0  # ... padding stays zero
            frames = torch.from_numpy(vals)  # (B, t, D_m)
            if self.frame_noise is not None:
                frames = self.frame_noise(i, rows, frames)
            xs.append(frames.to(self.device))
            lens.append(torch.from_numpy(ln).to(self.device))
        return Frames(xs, torch.stack(lens, dim=1))  # lengths (B, M)


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    return torch.Generator().manual_seed(seed)


def sample_conditions(rng: np.random.Generator, n: int, conds: np.ndarray, full_prob: float) -> np.ndarray:
    """(n, M) availability: a uniformly drawn condition per sample (or all, w.p. full_prob)."""
    out = conds[rng.integers(0, len(conds), size=n)]
    if full_prob > 0:
        out = out.copy()
        out[rng.random(n) < full_prob] = True
    return out


@torch.no_grad()
def predict(model: MERModel, bank: FeatureBank, rows: np.ndarray, avail: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Logits (n, n_out) for `rows` with availability (M,) or (n, M); eval mode, no shuffle."""
    model.eval()
    avail = np.broadcast_to(avail, (len(rows), avail.shape[-1]))
    outs = []
    for i in range(0, len(rows), batch_size):
        b = bank.batch(rows[i : i + batch_size], avail[i : i + batch_size], with_full=False,
                       with_seq=getattr(model, "uses_sequences", False))
        outs.append(model(b).logits.float().cpu())
    return torch.cat(outs).numpy()


def fit(
    model: MERModel,
    bank: FeatureBank,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    conds: np.ndarray,
    score_fn: Callable[[np.ndarray, np.ndarray], float],
    cfg: TrainConfig,
    forward: Callable[[MERModel, Batch], object] | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
) -> FitResult:
    """Train with random conditions from `conds` (C, M); keep the best validation state.

    `score_fn(y, logits) -> float` (higher is better) is averaged over every condition
    of `conds` on the validation rows. `forward` defaults to `model(batch)`; the
    pretrain phase of MMIN-like models passes `model.pretrain_forward` instead.
    """
    seed_everything(cfg.seed)
    direct = getattr(model, "fit_direct", None)
    if direct is not None and forward is None:  # a closed-form model fits itself
        return direct(bank, train_rows, val_rows, conds, score_fn, cfg)
    rng = np.random.default_rng(cfg.seed)
    fwd = forward or (lambda m, b: m(b))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    y_val = bank.y[torch.as_tensor(bank.pos[val_rows])].cpu().numpy()
    keeper = EarlyStopping(model, cfg.patience)
    with_seq = getattr(model, "uses_sequences", False)
    for epoch in range(cfg.epochs):
        model.train()
        order = rng.permutation(train_rows)
        avail = sample_conditions(rng, len(order), conds, cfg.full_prob)
        total, n = 0.0, 0
        for i in range(0, len(order), cfg.batch_size):
            rows = order[i : i + cfg.batch_size]
            if len(rows) < 2:
                continue  # BatchNorm-free models are fine, but a 1-row step is pure noise
            batch = bank.batch(rows, avail[i : i + cfg.batch_size], with_full=True, with_seq=with_seq)
            out = fwd(model, batch)
            loss = task_loss(model.spec.task, out.logits, batch.y) + out.aux_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            total += float(loss.detach()) * len(rows)
            n += len(rows)
        score = float(np.mean([score_fn(y_val, predict(model, bank, val_rows, c)) for c in conds]))
        if keeper.update(model, epoch, total / max(n, 1), score, on_epoch):
            break
    return keeper.restore(model)
