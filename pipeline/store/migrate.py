"""Copy collections from one store to another (embedded -> Qdrant server), verified.

`ramer collections migrate --to URL` uses this when a project outgrows the embedded
store. Points are scrolled from the source in batches and upserted to the destination
under the same ids (uuid5 of the sample), so a re-run after an interruption completes
the copy instead of duplicating it. Each collection is verified: equal point counts, and
a deterministic sample of points compared vector by vector and payload by payload.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.errors import StoreError
from pipeline.store.backends import Record, Where
from pipeline.store.qdrant_store import HiddenFeatureStore

__all__ = ["MigrationResult", "migrate_collections"]


@dataclass(frozen=True)
class MigrationResult:
    collection: str
    points: int  # points in the destination after the copy (== source)
    checked: int  # sampled points compared vector by vector
    created: bool  # the destination collection was created by this call


def migrate_collections(
    src: HiddenFeatureStore,
    dst: HiddenFeatureStore,
    collections: Sequence[str] | None = None,
    batch_size: int = 256,
    check: int = 32,
    shard_number: int | None = None,
    replication_factor: int | None = None,
    on_batch: Callable[[str, int], None] | None = None,
) -> list[MigrationResult]:
    """Copy `collections` (default: all of `src`) into `dst`; returns one result each.

    shard_number / replication_factor override the spec's `server` options for collections
    created here; they exist only on a Qdrant server, so asking for them with an embedded
    destination is a StoreError. A destination collection with other vectors is refused
    (nothing is written to it). Raises StoreError when verification fails."""
    if shard_number is not None or replication_factor is not None:
        dst.server_only("shard settings (--shards/--replicas)")
        server = dst.spec.server.model_copy(update={
            k: v for k, v in (("shard_number", shard_number), ("replication_factor", replication_factor))
            if v is not None
        })
        dst.spec = dst.spec.model_copy(update={"server": server})
    have = src.list_collections()
    names = list(collections) if collections else have
    unknown = [c for c in names if c not in have]
    if unknown:
        raise StoreError(f"collection(s) {unknown} not found in {src.kind} store {src.backend.location} "
                         f"(it has {have or 'none'})")
    if not names:
        raise StoreError(f"no collections to migrate in {src.kind} store {src.backend.location}")
    return [_copy_one(src, dst, name, batch_size, check, on_batch) for name in names]


def _copy_one(src: HiddenFeatureStore, dst: HiddenFeatureStore, name: str, batch_size: int,
              check: int, on_batch: Callable[[str, int], None] | None) -> MigrationResult:
    vectors = src.backend.vectors(name)
    configs = set(vectors.values())
    if len(configs) != 1:  # hidden-feature collections share one size/distance
        raise StoreError(f"collection '{name}': vectors differ in size/distance ({vectors}); cannot migrate")
    cfg = configs.pop()
    created = dst.apply(name, list(vectors), dim=cfg.size, distance=cfg.distance)
    mods = list(vectors)
    total = src.count(name)
    stride = max(1, total // max(1, check))
    sampled: list[Record] = []
    seen = 0
    for recs in src.backend.scroll(name, Where(), mods, batch_size):
        if not recs:
            continue
        dst.backend.upsert(name, [r.id for r in recs], [r.vectors for r in recs], [r.payload for r in recs])
        sampled += [r for i, r in enumerate(recs, seen) if i % stride == 0 and len(sampled) < check]
        seen += len(recs)
        if on_batch is not None:
            on_batch(name, len(recs))
    dst.backend.flush()
    got = dst.count(name)
    if got != total or seen != total:
        raise StoreError(f"collection '{name}': {total} points in the source, {seen} copied, "
                         f"{got} in the destination {dst.backend.location}")
    for rec in sampled:
        _verify_point(dst, name, rec, mods)
    return MigrationResult(name, got, len(sampled), created)


def _verify_point(dst: HiddenFeatureStore, name: str, rec: Record, mods: list[str]) -> None:
    sample = rec.payload.get("sample")
    found = next(dst.backend.scroll(name, Where(sample=sample), mods, batch=2), [])
    match = [r for r in found if r.id == rec.id]
    if not match:
        raise StoreError(f"collection '{name}': point {rec.id} (sample '{sample}') missing after the copy")
    got = match[0]
    if set(got.vectors) != set(rec.vectors):
        raise StoreError(f"collection '{name}': sample '{sample}' has vectors {sorted(got.vectors)} "
                         f"after the copy, {sorted(rec.vectors)} before")
    for m, v in rec.vectors.items():
        if not np.allclose(np.asarray(got.vectors[m], np.float32), np.asarray(v, np.float32), atol=1e-5):
            raise StoreError(f"collection '{name}': sample '{sample}' vector '{m}' differs after the copy")
    if got.payload != rec.payload:
        raise StoreError(f"collection '{name}': sample '{sample}' payload differs after the copy")
