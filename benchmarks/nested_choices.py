"""What each (fold, run) chose for every nested selection of an experiment, and the
nested system's test score: the table of docs/selection.md.

A selection system 'a|b' picks its variant per unit on that unit's own validation split
(`FoldRun.chosen`); its stage-4 record (runs/<experiment>/f*_r*/<slug>.json) names the
variant it used under `chosen`. This script lists those choices beside the test score
of the task's headline metric (WA, multi-label F1, MAE), averaged over the missing
conditions, per unit and as mean +- std over the units.

    python benchmarks/nested_choices.py runs/sel-mfeat results/sel-mfeat
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from pipeline.evaluation.report import headline_metrics


def choices(runs_dir: Path) -> dict[str, dict[tuple[int, int], str]]:
    """selection system -> (fold, run) -> the variant it used."""
    out: dict[str, dict[tuple[int, int], str]] = defaultdict(dict)
    for path in sorted(runs_dir.glob("f*_r*/*.json")):
        rec = json.loads(path.read_text())
        if isinstance(rec, dict) and "chosen" in rec and "metrics" in rec:
            out[rec["system"]][(int(rec["fold"]), int(rec["run"]))] = rec["chosen"]
    return out


def unit_scores(results_dir: Path) -> tuple[str, dict[tuple[str, int, int], float]]:
    """(metric, (system, fold, run) -> headline metric averaged over the missing conditions)."""
    table = pq.read_table(results_dir / "metrics.parquet").to_pylist()
    names = headline_metrics(pq.read_table(results_dir / "metrics.parquet"))
    metric = "F1" if "F1" in names else names[0]  # multi-label: micro-F1, what selection uses
    conds = {r["condition"] for r in table}
    longest = max(map(len, conds))
    missing = {c for c in conds if len(c) < longest} or conds  # span conditions: all of them
    acc: dict[tuple[str, int, int], list[float]] = defaultdict(list)
    for r in table:
        if r["metric"] == metric and r["condition"] in missing:
            acc[(r["system"], r["fold"], r["run"])].append(r["value"])
    return metric, {k: float(np.mean(v)) for k, v in acc.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs_dir", type=Path)
    parser.add_argument("results_dir", type=Path)
    args = parser.parse_args()
    metric, scores = unit_scores(args.results_dir)
    scale = 1 if metric == "MAE" else 100
    print(f"| selection | units choosing each variant | chosen per unit (fold.run: variant) | test {metric}, missing avg |")
    print("|---|---|---|---|")
    for system, per in choices(args.runs_dir).items():
        picks = "; ".join(f"{f}.{r}: {v}" for (f, r), v in sorted(per.items()))
        counts = ", ".join(f"{v}: {n}/{len(per)}" for v, n in Counter(per.values()).most_common())
        vals = np.array([scores[(system, f, r)] for f, r in sorted(per)]) * scale
        print(f"| {system} | {counts} | {picks} | {vals.mean():.2f} ± {vals.std():.2f} (n={len(vals)}) |")


if __name__ == "__main__":
    main()
