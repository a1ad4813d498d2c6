"""Qdrant collections of per-fold hidden features (the store of record).

`HiddenFeatureStore.open(settings)` reaches the embedded engine (qdrant-edge-py by
default, or qdrant-client local mode) or a Qdrant server when `QDRANT_URL` is set.
"""

from pipeline.store.ingest import collection_name, default_scale_tags, ingest_hidden
from pipeline.store.qdrant_store import (
    ALLOWED_SPLITS,
    NAMESPACE,
    CollectionInfo,
    HiddenFeatureStore,
    Hit,
    StoredMatrix,
    point_id,
)
from pipeline.store.spec import CollectionSpec, load_spec

__all__ = [
    "ALLOWED_SPLITS",
    "NAMESPACE",
    "CollectionInfo",
    "CollectionSpec",
    "HiddenFeatureStore",
    "Hit",
    "StoredMatrix",
    "collection_name",
    "default_scale_tags",
    "ingest_hidden",
    "load_spec",
    "point_id",
]
