"""Each system of a finished experiment: mean validation score beside mean test Avg WA.

Validation = `val_score` in fits.parquet (the stage-3 selection score of the epoch and
variant each (fold, run) chose); test = WA averaged over the missing conditions
(a v l av al vl) of each unit, then over units, from metrics.parquet. Best validation
first. The tables of docs/paper.md (preset against defaults, the scale x K grids) are
made with it:

    python benchmarks/val_test_table.py results/mfeat-grid15 results/mfeat-grid15-paper
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from pipeline.evaluation.report import avg_over_conditions
from pipeline.evaluation.tables import missing_conditions


def table(results: Path) -> list[tuple[str, float, float, int]]:
    """(system, mean validation score, mean test Avg WA in %, units), best validation first;
    Avg WA per unit as report.md computes it (`avg_over_conditions` over the missing conditions)."""
    val: dict[str, list[float]] = defaultdict(list)
    for f in pq.read_table(results / "fits.parquet", columns=["system", "val_score"]).to_pylist():
        val[f["system"]].append(f["val_score"])
    metrics = pq.read_table(results / "metrics.parquet")
    per_unit = avg_over_conditions(metrics, missing_conditions(metrics))  # (system, metric) -> {unit: avg}
    rows = [(s, float(np.mean(v)), 100 * float(np.mean(list(per_unit[(s, "WA")].values()))), len(v))
            for s, v in val.items() if (s, "WA") in per_unit]
    return sorted(rows, key=lambda r: -r[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, nargs="+", help="results/<experiment> folders")
    for results in ap.parse_args().results:
        if not (results / "fits.parquet").is_file():
            raise SystemExit(f"{results}: no fits.parquet (run the experiment first)")
        print(f"\n{results}\n\n| system | validation | test Avg WA (%) | units |\n|---|---|---|---|")
        for s, v, t, n in table(results):
            print(f"| {s} | {v:.4f} | {t:.2f} | {n} |")


if __name__ == "__main__":
    main()
