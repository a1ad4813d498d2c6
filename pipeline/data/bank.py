"""The training bank: a dataset's rows as tensors on the device, scaled by the fold's
stage-0 scaler, handing out `Batch`es of any rows under any availability."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch

from pipeline.data.batch import Batch, Frames
from pipeline.data.dataset import Dataset
from pipeline.data.mapped import release
from pipeline.data.preprocess import Scaler
from pipeline.data.sequences import Sequences


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
        x = ds.features[m][self.rows]  # (n, D_m), a copy of the bank's rows
        release(ds.features[m])  # a memory-mapped table's pages are not kept resident for it
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

    def targets(self, rows: np.ndarray) -> np.ndarray:
        """The labels / targets of dataset `rows`, as numpy (the scores' y_true)."""
        return self.y[torch.as_tensor(self.pos[rows])].cpu().numpy()

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
