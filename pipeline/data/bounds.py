"""Bounds on what reading a user's file may allocate.

A number inside a file (a parquet footer's row count, a fixed list size, a label, a
.npy header's shape, an HDF5 dataset's shape) must never size an allocation unchecked:
one flipped byte would turn a 1 KB file into a MemoryError, or into the kernel's OOM
killer ending the process. Every reader of user files checks such numbers here first and
raises one `DataError` naming the file and the rule.
"""

from __future__ import annotations

import os
import tokenize
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.errors import DataError

try:  # POSIX only: the address-space limit (`ulimit -v`) a process may run under
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

MAX_CLASSES = 1000  # far above any emotion label set (MER2024 6, IEMOCAP 4-10, M3ED 7)
MAX_DIM = 1 << 17  # values per modality vector; LLM hidden sizes reach 16,384
MAX_FOLDS = 127  # the dataset's `fold` column is int8
ROW_OVERHEAD = 64  # bytes a reader keeps per row besides the features: name object, label, masks
STRING_BYTES = 64  # a Python str object per string cell (small names)


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def _available_ram() -> int:
    """MemAvailable (Linux), else free physical pages, else a large number (unknown)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 50


def _address_space_left() -> int | None:
    """Bytes of address space left under `ulimit -v` (RLIMIT_AS), or None without a limit."""
    if resource is None:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/statm") as fh:
            used = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return soft
    return max(0, soft - used)


def available_memory() -> int:
    """Bytes this process may still allocate: available RAM, or less under `ulimit -v`."""
    left = _address_space_left()
    return _available_ram() if left is None else min(_available_ram(), left)


def memory_budget() -> int:
    """Bytes one reader may keep: half of what is available (RAM, and the address-space
    limit when one is set), so the copies that follow a read (building the table,
    writing it, reading it back) still fit."""
    avail = _available_ram()
    left = _address_space_left()
    if left is not None:
        avail = min(avail, left)
    return avail // 2


def require_memory(where: object, nbytes: int, what: str) -> None:
    """Raise one DataError when `what` (sized by values in the file) needs more than the budget."""
    budget = memory_budget()
    if nbytes > budget:
        raise DataError(
            f"{where}: {what} would need {_gib(nbytes)} of memory, more than the {_gib(budget)} "
            "a reader may use (rule: sizes in a file are checked before anything is allocated; "
            "a corrupt file, or too little memory)"
        )


def check_folds(where: object, folds: int) -> None:
    if not 2 <= folds <= MAX_FOLDS:
        raise DataError(f"{where}: --folds {folds}: must be 2..{MAX_FOLDS} (test folds of cross-validation)")


def check_dim(where: object, column: str, dim: int) -> None:
    if not 0 < dim <= MAX_DIM:
        raise DataError(
            f"{where}: column '{column}' has {dim} values per row (rule: a modality has 1..{MAX_DIM} values)"
        )


# ---------------------------------------------------------------- parquet


def _value_bytes(t: pa.DataType) -> int:
    return max(1, t.bit_width // 8) if hasattr(t, "bit_width") and t.bit_width else 8


def parquet_footprint(where: object, metadata, schema: pa.Schema, columns: list[str]) -> int:
    """Bytes a reader keeps for `columns` of a parquet file, from its footer alone, after
    checking the row count against its row groups and every fixed list size against
    MAX_DIM. A variable list counts one value per row here: its dim is known only once
    read, and `ModalityReader` bounds the matrix it sizes by it. Column chunk metadata is
    never touched: pyarrow aborts the process on some corrupt chunk statistics, which
    reading the data itself reports as an error."""
    n = metadata.num_rows
    try:
        in_groups = sum(metadata.row_group(i).num_rows for i in range(metadata.num_row_groups))
    except (UnicodeDecodeError, OSError, pa.ArrowException) as exc:
        raise DataError(f"{where}: unreadable parquet metadata ({' '.join(str(exc).split())})") from None
    if n < 0 or in_groups != n:
        raise DataError(f"{where}: footer says {n} rows but its row groups hold {in_groups} (corrupt metadata)")
    total = n * ROW_OVERHEAD
    wanted = set(columns)
    for field in schema:  # by position: a corrupt footer may repeat a name
        if field.name not in wanted:
            continue
        c, t = field.name, field.type
        if pa.types.is_fixed_size_list(t):
            check_dim(where, c, t.list_size)
            total += n * t.list_size * _value_bytes(t.value_type)
        elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t):
            total += n * STRING_BYTES
        else:
            total += n * 8
    return total


def require_parquet_memory(where: object, metadata, schema: pa.Schema, columns: list[str]) -> None:
    n = metadata.num_rows
    require_memory(where, parquet_footprint(where, metadata, schema, columns), f"reading {n} rows")


def check_utf8(where: object, column: str, arr: pa.Array | pa.ChunkedArray, first_row: int = 0) -> None:
    """String cells must be valid UTF-8 (pyarrow reads any bytes; converting them to Python
    then fails deep inside): one DataError naming the column and the first bad row."""
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return
    try:
        arr.validate(full=True)
    except pa.ArrowInvalid:
        cells = arr.cast(pa.large_binary()).to_pylist()  # only on the error path
        row = next((i for i, b in enumerate(cells) if b is not None and not _is_utf8(b)), 0)
        raise DataError(
            f"{where}: column '{column}' row {first_row + row} is not valid UTF-8 text "
            "(rule: string columns hold UTF-8)"
        ) from None


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# ---------------------------------------------------------------- numpy and HDF5


def _npy_header(fh, where: object) -> tuple[tuple[int, ...], np.dtype]:
    try:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        with warnings.catch_warnings():  # a corrupt header literal warns before it fails
            warnings.simplefilter("ignore", (DeprecationWarning, SyntaxWarning))
            shape, _, dtype = read(fh)
    except (ValueError, OSError, EOFError, SyntaxError, tokenize.TokenError, TypeError, RecursionError) as exc:
        # the header is a Python literal: a corrupt one fails in the tokenizer or parser
        raise DataError(f"{where}: not a readable .npy header ({type(exc).__name__}: {exc})") from None
    return shape, dtype


def _check_npy_size(where: object, shape: tuple[int, ...], dtype: np.dtype, stored: int) -> None:
    """A .npy header's shape must fit in the bytes stored after it (unpickled object arrays
    excepted: their size is the pickle's)."""
    if dtype.hasobject:
        return
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if declared > stored:
        raise DataError(
            f"{where}: header declares shape {shape} of {dtype} ({declared} bytes) but the file holds "
            f"{stored} bytes of data (truncated or corrupt .npy)"
        )


