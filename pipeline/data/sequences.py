"""Frame-level sequences kept beside the pooled features: the optional `sequences/` folder.

Pooled utterance vectors (features.parquet) feed every model; sequence models (CARAT)
can also read the frames they were pooled from. Layout, declared in manifest.json as
`"sequences": {modality: T_m}` (padded frames per modality, manifest order):

    sequences/{modality}.npy          float32 (N, T_m, D_m), C order, rows in features.parquet
                                      order; valid frames first, zero padding after them
    sequences/{modality}.lengths.npy  int32 (N,) valid frames per row, 0..T_m; 0 exactly
                                      where the modality is absent (null in the table)

Plain .npy so readers memory-map them: loading reads the headers only, and a training
bank reads just the rows of its batches. Disk size: 4 * N * sum_m(T_m * D_m) bytes.
A dataset may keep sequences for some modalities only.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data.bounds import load_npy
from pipeline.data.schema import Manifest
from pipeline.errors import DataError

SEQ_DIR = "sequences"
CHECK_BYTES = 64 << 20  # frames read per chunk when checking for NaN / inf


@dataclass
class Sequences:
    """The frames of one modality for every dataset row (possibly memory-mapped)."""

    values: np.ndarray  # (N, T, D) float32, valid frames first
    lengths: np.ndarray  # (N,) int32 valid frames per row
    staged: Path | None = None  # .npy file holding `values` that the writer may move into place

    @property
    def frames(self) -> int:
        return int(self.values.shape[1])


def values_file(m: str) -> str:
    return f"{SEQ_DIR}/{m}.npy"


def lengths_file(m: str) -> str:
    return f"{SEQ_DIR}/{m}.lengths.npy"


def pack_frames(seq: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, T, D) frames + (n, T) valid mask -> valid frames moved to the front (order kept),
    zeros after them, and (n,) int32 counts. CARAT's aligned MOSEI pads on the left."""
    order = np.argsort(~valid, axis=1, kind="stable")  # valid frames first, in time order
    packed = np.take_along_axis(seq, order[..., None], axis=1)
    cnt = valid.sum(1)
    packed[np.arange(seq.shape[1])[None, :] >= cnt[:, None]] = 0.0
    return packed.astype(np.float32, copy=False), cnt.astype(np.int32)


class SequenceStage:
    """Sequences being imported: memory-mapped .npy files in a hidden folder beside `out`
    (same filesystem), filled chunk by chunk so an import never holds every frame in RAM;
    `write_dataset` then moves them into the dataset. Use through `stage_sequences`,
    which removes the staging folder whatever happens."""

    def __init__(self, out: str | Path, shapes: dict[str, tuple[int, int, int]]):
        out = Path(out)
        self.dir = out.parent / f".{out.name}.seq-{uuid.uuid4().hex[:8]}"
        self.dir.mkdir(parents=True)
        try:
            self.values = {
                m: np.lib.format.open_memmap(self.dir / f"{m}.npy", "w+", np.float32, shape)
                for m, shape in shapes.items()
            }
        except BaseException:  # e.g. no space: leave nothing behind
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        self.lengths = {m: np.zeros(s[0], np.int32) for m, s in shapes.items()}

    def close(self) -> None:
        self.values.clear()  # drop the maps before removing their files
        shutil.rmtree(self.dir, ignore_errors=True)

    def put(self, m: str, start: int, seq: np.ndarray, valid: np.ndarray) -> None:
        """Rows [start, start + n) of modality `m` from (n, t, D) frames, t <= T."""
        packed, cnt = pack_frames(seq, valid)
        self.values[m][start : start + len(seq), : seq.shape[1]] = packed
        self.lengths[m][start : start + len(seq)] = cnt

    def result(self) -> dict[str, Sequences]:
        return {m: Sequences(v, self.lengths[m], self.dir / f"{m}.npy") for m, v in self.values.items()}


@contextmanager
def stage_sequences(
    out: str | Path, shapes: dict[str, tuple[int, int, int]], keep: bool
) -> Iterator[SequenceStage | None]:
    """`with stage_sequences(...) as stage:` -> a SequenceStage, or None when not `keep`."""
    if not keep:
        yield None
        return
    stage = SequenceStage(out, shapes)
    try:
        yield stage
    finally:
        stage.close()


