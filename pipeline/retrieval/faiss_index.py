"""FAISS fast path: exact top-k over one modality's allowed candidates, for training-time search.

Qdrant is the store of record; this index is rebuilt from exactly its vectors (or the
same arrays) because training queries thousands of times per epoch. Two measured
choices (120k x 256 on 2 cores):
- `distance_compute_blas_threshold = 1`: FAISS's default keeps batches under ~500 queries
  off BLAS (128 queries: 589 ms -> 65 ms); and wider BLAS blocks (`_blas_blocks`);
- no IDSelector filtering (it also leaves BLAS): the index holds only allowed candidates
  and the query's own id is dropped from k+1 results by id, never by position.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from pipeline.data.mapped import release
from pipeline.extras import load_faiss

log = logging.getLogger(__name__)

GPU_MAX_K = 2048  # FAISS GPU flat search limit
BLAS_BLOCK_FLOATS = 16 << 20  # largest FAISS score block per BLAS call: 64 MB (its default: 16 MB)
METRICS = ("cosine", "euclidean")


def gpu_count() -> int:
    """GPUs FAISS can use; 0 for CPU-only builds (no GPU symbols at all)."""
    faiss = load_faiss()
    if not hasattr(faiss, "StandardGpuResources") or not hasattr(faiss, "index_cpu_to_gpu"):
        return 0
    try:
        return int(faiss.get_num_gpus())
    except AttributeError:
        return 0


_ANNOUNCED: set[str] = set()  # device decisions already logged at INFO in this process


def _announce(msg: str, *args: object) -> None:
    """INFO the first time a decision is made, DEBUG after (indexes are rebuilt per fold)."""
    text = msg % args
    log.log(logging.DEBUG if text in _ANNOUNCED else logging.INFO, text)
    _ANNOUNCED.add(text)


def _gpu_id(device: str) -> int | None:
    """GPU ordinal to use for `device` ('auto' | 'cpu' | 'cuda' | 'cuda:N'), or None for CPU."""
    dev = device.strip().lower()
    if dev == "cpu":
        _announce("FAISS on CPU (device=cpu)")
        return None
    n = gpu_count()
    if n == 0:
        _announce("FAISS on CPU (no GPU visible)")
        return None
    ordinal = int(dev.split(":", 1)[1]) if dev.startswith("cuda:") else 0
    if ordinal >= n:
        _announce("FAISS on CPU (device %s asked, %d GPU(s) visible)", device, n)
        return None
    _announce("FAISS on GPU %d", ordinal)
    return ordinal


def _blas_blocks(b: int) -> None:
    """Size FAISS's (queries x database rows) score blocks for a batch of `b` queries.

    Each block is one BLAS call plus one OpenMP pass over its scores, a barrier each. With
    several threads on a busy 2-core machine, FAISS's default 4096 x 1024 blocks made
    B=128 x N=120k 19x slower than the bare matmul, so multi-threaded searches use wide
    blocks of up to 64 MB (128 x 131072 for B=128, 1024 x 16384 from B=1024). A single
    thread has no barriers to wait on and prefers cache-sized 8 MB blocks
    (benchmarks/bench_retrieval.py, docs/scale.md)."""
    faiss = load_faiss()
    threads = faiss.omp_get_max_threads()
    budget = BLAS_BLOCK_FLOATS if threads > 1 else BLAS_BLOCK_FLOATS // 8
    qbs = min(max(b, 1), 1024)
    faiss.cvar.distance_compute_blas_query_bs = qbs
    faiss.cvar.distance_compute_blas_database_bs = max(16384 if threads > 1 else 1024, budget // qbs)


def _as_f32(x: np.ndarray, ndim: int, what: str, copy: bool = True) -> np.ndarray:
    # copy: normalize_L2 is in place
    arr = np.array(x, dtype=np.float32, order="C", copy=True if copy else None)
    if arr.ndim != ndim:
        raise ValueError(f"{what}: expected {ndim}-d array, got shape {arr.shape}")
    return arr


class FastIndex:
    """Exact flat index with sklearn-style `fit` / `search` and self-exclusion by id.

    Scores: cosine -> similarity (higher = closer); euclidean -> L2 distance (lower =
    closer), the same conventions as Qdrant's Cosine and Euclid.
    """

    def __init__(self, metric: str = "cosine", device: str = "auto", threads: int | None = None) -> None:
        self.metric = metric
        self.device = device
        self.threads = threads

    def fit(self, vectors: np.ndarray, ids: np.ndarray | None = None, copy: bool = True) -> FastIndex:
        """`copy=False`: `vectors` is the caller's scratch, normalised in place when it is
        float32 and C-ordered already (FAISS keeps its own copy either way)."""
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got '{self.metric}'")
        x = _as_f32(vectors, 2, "vectors", copy)  # (N, d)
        ids = np.arange(len(x), dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
        if ids.shape != (len(x),):
            raise ValueError(f"ids: shape {ids.shape} != ({len(x)},)")
        faiss = load_faiss()
        faiss.cvar.distance_compute_blas_threshold = 1
        if self.threads:
            faiss.omp_set_num_threads(int(self.threads))
        d = x.shape[1]
        if self.metric == "cosine":
            faiss.normalize_L2(x)
            index: Any = faiss.IndexFlatIP(d)
        else:
            index = faiss.IndexFlatL2(d)
        self.gpu_ = _gpu_id(self.device)
        if self.gpu_ is not None:
            self._gpu_res = faiss.StandardGpuResources()  # must outlive the index
            index = faiss.index_cpu_to_gpu(self._gpu_res, self.gpu_, index)
        index.add(x)
        self.index_, self.ids_, self.dim_ = index, ids, d  # ids_ (N,) maps FAISS rows -> ids
        return self

    @property
    def ntotal(self) -> int:
        return int(self.index_.ntotal)

    def search(self, queries: np.ndarray, k: int, exclude_ids: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores (B, k) float32, ids (B, k) int64), never returning exclude_ids[b]
        for query b. Columns beyond the candidates available are padded with id -1."""
        q = _as_f32(queries, 2, "queries")  # (B, d)
        if q.shape[1] != self.dim_:
            raise ValueError(f"queries: dim {q.shape[1]} != index dim {self.dim_}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if self.metric == "cosine":
            load_faiss().normalize_L2(q)
        extra = 0 if exclude_ids is None else 1
        if self.gpu_ is not None and k + extra > GPU_MAX_K:
            log.warning("FAISS GPU caps k at %d; returning the top %d", GPU_MAX_K, GPU_MAX_K - extra)
            k = GPU_MAX_K - extra
        kk = min(k + extra, self.ntotal)
        b = len(q)
        scores = np.full((b, k), -np.inf if self.metric == "cosine" else np.inf, np.float32)
        out = np.full((b, k), -1, np.int64)
        if kk == 0 or b == 0:
            return scores, out
        _blas_blocks(b)
        dist, pos = self.index_.search(q, kk)  # (B, kk) each
        found = np.where(pos >= 0, self.ids_[np.maximum(pos, 0)], -1)  # (B, kk) ids
        if self.metric == "euclidean":
            dist = np.sqrt(np.maximum(dist, 0.0))
        return _without_excluded(found, dist, exclude_ids, scores, out)


def _without_excluded(found: np.ndarray, dist: np.ndarray, exclude_ids: np.ndarray | None,
                      scores: np.ndarray, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ranked (B, kk) hits `found` / `dist` less each query's excluded id, written into
    the padded (B, k) `scores` / `out`."""
    b = len(found)
    if exclude_ids is not None:
        ex = np.asarray(exclude_ids, np.int64).reshape(b, 1)
        drop = (found == ex) | (found < 0)  # (B, kk)
        order = np.argsort(drop, axis=1, kind="stable")  # kept columns first, in rank order
        found = np.take_along_axis(found, order, axis=1)
        dist = np.take_along_axis(dist, order, axis=1)
        keep = ~np.take_along_axis(drop, order, axis=1)
        found = np.where(keep, found, -1)
        dist = np.where(keep, dist, scores[:, :1])
    m = min(scores.shape[1], found.shape[1])
    out[:, :m], scores[:, :m] = found[:, :m], dist[:, :m]
    return scores, out


STREAM_BLOCK_BYTES = 128 << 20  # candidate bytes searched at a time by `StreamedIndex`


class StreamedIndex:
    """Exact flat search over candidates too large to copy: `matrix[rows]` is read in blocks
    of rows (a memory-mapped table, scaled as it is read), each block searched as a
    FastIndex and the blocks' top-k merged. The same neighbours as one FastIndex over
    every candidate (each score is the same dot product), holding one block instead of
    two copies of the whole matrix (FastIndex's normalised input and FAISS's own)."""

    def __init__(self, metric: str = "cosine", device: str = "auto", threads: int | None = None,
                 block_bytes: int = STREAM_BLOCK_BYTES) -> None:
        self.metric, self.device, self.threads, self.block_bytes = metric, device, threads, block_bytes

    def fit(self, matrix: Any, rows: np.ndarray) -> StreamedIndex:
        """`matrix`: anything whose `matrix[rows]` gives (n, d) float32 rows (a view);
        `rows`: the candidates' row numbers, which are also their ids."""
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got '{self.metric}'")
        self.matrix_, self.ids_ = matrix, np.asarray(rows, np.int64)
        self.dim_ = int(matrix.shape[1])
        return self

    @property
    def ntotal(self) -> int:
        return len(self.ids_)

    def search(self, queries: np.ndarray, k: int, exclude_ids: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """As `FastIndex.search`: top-k (scores, ids), never exclude_ids[b] for query b."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        b, worst = len(queries), (-np.inf if self.metric == "cosine" else np.inf)
        kk = min(k + (0 if exclude_ids is None else 1), self.ntotal)
        scores, out = np.full((b, k), worst, np.float32), np.full((b, k), -1, np.int64)
        if kk == 0 or b == 0:
            return scores, out
        best_s, best_i = np.full((b, 0), worst, np.float32), np.full((b, 0), -1, np.int64)
        for start, stop in self._blocks(b):
            ids = self.ids_[start:stop]
            rows = self.matrix_[ids]  # (n, d) copy of the block
            release(self.matrix_)  # a memory-mapped table: only the block in use stays resident
            block = FastIndex(self.metric, self.device, self.threads).fit(rows, ids, copy=False)
            s, i = block.search(queries, kk)  # (B, kk) each, best first
            s, i = np.concatenate([best_s, s], axis=1), np.concatenate([best_i, i], axis=1)
            order = np.argsort(-s if self.metric == "cosine" else s, axis=1, kind="stable")[:, :kk]
            best_s, best_i = np.take_along_axis(s, order, axis=1), np.take_along_axis(i, order, axis=1)
        return _without_excluded(best_i, best_s, exclude_ids, scores, out)

    def _blocks(self, b: int) -> list[tuple[int, int]]:
        """[start, stop) candidate blocks: whole multiples of FAISS's own database block for
        `b` queries, so each block makes the BLAS calls one index over everything makes
        (the same scores to the last bit), and as many as fit in `block_bytes`."""
        _blas_blocks(b)  # what the FastIndex of each block sets for this batch
        unit = max(1, int(load_faiss().cvar.distance_compute_blas_database_bs))
        step = unit * max(1, self.block_bytes // (4 * self.dim_ * unit))
        return [(i, min(i + step, self.ntotal)) for i in range(0, self.ntotal, step)]
