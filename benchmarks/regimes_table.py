"""Finished experiments side by side, per system: test Avg WA (mean over units of the
missing-condition average, as report.md computes it), the lowest validation score of
any unit against its chance level, and the units at chance (report.md's warning rule).
Issue 31's before / after tables of the mfeat regimes are made with it:

    python benchmarks/regimes_table.py results/mfeat results/mfeat10
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from pipeline.evaluation.report import CHANCE_MARGIN, avg_over_conditions
from pipeline.evaluation.tables import missing_conditions


def columns(results: Path) -> dict[str, tuple[float, float, float, int, int]]:
    """system -> (Avg WA %, its std over units (as report.md: ddof 0), min unit val score, that unit's chance,
    units at chance); systems in fits.parquet order."""
    fits = pq.read_table(results / "fits.parquet").to_pylist()
    metrics = pq.read_table(results / "metrics.parquet")
    per_unit = avg_over_conditions(metrics, missing_conditions(metrics))  # (system, metric) -> {unit: avg}
    out = {}
    for f in fits:
        s = f["system"]
        if s in out or (s, "WA") not in per_unit:
            continue
        units = [u for u in fits if u["system"] == s]
        low = min(units, key=lambda u: u["val_score"])
        at_chance = sum(u["val_score"] <= u["val_chance"] + CHANCE_MARGIN for u in units)
        wa = 100 * np.array(list(per_unit[(s, "WA")].values()))
        out[s] = (float(wa.mean()), float(wa.std()),
                  low["val_score"], low["val_chance"], int(at_chance))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, nargs="+", help="results/<experiment> folders")
    args = ap.parse_args()
    tables = [columns(r) for r in args.results]
    names = [r.name for r in args.results]
    head = " | ".join(f"{n}: Avg WA | {n}: min unit val (chance) | {n}: units at chance" for n in names)
    print(f"| system | {head} |")
    print("|---|" + "---|---|---|" * len(names))
    for s in dict.fromkeys(s for t in tables for s in t):
        cells = []
        for t in tables:
            if s in t:
                wa, sd, val, chance, n = t[s]
                cells += [f"{wa:.2f} ± {sd:.2f}", f"{val:.3f} ({chance:.2f})", str(n)]
            else:
                cells += ["-", "-", "-"]
        print(f"| {s} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
