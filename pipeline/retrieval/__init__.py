"""Training-time retrieval: the FAISS fast path and RAMER's neighbour fusion."""

from pipeline.retrieval.faiss_index import FastIndex, gpu_count
from pipeline.retrieval.retriever import ModalityRetriever, fast_index_from_store, fuse_sum_l2

__all__ = ["FastIndex", "ModalityRetriever", "fast_index_from_store", "fuse_sum_l2", "gpu_count"]
