"""Folds and per-(fold, run) splits, deterministic from the recorded seed.

Protocol (RAMER appendix B): test = fold f; validation = a stratified
1/8 of the remaining labeled rows, drawn from (seed, fold, run); train = the rest;
the unlabeled pool is never used for supervision. With groups (a speaker column, or
clusters of duplicate rows) the folds are group-stratified: every group's labeled rows
share one fold, so no speaker is both trained and tested on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

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


def assign_folds(
    y: np.ndarray, labeled: np.ndarray, k: int, seed: int, groups: np.ndarray | None = None,
) -> np.ndarray:
    """Stratified fold ids 0..k-1 for labeled rows, -1 for unlabeled ones. `groups` (N,)
    ints (only labeled rows are read): rows of one group always get the same fold."""
    folds = np.full(len(labeled), -1, dtype=np.int8)
    idx = np.flatnonzero(labeled)
    key = _strata(y[idx])
    if groups is not None:
        parts = _group_parts(key, np.asarray(groups)[idx], k, seed)
    elif _min_count(key) >= k:
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        parts = (test for _, test in splitter.split(idx, key))
    else:  # a class too rare to stratify: plain shuffled folds
        parts = iter(np.array_split(np.random.default_rng(seed).permutation(len(idx)), k))
    for f, test in enumerate(parts):
        folds[idx[test]] = f
    return folds


def _group_parts(key: np.ndarray, groups: np.ndarray, k: int, seed: int):
    """Test positions per fold with whole groups kept together, class balance as close to
    stratified as the groups allow. sklearn's StratifiedGroupKFold, deterministic in `seed`;
    the caller checks that there are at least k groups."""
    import warnings

    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "least populated class has fewer than k members": fine with groups
        warnings.simplefilter("ignore", UserWarning)
        return [test for _, test in splitter.split(np.zeros(len(key)), key, groups)]


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
