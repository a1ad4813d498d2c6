"""Read, validate and write dataset directories (manifest.json + features.parquet
+ optional sequences/, see `pipeline.data.sequences`; the rules: `pipeline.data.validation`).

Reading returns numpy views of the Arrow buffers (no Python lists, no per-row copies).
Writing validates everything first and publishes the directory atomically, so a failed
write never leaves a partial dataset and the previous good version stays in place.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from pipeline.data.bounds import check_utf8, require_parquet_memory
from pipeline.data.mapped import map_features
from pipeline.data.schema import FEATURES, MANIFEST, Manifest
from pipeline.data.sequences import Sequences, check_sequences, load_sequences, write_sequences
from pipeline.data.validation import validate_arrays
from pipeline.errors import DataError

# What pyarrow raises for a file that is not (valid) parquet: corrupt metadata can also
# surface as a UnicodeDecodeError of a column name, found by fuzzing.
UNREADABLE_PARQUET = (pa.ArrowException, OSError, UnicodeDecodeError)

RESERVED = {"sample", "label", "labels", "target", "fold", "label_name", "speaker", "scale"}


@dataclass
class Dataset:
    """One dataset in memory. Rows are samples; arrays are aligned by row."""

    manifest: Manifest
    root: Path
    samples: np.ndarray  # (N,) str
    y: np.ndarray  # single_label: (N,) int64, -1 unlabeled | multi_label: (N, C) f32 | regression: (N,) f32
    labeled: np.ndarray  # (N,) bool
    folds: np.ndarray  # (N,) int8, -1 for unlabeled
    features: dict[str, np.ndarray]  # name -> (N, D) float32 (zeros where absent)
    present: dict[str, np.ndarray]  # name -> (N,) bool, False = modality really missing
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # label_name, speaker, scale
    sequences: dict[str, Sequences] | None = None  # modality -> memory-mapped frames, if kept

    @property
    def modalities(self) -> list[str]:
        return self.manifest.modality_names

    def __len__(self) -> int:
        return len(self.samples)

    def x(self, rows: np.ndarray | None = None) -> list[np.ndarray]:
        """Per-modality feature matrices (in manifest order), optionally for some rows."""
        if rows is None:
            return [self.features[m] for m in self.modalities]
        return [self.features[m][rows] for m in self.modalities]

    def present_matrix(self) -> np.ndarray:
        """(N, M) bool: which modalities each sample really has."""
        return np.stack([self.present[m] for m in self.modalities], axis=1)


# ---------------------------------------------------------------- reading


def _label_column(task: str) -> str:
    return {"single_label": "label", "multi_label": "labels", "regression": "target"}[task]


def _fixed_list_to_numpy(col: pa.ChunkedArray, dim: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    arr = col.combine_chunks()
    if not pa.types.is_fixed_size_list(arr.type) or arr.type.list_size != dim:
        raise DataError(
            f"{where}: expected fixed_size_list<float32>[{dim}] as {MANIFEST} says, found {arr.type} "
            "(manifest disagrees with table)"
        )
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    values = arr.values.slice(arr.offset * dim, len(arr) * dim)  # .values ignores the offset
    if values.type != pa.float32():
        values = values.cast(pa.float32())
    if values.null_count:
        # Parquet stores no values under a null (absent) entry, so they read back as nulls:
        # fill them with zeros; a null inside a present entry is an error.
        holes = ~values.is_valid().to_numpy(zero_copy_only=False).reshape(len(arr), dim).all(axis=1)
        bad = holes & valid
        if bad.any():
            raise DataError(f"{where}: null value inside a present modality value at row {int(np.argmax(bad))}")
        values = values.fill_null(0.0)
    mat = values.to_numpy(zero_copy_only=True).reshape(len(arr), dim)
    return mat, valid


def load_dataset(path: str | Path, validate: bool = True) -> Dataset:
    """Load a dataset directory. Raises `DataError` naming the file and rule on bad input."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: dataset directory not found")
    manifest = Manifest.load(root / MANIFEST)
    fpath = root / FEATURES
    if not fpath.is_file():
        raise DataError(f"{fpath}: features table not found")
    try:
        pf = pq.ParquetFile(fpath, memory_map=True)
        names = pf.schema_arrow.names
        _check_columns(manifest, names, fpath)
        scalars = [c for c in names if c not in manifest.modality_names]
        require_parquet_memory(fpath, pf.metadata, pf.schema_arrow, scalars)  # the footer's row count checked
        mapped = map_features(root, manifest, pf.metadata.num_rows, _decoder(manifest, fpath))
        # mapped: only the per-row scalars are decoded into memory, the features stay on disk
        if not mapped:
            require_parquet_memory(fpath, pf.metadata, pf.schema_arrow, names)
        table = pf.read(columns=scalars if mapped else names)
    except UNREADABLE_PARQUET as exc:
        raise DataError(f"{fpath}: not a readable parquet file ({' '.join(str(exc).split())})") from None
    ds = _dataset_from_table(manifest, root, table, fpath, mapped)
    if validate:
        validate_arrays(ds, fpath)
    ds.sequences = load_sequences(root, manifest, ds.samples, ds.present, validate)
    return ds


