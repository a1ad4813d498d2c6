"""Folds and per-(fold, run) splits, deterministic from the recorded seed.

Protocol (RAMER appendix B, our issue 4): test = fold f; validation = a stratified
1/8 of the remaining labeled rows, drawn from (seed, fold, run); train = the rest;
the unlabeled pool is never used for supervision.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

SPLITS = ("train", "val", "test", "unlabeled")


@dataclass(frozen=True)
class FoldSplit:
    fold: int
    run: int
    seed: int
    train: np.ndarray  # row indices
    val: np.ndarray
    test: np.ndarray
    unlabeled: np.ndarray

    def split_names(self, n: int) -> np.ndarray:
        """(N,) split name per row, relative to this fold (the Qdrant `split` payload)."""
        out = np.empty(n, dtype=object)
        for name in SPLITS:
            out[getattr(self, name)] = name
        return out


def _strata(y: np.ndarray) -> np.ndarray:
    """Stratification key: the class, the first positive label, or a target bin."""
    if y.ndim == 2:
        return np.where(y.sum(1) > 0, y.argmax(1), -1)
    if y.dtype.kind == "f":
        return np.clip(np.round(y), -3, 3).astype(int)
    return y


def _min_count(key: np.ndarray) -> int:
    return int(np.unique(key, return_counts=True)[1].min())


def assign_folds(y: np.ndarray, labeled: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Stratified fold ids 0..k-1 for labeled rows, -1 for unlabeled ones."""
    folds = np.full(len(labeled), -1, dtype=np.int8)
    idx = np.flatnonzero(labeled)
    key = _strata(y[idx])
    if _min_count(key) >= k:
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        parts = splitter.split(idx, key)
    else:  # a class too rare to stratify: plain shuffled folds
        perm = np.random.default_rng(seed).permutation(len(idx))
        parts = ((None, p) for p in np.array_split(perm, k))
    for f, (_, test) in enumerate(parts):
        folds[idx[test]] = f
    return folds


def make_split(
    y: np.ndarray, labeled: np.ndarray, folds: np.ndarray, fold: int, run: int, seed: int,
    val_fraction: float = 1 / 8,
) -> FoldSplit:
    """Train/val/test/unlabeled rows for (fold, run); same inputs -> same split."""
    test = np.flatnonzero(labeled & (folds == fold))
    rest = np.flatnonzero(labeled & (folds != fold))
    key = _strata(y[rest])
    n_val = int(np.ceil(val_fraction * len(rest)))
    stratifiable = _min_count(key) >= 2 and n_val >= len(np.unique(key))
    strat = key if stratifiable else None  # tiny data: a plain random split
    split_seed = int(np.random.SeedSequence([seed, fold, run]).generate_state(1)[0])
    train, val = train_test_split(rest, test_size=val_fraction, stratify=strat, random_state=split_seed % (2**31))
    return FoldSplit(
        fold=fold, run=run, seed=split_seed, train=np.sort(train), val=np.sort(val),
        test=test, unlabeled=np.flatnonzero(~labeled),
    )
