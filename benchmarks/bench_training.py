"""Training benchmark: samples/s per RAMER stage for one (fold, run) at the default size.

Runs `pipeline.training.protocol.run_experiment` (what `ramer run` runs) on one fold and
one run of the default synthetic dataset (5,030 labeled + 20,000 unlabeled, dims
1024/768/1024), systems `ramer` and `w/o retrieval`, and reads back the timings the
protocol records: runs/<exp>/timings.json and runs/<exp>/f0_r0/<system>.fit.json
(`fit_seconds`, `retrieval_seconds`). Per stage:
- pretrain: training-sample passes/s (train rows with the modality x epochs, summed over
  the three encoders; validation passes included in the time);
- index: rows encoded per second per modality (+ building the FAISS fast path);
- ingest: points/s into the embedded store (`cfg.ingest`);
- train: training-sample passes/s per system; for RAMER the share of stage-3 time spent
  in retrieval (neighbour precompute + fusion during fit);
- evaluate: test predictions per second (test rows x 7 conditions x systems).
The whole protocol is folds x runs of this (5 x 3 by default): its wall time is ~15x.
Epochs are kept small by default (throughput per epoch does not depend on how many).

    python benchmarks/bench_training.py                       # generates data in a temp dir
    python benchmarks/bench_training.py --dataset data/synth --epochs 40 --pretrain-epochs 40
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, load_average, machine_info, md_table, peak_rss_mib, save


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=None, help="dataset dir (default: generate the default synthetic set)")
    ap.add_argument("--labeled", type=int, default=5030)
    ap.add_argument("--unlabeled", type=int, default=20000)
    ap.add_argument("--epochs", type=int, default=3, help="stage-3 epochs")
    ap.add_argument("--pretrain-epochs", type=int, default=3, help="stage-1 epochs per encoder")
    ap.add_argument("--threads", type=int, default=None, help="torch/FAISS threads (default: all cores)")
    ap.add_argument("--workdir", type=Path, default=None, help="where runs/results/store go (default: temp dir)")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    args = ap.parse_args(argv)

    import os

    from pipeline.config import Settings
    from pipeline.data import load_dataset
    from pipeline.data.splits import make_split
    from pipeline.data.synth import SynthConfig, write_synthetic
    from pipeline.training import protocol
    from pipeline.training.config import load_experiment

    threads = args.threads or len(os.sched_getaffinity(0))
    info = machine_info()
    print(describe(info), flush=True)
    work = Path(tempfile.mkdtemp(prefix="ramer-bench-train-", dir=args.workdir))
    try:
        t0 = time.perf_counter()
        data = args.dataset
        if data is None:
            data = work / "synth"
            write_synthetic(data, SynthConfig(labeled=args.labeled, unlabeled=args.unlabeled))
            print(f"generated {data} in {time.perf_counter() - t0:.0f} s", flush=True)
        ds = load_dataset(data)
        cfg = load_experiment(None, dataset=str(data), experiment="bench", folds=[0], runs=1,
                              **{"train.epochs": args.epochs, "pretrain.epochs": args.pretrain_epochs,
                                 "pretrain.patience": args.pretrain_epochs + 1, "train.patience": args.epochs + 1})
        settings = Settings(_env_file=None, data_dir=work / "data", results_dir=work / "results",
                            runs_dir=work / "runs", qdrant_engine="edge", qdrant_url=None, threads=threads,
                            device="cpu")
        load0 = load_average()
        t0 = time.perf_counter()
        out = protocol.run_experiment(cfg, settings)
        protocol.write_results(out, cfg, settings)
        wall = time.perf_counter() - t0
        run_dir = settings.runs_dir / "bench" / "f0_r0"
        fits = {json.loads(p.read_text())["system"]: json.loads(p.read_text()) for p in run_dir.glob("*.fit.json")}
        split = make_split(ds.y, ds.labeled, ds.folds, 0, 0, cfg.seed)
        tm = out.timings
        rows = stage_rows(ds, split, cfg, tm, fits)
        n_ingest = int(np.count_nonzero(ds.labeled)) + int(np.count_nonzero(~ds.labeled))
        if "ingest" in tm:
            rows.insert(2, {"stage": "2 ingest (embedded edge)", "seconds": tm["ingest"],
                         "samples/s": n_ingest / tm["ingest"], "unit": "points (3 vectors + payload)"})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ramer = fits.get("ramer", {})
    pre = tm.get("retrieval", 0.0)
    stage3_ramer = pre + ramer.get("seconds", 0.0)
    share = (pre + ramer.get("retrieval_seconds", 0.0)) / stage3_ramer if stage3_ramer else float("nan")
    result = {
        "script": "bench_training.py", "command": "python benchmarks/bench_training.py " + " ".join(argv or sys.argv[1:]),
        "machine": info, "load_average_at_start": load0, "dataset": {"rows": len(ds), "labeled": int(ds.labeled.sum()),
                                                                  "dims": dict(zip(ds.modalities, ds.manifest.dims))},
        "epochs": {"pretrain": args.pretrain_epochs, "train": args.epochs}, "threads": threads,
        "timings": tm, "fit": {k: {kk: v[kk] for kk in ("seconds", "fit_seconds", "retrieval_seconds", "epochs_run")}
                                for k, v in fits.items()},
        "rows": rows, "wall_seconds_one_fold_run": wall,
        "retrieval_share_of_stage3_ramer": share,
        "retrieval_seconds": {"precompute": pre, "during_fit": ramer.get("retrieval_seconds", 0.0)},
        "peak_rss_mib": peak_rss_mib(),
    }
    md = md_table(rows, ["stage", "seconds", "samples/s", "unit"])
    md += (f"\nOne fold x one run: {wall:.0f} s wall ({args.pretrain_epochs} pretrain / {args.epochs} train epochs, "
           f"{threads} threads); the default protocol (5 folds x 3 runs, 40 epochs) is 15 such runs with "
           f"~{40 / max(1, args.epochs):.0f}x the epochs.  \nRAMER stage 3: {100 * share:.1f} % of its time in retrieval "
           f"({pre:.2f} s neighbour precompute + {ramer.get('retrieval_seconds', 0.0):.2f} s fusion during fit, "
           f"of {stage3_ramer:.1f} s).\n")
    save("training", result, md, args.out)
    return result


def stage_rows(ds: Any, split: Any, cfg: Any, tm: dict[str, float], fits: dict[str, dict]) -> list[dict[str, Any]]:
    present = ds.present_matrix()  # (N, M)
    n_mod = present.shape[1]
    pre_samples = int(present[split.train].sum()) * cfg.pretrain.epochs
    rows = [{"stage": "1 pretrain (3 encoders)", "seconds": tm.get("pretrain", float("nan")),
             "samples/s": pre_samples / tm["pretrain"] if tm.get("pretrain") else float("nan"),
             "unit": "train-sample passes (val passes in the time)"}]
    if tm.get("index"):
        rows.append({"stage": "2 encode + FAISS build", "seconds": tm["index"],
                     "samples/s": len(ds) * n_mod / tm["index"], "unit": "rows x modalities encoded"})
    for name, fit in fits.items():
        rows.append({"stage": f"3 train {name}", "seconds": fit["seconds"],
                     "samples/s": len(split.train) * fit["epochs_run"] / fit["fit_seconds"],
                     "unit": "train-sample passes (val passes in the time)"})
    if "retrieval" in tm:
        rows.append({"stage": "3 retrieval precompute (ramer)", "seconds": tm["retrieval"],
                     "samples/s": (len(split.train) + len(split.val) + len(split.test)) * n_mod / tm["retrieval"],
                     "unit": "top-K queries"})
    if tm.get("evaluate"):
        rows.append({"stage": "4 evaluate", "seconds": tm["evaluate"],
                     "samples/s": len(split.test) * 7 * len(fits) / tm["evaluate"], "unit": "test predictions"})
    return rows


if __name__ == "__main__":
    main()
