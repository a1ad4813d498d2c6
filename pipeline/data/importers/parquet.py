"""Bring-your-own features: one parquet file -> a dataset directory.

Input columns: `sample` (string), `label` (nullable; int class index or string class
name), optional `label_name`, `speaker`, `scale`, and one list<float> (or
fixed_size_list) column per modality. Dims are inferred per column and must agree on
every row. The file is streamed batch by batch into preallocated float32 matrices
(Arrow buffers -> numpy, no Python lists), labeled rows get stratified folds, unlabeled
rows fold -1, and the directory is published atomically by `write_dataset`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import ValidationError

from pipeline.data.bounds import (
    MAX_CLASSES,
    check_dim,
    check_folds,
    check_utf8,
    require_memory,
    require_parquet_memory,
)
from pipeline.data.dataset import UNREADABLE_PARQUET, Dataset, build_table, write_dataset
from pipeline.data.importers.folds import NO_GROUP, FoldOptions, plan_folds
from pipeline.data.schema import Manifest, ModalitySpec
from pipeline.errors import DataError

log = logging.getLogger(__name__)

PASSTHROUGH = ("speaker", "scale")  # optional string columns copied as they are
IGNORED = ("fold",)  # recomputed here
BATCH_ROWS = 8192


def sha256_file(path: Path, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def open_parquet(src: Path) -> pq.ParquetFile:
    """The file's reader; a missing, non-parquet or corrupt-footer file is one DataError."""
    if not src.exists():
        raise DataError(f"{src}: input file not found")
    if not src.is_file():
        raise DataError(f"{src}: not a file")
    try:
        return pq.ParquetFile(src, pre_buffer=False)  # default pre-buffering kept every batch read
    except UNREADABLE_PARQUET as exc:
        raise DataError(f"{src}: not a parquet file ({' '.join(str(exc).split())})") from None


def read_batches(pf: pq.ParquetFile, src: Path, columns: list[str]):
    """Record batches; corrupt pages (found only while decoding) become a DataError."""
    batches = pf.iter_batches(batch_size=BATCH_ROWS, columns=columns)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except UNREADABLE_PARQUET as exc:
            raise DataError(f"{src}: unreadable parquet data ({' '.join(str(exc).split())})") from None
        yield batch


def _plan_columns(
    src: Path, schema: pa.Schema, modalities: Sequence[str] | None, group_by: str | None = None,
) -> list[str]:
    """Check the column set; return the modality columns in order. `group_by` names one
    more column that is read (for the folds) but not stored, unless it is `speaker`."""
    names = schema.names
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:
        raise DataError(f"{src}: duplicate column name(s) {dup}")
    for need in ("sample", "label"):
        if need not in names:
            raise DataError(
                f"{src}: missing required column '{need}' (rule: sample, label, one list column per modality)"
            )
    for other in ("labels", "target"):
        if other in names:
            raise DataError(
                f"{src}: column '{other}' (multi-label/regression) is not supported by the parquet importer; use 'label'"
            )
    reserved = {"sample", "label", "label_name", *PASSTHROUGH, *IGNORED, *_group_column(group_by)}
    lists = [c for c in names if c not in reserved and _is_list(schema.field(c).type)]
    for c in names:
        if c in reserved or c in lists:
            continue
        raise DataError(
            f"{src}: column '{c}' ({schema.field(c).type}) is neither a known column "
            f"(sample, label, label_name, speaker, scale) nor a list<float> modality (unknown column)"
        )
    for c in lists:
        vt = schema.field(c).type.value_type
        if not (pa.types.is_floating(vt) or pa.types.is_integer(vt)):
            raise DataError(
                f"{src}: modality column '{c}' holds {vt}, not numbers (rule: list<float>)"
            )
    if modalities is not None:
        unknown = [c for c in lists if c not in modalities]
        if unknown:
            raise DataError(
                f"{src}: column(s) {unknown} are not among the modalities {list(modalities)} (unknown modality)"
            )
        missing = [m for m in modalities if m not in lists]
        if missing:
            raise DataError(f"{src}: modality column(s) {missing} not found (columns: {names})")
        lists = list(modalities)
    if not lists:
        raise DataError(f"{src}: no modality column (rule: one list<float> column per modality)")
    return lists


def _label_is_int(src: Path, lab_type: pa.DataType) -> bool:
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


def string_cells(src: Path, name: str, arr: pa.Array, start: int) -> np.ndarray:
    """(b,) object array of str/None from a string (or int) column of one batch."""
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        try:
            arr = arr.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise DataError(f"{src}: column '{name}' has type {arr.type} (rule: it holds text)") from None
    check_utf8(src, name, arr, start)
    return arr.to_numpy(zero_copy_only=False)


