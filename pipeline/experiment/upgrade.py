"""Results written before metrics.parquet said what each system is: the columns added once,
in place, from the experiment's saved config, so reports read columns, never labels.

model / strategy / train_range / base come from the systems the config lists (a label it
does not list, e.g. from a merged folder, is parsed with the config's settings); `missing`
from the dataset's condition masks when the dataset is still there (else the report's
rule for old files applies)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.data.dataset import load_dataset
from pipeline.data.missing import condition_matrix, condition_names
from pipeline.errors import RamerError
from pipeline.evaluation.tables import write_parquet
from pipeline.training.config import experiment_from_dict
from pipeline.training.systems import SystemSpec, experiment_systems, parse_system

log = logging.getLogger(__name__)
SYSTEM_COLUMNS = ("model", "strategy", "train_range", "base")


def complete_metrics(results_dir: Path) -> bool:
    """Add the missing columns to results_dir/metrics.parquet; True when it changed."""
    path = results_dir / "metrics.parquet"
    table = pq.read_table(path)
    if set(SYSTEM_COLUMNS) <= set(table.column_names) and "missing" in table.column_names:
        return False
    cfg_path = results_dir / "config.json"
    if not cfg_path.is_file():
        raise RamerError(f"{path}: made by an older ramer and {cfg_path} is gone; rerun the experiment")
    cfg = experiment_from_dict(json.loads(cfg_path.read_text())["experiment"], str(cfg_path))
    specs = _specs(cfg, table.column("system").to_pylist())
    if not set(SYSTEM_COLUMNS) <= set(table.column_names):
        for col in SYSTEM_COLUMNS:
            values = [specs[s].columns()[col] for s in table.column("system").to_pylist()]
            table = table.append_column(col, pa.array(values, pa.string()))
    if "missing" not in table.column_names:
        missing = _missing_by_condition(cfg.dataset, cfg.strategy)
        if missing is not None:
            conds = table.column("condition").to_pylist()
            table = table.append_column("missing", pa.array([missing.get(c, True) for c in conds], pa.bool_()))
    write_parquet(table, path)
    log.info("%s: added the columns %s (made by an older ramer)", path, ", ".join(sorted(
        set(table.column_names) - {"system", "fold", "run", "condition", "metric", "value"})))
    return True


def _specs(cfg, labels: list[str]) -> dict[str, SystemSpec]:
    known = {s.label: s for s in experiment_systems(cfg)}
    for label in sorted(set(labels) - set(known)):
        known[label] = parse_system(label, cfg.retrieval, cfg.models)
    return known


def _missing_by_condition(dataset: str, strategy: str) -> dict[str, bool] | None:
    """condition -> part of the input absent; None when the dataset cannot be read."""
    if strategy != "none":
        return {}  # span conditions: always partial (`missing.get(c, True)`)
    try:
        man = load_dataset(dataset).manifest
    except RamerError:
        return None
    masks = condition_matrix(man, include_full=True)
    return {n: not bool(np.all(m)) for n, m in zip(condition_names(man, include_full=True), masks)}