def _check_columns(manifest: Manifest, names: list[str], where: Path) -> None:
    """The table's columns are the manifest's: no duplicate, none missing, none unknown."""
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:
        raise DataError(f"{where}: duplicate column name(s) {dup} (rule: one column per name)")
    cols = set(names)
    for need in ("sample", "fold", _label_column(manifest.task), *manifest.modality_names):
        if need not in cols:
            raise DataError(f"{where}: missing column '{need}' required by {MANIFEST} (manifest disagrees with table)")
    unknown = sorted(c for c in cols - RESERVED - set(manifest.modality_names))
    if unknown:
        raise DataError(f"{where}: column(s) {unknown} are not modalities of {MANIFEST} (unknown modality)")


def _decoder(manifest: Manifest, where: Path):
    """(modality, column of a record batch) -> ((b, D) float32, (b,) present), with the
    table's rules (fixed list of the manifest's dim, no null inside a present value)."""
    dims = dict(zip(manifest.modality_names, manifest.dims))
    return lambda m, col: _fixed_list_to_numpy(col, dims[m], f"{where}: column '{m}'")


def _dataset_from_table(manifest: Manifest, root: Path, table: pa.Table, where: Path,
                        mapped: tuple[dict, dict] | None = None) -> Dataset:
    """The dataset of `table`; `mapped` = (features, present) memory-mapped beside it,
    in which case the table holds the per-row scalars only."""
    names = table.column_names
    cols = set(names)
    if table.num_rows == 0:
        raise DataError(f"{where}: empty table (no samples)")
    label_col = _label_column(manifest.task)
    _check_columns(manifest, names + (manifest.modality_names if mapped else []), where)
    scol = table.column("sample")
    if not (pa.types.is_string(scol.type) or pa.types.is_large_string(scol.type)):
        raise DataError(f"{where}: column 'sample' must be string, found {scol.type}")
    if scol.null_count:
        i = int(np.flatnonzero(~scol.is_valid().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{where}: null sample name at row {i} (rule: every row needs a 'sample')")
    for c in ("sample", "label_name", "speaker", "scale"):
        if c in cols:
            check_utf8(where, c, table.column(c))
    samples = scol.to_numpy(zero_copy_only=False).astype(str)
    labcol = table.column(label_col)
    if manifest.task == "single_label" and not pa.types.is_integer(labcol.type):
        raise DataError(f"{where}: column 'label' must be an integer class index, found {labcol.type}")
    labeled = labcol.is_valid().to_numpy(zero_copy_only=False)
    n = table.num_rows
    if manifest.task == "single_label":
        y = labcol.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    elif manifest.task == "multi_label":
        y, _ = _fixed_list_to_numpy(labcol.cast(pa.list_(pa.float32(), manifest.n_classes)), manifest.n_classes, f"{where}: column 'labels'")
        y = np.where(labeled[:, None], y, 0.0).astype(np.float32)
    else:
        y = labcol.to_numpy(zero_copy_only=False).astype(np.float32)
    folds = table.column("fold").fill_null(-2).to_numpy(zero_copy_only=False).astype(np.int8)
    features, present = mapped if mapped else ({}, {})
    for m in manifest.modalities if not mapped else ():
        features[m.name], present[m.name] = _fixed_list_to_numpy(
            table.column(m.name), m.dim, f"{where}: column '{m.name}'"
        )
    extra = {
        c: table.column(c).to_numpy(zero_copy_only=False)
        for c in ("label_name", "speaker", "scale")
        if c in cols
    }
    assert len(samples) == n
    return Dataset(manifest, root, samples, y, labeled, folds, features, present, extra)


# ---------------------------------------------------------------- writing


def build_table(
    manifest: Manifest,
    samples: np.ndarray,
    y: np.ndarray,
    labeled: np.ndarray,
    folds: np.ndarray,
    features: dict[str, np.ndarray],
    present: dict[str, np.ndarray] | None = None,
    extra: dict[str, np.ndarray] | None = None,
) -> pa.Table:
    """Arrow table in the contract's layout. Absent modality slots are stored as zeros
    under a null validity bit so readers can view the values without copying."""
    n = len(samples)
    cols: dict[str, pa.Array] = {"sample": pa.array(np.asarray(samples, dtype=object), pa.string())}
    mask = ~np.asarray(labeled, bool)
    if manifest.task == "single_label":
        cols["label"] = pa.array(np.asarray(y, np.int32), pa.int32(), mask=mask)
    elif manifest.task == "multi_label":
        c = manifest.n_classes
        vals = pa.array(np.where(mask[:, None], 0, y).astype(np.int8).ravel(), pa.int8())
        cols["labels"] = pa.FixedSizeListArray.from_arrays(vals, c, mask=pa.array(mask))
    else:
        cols["target"] = pa.array(np.asarray(y, np.float32), pa.float32(), mask=mask)
    cols["fold"] = pa.array(np.asarray(folds, np.int8), pa.int8())
    for key, arr in (extra or {}).items():
        cols[key] = pa.array(np.asarray(arr, dtype=object), pa.string())
    for m in manifest.modalities:
        mat = np.ascontiguousarray(features[m.name], dtype=np.float32)
        if mat.shape != (n, m.dim):
            raise DataError(f"modality '{m.name}': shape {mat.shape} != ({n}, {m.dim}) of manifest")
        pres = np.ones(n, bool) if present is None else np.asarray(present[m.name], bool)
        if not pres.all() and mat[~pres].any():  # zero absent slots, copying only if needed
            mat = mat.copy()
            mat[~pres] = 0.0
        # pa.array over a contiguous float32 array wraps its buffer (no copy).
        cols[m.name] = pa.FixedSizeListArray.from_arrays(
            pa.array(mat.ravel(), pa.float32()), m.dim, mask=pa.array(~pres)
        )
    return pa.table(cols)


def check_output_dir(out: Path) -> None:
    """`out` can become a dataset directory: not an existing file, under a folder that
    exists or can be made. Called before any work, so a bad --out costs nothing."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a directory (rule: a dataset is a directory)")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise DataError(f"{out}: cannot be created, {parent} is a file and not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(f"{out}: cannot be created, {parent} is not writable")


def publish_dir(tmp: Path, out: Path) -> None:
    """Replace `out` by the fully written `tmp` (same filesystem) without a partial state."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


ROW_GROUP_BYTES = 64 << 20  # feature bytes per parquet row group (bounds writer memory)


def _write_features(table: pa.Table, manifest: Manifest, path: Path) -> None:
    """Feature columns are random-looking floats: no dictionary, no compression (neither
    saves space there, both cost time and memory); string columns keep both."""
    strings = [c for c in table.column_names if c in ("sample", "label_name", "speaker", "scale")]
    feats = set(manifest.modality_names)
    compression = {c: ("none" if c in feats else "snappy") for c in table.column_names}
    rows = max(1024, ROW_GROUP_BYTES // (4 * max(1, sum(manifest.dims))))
    pq.write_table(table, path, row_group_size=rows, use_dictionary=strings, compression=compression)


def _with_frames(manifest: Manifest, sequences: dict[str, Sequences], out: Path) -> Manifest:
    """The manifest declaring `sequences` (modality -> frames, manifest order)."""
    order = {m: i for i, m in enumerate(manifest.modality_names)}
    frames = {m: sequences[m].frames for m in sorted(sequences, key=lambda m: order.get(m, len(order)))}
    try:
        return Manifest.model_validate({**manifest.model_dump(), "sequences": frames})
    except ValidationError as exc:
        raise DataError(f"{out / MANIFEST}: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None


def write_dataset(
    out: str | Path, manifest: Manifest, table: pa.Table,
    extra_files: dict[str, pa.Table] | None = None,
    sequences: dict[str, Sequences] | None = None,
) -> Dataset:
    """Validate `table` (and `sequences`) against `manifest` and publish `out/` atomically.

    `extra_files` (file name -> table) are written into the same directory before it is
    published, e.g. the synthetic generator's oracle labels; readers ignore them.
    `sequences` (modality -> frames in table row order) go to `sequences/`; the manifest
    records their frame counts."""
    out = Path(out)
    check_output_dir(out)
    if sequences and manifest.sequences is None:
        manifest = _with_frames(manifest, sequences, out)
    ds = _dataset_from_table(manifest, out, table, out / FEATURES)
    validate_arrays(ds, out / FEATURES)
    if sequences or manifest.sequences:
        check_sequences(manifest, sequences or {}, ds.samples, ds.present, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")  # the pid: stale when dead
    tmp.mkdir()
    try:
        manifest.save(tmp / MANIFEST)
        _write_features(table, manifest, tmp / FEATURES)
        for fname, extra_table in (extra_files or {}).items():
            pq.write_table(extra_table, tmp / fname)
        if sequences:
            write_sequences(tmp, sequences)
        publish_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_dataset(out)