# ---------------------------------------------------------------- rules


def _row(i: int, samples: np.ndarray) -> str:
    return f"row {i} '{samples[i]}'"


def check_sequences(
    manifest: Manifest, seqs: dict[str, Sequences], samples: np.ndarray, present: dict[str, np.ndarray],
    root: Path, finite: bool = True,
) -> None:
    """Every rule of `sequences/`; one DataError naming the file, the row and the rule."""
    n = len(samples)
    dims = {m.name: m.dim for m in manifest.modalities}
    declared = manifest.sequences or {}
    unknown = sorted(set(seqs) - set(dims))
    if unknown:
        raise DataError(f"{root / SEQ_DIR}: {unknown} are not modalities of manifest.json (unknown modality)")
    if set(seqs) != set(declared):
        raise DataError(
            f"{root / 'manifest.json'}: declares sequences for {sorted(declared)}, found {sorted(seqs)} "
            "(manifest disagrees with sequences/)"
        )
    for m, s in seqs.items():
        vf, lf = root / values_file(m), root / lengths_file(m)
        want = (n, declared[m], dims[m])
        v = s.values
        if v.dtype != np.float32 or v.ndim != 3 or not v.flags.c_contiguous:
            raise DataError(f"{vf}: must be a C-order float32 (N, T, D) array, found {v.dtype} {v.shape}")
        if v.shape != want:
            raise DataError(
                f"{vf}: shape {v.shape} != {want} (rows of features.parquet, frames of manifest.json, "
                f"dim of '{m}')"
            )
        ln = s.lengths
        if ln.shape != (n,) or not np.issubdtype(ln.dtype, np.integer):
            raise DataError(f"{lf}: must be an integer (N,) = ({n},) array, found {ln.dtype} {ln.shape}")
        bad = (ln < 0) | (ln > want[1])
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"{lf}: length {int(ln[i])} outside 0..{want[1]} at {_row(i, samples)}")
        bad = (ln > 0) != present[m]
        if bad.any():
            i = int(np.argmax(bad))
            what = "present in features.parquet but has 0 frames" if present[m][i] else "absent but has frames"
            raise DataError(f"{lf}: modality '{m}' is {what} at {_row(i, samples)} (rule: length 0 iff absent)")
        if finite:
            step = max(1, CHECK_BYTES // max(1, 4 * want[1] * want[2]))
            for a in range(0, n, step):
                ok = np.isfinite(v[a : a + step]).all(axis=(1, 2))
                if not ok.all():
                    raise DataError(f"{vf}: NaN/inf frame values at {_row(a + int(np.argmin(ok)), samples)}")


# ---------------------------------------------------------------- reading and writing


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: not found (manifest.json declares sequences)")
    if not mmap:  # numpy allocates the header's shape first: check it against the file
        return load_npy(path)
    try:  # a map larger than the file is refused by numpy itself
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy file ({exc})") from None


def load_sequences(
    root: Path, manifest: Manifest, samples: np.ndarray, present: dict[str, np.ndarray], validate: bool
) -> dict[str, Sequences] | None:
    """The declared sequences, memory-mapped; shapes and lengths are always checked,
    frame values (a full read) only with `validate`."""
    if not manifest.sequences:
        if (root / SEQ_DIR).exists():
            raise DataError(f"{root / SEQ_DIR}: present but manifest.json declares no sequences")
        return None
    seqs = {
        m: Sequences(_load_npy(root / values_file(m), True), _load_npy(root / lengths_file(m), False))
        for m in manifest.sequences
    }
    check_sequences(manifest, seqs, samples, present, root, finite=validate)
    return seqs


def write_sequences(tmp: Path, seqs: dict[str, Sequences]) -> None:
    """Into the unpublished dataset folder `tmp`: staged files are moved, others saved."""
    (tmp / SEQ_DIR).mkdir()
    for m, s in seqs.items():
        dest = tmp / values_file(m)
        if s.staged is not None:
            if isinstance(s.values, np.memmap):
                s.values.flush()
            os.replace(s.staged, dest)
        else:
            np.save(dest, np.ascontiguousarray(s.values, dtype=np.float32))
        np.save(tmp / lengths_file(m), np.asarray(s.lengths, np.int32))