def load_npy(path: Path, allow_pickle: bool = False) -> np.ndarray:
    """`np.load` of one .npy file after checking its header against the file size (numpy
    allocates the header's shape before reading)."""
    try:
        with open(path, "rb") as fh:
            shape, dtype = _npy_header(fh, path)
            start = fh.tell()
            _check_npy_size(path, shape, dtype, os.fstat(fh.fileno()).st_size - start)
            fh.seek(0)
            return np.lib.format.read_array(fh, allow_pickle=allow_pickle)
    except (ValueError, OSError, EOFError, MemoryError) as exc:  # MemoryError: a pickled payload
        raise DataError(f"{path}: not a readable .npy array ({type(exc).__name__}: {exc})") from None


def load_npz(path: Path, allow_pickle: bool = False) -> dict[str, np.ndarray]:
    """Every array of an .npz, each header checked against its member's stored size first."""
    out: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                key = info.filename.removesuffix(".npy")
                where = f"{path}[{key}]"
                with zf.open(info) as fh:
                    shape, dtype = _npy_header(fh, where)
                    _check_npy_size(where, shape, dtype, info.file_size - fh.tell())
                with zf.open(info) as fh:
                    out[key] = np.lib.format.read_array(fh, allow_pickle=allow_pickle)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, MemoryError, NotImplementedError) as exc:
        raise DataError(f"{path}: not a readable .npz ({type(exc).__name__}: {exc})") from None
    return out


def read_h5(path: Path, dataset, name: str) -> np.ndarray:
    """One HDF5 dataset as a numeric array, its dtype and declared shape checked first
    (compressed chunks can declare any size in a small file; a string or compound dtype
    cannot be features)."""
    kind = getattr(dataset.dtype, "kind", "?")
    if kind not in "biuf":
        raise DataError(f"{path}: dataset '{name}' holds {dataset.dtype} values (rule: features are numbers)")
    shape = tuple(int(s) for s in (dataset.shape or ()))
    nbytes = int(np.prod(shape, dtype=object)) * dataset.dtype.itemsize
    require_memory(path, nbytes, f"dataset '{name}' of shape {shape}")
    try:
        return np.asarray(dataset[()])
    except (OSError, ValueError, TypeError, RuntimeError, KeyError) as exc:  # a truncated or corrupt chunk
        raise DataError(f"{path}: dataset '{name}' is unreadable ({' '.join(str(exc).split())})") from None