def _int64(src: Path, lab: pa.Array, start: int) -> np.ndarray:
    """(b,) int64 labels, -1 where null; a uint64 beyond int64 is an out-of-range label."""
    try:
        return lab.cast(pa.int64()).fill_null(-1).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        i = int(np.argmax(pc.greater(lab, 2**63 - 1).fill_null(False).to_numpy(zero_copy_only=False)))
        raise DataError(f"{src}: label {lab[i].as_py()} at row {start + i} is out of range (rule: class indices)") from None


class ModalityReader:
    """Accumulates one modality column across batches into an (N, D) float32 matrix."""

    def __init__(self, src: Path, name: str, n: int, fixed_dim: int | None):
        self.src, self.name, self.n = src, name, n
        self.dim = fixed_dim
        self.mat: np.ndarray | None = None
        self.present = np.zeros(n, bool)

    def _alloc(self, dim: int) -> None:
        # The dim of a variable list comes from its first value: bound it before sizing by it.
        check_dim(self.src, self.name, dim)
        require_memory(self.src, 4 * self.n * dim, f"column '{self.name}' ({self.n} rows x {dim} values)")
        self.dim = dim
        self.mat = np.zeros((self.n, dim), np.float32)

    def add(self, arr: pa.Array, start: int, samples: np.ndarray) -> None:
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(valid)
        if not len(rows):
            return
        if pa.types.is_fixed_size_list(arr.type):
            lengths = np.full(len(rows), arr.type.list_size)
        else:
            lengths = arr.value_lengths().to_numpy(zero_copy_only=False)[rows]
        if self.dim is None:
            self._alloc(int(lengths[0]))
        elif self.mat is None:
            self._alloc(self.dim)
        bad = lengths != self.dim
        if bad.any():
            i = rows[np.argmax(bad)]
            raise DataError(
                f"{self.src}: column '{self.name}' row {start + i} '{samples[i]}' has {lengths[np.argmax(bad)]} "
                f"values, expected {self.dim} (rule: one fixed dim per modality, ragged lists not allowed)"
            )
        flat = arr.flatten()  # values of the valid rows only, offset-aware
        if flat.null_count:
            nulls = ~flat.is_valid().to_numpy(zero_copy_only=False)
            i = rows[np.flatnonzero(nulls)[0] // self.dim]
            raise DataError(
                f"{self.src}: column '{self.name}' row {start + i} '{samples[i]}' contains a null value "
                "(rule: a modality value is either absent as a whole or fully numeric)"
            )
        vals = flat.to_numpy(zero_copy_only=False).reshape(len(rows), self.dim)
        with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf: caught below
            vals = vals.astype(np.float32, copy=False)
        finite = np.isfinite(vals).all(axis=1)
        if not finite.all():
            i = rows[np.argmin(finite)]
            raise DataError(
                f"{self.src}: column '{self.name}' row {start + i} '{samples[i]}' contains NaN/inf "
                "or a value beyond float32's range (rule: feature values must be finite float32)"
            )
        self.mat[start + rows] = vals
        self.present[start + rows] = True

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        if self.mat is None:
            raise DataError(
                f"{self.src}: modality column '{self.name}' is null on every row (cannot infer its dim)"
            )
        return self.mat, self.present


def _label_indices(
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


def import_parquet(
    src: str | Path,
    name: str,
    out: str | Path,
    folds: int = 5,
    seed: int = 0,
    classes: Sequence[str] | None = None,
    modalities: Sequence[str] | None = None,
    progress: Callable[[int], None] | None = None,
    fold_options: FoldOptions | None = None,
) -> Dataset:
    """Import `src` as dataset `name` into `out/` (atomic; nothing written on error).
    `fold_options`: grouping (default: by `speaker` when the file has it) and duplicates."""
    fold_options = fold_options or FoldOptions()
    src = Path(src).resolve()
    pf = open_parquet(src)
    n = pf.metadata.num_rows
    if n == 0:
        raise DataError(f"{src}: empty file (no rows)")
    check_folds(src, folds)
    schema = pf.schema_arrow
    mods = _plan_columns(src, schema, modalities, fold_options.group_by)
    is_int = _label_is_int(src, schema.field("label").type)
    keep = [c for c in ("sample", "label", "label_name", *PASSTHROUGH, *_group_column(fold_options.group_by))
            if c in schema.names]
    require_parquet_memory(src, pf.metadata, schema, keep + mods)  # before anything is sized by n
    readers = {
        m: ModalityReader(
            src,
            m,
            n,
            schema.field(m).type.list_size
            if pa.types.is_fixed_size_list(schema.field(m).type)
            else None,
        )
        for m in mods
    }
    samples = np.empty(n, object)
    raw_labels = np.empty(n, object if not is_int else np.int64)
    labeled = np.zeros(n, bool)
    extra_cols = {c: np.empty(n, object) for c in keep if c not in ("sample", "label")}
    start = 0
    for batch in read_batches(pf, src, keep + mods):
        b = batch.num_rows
        if start + b > n:
            raise DataError(f"{src}: more rows than the {n} its footer declares (corrupt metadata)")
        s = batch.column("sample")
        if s.null_count:
            i = int(np.argmin(s.is_valid().to_numpy(zero_copy_only=False)))
            raise DataError(
                f"{src}: row {start + i} has no sample name (rule: 'sample' is required)"
            )
        bs = string_cells(src, "sample", s, start)
        samples[start : start + b] = bs
        lab = batch.column("label")
        if pa.types.is_dictionary(lab.type):
            lab = lab.dictionary_decode()
        valid = lab.is_valid().to_numpy(zero_copy_only=False)
        labeled[start : start + b] = valid
        if is_int:
            raw_labels[start : start + b] = _int64(src, lab, start)
        else:
            raw_labels[start : start + b] = string_cells(src, "label", lab, start)
        for c, dest in extra_cols.items():
            dest[start : start + b] = string_cells(src, c, batch.column(c), start)
        for m in mods:
            readers[m].add(batch.column(m), start, bs)
        start += b
        if progress is not None:
            progress(b)
    if start != n:
        raise DataError(f"{src}: {start} rows read but its footer declares {n} (corrupt metadata)")
    _check_samples(src, samples)
    y, class_list = _label_indices(
        src, samples, raw_labels, labeled, is_int, extra_cols.get("label_name"), classes
    )
    if labeled.sum() < folds:
        raise DataError(
            f"{src}: {int(labeled.sum())} labeled row(s) cannot fill {folds} folds (rule: >= 1 labeled sample per fold)"
        )
    feats, present = {}, {}
    for m in mods:
        feats[m], present[m] = readers[m].result()
    none = ~np.stack([present[m] for m in mods], axis=1).any(axis=1)
    if none.any():
        i = int(np.argmax(none))
        raise DataError(
            f"{src}: row {i} '{samples[i]}' has no modality at all (rule: >= 1 modality per sample)"
        )
    plan = plan_folds(src, y, labeled, feats, present, folds, seed,
                      {c: v for c, v in extra_cols.items() if c != "label_name"}, fold_options)
    provenance = {"importer": "parquet", "source": str(src), "sha256": sha256_file(src), "rows": n,
                  **plan.provenance}
    try:
        manifest = Manifest(
            name=name, task="single_label", classes=class_list,
            modalities=[ModalitySpec(name=m, dim=readers[m].dim) for m in mods],
            folds=folds, seed=seed, provenance=provenance, group_by=plan.group_by,
        )
    except ValidationError as exc:
        raise DataError(f"{src}: {exc.errors()[0]['msg']}") from None
    keep = plan.keep  # False: a pool row dropped as a duplicate of a labeled row
    names = np.array(class_list, dtype=object)
    extra = {"label_name": np.where(labeled, names[np.maximum(y, 0)], None)[keep]}
    for c in PASSTHROUGH:
        if c in extra_cols:
            extra[c] = extra_cols[c][keep]
    table = build_table(manifest, samples[keep], y[keep], labeled[keep], plan.folds[keep],
                        {m: a[keep] for m, a in feats.items()}, {m: a[keep] for m, a in present.items()}, extra)
    log.info(
        "importing %s: %d rows (%d dropped as duplicates), %d labeled, modalities %s",
        src, n, int((~keep).sum()), int(labeled.sum()), {m: readers[m].dim for m in mods},
    )
    return write_dataset(out, manifest, table)


def _group_column(group_by: str | None) -> tuple[str, ...]:
    """The extra column a --group-by reads, if any (speaker is read anyway)."""
    return () if group_by in (None, NO_GROUP) else (group_by,)


def _check_samples(src: Path, samples: np.ndarray) -> None:
    s = samples.astype(str)
    empty = np.flatnonzero(s == "")
    if len(empty):
        raise DataError(
            f"{src}: row {empty[0]} has an empty sample name (rule: 'sample' is required)"
        )
    order = np.argsort(s, kind="stable")
    ss = s[order]
    dup = np.flatnonzero(ss[1:] == ss[:-1])
    if len(dup):
        first, second = sorted((int(order[dup[0]]), int(order[dup[0] + 1])))
        raise DataError(
            f"{src}: duplicate sample name '{s[first]}' at rows {first} and {second} "
            "(rule: 'sample' must be unique)"
        )
