"""Stage 0: per-modality feature scaling, fitted per (fold, run) on training rows only.

Real features arrive in native units (a 6-d shape descriptor next to 240 pixel counts):
without scaling, a modality with a large offset dominates every encoder's first layer
and its hidden vectors collapse to one direction. So every (fold, run) fits a scaler on
the present values of its train rows plus the unlabeled pool (never its val or test
rows), saves it with the fold's checkpoints, and applies it wherever features enter a
model or the database: the training bank (vectors and kept frames), stage-2 encoding,
the raw-feature DB ablation, noise / span evaluation and `ramer predict`.

    standard  (x - mean) / std per dimension (the default)
    robust    (x - median) / (IQR / 1.349): the same as standard on Gaussian data, but
              not thrown off by a few huge values
    none      identity (features already scaled, or to measure what scaling buys)

A dimension that is constant on the fitting rows gets scale 1, so it maps to 0 and
never to inf. Absent modality values stay exactly zero after the transform, as they
are stored, so "missing = zero input" still holds (zero is then the training mean).
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.data.mapped import release
from pipeline.errors import DataError

MODES = ("standard", "robust", "none")
EPS = 1e-6  # a scale below this (a constant dimension) becomes 1
FIT_CHUNK = 65536  # rows read at a time when fitting the standard scaler ...
FIT_BYTES = 256 << 20  # ... and fewer when their float64 copy would pass this (wide features)


@dataclass
class Scaler:
    """sklearn-style: `fit(features, present, rows)` learns `center_` / `scale_` per
    modality; `transform(m, x)` applies them. `mode` is the only parameter."""

    mode: str = "standard"
    center_: dict[str, np.ndarray] = field(default_factory=dict)  # m -> (D,) float32
    scale_: dict[str, np.ndarray] = field(default_factory=dict)  # m -> (D,) float32, > 0

    def fit(self, features: dict[str, np.ndarray], present: dict[str, np.ndarray],
            rows: np.ndarray) -> Scaler:
        if self.mode not in MODES:
            raise ValueError(f"unknown preprocessing '{self.mode}'; use one of {MODES}")
        rows = np.sort(np.asarray(rows, np.int64))
        for m, x in features.items():
            own = rows[np.asarray(present[m], bool)[rows]]  # rows that really have m
            self.center_[m], self.scale_[m] = _statistics(self.mode, x, own)
            release(x)
        return self

    def transform(self, m: str, x: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
        """(n, D) or (n, T, D) -> float32 scaled copy; rows with `present` False stay 0."""
        out = (np.asarray(x, np.float32) - self.center_[m]) / self.scale_[m]
        if present is not None:
            out[~np.asarray(present, bool)] = 0.0
        return out.astype(np.float32, copy=False)

    # ------------------------------------------------------------ saved with the fold
    def save(self, path: Path) -> None:
        arrays = {f"center/{m}": c for m, c in self.center_.items()}
        arrays |= {f"scale/{m}": s for m, s in self.scale_.items()}
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("wb") as fh:
            np.savez(fh, mode=np.array(self.mode), **arrays)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path, modalities: Sequence[str], dims: Sequence[int]) -> Scaler:
        try:
            with np.load(path, allow_pickle=False) as z:
                out = cls(str(z["mode"]))
                for m, d in zip(modalities, dims):
                    out.center_[m] = z[f"center/{m}"].astype(np.float32)
                    out.scale_[m] = z[f"scale/{m}"].astype(np.float32)
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"{path}: unreadable preprocessing statistics ({exc}); delete its folder "
                            f"{path.parent.name}/ to re-run that unit, or start over with --fresh") from None
        for m, d in zip(modalities, dims):
            if out.center_[m].shape != (d,) or not (out.scale_[m] > 0).all():
                raise DataError(f"{path}: statistics of '{m}' do not fit its {d} dims")
        return out


class ScaledView:
    """Modality `m` of every dataset row after the fold's scaler, computed for the rows
    asked (`view[rows]`) instead of stored: the (N, D) scaled copy of a large table
    (3.3 GB at MER2024's size, per unit) never exists, and the stored features stay
    memory-mapped. `view[rows]` equals the rows of the scaled copy value for value (the
    transform is elementwise); absent rows read zero, as they are stored."""

    def __init__(self, x: np.ndarray, present: np.ndarray, scaler: Scaler | None, m: str):
        self.x, self.present, self.scaler, self.m = x, np.asarray(present, bool), scaler, m
        self.shape = x.shape  # (N, D)
        self.dtype = np.dtype(np.float32)
        self.ndim = 2

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, rows) -> np.ndarray:
        """rows: an index array of any shape S -> (*S, D) float32."""
        part = np.asarray(self.x[rows], np.float32)
        return part if self.scaler is None else self.scaler.transform(self.m, part, self.present[rows])


def _read(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """x[rows] as a copy; a memory-mapped table's pages are not kept resident after it."""
    part = x[rows]
    release(x)
    return part


def _statistics(mode: str, x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(center (D,), scale (D,)) of x[rows]; identity when there is nothing to fit."""
    d = x.shape[1]
    if mode == "none" or len(rows) == 0:
        return np.zeros(d, np.float32), np.ones(d, np.float32)
    if mode == "robust":
        # per block of columns (the same numbers: percentiles are per column), so that a
        # wide memory-mapped matrix is never copied whole
        width = max(1, FIT_BYTES // (8 * max(1, len(rows))))
        q25, q50, q75 = np.concatenate(
            [np.percentile(x[rows, j : j + width], [25, 50, 75], axis=0) for j in range(0, d, width)], axis=1)
        center, scale = q50, (q75 - q25) / 1.349
    else:  # two float64 passes (mean, then centred squares: exact for large offsets),
        # chunked so that a 100k x 5k feature matrix is never copied whole
        step = max(1, min(FIT_CHUNK, FIT_BYTES // (8 * d)))
        chunks = [rows[i : i + step] for i in range(0, len(rows), step)]
        center = sum(_read(x, c).astype(np.float64).sum(0) for c in chunks) / len(rows)
        var = sum(((_read(x, c).astype(np.float64) - center) ** 2).sum(0) for c in chunks) / len(rows)
        scale = np.sqrt(var)
    scale = np.where(scale > EPS, scale, 1.0)
    return center.astype(np.float32), scale.astype(np.float32)
