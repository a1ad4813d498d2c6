"""Feature matrices memory-mapped from disk, so a large dataset is read once per machine.

Decoding `features.parquet` gives every process its own copy of the features (at
MER2024's size, 120,625 x 6,912 float32 = 3.3 GB, and pyarrow's decode briefly holds
two). Beside a large table, `features.mmap/` keeps them decoded once: one float32
(N, D) `.npy` per modality (absent values zero, as the table stores them) and the
(N, M) presence matrix. Every process maps those files read-only, so the operating
system keeps one copy in its page cache however many `--jobs` workers read them, and
pages nobody touches cost nothing.

`features.parquet` stays the dataset of record (the fingerprint hashes it, importers
write it). The folder is derived data: built by the first load that finds it missing or
made from another table (`source.json` names the parquet's size, time and footer
digest), written under a temporary name and renamed, so a reader never maps a half
written folder. Tables below `MMAP_MIN_BYTES` are decoded into memory as before: a
copy of them costs little, and small datasets keep their two-file layout.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.data.schema import FEATURES, Manifest
from pipeline.errors import DataError

MMAP_DIR = "features.mmap"
SOURCE = "source.json"
PRESENT = "present.npy"
MMAP_MIN_BYTES = 256 << 20  # feature bytes from which a table is mapped, not decoded into memory
BUILD_BATCH_BYTES = 64 << 20  # feature bytes decoded at a time while building the folder
FOOTER_TAIL = 8  # a parquet file ends with the footer length (4 bytes) and b"PAR1"


def feature_bytes(n_rows: int, manifest: Manifest) -> int:
    """Bytes of the (N, sum D) float32 feature matrices."""
    return n_rows * sum(manifest.dims) * 4


def parquet_identity(path: Path) -> dict:
    """What tells one features.parquet from another without decoding it: size, mtime
    and a digest of the raw footer bytes (the footer is hashed, never parsed: it holds
    every row group's offsets and statistics)."""
    st = path.stat()
    with path.open("rb") as fh:
        fh.seek(max(0, st.st_size - FOOTER_TAIL))
        tail = fh.read(FOOTER_TAIL)
        length = int.from_bytes(tail[:4], "little") if len(tail) == FOOTER_TAIL else 0
        fh.seek(max(0, st.st_size - FOOTER_TAIL - length))
        footer = fh.read(length + FOOTER_TAIL)
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns,
            "footer_blake2b": hashlib.blake2b(footer, digest_size=16).hexdigest()}


def _npy(folder: Path, m: str) -> Path:
    return folder / f"{m}.npy"


def _matches(folder: Path, identity: dict, manifest: Manifest, n: int) -> bool:
    """The folder was built from this very table and holds every modality at its shape."""
    try:
        if json.loads((folder / SOURCE).read_text()) != identity:
            return False
        shapes = [(np.load(_npy(folder, s.name), mmap_mode="r"), (n, s.dim)) for s in manifest.modalities]
        present = np.load(folder / PRESENT, mmap_mode="r")
    except (OSError, ValueError, json.JSONDecodeError):
        return False
    return (all(a.shape == shape and a.dtype == np.float32 for a, shape in shapes)
            and present.shape == (n, len(manifest.modalities)) and present.dtype == bool)


def map_features(root: Path, manifest: Manifest, n: int, decode) -> tuple[dict, dict] | None:
    """(features, present) memory-mapped read-only from `root/features.mmap/`, building the
    folder first when it is missing or stale; None for a small table (decode it instead)
    or a folder that cannot be written (read-only dataset). `decode(column, batch_column)`
    turns one modality's record-batch column into ((b, D) float32, (b,) bool), raising the
    table's own DataErrors."""
    if feature_bytes(n, manifest) < MMAP_MIN_BYTES:
        return None
    folder = root / MMAP_DIR
    identity = parquet_identity(root / FEATURES)
    if not _matches(folder, identity, manifest, n):
        if not os.access(root, os.W_OK | os.X_OK):
            return None
        _build(root, manifest, n, identity, decode)
    features = {s.name: np.load(_npy(folder, s.name), mmap_mode="r") for s in manifest.modalities}
    present_matrix = np.load(folder / PRESENT, mmap_mode="r")
    present = {s.name: np.array(present_matrix[:, j]) for j, s in enumerate(manifest.modalities)}
    return features, present


def release(x: object) -> None:
    """After a pass over a memory-mapped matrix: drop its pages from this process's
    resident set. They stay in the page cache (shared, and read again without disk I/O
    when touched), so a pass over the whole table leaves this process holding only what
    it still uses. `x`: an array, or a view over one (its `.x`, `ScaledView`); a no-op for
    arrays in memory."""
    held = getattr(getattr(x, "x", x), "_mmap", None)
    if held is not None and hasattr(mmap, "MADV_DONTNEED"):
        held.madvise(mmap.MADV_DONTNEED)


def _build(root: Path, manifest: Manifest, n: int, identity: dict, decode) -> None:
    """Decode the table batch by batch into the folder's files (memory: one batch)."""
    tmp = root / f".{MMAP_DIR}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    names = manifest.modality_names
    files = {}
    try:
        for s in manifest.modalities:
            files[s.name] = _npy(tmp, s.name).open("wb")
            np.lib.format.write_array_header_2_0(
                files[s.name], {"descr": np.dtype(np.float32).str, "fortran_order": False, "shape": (n, s.dim)})
        present = np.zeros((n, len(names)), bool)
        pf = pq.ParquetFile(root / FEATURES, pre_buffer=False)  # pre_buffer keeps every batch read
        rows = max(1, BUILD_BATCH_BYTES // (4 * max(1, sum(manifest.dims))))
        start = 0
        for batch in pf.iter_batches(batch_size=rows, columns=names):
            for j, m in enumerate(names):
                mat, valid = decode(m, pa.chunked_array([batch.column(m)]))
                np.ascontiguousarray(mat, np.float32).tofile(files[m])
                present[start : start + batch.num_rows, j] = valid
            start += batch.num_rows
        if start != n:
            raise DataError(f"{root / FEATURES}: {start} rows in its batches, {n} in its table (corrupt file)")
        for fh in files.values():
            fh.close()
        np.save(tmp / PRESENT, present)
        (tmp / SOURCE).write_text(json.dumps(identity))
        old = root / f".{MMAP_DIR}.old-{uuid.uuid4().hex[:8]}"
        if (root / MMAP_DIR).exists():
            (root / MMAP_DIR).rename(old)
        tmp.rename(root / MMAP_DIR)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        for fh in files.values():
            fh.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
