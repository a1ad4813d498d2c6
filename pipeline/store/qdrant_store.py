"""`HiddenFeatureStore`: the store of record for per-fold hidden features.

One collection per (dataset, experiment, fold), one named vector per modality, one point
per sample with id `uuid5(NAMESPACE, "dataset/sample")`, so re-running an ingest updates
and never duplicates. Every neighbour search applies the leakage filter: the candidate's
split must be allowed (train / unlabeled by default) and the query point is excluded by
id, never by position.
"""

from __future__ import annotations

import math
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from typing_extensions import Self

from pipeline.config import Settings
from pipeline.errors import StoreError
from pipeline.store.backends import Backend, VectorConfig, Where, open_backend
from pipeline.store.spec import CollectionSpec, load_spec, normalise_distance

# Fixed forever: changing it would re-key every stored point.
NAMESPACE = uuid.UUID("9f4ef504-704d-4a33-8a1d-3dcb2f392ebc")
ALLOWED_SPLITS = ("train", "unlabeled")  # never val/test of the fold (leakage rule)


def point_id(dataset: str, sample: str) -> str:
    """Deterministic point id of a sample: the same sample always maps to the same point."""
    return str(uuid.uuid5(NAMESPACE, f"{dataset}/{sample}"))


@dataclass(frozen=True)
class Hit:
    """One neighbour returned by `search`."""

    id: str
    sample: str
    label: int
    label_name: str
    split: str
    score: float


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    backend: str  # edge | local | server
    points: int
    vectors: dict[str, VectorConfig]
    payload_schema: dict[str, str]  # indexed field -> type (empty in local mode)
    disk_bytes: int | None  # None on a server


@dataclass
class StoredMatrix:
    """Exactly the stored vectors of one modality, for building the FAISS fast path."""

    ids: np.ndarray  # (N,) str point ids
    samples: np.ndarray  # (N,) str
    vectors: np.ndarray  # (N, d) float32, as stored (unit norm for Cosine)
    payload: dict[str, np.ndarray]  # split, label, label_name, fold, scale (tag tuples) -> (N,)

    def __len__(self) -> int:
        return len(self.ids)

    def where(self, splits: Sequence[str] | None = None, scale: str | None = None) -> StoredMatrix:
        """The rows `fetch_matrix(splits=, scale=)` would return, chosen from these in
        memory (in the same order), without reading the store again."""
        keep = np.ones(len(self), bool)
        if splits:
            keep &= np.isin(self.payload["split"], list(splits))
        if scale:
            keep &= np.array([scale in tags for tags in self.payload["scale"]], bool)
        return StoredMatrix(self.ids[keep], self.samples[keep], self.vectors[keep],
                            {k: v[keep] for k, v in self.payload.items()})


