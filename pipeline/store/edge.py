"""Embedded backend on qdrant-edge-py (`EdgeShard`), one shard folder per collection.

Segments stay plain (exact search): at our sizes HNSW optimisation took ~10 minutes on
2 cores with poor recall on random data, while an exact filtered query costs
~25 ms. The whole store folder is guarded by an exclusive `flock` on `<store>/.lock` (the
same file qdrant-client local mode locks), so a second process gets a clear error instead
of a WAL failure deep inside Rust.
"""

from __future__ import annotations

import fcntl
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from pipeline.errors import StoreError
from pipeline.store.backends import (
    Record,
    VectorConfig,
    Where,
    choices,
    folder_bytes,
    in_use_message,
)
from pipeline.store.spec import ServerOptions

CONFIG_FILE = "edge_config.json"
_SCHEMA = {
    "keyword": qe.PayloadSchemaType.Keyword,
    "integer": qe.PayloadSchemaType.Integer,
    "float": qe.PayloadSchemaType.Float,
    "bool": qe.PayloadSchemaType.Bool,
}
_DISTANCE = {"Cosine": qe.Distance.Cosine, "Euclid": qe.Distance.Euclid, "Dot": qe.Distance.Dot}


def to_edge_filter(where: Where) -> qe.Filter | None:
    if where.empty:
        return None
    must: list[Any] = []
    if where.splits:
        must.append(qe.FieldCondition("split", match=qe.MatchAny(list(where.splits))))
    if where.scale:
        must.append(qe.FieldCondition("scale", match=qe.MatchValue(where.scale)))
    if where.sample is not None:
        must.append(qe.FieldCondition("sample", match=qe.MatchValue(where.sample)))
    if where.has_vector:
        must.append(qe.HasVectorCondition(where.has_vector))
    must_not = [qe.HasIdCondition(set(where.exclude_ids))] if where.exclude_ids else None
    return qe.Filter(must=must or None, must_not=must_not)


class EdgeBackend:
    kind = "edge"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.location = str(self.root)
        self.folder: Path | None = self.root  # on this machine's disk: its free space is checked
        self._lock_file = self._acquire_lock()
        self._shards: dict[str, qe.EdgeShard] = {}

    def _acquire_lock(self) -> Any:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            handle = open(self.root / ".lock", "a+")  # noqa: SIM115 (held until close)
        except OSError as exc:
            raise StoreError(f"cannot open embedded Qdrant store {self.root}: {exc.strerror}") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise StoreError(in_use_message(self.root)) from None
        return handle

    # ------------------------------------------------------------ collections
    def _path(self, name: str) -> Path:
        return self.root / name

    def list_collections(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if (p / CONFIG_FILE).is_file())

    def exists(self, name: str) -> bool:
        return (self._path(name) / CONFIG_FILE).is_file()

    def _shard(self, name: str) -> qe.EdgeShard:
        if name not in self._shards:
            if not self.exists(name):
                raise StoreError(f"collection '{name}' not found in {self.root} "
                                 f"(collections: {choices(self.list_collections())})")
            try:
                self._shards[name] = qe.EdgeShard.load(str(self._path(name)))
            except Exception as exc:  # noqa: BLE001 (the Rust side raises plain Exception)
                raise StoreError(f"cannot open collection '{name}' in {self.root}: {exc}") from None
        return self._shards[name]

    def create(self, name: str, vectors: dict[str, VectorConfig], server: ServerOptions) -> None:
        config = qe.EdgeConfig(
            vectors={m: qe.EdgeVectorParams(size=v.size, distance=_DISTANCE[v.distance])
                     for m, v in vectors.items()},
        )
        self._shards[name] = qe.EdgeShard.create(str(self._path(name)), config)

    def ensure_index(self, name: str, field_name: str, schema: str) -> None:
        if field_name not in self.payload_schema(name):
            self._shard(name).update(qe.UpdateOperation.create_field_index(field_name, _SCHEMA[schema]))

    def vectors(self, name: str) -> dict[str, VectorConfig]:
        self._shard(name)  # raises the clear error for an unknown collection
        raw = json.loads((self._path(name) / CONFIG_FILE).read_text())["vectors"]
        return {m: VectorConfig(int(v["size"]), str(v["distance"])) for m, v in raw.items()}

    def payload_schema(self, name: str) -> dict[str, str]:
        schema = self._shard(name).info().payload_schema
        return {k: str(v.data_type).rsplit(".", 1)[-1].lower() for k, v in schema.items()}

    def drop(self, name: str) -> None:
        shard = self._shards.pop(name, None)
        if shard is not None:
            shard.close()
        if not self.exists(name):
            raise StoreError(f"collection '{name}' not found in {self.root} "
                             f"(collections: {choices(self.list_collections())})")
        shutil.rmtree(self._path(name))

    # ------------------------------------------------------------ points
    def upsert(self, name: str, ids: list[str], vectors: list[dict[str, list[float]]],
               payloads: list[dict[str, Any]]) -> None:
        points = [qe.Point(i, v, p) for i, v, p in zip(ids, vectors, payloads)]
        self._shard(name).update(qe.UpdateOperation.upsert_points(points))

    def count(self, name: str, where: Where) -> int:
        return int(self._shard(name).count(qe.CountRequest(exact=True, filter=to_edge_filter(where))))

    def search(self, name: str, using: str, vector: list[float], k: int, where: Where) -> list[Record]:
        request = qe.QueryRequest(
            limit=k, query=qe.Query.Nearest(vector, using=using), filter=to_edge_filter(where),
            with_payload=True, params=qe.SearchParams(exact=True),
        )
        return [Record(str(p.id), p.payload or {}, score=float(p.score))
                for p in self._shard(name).query(request)]

    def scroll(self, name: str, where: Where, with_vectors: list[str], batch: int) -> Iterator[list[Record]]:
        shard, offset = self._shard(name), None
        flt = to_edge_filter(where)
        while True:
            recs, offset = shard.scroll(qe.ScrollRequest(
                offset=offset, limit=batch, filter=flt, with_payload=True,
                with_vector=with_vectors or False,
            ))
            yield [Record(str(r.id), r.payload or {}, dict(r.vector or {})) for r in recs]
            if offset is None or not recs:
                return

    def disk_bytes(self, name: str) -> int | None:
        return folder_bytes(self._path(name))

    def snapshot(self, name: str) -> str:  # guarded by HiddenFeatureStore.server_only
        raise StoreError("snapshots need a Qdrant server (set QDRANT_URL)")

    def flush(self) -> None:
        for shard in self._shards.values():
            shard.flush()

    def close(self) -> None:
        for shard in self._shards.values():
            try:
                shard.flush()
            finally:
                shard.close()
        self._shards.clear()
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None
