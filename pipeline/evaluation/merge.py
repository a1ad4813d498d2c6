"""Combine the saved results of experiments run on the same dataset and protocol.

Systems are checkpointed independently, so Table 3 can be assembled from the RAMER run
and a baselines run made in parallel. Refuses to mix datasets or seeds, and keeps only
the (fold, run) units that every source has.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import RamerError
from pipeline.evaluation.tables import write_parquet

_SAME = ("dataset", "seed")


def merge_results(sources: list[Path], out: Path) -> Path:
    """Write `out/` with the union of the sources' metrics (and the first precision table)."""
    configs, prints = [], []
    for src in sources:
        if not (src / "metrics.parquet").is_file():
            raise RamerError(f"{src}: no metrics.parquet to merge")
        resolved = json.loads((src / "config.json").read_text())
        configs.append(resolved["experiment"])
        prints.append(resolved.get("data_fingerprint"))
    for src, fp in zip(sources[1:], prints[1:]):
        if None not in (fp, prints[0]) and fp != prints[0]:
            raise RamerError(f"{src}: made from other data than {sources[0]} (data fingerprint "
                             f"{fp} vs {prints[0]}); only runs on the same dataset can be merged")
    for src, cfg in zip(sources[1:], configs[1:]):
        for key in _SAME:
            if cfg.get(key) != configs[0].get(key):
                raise RamerError(
                    f"{src}: '{key}' differs from {sources[0]} ({cfg.get(key)!r} vs "
                    f"{configs[0].get(key)!r}); only runs of one protocol can be merged"
                )
    tables = [pq.read_table(s / "metrics.parquet") for s in sources]
    # Only the (fold, run) units every source has, so each system is averaged over the same splits.
    units = set.intersection(*(set(zip(t.column("fold").to_pylist(), t.column("run").to_pylist())) for t in tables))
    if not units:
        raise RamerError(f"{sources}: no (fold, run) in common; nothing comparable to merge")
    tables = [t.filter(pa.array([(f, r) in units for f, r in zip(t.column("fold").to_pylist(), t.column("run").to_pylist())])) for t in tables]
    merged = pa.concat_tables(tables, promote_options="default")
    seen = set()
    for t, src in zip(tables, sources):
        systems = set(t.column("system").to_pylist())
        dup = systems & seen
        if dup:
            raise RamerError(f"{src}: system(s) {sorted(dup)} also appear in an earlier source")
        seen |= systems
    out.mkdir(parents=True, exist_ok=True)
    write_parquet(merged, out / "metrics.parquet")
    for src in sources:
        if (src / "precision.parquet").is_file():
            shutil.copyfile(src / "precision.parquet", out / "precision.parquet")
            break
    merged_cfg = {"experiment": configs[0], "merged_from": [str(s) for s in sources],
                  "units": sorted(units),
                  "systems_by_source": {str(s): c.get("systems") for s, c in zip(sources, configs)}}
    (out / "config.json").write_text(json.dumps(merged_cfg, indent=2) + "\n")
    return out