def _py(value: Any) -> Any:
    """numpy scalars/arrays -> JSON-able Python values for payloads."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_py(v) for v in value]
    return value


PAYLOAD_BYTES = 512  # a point's payload (sample, split, label, tags), generously
WRITE_COPIES = 3  # write-ahead log, segment, index
SPACE_MARGIN = 64 << 20  # the engine's own files and whatever else shares the disk


class HiddenFeatureStore:
    """Collections of hidden features on the embedded engine or a Qdrant server."""

    def __init__(self, backend: Backend, spec: CollectionSpec) -> None:
        self.backend = backend
        self.spec = spec

    @classmethod
    def open(cls, settings: Settings, spec: CollectionSpec | str | Path | None = None,
             timeout: float = 10.0) -> HiddenFeatureStore:
        """Open the store the settings point at (server if `qdrant_url`, else embedded)."""
        if not isinstance(spec, CollectionSpec):
            spec = load_spec(spec)
        return cls(open_backend(settings, timeout=timeout), spec)

    @classmethod
    def check(cls, settings: Settings, timeout: float = 10.0) -> None:
        """Open and close the store: one StoreError line now (locked by another process,
        unreachable server) instead of after the first minutes of training."""
        cls.open(settings, timeout=timeout).close()

    def require_space(self, points: int, values_per_point: int) -> None:
        """Free space for a write of `points` points before it starts: the embedded
        engine maps its files, so a full disk under it is a bus error (exit 135, no
        message), not an exception. Estimate: each vector value in the write-ahead log,
        the segment and its index (3 x 4 bytes) plus the payload, and a fixed margin."""
        folder = getattr(self.backend, "folder", None)
        if folder is None or not Path(folder).exists():
            return
        need = points * (values_per_point * 4 + PAYLOAD_BYTES) * WRITE_COPIES + SPACE_MARGIN
        free = shutil.disk_usage(folder).free
        if free < need:
            raise StoreError(f"{folder}: {free / 2**20:.0f} MiB free, writing {points} points needs about "
                             f"{need / 2**20:.0f} MiB; free some space (`ramer collections drop`) or set "
                             "RAMER_QDRANT_PATH to a folder on a larger disk")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Flush and release the embedded folder lock (another process may then open it)."""
        self.backend.close()

    @property
    def kind(self) -> str:
        return self.backend.kind

    # ------------------------------------------------------------ collections
    def apply(self, collection: str, modalities: Sequence[str], dim: int | None = None,
              distance: str | None = None) -> bool:
        """Create `collection` per the spec (indexes before any data); idempotent.
        Returns True when it was created, False when it already matched."""
        size = dim or self.spec.vectors.size
        if size < 1:
            raise StoreError(f"collection '{collection}': vector size {size} must be >= 1")
        try:
            dist = normalise_distance(distance or self.spec.vectors.distance)
        except ValueError as exc:
            raise StoreError(f"collection '{collection}': {exc}") from None
        want = {m: VectorConfig(size, dist) for m in modalities}
        if not want:
            raise StoreError(f"collection '{collection}': no modalities to create vectors for")
        created = False
        if self.backend.exists(collection):
            have = self.backend.vectors(collection)
            if have != want:
                raise StoreError(
                    f"collection '{collection}' exists with vectors {_fmt_vectors(have)}, "
                    f"not {_fmt_vectors(want)} (drop it first: ramer collections drop {collection})"
                )
        else:
            self.backend.create(collection, want, self.spec.server)
            created = True
        try:
            for field_name, schema in self.spec.indexes.items():
                self.backend.ensure_index(collection, field_name, schema)
        except Exception:
            if created:  # no half-made collection left behind
                self.backend.drop(collection)
            raise
        return created

    def list_collections(self) -> list[str]:
        return self.backend.list_collections()

    def info(self, collection: str) -> CollectionInfo:
        vectors = self.backend.vectors(collection)
        self.backend.flush()
        return CollectionInfo(
            name=collection, backend=self.kind, points=self.count(collection), vectors=vectors,
            payload_schema=self.backend.payload_schema(collection),
            disk_bytes=self.backend.disk_bytes(collection),
        )

    def drop(self, collection: str) -> None:
        self.backend.drop(collection)

    def server_only(self, op: str) -> None:
        """Guard for operations only a Qdrant server has (snapshots, sharding)."""
        if self.kind != "server":
            raise StoreError(
                f"{op} needs a Qdrant server: the embedded '{self.kind}' store at "
                f"{self.backend.location} has none (set QDRANT_URL)"
            )

    def snapshot(self, collection: str) -> str:
        self.server_only("snapshots")
        return self.backend.snapshot(collection)

    # ------------------------------------------------------------ points
    def upsert_hidden(
        self,
        collection: str,
        dataset_name: str,
        samples: Sequence[str] | np.ndarray,
        payload: Mapping[str, Sequence[Any] | np.ndarray],
        vectors: Mapping[str, np.ndarray],
        present: Mapping[str, np.ndarray] | None = None,
        batch_size: int = 512,
        progress: bool = True,
    ) -> int:
        """Upsert one point per sample; returns the number of points written.

        `payload` holds extra columns aligned with `samples` (split, fold, label, ...);
        `sample`, `dataset` and `modalities` are filled in here. A sample whose
        `present[m]` is False gets no vector named `m`.
        """
        samples = np.asarray(samples).astype(str)
        n = len(samples)
        config = self.backend.vectors(collection)
        present = dict(present or {})
        for m, mat in vectors.items():
            if m not in config:
                raise StoreError(f"collection '{collection}' has no vector '{m}' (has {sorted(config)})")
            if mat.shape != (n, config[m].size):
                raise StoreError(
                    f"vectors '{m}': shape {mat.shape} != ({n}, {config[m].size}) of collection '{collection}'"
                )
            present.setdefault(m, np.ones(n, bool))
            if not np.isfinite(mat[present[m]]).all():
                raise StoreError(f"vectors '{m}': NaN/inf in the hidden features (nothing written)")
        for key, col in payload.items():
            if len(col) != n:
                raise StoreError(f"payload column '{key}': {len(col)} values for {n} samples")
        mods = list(vectors)
        self.require_space(n, sum(config[m].size for m in mods))
        done = 0
        with _progress(progress) as bar:
            task = bar.add_task(f"upsert {collection}", total=n)
            for lo in range(0, n, batch_size):
                hi = min(lo + batch_size, n)
                rows_vec = {m: np.asarray(vectors[m][lo:hi], np.float32).tolist() for m in mods}
                ids, vecs, pays = [], [], []
                for j, i in enumerate(range(lo, hi)):
                    has = [m for m in mods if present[m][i]]
                    ids.append(point_id(dataset_name, samples[i]))
                    vecs.append({m: rows_vec[m][j] for m in has})
                    pays.append({"sample": str(samples[i]), "dataset": dataset_name,
                                 **{k: _py(col[i]) for k, col in payload.items()},
                                 "modalities": has})
                self.backend.upsert(collection, ids, vecs, pays)
                done += hi - lo
                bar.update(task, advance=hi - lo)
        self.backend.flush()
        return done

    def count(self, collection: str, split: str | None = None, scale: str | None = None) -> int:
        return self.backend.count(collection, Where(splits=(split,) if split else None, scale=scale))

    def search(
        self,
        collection: str,
        modality: str,
        vector: np.ndarray | Sequence[float],
        k: int = 10,
        exclude_id: str | None = None,
        allowed_splits: Sequence[str] = ALLOWED_SPLITS,
        scale: str | None = None,
    ) -> list[Hit]:
        """Exact top-k neighbours under the leakage filter (split allowed, not the query)."""
        self.require_vector(collection, modality)
        if k < 1:
            raise StoreError(f"search: k must be >= 1, got {k}")
        where = Where(splits=tuple(allowed_splits), scale=scale,
                      exclude_ids=(exclude_id,) if exclude_id else ())
        vec = np.asarray(vector, np.float32).ravel().tolist()
        return [_hit(r.id, r.payload, r.score or 0.0)
                for r in self.backend.search(collection, modality, vec, k, where)]

    def require_vector(self, collection: str, modality: str) -> VectorConfig:
        """The named vector's config; an unknown name is one line listing the collection's."""
        config = self.backend.vectors(collection)
        if modality not in config:
            raise StoreError(f"collection '{collection}' has no vector '{modality}' (vectors: {', '.join(sorted(config))})")
        return config[modality]

    def lookup(self, collection: str, sample: str, modality: str) -> tuple[str, np.ndarray, dict[str, Any]]:
        """(point id, stored vector (d,), payload) of one sample's `modality`."""
        self.require_vector(collection, modality)
        batches = self.backend.scroll(collection, Where(sample=sample), [modality], batch=2)
        recs = next(batches, [])
        if not recs:
            raise StoreError(f"sample '{sample}' not found in collection '{collection}'")
        rec = recs[0]
        if modality not in rec.vectors:
            has = rec.payload.get("modalities", [])
            raise StoreError(f"sample '{sample}' has no '{modality}' vector in '{collection}' (has {has})")
        return rec.id, np.asarray(rec.vectors[modality], np.float32), rec.payload

    def search_sample(self, collection: str, sample: str, modality: str, k: int = 10,
                      allowed_splits: Sequence[str] = ALLOWED_SPLITS, scale: str | None = None) -> list[Hit]:
        """Neighbours of a stored sample by its own vector (itself excluded by id)."""
        pid, vec, _ = self.lookup(collection, sample, modality)
        return self.search(collection, modality, vec, k, exclude_id=pid,
                           allowed_splits=allowed_splits, scale=scale)

    def fetch_matrix(self, collection: str, modality: str, splits: Sequence[str] | None = None,
                     scale: str | None = None, batch: int = 2048) -> StoredMatrix:
        """Scroll every point holding `modality` (optionally only some splits / a scale)."""
        d = self.require_vector(collection, modality).size
        where = Where(splits=tuple(splits) if splits else None, scale=scale, has_vector=modality)
        ids: list[str] = []
        rows: list[list[float]] = []
        pay: dict[str, list[Any]] = {k: [] for k in ("sample", "split", "label", "label_name", "fold", "scale")}
        for recs in self.backend.scroll(collection, where, [modality], batch):
            for r in recs:
                ids.append(r.id)
                rows.append(r.vectors[modality])
                for key, values in pay.items():
                    values.append(r.payload.get(key))
        mat = np.asarray(rows, np.float32).reshape(len(rows), d)  # (N, d)
        payload = {k: np.asarray(v) for k, v in pay.items() if k not in ("sample", "scale")}
        payload["scale"] = np.empty(len(ids), object)  # (N,) each point's list of scale tags
        payload["scale"][:] = [(t,) if isinstance(t, str) else tuple(t or ()) for t in pay["scale"]]
        return StoredMatrix(np.asarray(ids, dtype=str), np.asarray(pay["sample"], dtype=str), mat, payload)


def _hit(pid: str, payload: Mapping[str, Any], score: float) -> Hit:
    label = payload.get("label")
    return Hit(
        id=pid, sample=str(payload.get("sample", "")),
        label=int(label) if label is not None else -1,
        label_name=str(payload.get("label_name", "")), split=str(payload.get("split", "")),
        score=float(score) if math.isfinite(score) else float("nan"),
    )


def _fmt_vectors(v: Mapping[str, VectorConfig]) -> str:
    return "{" + ", ".join(f"{m}: {c.size}/{c.distance}" for m, c in sorted(v.items())) + "}"


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        disable=not enabled, transient=False,
    )
