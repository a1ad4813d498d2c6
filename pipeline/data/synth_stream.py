"""Write a synthetic dataset chunk by chunk, for paper-scale sizes (turbo: 120,625 rows).

`make_synthetic` holds every feature matrix at once and then builds one Arrow table
(at turbo size with dims 1024/768/5120: 120,625 x 6,912 float32 = 3.3 GB, twice over).
`write_synthetic_streamed` produces the very same rows (same seeds, same `CHUNK`
boundaries of `synth._chunk`, so the feature bytes are identical) but writes each chunk to
the parquet file as soon as it exists: memory stays at a few chunks whatever the size.
Only per-row scalars (labels, folds, speakers, presence) live for the whole run.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.data.dataset import ROW_GROUP_BYTES, build_table, publish_dir
from pipeline.data.schema import FEATURES, MANIFEST, Manifest
from pipeline.data.splits import assign_folds
from pipeline.data.synth import (
    CHUNK,
    CLASSES,
    ORACLE,
    SynthConfig,
    _chunk,
    _missing,
    _World,
    _world,
    check_config,
    draw_labels,
    remove_stale_builds,
    synth_manifest,
)

__all__ = ["write_synthetic_streamed"]


def write_synthetic_streamed(
    out: str | Path,
    cfg: SynthConfig,
    name: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Generate and publish `out/` (manifest, features, oracle) with bounded memory.

    Same content as `synth.write_synthetic(out, cfg)`; returns `out`. The directory is
    built under a temporary name and renamed into place, so an interrupted run leaves
    no partial dataset (and a previous good version stays)."""
    check_config(cfg)
    out = Path(out)
    name = name or out.name
    manifest = synth_manifest(cfg, name, "pipeline.data.synth_stream.write_synthetic_streamed")
    rows = _Rows.draw(cfg)
    n = len(rows.y_true)

    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    writer: pq.ParquetWriter | None = None
    oracle_parts: list[pa.Table] = []
    rows_per_group = max(1024, ROW_GROUP_BYTES // (4 * max(1, sum(cfg.dims.values()))))
    try:
        manifest.save(tmp / MANIFEST)
        for start in range(0, n, CHUNK):
            stop = min(n, start + CHUNK)
            table, oracle_part = _chunk_tables(cfg, manifest, rows, start, stop)
            if writer is None:
                writer = pq.ParquetWriter(
                    tmp / FEATURES, table.schema, use_dictionary=["sample", "label_name", "speaker"],
                    compression={c: ("none" if c in cfg.dims else "snappy") for c in table.column_names},
                )
            writer.write_table(table, row_group_size=rows_per_group)
            if oracle_part is not None:
                oracle_parts.append(oracle_part)
            del table  # before the next chunk is generated: at most one chunk's features alive
            if progress is not None:
                progress(stop - start)
        assert writer is not None
        writer.close()
        writer = None
        pq.write_table(_oracle(oracle_parts), tmp / ORACLE)
        publish_dir(tmp, out)
    except BaseException:
        if writer is not None:
            writer.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


@dataclass
class _Rows:
    """The per-row scalars, drawn once for the whole run exactly as `make_synthetic` does."""

    y_true: np.ndarray  # (N,) true classes
    labeled: np.ndarray  # (N,) bool: the first cfg.labeled rows
    folds: np.ndarray  # (N,) fold of a labeled row, -1 for the pool
    present: dict[str, np.ndarray] | None  # modality -> (N,) presence; None = all present
    world: _World

    @classmethod
    def draw(cls, cfg: SynthConfig) -> _Rows:
        y_true = draw_labels(cfg)
        n = len(y_true)
        labeled = np.arange(n) < cfg.labeled
        folds = assign_folds(y_true, labeled, cfg.folds, cfg.seed)
        return cls(y_true, labeled, folds, _missing(cfg, n), _world(cfg))


def _chunk_tables(
    cfg: SynthConfig, manifest: Manifest, rows: _Rows, start: int, stop: int,
) -> tuple[pa.Table, pa.Table | None]:
    """Rows [start, stop): their features table, and the oracle rows of their pool samples
    (None when the chunk has no unlabeled row)."""
    b = stop - start
    names = np.array(CLASSES, dtype=object)
    # _chunk writes rows [start, stop) of `out`: give it views offset to this chunk
    feats = {m: np.empty((b, d), np.float32) for m, d in cfg.dims.items()}
    shifted = {m: _Offset(a, start) for m, a in feats.items()}
    y = rows.y_true[start:stop]
    spk, conflict = _chunk(cfg, rows.world, start, y, shifted)  # type: ignore[arg-type]
    lab = rows.labeled[start:stop]
    samples = np.array(
        [f"lab_{i:06d}" if i < cfg.labeled else f"unl_{i - cfg.labeled:06d}" for i in range(start, stop)],
        dtype=object,
    )
    speaker_names = np.array([f"spk{s:03d}" for s in range(cfg.speakers)], dtype=object)
    table = build_table(
        manifest, samples, np.where(lab, y, -1), lab, rows.folds[start:stop], feats,
        None if rows.present is None else {m: p[start:stop] for m, p in rows.present.items()},
        extra={"label_name": np.where(lab, names[y], None), "speaker": speaker_names[spk]},
    )
    unl = ~lab
    if not unl.any():
        return table, None
    mods = np.array(list(cfg.dims), dtype=object)
    oracle = pa.table({
        "sample": pa.array(samples[unl], pa.string()),
        "label": pa.array(y[unl].astype(np.int32)),
        "label_name": pa.array(names[y[unl]], pa.string()),
        "conflict_modality": pa.array(
            np.where(conflict[unl] >= 0, mods[np.maximum(conflict[unl], 0)], None), pa.string()
        ),
    })
    return table, oracle


def _oracle(parts: list[pa.Table]) -> pa.Table:
    """The pool's true labels and conflict modalities (an empty table without a pool)."""
    return pa.concat_tables(parts) if parts else pa.table({
        "sample": pa.array([], pa.string()), "label": pa.array([], pa.int32()),
        "label_name": pa.array([], pa.string()), "conflict_modality": pa.array([], pa.string())})


class _Offset:
    """`out[name][start:stop] = x` on a chunk-sized array, as `_chunk` writes global rows."""

    def __init__(self, arr: np.ndarray, offset: int) -> None:
        self.arr, self.offset = arr, offset

    def __setitem__(self, key: slice, value: np.ndarray) -> None:
        self.arr[key.start - self.offset : key.stop - self.offset] = value
