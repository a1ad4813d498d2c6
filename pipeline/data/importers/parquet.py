"""Bring-your-own features: one parquet file -> a dataset directory.

Input columns: `sample` (string), `label` (nullable; int class index or string class
name), optional `label_name`, `speaker`, `scale`, and one list<float> (or
fixed_size_list) column per modality. Dims are inferred per column and must agree on
every row. The file is streamed batch by batch into preallocated float32 matrices
(Arrow buffers -> numpy, no Python lists), labeled rows get stratified folds, unlabeled
rows fold -1, and the directory is published atomically by `write_dataset`. The
`label` column's checks live in `parquet_labels`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from pipeline.data.bounds import (
    check_dim,
    check_folds,
    check_utf8,
    require_memory,
    require_parquet_memory,
)
from pipeline.data.dataset import UNREADABLE_PARQUET, Dataset, build_table, write_dataset
from pipeline.data.importers.folds import NO_GROUP, FoldOptions, FoldPlan, plan_folds
from pipeline.data.importers.parquet_labels import int_labels, label_indices, label_is_int
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
    is_int = label_is_int(src, schema.field("label").type)
    keep = [c for c in ("sample", "label", "label_name", *PASSTHROUGH, *_group_column(fold_options.group_by))
            if c in schema.names]
    require_parquet_memory(src, pf.metadata, schema, keep + mods)  # before anything is sized by n
    rows = _read_rows(pf, src, keep, mods, is_int, progress)
    _check_samples(src, rows.samples)
    y, class_list = label_indices(
        src, rows.samples, rows.raw_labels, rows.labeled, is_int, rows.extra.get("label_name"), classes
    )
    if rows.labeled.sum() < folds:
        raise DataError(
            f"{src}: {int(rows.labeled.sum())} labeled row(s) cannot fill {folds} folds (rule: >= 1 labeled sample per fold)"
        )
    feats, present = _modality_matrices(src, rows)
    plan = plan_folds(src, y, rows.labeled, feats, present, folds, seed,
                      {c: v for c, v in rows.extra.items() if c != "label_name"}, fold_options)
    dims = {m: reader.dim for m, reader in rows.readers.items()}
    manifest = _manifest(src, name, n, class_list, dims, folds, seed, plan)
    table = _table(manifest, rows, y, class_list, feats, present, plan)
    log.info(
        "importing %s: %d rows (%d dropped as duplicates), %d labeled, modalities %s",
        src, n, int((~plan.keep).sum()), int(rows.labeled.sum()), dims,
    )
    return write_dataset(out, manifest, table)


@dataclass
class _Rows:
    """Every row of the file, as `_read_rows` collects it batch by batch."""

    samples: np.ndarray  # (N,) object: sample names
    raw_labels: np.ndarray  # (N,) the label cells: int64 (-1 = null) or object (str / None)
    labeled: np.ndarray  # (N,) bool: the label is not null
    extra: dict[str, np.ndarray]  # label_name, passthrough and --group-by columns -> (N,) object
    readers: dict[str, ModalityReader]  # modality -> its (N, D) matrix, in column order


def _read_rows(
    pf: pq.ParquetFile, src: Path, keep: list[str], mods: list[str], is_int: bool,
    progress: Callable[[int], None] | None,
) -> _Rows:
    """Stream the `keep` and modality columns into preallocated arrays of the footer's
    row count; a file whose batches disagree with its footer is corrupt."""
    n = pf.metadata.num_rows
    schema = pf.schema_arrow
    rows = _Rows(
        samples=np.empty(n, object),
        raw_labels=np.empty(n, object if not is_int else np.int64),
        labeled=np.zeros(n, bool),
        extra={c: np.empty(n, object) for c in keep if c not in ("sample", "label")},
        readers={m: ModalityReader(src, m, n, _fixed_dim(schema.field(m).type)) for m in mods},
    )
    start = 0
    for batch in read_batches(pf, src, keep + mods):
        b = batch.num_rows
        if start + b > n:
            raise DataError(f"{src}: more rows than the {n} its footer declares (corrupt metadata)")
        _read_batch(src, batch, start, is_int, rows)
        start += b
        if progress is not None:
            progress(b)
    if start != n:
        raise DataError(f"{src}: {start} rows read but its footer declares {n} (corrupt metadata)")
    return rows


def _fixed_dim(t: pa.DataType) -> int | None:
    """The dim a fixed_size_list column declares; None for a variable list (first value decides)."""
    return t.list_size if pa.types.is_fixed_size_list(t) else None


def _read_batch(src: Path, batch: pa.RecordBatch, start: int, is_int: bool, rows: _Rows) -> None:
    """Rows [start, start + b) of every column from one record batch."""
    b = batch.num_rows
    s = batch.column("sample")
    if s.null_count:
        i = int(np.argmin(s.is_valid().to_numpy(zero_copy_only=False)))
        raise DataError(
            f"{src}: row {start + i} has no sample name (rule: 'sample' is required)"
        )
    bs = string_cells(src, "sample", s, start)
    rows.samples[start : start + b] = bs
    lab = batch.column("label")
    if pa.types.is_dictionary(lab.type):
        lab = lab.dictionary_decode()
    rows.labeled[start : start + b] = lab.is_valid().to_numpy(zero_copy_only=False)
    if is_int:
        rows.raw_labels[start : start + b] = int_labels(src, lab, start)
    else:
        rows.raw_labels[start : start + b] = string_cells(src, "label", lab, start)
    for c, dest in rows.extra.items():
        dest[start : start + b] = string_cells(src, c, batch.column(c), start)
    for m, reader in rows.readers.items():
        reader.add(batch.column(m), start, bs)


def _modality_matrices(src: Path, rows: _Rows) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(N, D) float32 features and (N,) presence per modality; every row needs one."""
    feats, present = {}, {}
    for m, reader in rows.readers.items():
        feats[m], present[m] = reader.result()
    none = ~np.stack([present[m] for m in feats], axis=1).any(axis=1)
    if none.any():
        i = int(np.argmax(none))
        raise DataError(
            f"{src}: row {i} '{rows.samples[i]}' has no modality at all (rule: >= 1 modality per sample)"
        )
    return feats, present


