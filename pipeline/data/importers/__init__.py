"""Importers: external feature files -> dataset directories (the data contract).

Each importer validates its source completely before anything is written and publishes
the directory atomically through `pipeline.data.dataset.write_dataset`.
"""

from pipeline.data.importers.carat_mosei import import_carat_mosei
from pipeline.data.importers.iemocap_mmin import import_iemocap_mmin
from pipeline.data.importers.m3ed import import_m3ed
from pipeline.data.importers.mer2024 import import_mer2024
from pipeline.data.importers.mmsa import import_mmsa
from pipeline.data.importers.parquet import import_parquet

__all__ = ["import_carat_mosei", "import_iemocap_mmin", "import_m3ed", "import_mer2024", "import_mmsa", "import_parquet"]
