"""Importers: external feature files -> dataset directories (the data contract).

Each importer validates its source completely before anything is written and publishes
the directory atomically through `pipeline.data.dataset.write_dataset`.
"""

from pipeline.data.importers.parquet import import_parquet

__all__ = ["import_parquet"]
