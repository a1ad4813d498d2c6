"""Rank the systems of an experiment by their validation score (model selection, never test).

`ramer sweep` is the way to compare settings now: it trains stages 1-3 only, never scores
the test split, and writes results/<experiment>/validation.md and validation.parquet
(docs/selection.md). This script stays for checkpoints an earlier `ramer run` left: it reads
runs/<experiment>/f*_r*/<system>.fit.json, averages each system's best validation score
over the (fold, run) units it finished, and prints a markdown table, best first. Scores are
the task's selection score: WA (single-label), micro-F1 (multi-label) or -MAE
(regression), so higher is always better.

    python benchmarks/select_on_validation.py runs/nmer-sweep
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np


def validation_scores(runs_dir: Path) -> dict[str, list[float]]:
    scores: dict[str, list[float]] = defaultdict(list)
    for path in sorted(runs_dir.glob("f*_r*/*.fit.json")):
        record = json.loads(path.read_text())
        scores[record["system"]].append(float(record["val_score"]))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs_dir", type=Path, help="runs/<experiment> folder of checkpoints")
    args = parser.parse_args()
    scores = validation_scores(args.runs_dir)
    if not scores:
        raise SystemExit(f"{args.runs_dir}: no f*_r*/*.fit.json files (train an experiment first)")
    print("| system | mean validation score | std | units |")
    print("|---|---|---|---|")
    for system, vals in sorted(scores.items(), key=lambda kv: -np.mean(kv[1])):
        print(f"| {system} | {np.mean(vals):.4f} | {np.std(vals):.4f} | {len(vals)} |")


if __name__ == "__main__":
    main()
