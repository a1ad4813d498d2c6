"""Helpers shared by the real-dataset importers: checks with clear errors, pooling,
checksums and the final validated, atomic publish."""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from pipeline.data.bounds import check_folds
from pipeline.data.dataset import Dataset, build_table, write_dataset
from pipeline.data.importers.folds import FoldOptions, plan_folds
from pipeline.data.importers.parquet import sha256_file
from pipeline.data.schema import Manifest, ModalitySpec
from pipeline.data.sequences import Sequences
from pipeline.errors import DataError

Progress = Callable[[int], None] | None
__all__ = [
    "KNOWN_DIMS", "Progress", "clean_frames", "count_padding", "feature_array", "listing_sha256", "load_pickle",
    "offenders", "pool_frames", "pool_valid", "publish", "require", "sha256_file", "store_frames",
    "warn_known_dims",
]
log = logging.getLogger(__name__)
PADDING = ("end", "start")

# Feature dims of extractors a source file names (in its file name or config): a modality
# whose dim contradicts the extractor named for it was most likely read from the wrong place.
KNOWN_DIMS = {
    "wav2vec": 1024, "affectdenseface": 342, "denseface": 342, "robert": 768, "is10": 1582,
    "covarep": 74, "facet": 35, "glove": 300,
}


def offenders(items: Sequence[object], k: int = 5) -> str:
    """'a, b, c (+12 more)': the first few offending names for an error message."""
    items = list(items)
    head = ", ".join(str(i) for i in items[:k])
    return head + (f" (+{len(items) - k} more)" if len(items) > k else "")


def require(path: Path, what: str, like: str | None = None) -> Path:
    """`path`, or one DataError; with `like` (a glob) it lists what its folder holds instead."""
    if not path.exists():
        found = "" if like is None else f" (found: {offenders(sorted(p.name for p in path.parent.glob(like))) or 'none'})"
        raise DataError(f"{path}: {what} not found{found}")
    return path


def listing_sha256(folder: Path, names: Iterable[str], suffix: str = ".npy") -> str:
    """Checksum of a per-sample file tree without reading every file: sha256 over the
    sorted (name, size) pairs of the files the import used."""
    h = hashlib.sha256()
    for n in sorted(names):
        h.update(f"{n}\t{os.stat(folder / (n + suffix)).st_size}\n".encode())
    return h.hexdigest()


def load_pickle(path: Path, what: str) -> object:
    """The unpickled object, or one DataError (a corrupt pickle raises almost any type)."""
    try:
        with path.open("rb") as fh:
            return pickle.load(fh)
    except Exception as exc:  # noqa: BLE001 - MemoryError, UnpicklingError, EOFError, ValueError, ...
        raise DataError(f"{path}: not a readable {what} ({type(exc).__name__}: {exc})") from None


def feature_array(src: Path, where: str, value: object, ndims: tuple[int, ...] = (2, 3),
                  rule: str | None = None) -> np.ndarray:
    """`value` (a numpy array, a torch tensor or nested lists) as a numeric array with one of
    `ndims` dimensions, without copying an array that already is one; otherwise one
    DataError naming the file, the entry and the rule (`rule`, or the shapes allowed)."""
    rule = "rule: " + (rule or f"numbers of shape {' or '.join({2: '(N, D)', 3: '(N, T, D)', 1: '(N,)'}[d] for d in ndims)}")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, RuntimeError):  # ragged nested lists
        raise DataError(f"{src}: '{where}' holds frames of different shapes ({rule})") from None
    if arr.dtype == object:
        raise DataError(f"{src}: '{where}' holds frames of different shapes or non-numbers ({rule})")
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{src}: '{where}' holds {arr.dtype} values, not numbers ({rule})")
    if arr.ndim not in ndims:
        raise DataError(f"{src}: '{where}' has shape {arr.shape} ({rule})")
    return arr


def clean_frames(seq: np.ndarray, lengths: np.ndarray | None = None,
                 padding: str = "end") -> tuple[np.ndarray, np.ndarray]:
    """(n, T, D) float32 frames with -inf/+inf set to 0 (CMU-MOSEI's COVAREP audio has -inf;
    CARAT's loader does the same) and the (n, T) valid mask: with `lengths`, the first
    `length` frames (`padding="end"`) or the last ones (`padding="start"`, MMSA-FET's
    padding_location='start'); without, every frame that is not all zero (padding on
    either side). (n, D) input is one frame per sample."""
    seq = np.asarray(seq, np.float32)
    if seq.ndim == 2:  # already one vector per sample
        seq = seq[:, None, :]
    seq = np.where(np.isinf(seq), np.float32(0.0), seq)
    t = seq.shape[1]
    if lengths is not None:
        keep = np.minimum(np.asarray(lengths, np.int64), t)[:, None]  # (n, 1)
        pos = np.arange(t)[None, :]  # (1, T)
        valid = pos < keep if padding == "end" else pos >= t - keep
    else:
        valid = np.abs(seq).sum(-1) > 0
    return seq, valid


