"""Write a synthetic dataset chunk by chunk, for paper-scale sizes (turbo: 120,625 rows).

`make_synthetic` holds every feature matrix at once and then builds one Arrow table
(at turbo size with dims 1024/768/5120: 120,625 x 6,912 float32 = 3.3 GB, twice over).
`write_synthetic_streamed` produces the very same rows (same seeds, same `CHUNK`
boundaries of `synth._chunk`, so the feature bytes are identical) but writes each chunk to
the parquet file as soon as it exists: memory stays at a few chunks whatever the size.
Only per-row scalars (labels, folds, speakers, presence) live for the whole run.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.data.dataset import ROW_GROUP_BYTES, build_table, publish_dir
from pipeline.data.schema import FEATURES, MANIFEST
from pipeline.data.splits import assign_folds
from pipeline.data.synth import (
    CHUNK,
    CLASSES,
    ORACLE,
    SynthConfig,
    _chunk,
    _missing,
    _world,
    check_config,
    draw_labels,
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
    y_true = draw_labels(cfg)  # (N,) exactly as make_synthetic draws them
    n = len(y_true)
    labeled = np.arange(n) < cfg.labeled
    folds = assign_folds(y_true, labeled, cfg.folds, cfg.seed)
    present = _missing(cfg, n)
    world = _world(cfg)
    names = np.array(CLASSES, dtype=object)
    speaker_names = np.array([f"spk{s:03d}" for s in range(cfg.speakers)], dtype=object)
    mods = np.array(list(cfg.dims), dtype=object)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    writer: pq.ParquetWriter | None = None
    oracle_parts: list[pa.Table] = []
    rows_per_group = max(1024, ROW_GROUP_BYTES // (4 * max(1, sum(cfg.dims.values()))))
    try:
        manifest.save(tmp / MANIFEST)
        for start in range(0, n, CHUNK):
            stop = min(n, start + CHUNK)
            b = stop - start
            # _chunk writes rows [start, stop) of `out`: give it views offset to this chunk
            feats = {m: np.empty((b, d), np.float32) for m, d in cfg.dims.items()}
            shifted = {m: _Offset(a, start) for m, a in feats.items()}
            spk, conflict = _chunk(cfg, world, start, y_true[start:stop], shifted)  # type: ignore[arg-type]
            lab = labeled[start:stop]
            samples = np.array(
                [f"lab_{i:06d}" if i < cfg.labeled else f"unl_{i - cfg.labeled:06d}" for i in range(start, stop)],
                dtype=object,
            )
            table = build_table(
                manifest, samples, np.where(lab, y_true[start:stop], -1), lab, folds[start:stop], feats,
                None if present is None else {m: p[start:stop] for m, p in present.items()},
                extra={"label_name": np.where(lab, names[y_true[start:stop]], None),
                       "speaker": speaker_names[spk]},
            )
            if writer is None:
                writer = pq.ParquetWriter(
                    tmp / FEATURES, table.schema, use_dictionary=["sample", "label_name", "speaker"],
                    compression={c: ("none" if c in cfg.dims else "snappy") for c in table.column_names},
                )
            writer.write_table(table, row_group_size=rows_per_group)
            unl = ~lab
            if unl.any():
                oracle_parts.append(pa.table({
                    "sample": pa.array(samples[unl], pa.string()),
                    "label": pa.array(y_true[start:stop][unl].astype(np.int32)),
                    "label_name": pa.array(names[y_true[start:stop][unl]], pa.string()),
                    "conflict_modality": pa.array(
                        np.where(conflict[unl] >= 0, mods[np.maximum(conflict[unl], 0)], None), pa.string()
                    ),
                }))
            del feats, shifted, table
            if progress is not None:
                progress(b)
        assert writer is not None
        writer.close()
        writer = None
        oracle = pa.concat_tables(oracle_parts) if oracle_parts else pa.table({
            "sample": pa.array([], pa.string()), "label": pa.array([], pa.int32()),
            "label_name": pa.array([], pa.string()), "conflict_modality": pa.array([], pa.string())})
        pq.write_table(oracle, tmp / ORACLE)
        publish_dir(tmp, out)
    except BaseException:
        if writer is not None:
            writer.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


class _Offset:
    """`out[name][start:stop] = x` on a chunk-sized array, as `_chunk` writes global rows."""

    def __init__(self, arr: np.ndarray, offset: int) -> None:
        self.arr, self.offset = arr, offset

    def __setitem__(self, key: slice, value: np.ndarray) -> None:
        self.arr[key.start - self.offset : key.stop - self.offset] = value
