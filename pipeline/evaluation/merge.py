"""Combine the saved results of experiments run on the same dataset and protocol.

Systems are checkpointed independently, so Table 3 can be assembled from the RAMER run
and a baselines run made in parallel; units are independent too, so the folds of one
protocol run as separate jobs (a Slurm array) merge into what one run gives. Refuses to
mix datasets or seeds, and keeps only the (fold, run) units that every system has.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import RamerError
from pipeline.evaluation.tables import require_columns, write_parquet

_SAME = ("dataset", "seed")


def merge_results(sources: list[Path], out: Path) -> Path:
    """Write `out/` with the union of the sources' metrics, precision, diagnostics and
    fits, over the (fold, run) units that every system has. Sources may split systems
    (RAMER and the baselines run apart), units (Slurm array tasks with different --folds
    or --runs, docs/parallel.md) or both; one (system, fold, run) twice is an error."""
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
    for t, src in zip(tables, sources):  # merged, a file without a column would get nulls there
        require_columns(t.column_names, src / "metrics.parquet")
    _check_overlap(tables, sources)
    merged = pa.concat_tables(tables, promote_options="default")
    units = _common_units(merged)
    if not units:
        raise RamerError(f"{sources}: no (fold, run) that every system has; nothing comparable to merge")
    out.mkdir(parents=True, exist_ok=True)
    write_parquet(_only(merged, units), out / "metrics.parquet")
    for name, key in (("precision.parquet", ("modality", "k")), ("diagnostics.parquet", ("modality",)),
                      ("fits.parquet", ("system",))):
        parts = [pq.read_table(s / name) for s in sources if (s / name).is_file()]
        if parts:
            write_parquet(_first_per_key(_only(pa.concat_tables(parts, promote_options="default"), units),
                                         ("fold", "run", *key)), out / name)
    merged_cfg = {"experiment": configs[0], "merged_from": [str(s) for s in sources],
                  "units": sorted(units),
                  "systems_by_source": {str(s): c.get("systems") for s, c in zip(sources, configs)}}
    (out / "config.json").write_text(json.dumps(merged_cfg, indent=2) + "\n")
    return out


def _units(t: pa.Table) -> list[tuple[int, int]]:
    return list(zip(t.column("fold").to_pylist(), t.column("run").to_pylist()))


def _check_overlap(tables: list[pa.Table], sources: list[Path]) -> None:
    """One (system, fold, run) may come from one source only."""
    seen: dict[tuple, Path] = {}
    for t, src in zip(tables, sources):
        keys = zip(t.column("system").to_pylist(), t.column("fold").to_pylist(), t.column("run").to_pylist())
        for key in set(keys):
            if key in seen:
                raise RamerError(f"{src}: system '{key[0]}' fold {key[1]} run {key[2]} also appears in "
                                 f"{seen[key]}; each (system, fold, run) must come from one source")
            seen[key] = src


def _common_units(metrics: pa.Table) -> set[tuple[int, int]]:
    """The (fold, run) units every system has, so each is averaged over the same splits."""
    by_system: dict[str, set] = {}
    for system, unit in zip(metrics.column("system").to_pylist(), _units(metrics)):
        by_system.setdefault(system, set()).add(unit)
    return set.intersection(*by_system.values()) if by_system else set()


def _only(t: pa.Table, units: set[tuple[int, int]]) -> pa.Table:
    return t.filter(pa.array([u in units for u in _units(t)]))


def _first_per_key(t: pa.Table, key: tuple[str, ...]) -> pa.Table:
    """Rows of `t` with a key seen before dropped (the same unit's stage-2 numbers twice)."""
    key = tuple(k for k in key if k in t.column_names)
    seen, keep = set(), []
    for row in zip(*(t.column(k).to_pylist() for k in key)):
        keep.append(row not in seen)
        seen.add(row)
    return t.filter(pa.array(keep))
