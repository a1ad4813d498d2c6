"""The `label` column of a parquet import: int class indices or string class names ->
(N,) int64 class indices (-1 = unlabeled) and the class list, checked before anything is
sized by a label value."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.data.bounds import MAX_CLASSES
from pipeline.errors import DataError


def label_is_int(src: Path, lab_type: pa.DataType) -> bool:
    """True for int (or all-null) labels, False for string class names; anything else is an error."""
    if pa.types.is_dictionary(lab_type):
        lab_type = lab_type.value_type
    if pa.types.is_integer(lab_type) or pa.types.is_null(lab_type):
        return True
    if pa.types.is_string(lab_type) or pa.types.is_large_string(lab_type):
        return False
    raise DataError(
        f"{src}: column 'label' has type {lab_type}; it must hold int class indices or string class names"
    )


def int_labels(src: Path, lab: pa.Array, start: int) -> np.ndarray:
    """(b,) int64 labels, -1 where null; a uint64 beyond int64 is an out-of-range label."""
    try:
        return lab.cast(pa.int64()).fill_null(-1).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        i = int(np.argmax(pc.greater(lab, 2**63 - 1).fill_null(False).to_numpy(zero_copy_only=False)))
        raise DataError(f"{src}: label {lab[i].as_py()} at row {start + i} is out of range (rule: class indices)") from None


def label_indices(
    src: Path,
    samples: np.ndarray,
    raw: np.ndarray,
    labeled: np.ndarray,
    is_int: bool,
    names_col: np.ndarray | None,
    classes: Sequence[str] | None,
) -> tuple[np.ndarray, list[str]]:
    """(N,) int64 class indices (-1 unlabeled) and the class list."""
    idx = np.flatnonzero(labeled)
    y = np.full(len(samples), -1, np.int64)
    if not is_int:
        names = raw[idx].astype(str)
        classes = list(classes) if classes else sorted(set(names.tolist()))
        if len(classes) > MAX_CLASSES:
            raise DataError(
                f"{src}: {len(classes)} distinct labels, more than {MAX_CLASSES} classes (rule: a label names a class)"
            )
        lookup = {c: i for i, c in enumerate(classes)}
        codes = np.array([lookup.get(v, -1) for v in names], np.int64)
        if (codes < 0).any():
            j = idx[np.argmax(codes < 0)]
            raise DataError(
                f"{src}: label '{raw[j]}' at row {j} '{samples[j]}' is not one of the classes {classes}"
            )
        y[idx] = codes
    else:
        vals = raw[idx].astype(np.int64)
        classes = _int_classes(src, samples, idx, vals, names_col, classes)
        y[idx] = vals
    if names_col is not None:  # a given label_name must agree with the label
        given = names_col[idx]
        has = np.array([v is not None for v in given], bool)
        want = np.array(classes, dtype=object)[y[idx]]
        mism = has & (given.astype(object) != want)
        if mism.any():
            j = idx[np.argmax(mism)]
            raise DataError(
                f"{src}: label_name '{names_col[j]}' at row {j} '{samples[j]}' disagrees with label "
                f"{raw[j]} ('{classes[y[j]]}'); label names must be among the classes {list(classes)}"
            )
    if len(classes) < 2:
        raise DataError(f"{src}: only {len(classes)} class(es) {list(classes)} (rule: need >= 2)")
    return y, list(classes)


def _int_classes(
    src: Path, samples: np.ndarray, idx: np.ndarray, vals: np.ndarray,
    names_col: np.ndarray | None, classes: Sequence[str] | None,
) -> list[str]:
    """The class list of int labels, checked before anything is sized by a label value (a
    flipped byte can make a label 84,606,977): with --classes every label indexes that
    list; without, the labels must be the contiguous classes 0..K-1, K <= MAX_CLASSES,
    named by label_name where the file gives one name per class."""
    k = len(classes) if classes else MAX_CLASSES
    bad = (vals < 0) | (vals >= k)
    if bad.any():
        i = int(np.argmax(bad))
        j = idx[i]
        rule = f"classes {list(classes)}" if classes else (
            f"int labels are class indices 0..K-1, K <= {MAX_CLASSES}; --classes or string labels name them"
        )
        raise DataError(f"{src}: label {vals[i]} at row {j} '{samples[j]}' is out of range 0..{k - 1} ({rule})")
    if classes:
        return list(classes)
    top = int(vals.max()) if len(vals) else -1
    absent = np.setdiff1d(np.arange(top + 1), vals)  # top < MAX_CLASSES: a bounded range
    if len(absent):
        raise DataError(
            f"{src}: int labels run 0..{top} but class(es) {absent[:5].tolist()} have no labeled row "
            "(rule: without --classes the labels are the contiguous classes 0..K-1)"
        )
    if top < 0:
        return []  # nothing labeled: the class count check reports it
    named = _classes_from_names(src, samples, idx, vals, names_col) if names_col is not None else None
    return named or [str(i) for i in range(top + 1)]


def _classes_from_names(
    src: Path, samples: np.ndarray, idx: np.ndarray, vals: np.ndarray, names_col: np.ndarray
) -> list[str] | None:
    """Class list from (label, label_name) pairs; every index must have one consistent name.
    `vals` are already the contiguous classes 0..K-1 (see `_int_classes`)."""
    mapping: dict[int, str] = {}
    for j, v in zip(idx, vals):
        nm = names_col[j]
        if nm is None:
            continue
        if mapping.setdefault(int(v), nm) != nm:
            raise DataError(
                f"{src}: label {v} is named both '{mapping[int(v)]}' and '{nm}' (row {j} '{samples[j]}')"
            )
    top = int(vals.max())
    if len(mapping) != top + 1:
        return None  # some class unnamed: numeric names, and the label_name check reports
    return [mapping[i] for i in range(top + 1)]
