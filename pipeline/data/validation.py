"""The data contract of a loaded dataset: `validate_arrays` checks every rule (unique
sample names, labels by task, label names, folds, speaker groups, finite features,
>= 1 modality per row) and raises one DataError for the first broken one."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.data.mapped import release
from pipeline.data.schema import MANIFEST
from pipeline.errors import DataError

if TYPE_CHECKING:
    from pipeline.data.dataset import Dataset


def _first(mask: np.ndarray, samples: np.ndarray, k: int = 3) -> str:
    idx = np.flatnonzero(mask)[:k]
    names = ", ".join(f"row {i} '{samples[i]}'" for i in idx)
    more = f" (+{int(mask.sum()) - len(idx)} more)" if mask.sum() > k else ""
    return names + more


def validate_arrays(ds: Dataset, where: Path | str) -> None:
    """Check every rule of the data contract; raise one DataError for the first broken one."""
    s = ds.samples
    uniq, counts = np.unique(s, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1][:3].tolist()
        raise DataError(f"{where}: duplicate sample names {dup} (rule: 'sample' must be unique)")
    if (s == "").any():
        raise DataError(f"{where}: empty sample name at {_first(s == '', s)}")
    _check_labels(ds, where)
    _check_label_names(ds, where)
    _check_fold_column(ds, where)
    _check_groups(ds, where)
    _check_modalities(ds, where)


def _check_labels(ds: Dataset, where: Path | str) -> None:
    """Labeled rows hold a class index, a multi-hot 0/1 row or a finite target (by task)."""
    man, s = ds.manifest, ds.samples
    if man.task == "single_label":
        if man.n_classes < 2:
            raise DataError(f"{where}: manifest lists {man.n_classes} classes (need >= 2)")
        bad = ds.labeled & ((ds.y < 0) | (ds.y >= man.n_classes))
        if bad.any():
            raise DataError(
                f"{where}: label out of range 0..{man.n_classes - 1} at {_first(bad, s)}"
            )
    elif man.task == "multi_label":
        bad = ds.labeled[:, None] & (ds.y != 0) & (ds.y != 1)
        if bad.any():
            raise DataError(f"{where}: 'labels' must be multi-hot 0/1 at {_first(bad.any(1), s)}")
    else:
        bad = ds.labeled & ~np.isfinite(ds.y)
        if bad.any():
            raise DataError(f"{where}: 'target' is NaN/inf at {_first(bad, s)}")


def _check_label_names(ds: Dataset, where: Path | str) -> None:
    """A label_name names the row's class (single-label), and only labeled rows have one."""
    if "label_name" not in ds.extra:
        return
    man, s = ds.manifest, ds.samples
    names = ds.extra["label_name"]
    if man.task == "single_label":
        known = np.array(man.classes, dtype=object)
        has = ds.labeled & np.array([n is not None for n in names])
        idx = np.flatnonzero(has)
        mism = np.zeros(len(s), bool)
        mism[idx] = known[ds.y[idx]] != names[idx].astype(object)
        if mism.any():
            i = np.flatnonzero(mism)[0]
            raise DataError(
                f"{where}: label_name '{names[i]}' of row {i} '{s[i]}' does not match class "
                f"{ds.y[i]} ('{man.classes[ds.y[i]]}') of {MANIFEST}"
            )
    leak = ~ds.labeled & np.array([n is not None for n in names])
    if leak.any():
        raise DataError(
            f"{where}: unlabeled row(s) carry a label_name at {_first(leak, s)} "
            "(rule: unlabeled samples have no label of any kind)"
        )


def _check_fold_column(ds: Dataset, where: Path | str) -> None:
    """Labeled rows in folds 0..K-1, unlabeled rows in -1, and no fold without test samples."""
    k, s = ds.manifest.folds, ds.samples
    bad_fold = (ds.labeled & ((ds.folds < 0) | (ds.folds >= k))) | (~ds.labeled & (ds.folds != -1))
    if bad_fold.any():
        raise DataError(
            f"{where}: 'fold' must be 0..{k - 1} for labeled and -1 for unlabeled rows, "
            f"broken at {_first(bad_fold, s)}"
        )
    empty = sorted(set(range(k)) - set(np.unique(ds.folds[ds.labeled]).tolist()))
    if empty:
        raise DataError(
            f"{where}: fold(s) {empty} of {k} hold no labeled sample "
            "(rule: every fold needs test samples)"
        )


def _check_modalities(ds: Dataset, where: Path | str) -> None:
    """Present feature rows are finite, and every row has at least one modality."""
    s = ds.samples
    for m in ds.manifest.modality_names:
        finite = _finite_rows(ds.features[m]) | ~ds.present[m]
        if not finite.all():
            raise DataError(f"{where}: NaN/inf in modality '{m}' at {_first(~finite, s)}")
    none = ~ds.present_matrix().any(axis=1)
    if none.any():
        raise DataError(f"{where}: sample(s) with no modality at all: {_first(none, s)}")


CHECK_BYTES = 64 << 20  # feature bytes checked at a time: the (n, D) bool scratch stays small


def _finite_rows(f: np.ndarray) -> np.ndarray:
    """(N,) bool: every value of the row is finite; read in blocks of rows, so a
    memory-mapped (N, D) matrix is never copied whole."""
    step = max(1, CHECK_BYTES // max(1, f.itemsize * f.shape[1]))
    parts = [np.zeros(0, bool)]
    for i in range(0, len(f), step):
        parts.append(np.isfinite(f[i : i + step]).all(axis=1))
        release(f)  # a memory-mapped table: only the block being checked stays resident
    return np.concatenate(parts)


def _check_groups(ds: Dataset, where: Path | str) -> None:
    """A manifest that says its folds are grouped by a stored column (speaker) must not
    have a group on two folds: that speaker would be trained and tested on."""
    col = ds.manifest.group_by
    if col is None or col not in ds.extra:
        return  # ungrouped, or grouped by a source column that the table does not keep
    lab = ds.labeled
    groups, folds = ds.extra[col][lab].astype(str), ds.folds[lab]
    order = np.lexsort((folds, groups))
    g, f = groups[order], folds[order]
    split = (g[1:] == g[:-1]) & (f[1:] != f[:-1])
    if split.any():
        i = int(np.argmax(split))
        raise DataError(f"{where}: {col} '{g[i]}' is in folds {f[i]} and {f[i + 1]} but {MANIFEST} says folds "
                        f"are grouped by '{col}' (rule: a group's labeled rows share one fold)")
