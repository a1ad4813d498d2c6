"""qdrant-client backend: a Qdrant server (`QDRANT_URL`) or local mode (`QdrantClient(path)`).

Both go through the same qdrant-client calls, which is why the tests can use local mode
as a stand-in for a server. Local mode ignores payload indexes (it scans in Python), so
they are only created on a server.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qdrant_client import QdrantClient
from qdrant_client import models as qm

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

_SCHEMA = {
    "keyword": qm.PayloadSchemaType.KEYWORD,
    "integer": qm.PayloadSchemaType.INTEGER,
    "float": qm.PayloadSchemaType.FLOAT,
    "bool": qm.PayloadSchemaType.BOOL,
}


def to_client_filter(where: Where) -> qm.Filter | None:
    if where.empty:
        return None
    must: list[Any] = []
    if where.splits:
        must.append(qm.FieldCondition(key="split", match=qm.MatchAny(any=list(where.splits))))
    if where.scale:
        must.append(qm.FieldCondition(key="scale", match=qm.MatchValue(value=where.scale)))
    if where.sample is not None:
        must.append(qm.FieldCondition(key="sample", match=qm.MatchValue(value=where.sample)))
    if where.has_vector:
        must.append(qm.HasVectorCondition(has_vector=where.has_vector))
    must_not = [qm.HasIdCondition(has_id=list(where.exclude_ids))] if where.exclude_ids else None
    return qm.Filter(must=must or None, must_not=must_not)


def _reason(exc: Exception) -> str:
    """The last line of an error's text; its type when the text says nothing (an empty
    server reply arrives as the text "b''")."""
    lines = str(exc).strip().splitlines()
    last = lines[-1].strip() if lines else ""
    return type(exc).__name__ if last in ("", "b''", 'b""', "None") else last


class ClientBackend:
    def __init__(self, client: QdrantClient, kind: str, location: str, path: Path | None) -> None:
        self.client, self.kind, self.location, self._path = client, kind, location, path
        self.folder: Path | None = path  # local mode's folder (its free space is checked); None: a server

    @classmethod
    def local(cls, path: Path) -> ClientBackend:
        try:
            client = QdrantClient(path=str(path))
        except RuntimeError as exc:
            if "already accessed" in str(exc):
                raise StoreError(in_use_message(path)) from None
            raise StoreError(f"cannot open local Qdrant store {path}: {exc}") from None
        return cls(client, "local", str(path), path)

    @classmethod
    def server(cls, url: str, api_key: str | None, timeout: float) -> ClientBackend:
        try:
            with warnings.catch_warnings():  # its insecure-connection warning would print inside our error line
                warnings.filterwarnings("ignore", message=".*insecure connection.*")
                client = QdrantClient(url=url, api_key=api_key, timeout=max(1, round(timeout)),
                                      check_compatibility=False)
                client.get_collections()  # the client is lazy: probe now, fail with one line
        except Exception as exc:  # noqa: BLE001 (httpx/grpc/qdrant errors alike: report one line)
            raise StoreError(f"cannot reach Qdrant at {url}: {_reason(exc)}") from None
        return cls(client, "server", url, None)

    # ------------------------------------------------------------ collections
    def list_collections(self) -> list[str]:
        return sorted(c.name for c in self.client.get_collections().collections)

    def exists(self, name: str) -> bool:
        return bool(self.client.collection_exists(name))

    def _require(self, name: str) -> None:
        if not self.exists(name):
            raise StoreError(f"collection '{name}' not found at {self.location} "
                             f"(collections: {choices(self.list_collections())})")

    def create(self, name: str, vectors: dict[str, VectorConfig], server: ServerOptions) -> None:
        extra: dict[str, Any] = {}
        if self.kind == "server":
            extra = {k: v for k, v in server.model_dump().items() if v is not None}
        self.client.create_collection(
            name,
            vectors_config={m: qm.VectorParams(size=v.size, distance=qm.Distance(v.distance))
                            for m, v in vectors.items()},
            **extra,
        )

    def ensure_index(self, name: str, field_name: str, schema: str) -> None:
        if self.kind == "local":  # no effect in local mode (and it warns); servers index
            return
        if field_name not in self.payload_schema(name):
            self.client.create_payload_index(name, field_name, _SCHEMA[schema], wait=True)

    def vectors(self, name: str) -> dict[str, VectorConfig]:
        self._require(name)
        params = self.client.get_collection(name).config.params.vectors
        assert isinstance(params, dict), "hidden-feature collections use named vectors"
        return {m: VectorConfig(v.size, v.distance.value) for m, v in params.items()}

    def payload_schema(self, name: str) -> dict[str, str]:
        self._require(name)
        schema = self.client.get_collection(name).payload_schema or {}
        return {k: str(v.data_type.value).lower() for k, v in schema.items()}

    def drop(self, name: str) -> None:
        self._require(name)
        self.client.delete_collection(name)

    # ------------------------------------------------------------ points
    def upsert(self, name: str, ids: list[str], vectors: list[dict[str, list[float]]],
               payloads: list[dict[str, Any]]) -> None:
        points = [qm.PointStruct(id=i, vector=v, payload=p) for i, v, p in zip(ids, vectors, payloads)]
        self.client.upsert(name, points=points, wait=True)

    def count(self, name: str, where: Where) -> int:
        self._require(name)
        return int(self.client.count(name, count_filter=to_client_filter(where), exact=True).count)

    def search(self, name: str, using: str, vector: list[float], k: int, where: Where) -> list[Record]:
        self._require(name)
        res = self.client.query_points(
            name, query=vector, using=using, limit=k, query_filter=to_client_filter(where),
            with_payload=True,
            # local mode is always exact (and warns about search_params); a server is told to be
            search_params=qm.SearchParams(exact=True) if self.kind == "server" else None,
        )
        return [Record(str(p.id), p.payload or {}, score=float(p.score)) for p in res.points]

    def scroll(self, name: str, where: Where, with_vectors: list[str], batch: int) -> Iterator[list[Record]]:
        self._require(name)
        offset = None
        flt = to_client_filter(where)
        while True:
            recs, offset = self.client.scroll(
                name, scroll_filter=flt, limit=batch, offset=offset, with_payload=True,
                with_vectors=with_vectors or False,
            )
            yield [Record(str(r.id), r.payload or {}, dict(r.vector or {})) for r in recs]  # type: ignore[arg-type]
            if offset is None or not recs:
                return

    def disk_bytes(self, name: str) -> int | None:
        if self._path is None:
            return None  # a server's disk is the server's business
        return folder_bytes(self._path / "collection" / name)

    def snapshot(self, name: str) -> str:
        self._require(name)
        desc = self.client.create_snapshot(name, wait=True)
        return desc.name if desc is not None else ""

    def flush(self) -> None:
        """Nothing to do: qdrant-client persists each (wait=True) write itself."""

    def close(self) -> None:
        self.client.close()