def _manifest(
    src: Path, name: str, n: int, class_list: list[str], dims: dict[str, int], folds: int, seed: int,
    plan: FoldPlan,
) -> Manifest:
    """The validated manifest; its provenance records the file (checksum) and the fold plan."""
    provenance = {"importer": "parquet", "source": str(src), "sha256": sha256_file(src), "rows": n,
                  "modality_sources": {m: f"column {m}" for m in dims}, **plan.provenance}
    try:
        return Manifest(
            name=name, task="single_label", classes=class_list,
            modalities=[ModalitySpec(name=m, dim=d) for m, d in dims.items()],
            folds=folds, seed=seed, provenance=provenance, group_by=plan.group_by,
        )
    except ValidationError as exc:
        raise DataError(f"{src}: {exc.errors()[0]['msg']}") from None


def _table(
    manifest: Manifest, rows: _Rows, y: np.ndarray, class_list: list[str],
    feats: dict[str, np.ndarray], present: dict[str, np.ndarray], plan: FoldPlan,
) -> pa.Table:
    """The dataset table of the rows the fold plan keeps, label_name derived from the label."""
    keep = plan.keep  # False: a pool row dropped as a duplicate of a labeled row
    names = np.array(class_list, dtype=object)
    extra = {"label_name": np.where(rows.labeled, names[np.maximum(y, 0)], None)[keep]}
    for c in PASSTHROUGH:
        if c in rows.extra:
            extra[c] = rows.extra[c][keep]
    return build_table(manifest, rows.samples[keep], y[keep], rows.labeled[keep], plan.folds[keep],
                       {m: a[keep] for m, a in feats.items()}, {m: a[keep] for m, a in present.items()}, extra)


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