def count_padding(seq: np.ndarray, lengths: np.ndarray) -> tuple[int, int]:
    """Rows of (n, T, D) frames whose zero padding, if `lengths` counts their valid frames,
    can only be at the end / only at the start: (end_only, start_only). A row with no
    padding or zero frames on both sides counts for neither."""
    t = seq.shape[1]
    keep = np.minimum(np.asarray(lengths, np.int64), t)[:, None]  # (n, 1)
    pos = np.arange(t)[None, :]  # (1, T)
    zero = ~(np.asarray(seq) != 0).any(-1)  # (n, T) all-zero frames
    tail_zero = (zero | (pos < keep)).all(1)  # every frame after the valid ones is zero
    head_zero = (zero | (pos >= t - keep)).all(1)
    return int((tail_zero & ~head_zero).sum()), int((head_zero & ~tail_zero).sum())


def warn_known_dims(src: Path, named: dict[str, str], dims: dict[str, int]) -> list[str]:
    """One warning line per modality whose dim contradicts the extractor the source names
    for it (`named`: modality -> extractor text, e.g. from the file name). Returns the lines
    (also logged) for the provenance."""
    lines = []
    for m, text in named.items():
        key = next((k for k in KNOWN_DIMS if k in text.lower()), None)
        if key is not None and m in dims and dims[m] != KNOWN_DIMS[key]:
            lines.append(f"{src.name}: {m} is {dims[m]}-d but the source names {key} ({KNOWN_DIMS[key]}-d) for it; "
                         "check that the modalities are not swapped")
    for line in lines:
        log.warning(line)
    return lines


def pool_valid(seq: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, D) float32 mean over the valid frames, and (n,) bool "has a valid frame"."""
    cnt = valid.sum(1)
    pooled = (seq * valid[..., None]).sum(1) / np.maximum(cnt, 1)[:, None]
    return pooled.astype(np.float32), cnt > 0


def store_frames(feats: dict, present: dict, stage, m: str, pos: int, seq: np.ndarray, valid: np.ndarray) -> None:
    """Write a chunk of frames (n, T, D) starting at row `pos`: pooled into `feats[m]` with
    its presence into `present[m]`, and staged as frames too when sequences are kept."""
    pooled, ok = pool_valid(seq, valid)
    feats[m][pos : pos + len(pooled)] = pooled
    present[m][pos : pos + len(pooled)] = ok
    if stage is not None:
        stage.put(m, pos, seq, valid)


def pool_frames(seq: np.ndarray, lengths: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(n, T, D) frames -> (n, D) float32 mean over the valid frames (see `clean_frames`),
    and (n,) bool "has a valid frame"."""
    return pool_valid(*clean_frames(seq, lengths))


def check_finite(src: Path, modality: str, mat: np.ndarray, samples: np.ndarray) -> None:
    bad = ~np.isfinite(mat).all(axis=1)
    if bad.any():
        raise DataError(f"{src}: NaN in modality '{modality}' for sample(s) {offenders(samples[bad])}")


def publish(
    out: str | Path, *, name: str, task: str, classes: list[str], samples: np.ndarray, y: np.ndarray,
    labeled: np.ndarray, feats: dict[str, np.ndarray], present: dict[str, np.ndarray] | None,
    folds: int, seed: int, provenance: dict, fixed_folds: np.ndarray | None = None,
    extra: dict[str, np.ndarray] | None = None, sequences: dict[str, Sequences] | None = None,
    fold_options: FoldOptions | None = None,
) -> Dataset:
    """Assign folds (stratified, grouped by speaker where there is one, or the source's own
    split in `fixed_folds`), count (and with `fold_options.drop_duplicates` drop) duplicate
    rows, build the table and publish `out/` (with `sequences/` if given) atomically after
    full validation."""
    src = provenance.get("source", "?")
    dup = np.unique(samples, return_counts=True)
    if (dup[1] > 1).any():
        raise DataError(f"{src}: duplicate sample names {offenders(dup[0][dup[1] > 1])}")
    if present is not None:
        none = ~np.stack([present[m] for m in feats], axis=1).any(axis=1)
        if none.any():
            raise DataError(f"{src}: sample(s) with no usable modality: {offenders(samples[none])}")
    if fixed_folds is None:
        check_folds(src, folds)
        if labeled.sum() < folds:
            raise DataError(f"{src}: {int(labeled.sum())} labeled samples cannot fill {folds} folds")
    ex = dict(extra or {})
    plan = plan_folds(src, y, labeled, feats, present, folds, seed, ex, fold_options or FoldOptions(),
                      fixed_folds)
    try:
        manifest = Manifest(
            name=name, task=task, classes=classes,
            modalities=[ModalitySpec(name=m, dim=a.shape[1]) for m, a in feats.items()],
            folds=folds, seed=seed, provenance={**provenance, **plan.provenance}, group_by=plan.group_by,
        )
    except ValidationError as exc:
        raise DataError(f"{src}: {exc.errors()[0]['msg']}") from None
    keep = plan.keep
    if not keep.all():  # dropped pool duplicates: every per-row array loses the same rows
        if sequences:
            raise DataError(f"{src}: --drop-duplicates cannot drop rows from kept frame sequences; "
                            "import without --keep-sequences or without --drop-duplicates")
        samples, y, labeled = samples[keep], y[keep], labeled[keep]
        feats = {m: a[keep] for m, a in feats.items()}
        present = None if present is None else {m: a[keep] for m, a in present.items()}
        ex = {c: a[keep] for c, a in ex.items()}
    fold = plan.folds[keep]
    if task == "single_label":
        names = np.array(classes, dtype=object)
        ex["label_name"] = np.where(labeled, names[np.maximum(y, 0)], None)
    table = build_table(manifest, samples, y, labeled, fold, feats, present, ex)
    return write_dataset(out, manifest, table, sequences=sequences)
