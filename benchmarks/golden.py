"""A golden run: every metric of a small fixed set of experiments, to compare before and
after a refactoring that must keep behaviour.

Through the CLI (what users run), in a fresh folder: a synthetic dataset; `ramer run`
with RAMER (auto selection), its ablation, the linear references and two baselines on
2 folds x 1 run; `ramer evaluate --noise`; a span-strategy run (ORIG / M3S); predict.
`ramer predict` on a few rows with a modality dropped; the demo. Writes one JSON of
(experiment, system, fold, run, condition, metric) -> value, and of predict's outputs.

    python benchmarks/golden.py --out /tmp/golden-before.json      # on the code before the change
    python benchmarks/golden.py --out /tmp/golden-after.json --compare /tmp/golden-before.json

`--compare` prints how many keys are only on one side and how many values differ (with the
largest difference) and exits 1 if any does: "behaviour unchanged" means exit 0. Values
repeat exactly on one machine, not across CPU types (docs/performance.md, "How to measure").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

STEPS = [
    ["data", "synth", "--out", "data/g", "--labeled", "360", "--unlabeled", "240",
     "--dims", "audio=24,visual=16,text=20", "--seed", "5"],
    ["run", "--dataset", "data/g", "--experiment", "main", "--folds", "0,1", "--runs", "1",
     "--epochs", "3", "--pretrain-epochs", "3", "--systems", "ramer,w/o retrieval,lr,lr-knn,mmin,cra"],
    ["evaluate", "--dataset", "data/g", "--experiment", "main", "--folds", "0,1", "--runs", "1",
     "--epochs", "3", "--pretrain-epochs", "3", "--systems", "ramer,w/o retrieval,lr,lr-knn,mmin,cra",
     "--noise", "gaussian:20,60", "--noise", "impulse:20"],
    ["run", "--dataset", "data/g", "--experiment", "spans", "--folds", "0", "--runs", "1",
     "--epochs", "3", "--pretrain-epochs", "3", "--systems", "ramer,mmin", "--strategy", "orig,m3s",
     "--missing-rate", "40-60", "--no-ingest"],
    ["run", "--dataset", "data/g", "--experiment", "opts", "--folds", "0", "--runs", "1",
     "--epochs", "3", "--pretrain-epochs", "3", "--systems", "ramer(k=5,metric=euclidean),ramer(k=5|10),carat(lr=0.0003)",
     "--no-ingest"],
    ["predict", "--experiment", "main", "--input", "pred_in.parquet", "--out", "pred_out.parquet", "--fold", "0",
     "--system", "ramer"],
    ["demo", "--out", "data/demo", "--labeled", "300", "--unlabeled", "300", "--folds", "0", "--epochs", "3"],
]


def predict_input(cwd: Path) -> None:
    """Rows 0..11 of data/g with the visual modality missing: predict's input."""
    import pyarrow as pa

    from pipeline.data.dataset import load_dataset

    ds = load_dataset(cwd / "data/g")
    rows = list(range(12))
    cols = {"sample": pa.array(ds.samples[rows].tolist())}
    for m in ds.modalities:
        cols[m] = pa.array([None if m == "visual" else ds.features[m][r].tolist() for r in rows],
                           pa.list_(pa.float32()))
    pq.write_table(pa.table(cols), cwd / "pred_in.parquet")


KEY_COLUMNS = ("system", "fold", "run", "condition", "metric", "noise", "intensity")


def ramer(cwd: Path, args: list[str]) -> None:
    env = {**os.environ, "RAMER_DATA_DIR": "data", "RAMER_RESULTS_DIR": "results", "RAMER_RUNS_DIR": "runs"}
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"ramer {' '.join(args)} failed:\n{done.stderr[-3000:]}")


def collect(root: Path) -> dict[str, float]:
    out = {}
    for name in ("metrics.parquet", "noise.parquet"):
        for path in sorted((root / "results").glob(f"*/{name}")):
            for row in pq.read_table(path).to_pylist():
                key = {k: row[k] for k in KEY_COLUMNS if k in row}  # columns a newer version adds are not keys
                out[json.dumps({"experiment": path.parent.name, "file": name, **key}, sort_keys=True)] = row["value"]
    for row in pq.read_table(root / "pred_out.parquet").to_pylist():
        for col, value in row.items():
            if isinstance(value, float):
                out[json.dumps({"file": "predict", "sample": row["sample"], "column": col})] = value
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--compare", type=Path, default=None, help="an earlier golden JSON to diff against")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for step in STEPS:
            if step[0] == "predict":
                predict_input(Path(tmp))
            ramer(Path(tmp), step)
        values = collect(Path(tmp))
    args.out.write_text(json.dumps(values, indent=1, sort_keys=True) + "\n")
    print(f"{len(values)} values -> {args.out}")
    if args.compare is not None:
        before = json.loads(args.compare.read_text())
        missing = sorted(set(before) ^ set(values))
        diffs = {k: (before[k], values[k]) for k in set(before) & set(values) if before[k] != values[k]}
        print(f"{len(missing)} keys only on one side, {len(diffs)} values differ "
              f"(largest |diff| {max((abs(a - b) for a, b in diffs.values()), default=0):.3g})")
        raise SystemExit(1 if missing or diffs else 0)


if __name__ == "__main__":
    main()
