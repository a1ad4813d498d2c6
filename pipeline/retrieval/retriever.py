"""RAMER retrieval over an in-memory DB of hidden features (stage 3, missing-modality training).

An available modality's hidden vector queries its own modality's DB; the neighbours'
vectors of a missing modality are summed and L2-normalised to stand in for it. The DB
holds only allowed candidates (train + unlabeled of the chosen scale), and the query's own
row is excluded by id, so retrieval never leaks the query or a val/test sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.retrieval.faiss_index import FastIndex, StreamedIndex
from pipeline.store.qdrant_store import ALLOWED_SPLITS, HiddenFeatureStore, StoredMatrix

EPS = 1e-12


def fuse_sum_l2(neigh: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """(B, K, d) neighbour vectors -> (B, d): sum over valid neighbours, then L2-normalise.
    A row without any valid neighbour gives zeros (eps-safe, never NaN)."""
    neigh = np.asarray(neigh, np.float32)
    if valid is not None:
        neigh = neigh * np.asarray(valid, np.float32)[:, :, None]  # (B, K, d)
    total = neigh.sum(axis=1)  # (B, d)
    norm = np.linalg.norm(total, axis=1, keepdims=True)  # (B, 1)
    return np.where(norm > EPS, total / np.maximum(norm, EPS), 0.0).astype(np.float32)


class ModalityRetriever:
    """One FastIndex per modality over candidate rows that have that modality."""

    def __init__(self, k: int = 10, metric: str = "cosine", device: str = "auto",
                 threads: int | None = None) -> None:
        self.k = k
        self.metric = metric
        self.device = device
        self.threads = threads

    def fit(self, db: dict[str, np.ndarray], present: dict[str, np.ndarray],
            candidates: np.ndarray) -> ModalityRetriever:
        """db[m]: (N, d) hidden vectors by dataset row, or a view whose `db[m][rows]` computes
        them (searched block by block, `StreamedIndex`); present[m], candidates: (N,) bool."""
        candidates = np.asarray(candidates, bool)
        self.db_ = db
        self.present_ = {m: np.asarray(present[m], bool) for m in db}
        self.indexes_: dict[str, FastIndex] = {}
        for m, mat in db.items():
            rows = np.flatnonzero(candidates & self.present_[m])  # (n_m,) dataset rows
            if isinstance(mat, np.ndarray):
                index = FastIndex(self.metric, self.device, self.threads)
                self.indexes_[m] = index.fit(mat[rows], ids=rows.astype(np.int64))
            else:  # a view computed as it is read (scaled, memory-mapped features): never copied whole
                self.indexes_[m] = StreamedIndex(self.metric, self.device, self.threads).fit(mat, rows)
        return self

    def search(self, modality: str, queries: np.ndarray, query_rows: np.ndarray,
               k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """queries (B, d), query_rows (B,) dataset rows (-1 = external query) ->
        rows (B, K) int64 (-1 pads when the DB is smaller than K), scores (B, K) float32.
        Scores are always higher = closer (cosine similarity, or minus the L2 distance),
        so rules such as "keep the query with the higher K-th score" work for both metrics;
        pads score -inf."""
        if modality not in self.indexes_:
            raise KeyError(f"no index for modality '{modality}' (have {sorted(self.indexes_)})")
        scores, rows = self.indexes_[modality].search(
            queries, k or self.k, exclude_ids=np.asarray(query_rows, np.int64)
        )
        return rows, (-scores if self.metric == "euclidean" else scores)

    def fuse(self, rows: np.ndarray, target: str) -> np.ndarray:
        """(B, K) neighbour rows -> (B, d) sum of their `target` vectors (absent or padded
        neighbours skipped), L2-normalised."""
        rows = np.asarray(rows, np.int64)
        safe = np.maximum(rows, 0)  # (B, K); -1 pads masked below
        valid = (rows >= 0) & self.present_[target][safe]  # (B, K)
        return fuse_sum_l2(self.db_[target][safe], valid)  # (B, K, d) -> (B, d)


def fast_index_from_store(store: HiddenFeatureStore, collection: str, modality: str,
                          allowed_splits: Sequence[str] = ALLOWED_SPLITS, scale: str | None = None,
                          metric: str = "cosine", device: str = "auto",
                          fetched: StoredMatrix | None = None) -> tuple[FastIndex, StoredMatrix]:
    """FAISS index over exactly the stored, allowed vectors of one modality.
    FAISS ids are row numbers of the returned StoredMatrix (its `ids` give the point ids).
    `fetched`: every stored vector of that modality, already read (`fetch_matrix` without
    filters): the allowed ones are chosen from it instead of reading the store again."""
    if fetched is not None:
        mat = fetched.where(allowed_splits, scale)
    else:
        mat = store.fetch_matrix(collection, modality, splits=allowed_splits, scale=scale)
    return FastIndex(metric, device).fit(mat.vectors, np.arange(len(mat), dtype=np.int64)), mat
