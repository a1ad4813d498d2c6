"""Datasets: the on-disk contract (manifest.json + features.parquet), readers, writers."""

from pipeline.data.dataset import Dataset, load_dataset, write_dataset
from pipeline.data.schema import Manifest, ModalitySpec

__all__ = ["Dataset", "Manifest", "ModalitySpec", "load_dataset", "write_dataset"]
