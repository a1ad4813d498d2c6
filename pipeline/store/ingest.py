"""Ingest hidden features of dataset rows into a fold's collection (RAMER stage 2, `index`).

This builds the payload the collection spec (`collections/hidden_features.json`) requires,
so every caller (the CLI's random-projection ingest today, the pretrained encoders
tomorrow) writes the same points.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from pipeline.data.dataset import Dataset
from pipeline.data.scales import SCALES
from pipeline.data.scales import scale_tags as default_scale_tags
from pipeline.data.splits import FoldSplit
from pipeline.errors import StoreError
from pipeline.store.qdrant_store import HiddenFeatureStore

__all__ = ["SCALES", "collection_name", "default_scale_tags", "ingest_hidden", "row_payload"]


def collection_name(dataset: str, experiment: str, fold: int) -> str:
    """`{dataset}__{experiment}__f{fold}`: hidden features differ per fold's encoders."""
    return f"{dataset}__{experiment}__f{fold}"


def _parse_tags(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [t for t in re.split(r"[,\s]+", value) if t]
    return [str(t) for t in value]  # type: ignore[union-attr]


def row_payload(ds: Dataset, split: FoldSplit | None, rows: np.ndarray,
                scale_tags: Sequence[object] | None = None) -> dict[str, list[object]]:
    """Payload columns (aligned with `rows`) except sample/dataset/modalities, which the
    store fills in."""
    labeled = ds.labeled[rows]
    if split is not None:
        splits = split.split_names(len(ds))[rows]
        if any(s is None for s in splits):
            raise StoreError(f"{ds.root}: rows {rows[[s is None for s in splits]][:3].tolist()} "
                             f"belong to no split of fold {split.fold}")
    else:
        splits = np.where(labeled, "train", "unlabeled")
    labels, names = _labels(ds, rows)
    if scale_tags is None and "scale" in ds.extra:
        scale_tags = ds.extra["scale"][rows]
        if any(v is None for v in scale_tags):
            scale_tags = None  # partial tags in the table: fall back to the default rule
    tags = (default_scale_tags(ds.samples[rows], labeled) if scale_tags is None
            else [_parse_tags(t) for t in scale_tags])
    if len(tags) != len(rows):
        raise StoreError(f"scale tags: {len(tags)} values for {len(rows)} rows")
    return {
        "split": [str(s) for s in splits],
        "fold": [int(f) for f in ds.folds[rows]],
        "label": labels,
        "label_name": names,
        "scale": tags,
    }


def _labels(ds: Dataset, rows: np.ndarray) -> tuple[list[int], list[str]]:
    """Integer label (-1 unlabeled) and its name. Multi-label rows join their positive
    classes with '+'; regression rows carry label -1 and the target as their name."""
    classes = ds.manifest.classes
    labels, names = [], []
    for r in rows:
        if not ds.labeled[r]:
            labels.append(-1)
            names.append("unlabeled")
        elif ds.manifest.task == "single_label":
            labels.append(int(ds.y[r]))
            names.append(classes[int(ds.y[r])])
        elif ds.manifest.task == "multi_label":
            pos = np.flatnonzero(ds.y[r] > 0)
            labels.append(int(pos[0]) if len(pos) else -1)
            names.append("+".join(classes[i] for i in pos) or "none")
        else:
            labels.append(-1)
            names.append(f"{float(ds.y[r]):.3g}")
    return labels, names


def ingest_hidden(
    store: HiddenFeatureStore,
    collection: str,
    ds: Dataset,
    split: FoldSplit | None,
    hidden: Mapping[str, np.ndarray],
    rows: np.ndarray | None = None,
    scale_tags: Sequence[object] | None = None,
    batch_size: int = 512,
    progress: bool = True,
) -> int:
    """Upsert hidden features of `rows` of `ds` into `collection` (created if missing).

    hidden[m]: (R, d) vectors aligned with `rows` (R = len(rows); default all rows).
    split: the fold's split (payload `split` is relative to it); None = labeled rows are
    'train'. scale_tags: per-row lists of DB-scale tags; default from the table's `scale`
    column if complete, else `pipeline.data.scales.scale_tags` (labeled -> small, medium,
    turbo; pool -> large, turbo, + medium for a stable half). With the split filter this
    reproduces `scales.candidate_mask` exactly. Returns the number of points written.
    """
    rows = np.arange(len(ds)) if rows is None else np.asarray(rows, np.int64)
    unknown = sorted(set(hidden) - set(ds.modalities))
    if unknown:
        raise StoreError(f"{ds.root}: hidden features for unknown modality {unknown} (has {ds.modalities})")
    dims = {m.shape[1] for m in hidden.values()}
    if len(dims) != 1:
        raise StoreError(f"hidden features must share one dimension, got {sorted(dims)}")
    payload = row_payload(ds, split, rows, scale_tags)
    store.apply(collection, list(hidden), dim=dims.pop())
    present = {m: ds.present[m][rows] for m in hidden}  # (R,) bool each
    return store.upsert_hidden(
        collection, ds.manifest.name, ds.samples[rows], payload, dict(hidden), present,
        batch_size=batch_size, progress=progress,
    )
