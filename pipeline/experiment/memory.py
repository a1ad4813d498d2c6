"""Will this run fit? The memory of `ramer run` estimated from the dataset's shape and
--jobs before any training, so a run that cannot fit stops in one line instead of being
ended by the kernel's OOM killer an hour later.

What a unit holds, by design (docs/performance.md, "Memory"): the features are memory
mapped once for every process (`pipeline.data.mapped`); per job, the labeled rows as
tensors (the bank), the hidden-vector database of every row with its FAISS copy, the
neighbour lists, lr-knn's fill tables and a few fixed-size scratch blocks. Nothing else
grows with the number of rows. Python, torch and FAISS themselves are not counted: the
process running this check already holds them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.data.bounds import available_memory
from pipeline.data.dataset import Dataset
from pipeline.data.preprocess import FIT_BYTES
from pipeline.errors import RamerError
from pipeline.retrieval.faiss_index import STREAM_BLOCK_BYTES
from pipeline.retrieval.fill import TABLE_BYTES

GIB = 2**30
SCRATCH_BYTES = 2 * FIT_BYTES + 4 * STREAM_BLOCK_BYTES  # the scaler's float64 block, a search block's copies
FILL_PATTERNS = 3  # lr-knn's fill tables: one per (modality, set of the others available), 3 modalities


@dataclass(frozen=True)
class MemoryEstimate:
    mapped: int  # bytes of the memory-mapped features, shared by every process
    per_job: int  # bytes each job holds besides them
    jobs: int

    @property
    def total(self) -> int:
        return self.mapped + self.jobs * self.per_job

    def jobs_that_fit(self, available: int) -> int:
        return max(0, (available - self.mapped) // max(1, self.per_job))


def estimate_run_memory(ds: Dataset, jobs: int, hidden: int = 256, k: int = 10) -> MemoryEstimate:
    """Bytes the run will hold at its peak: (N, sum D) float32 features mapped once, and
    per job: the labeled bank, 2 copies of the (N, M, hidden) database (the vectors and
    the FAISS index over the candidates), neighbour lists of two key sets, lr-knn's fill
    tables (bounded by TABLE_BYTES) and the scratch blocks."""
    n, dims, m = len(ds), ds.manifest.dims, len(ds.modalities)
    labeled = int(ds.labeled.sum())
    bank = labeled * sum(dims) * 4
    database = 2 * n * m * hidden * 4
    lists = 2 * n * m * k * 12  # int64 rows + float32 scores
    tables = min(TABLE_BYTES, labeled * sum(dims) * 4 * FILL_PATTERNS)
    return MemoryEstimate(mapped=n * sum(dims) * 4, per_job=bank + database + lists + tables + SCRATCH_BYTES,
                          jobs=jobs)


def require_run_memory(ds: Dataset, jobs: int, hidden: int = 256, k: int = 10,
                       available: int | None = None) -> MemoryEstimate:
    """Raise one RamerError when the run's estimate exceeds the memory available now."""
    est = estimate_run_memory(ds, jobs, hidden, k)
    avail = available_memory() if available is None else available
    if est.total <= avail:
        return est
    fit = est.jobs_that_fit(avail)
    change = (f"use --jobs {fit}" if 0 < fit < jobs else
              "free memory, or use a dataset with fewer rows or a smaller DB scale")
    raise RamerError(
        f"this run needs about {est.total / GIB:.1f} GiB ({est.mapped / GIB:.1f} GiB of features mapped once "
        f"+ {est.per_job / GIB:.1f} GiB per job x {jobs}), {avail / GIB:.1f} GiB is available: {change}")
