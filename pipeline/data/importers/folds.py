"""Fold assignment for the importers: groups kept on one side, duplicates found.

Shared by the parquet importer and `publish` (every other importer). The order matters:
groups are resolved and duplicates found before any fold is assigned, so that
`drop_duplicates` can drop the pool copies and put labeled duplicates into one group
(hence one fold) instead of letting them straddle train and test.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data.duplicates import DEFAULT_THRESHOLD, Duplicates, find_duplicates
from pipeline.data.splits import assign_folds
from pipeline.errors import DataError

AUTO_GROUP = "speaker"  # grouped by default when the source has this column
NO_GROUP = "none"


@dataclass(frozen=True)
class FoldOptions:
    """How an importer assigns folds. `group_by`: None = 'speaker' when that column
    exists, 'none' = off, else the column name. Duplicates are always counted;
    `drop_duplicates` drops pool rows that duplicate a labeled row and keeps labeled
    duplicates in one fold."""

    group_by: str | None = None
    duplicate_threshold: float = DEFAULT_THRESHOLD
    drop_duplicates: bool = False


@dataclass
class FoldPlan:
    folds: np.ndarray  # (N,) int8 over the input rows (-1 unlabeled)
    keep: np.ndarray  # (N,) bool: rows that stay (False: dropped pool duplicates)
    group_by: str | None  # the column the folds were grouped by
    provenance: dict  # {"folds": ..., "duplicates": ...} for the manifest


def resolve_groups(
    src: Path | str, group_by: str | None, columns: dict[str, np.ndarray], labeled: np.ndarray,
) -> tuple[str | None, np.ndarray | None]:
    """(column name, (N,) int group code) or (None, None). One DataError if the column is
    missing or null on a labeled row: a fold cannot be given to a row without a group."""
    if group_by is None:
        group_by = AUTO_GROUP if AUTO_GROUP in columns else NO_GROUP
    if group_by == NO_GROUP:
        return None, None
    if group_by not in columns:
        raise DataError(f"{src}: --group-by column '{group_by}' not found (columns: "
                        f"{', '.join(sorted(columns)) or 'none'}; --group-by none turns grouping off)")
    values = np.asarray(columns[group_by], dtype=object)
    null = labeled & np.array([v is None or (isinstance(v, float) and np.isnan(v)) or str(v) == "" for v in values])
    if null.any():
        i = int(np.argmax(null))
        raise DataError(f"{src}: group column '{group_by}' is null on {int(null.sum())} labeled row(s), first row "
                        f"{i} (rule: with --group-by every labeled row needs a group; --group-by none turns it off)")
    _, codes = np.unique(np.where(labeled, values, "").astype(str), return_inverse=True)
    return group_by, codes.astype(np.int64)


def merged_groups(groups: np.ndarray | None, dups: Duplicates, n: int) -> np.ndarray:
    """(N,) group ids joining both: rows of one group, and labeled rows that duplicate
    each other, end up in the same id (connected components)."""
    base = np.arange(n) if groups is None else groups
    if not len(dups.labeled_pairs):
        return base
    # one more edge list: each row to the first row of its group, then the duplicate pairs
    _, first = np.unique(base, return_index=True)
    rep = first[np.unique(base, return_inverse=True)[1]]
    edges = np.concatenate([np.stack([np.arange(n), rep], 1), dups.labeled_pairs])
    return Duplicates(dups.threshold, dups.pool_rows, edges).clusters(n)


def plan_folds(
    src: Path | str, y: np.ndarray, labeled: np.ndarray, feats: dict[str, np.ndarray],
    present: dict[str, np.ndarray] | None, k: int, seed: int, columns: dict[str, np.ndarray],
    options: FoldOptions, fixed_folds: np.ndarray | None = None,
) -> FoldPlan:
    """Groups, duplicates, then folds (or the source's own `fixed_folds`)."""
    n = len(labeled)
    present = present or {m: np.ones(n, bool) for m in feats}
    if fixed_folds is not None and options.group_by not in (None, NO_GROUP):
        raise DataError(f"{src}: --group-by needs folds assigned here; the source's own split is kept as it is")
    name, groups = (None, None) if fixed_folds is not None else resolve_groups(src, options.group_by, columns, labeled)
    if groups is not None and len(np.unique(groups[labeled])) < k:
        raise DataError(f"{src}: {len(np.unique(groups[labeled]))} group(s) in '{name}' cannot fill {k} folds "
                        "(rule: at least one group per fold; --group-by none turns grouping off)")
    try:
        dups = find_duplicates(feats, present, labeled, options.duplicate_threshold)
    except ValueError as exc:
        raise DataError(f"{src}: {exc}") from None
    keep = np.ones(n, bool)
    if options.drop_duplicates:
        keep[dups.pool_rows] = False
        if fixed_folds is None and len(dups.labeled_pairs):
            groups = merged_groups(groups, dups, n)
    if fixed_folds is not None:
        folds = np.where(labeled, fixed_folds, -1).astype(np.int8)
    else:
        folds = assign_folds(y, labeled, k, seed, groups)
    return FoldPlan(folds, keep, name, _provenance(name, groups, labeled, dups, folds, options, fixed_folds))


def _provenance(name, groups, labeled, dups: Duplicates, folds, options: FoldOptions, fixed) -> dict:
    """What the manifest records about folds and duplicates (the summary prints it)."""
    if fixed is not None:
        method = "the source's own split"
    elif groups is not None:
        method = "StratifiedGroupKFold (shuffled, seed)"
    else:
        method = "StratifiedKFold (shuffled, seed)"
    record = {"group_by": name, "method": method}
    if groups is not None:
        record["groups"] = len(np.unique(groups[labeled]))
    dup = dups.summary(folds)
    if not options.drop_duplicates:
        dup["action"] = "reported only (--drop-duplicates drops them)"
    elif fixed is None:
        dup["action"] = "dropped the pool rows; labeled duplicates kept in one fold"
    else:
        dup["action"] = "dropped the pool rows; the source's split kept as it is"
    dup["dropped_pool_rows"] = len(dups.pool_rows) if options.drop_duplicates else 0
    return {"folds": record, "duplicates": dup}
