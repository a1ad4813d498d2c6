"""Training benchmark: samples/s per RAMER stage for one (fold, run) at the default size.

Runs `pipeline.experiment.protocol.run_experiment` (what `ramer run` runs) on one fold and
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
    ap.add_argument("--name", default="training", help="result file name (<out>/<name>.json/.md)")
    ap.add_argument("--systems", default=None, help="';'-separated systems (default: the experiment default)")
    ap.add_argument("--finetune", action="store_true", help="stage 3 with fine-tuned encoders (live retrieval)")
    ap.add_argument("--preset", default=None, help="config preset, e.g. paper (as `ramer run --preset`)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra experiment option, e.g. retrieval.refresh_every=1 (repeatable)")
    args = ap.parse_args(argv)

    import os

    from pipeline.config import Settings
    from pipeline.data import load_dataset
    from pipeline.data.splits import make_split
    from pipeline.data.synth import SynthConfig, write_synthetic
    from pipeline.experiment import protocol
    from pipeline.experiment.results import write_results
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
        extra = {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in args.set)}
        cfg = load_experiment(None, preset=args.preset, dataset=str(data), experiment="bench", folds=[0], runs=1,
                              systems=args.systems.split(";") if args.systems else None,
                              **{"train.epochs": args.epochs, "pretrain.epochs": args.pretrain_epochs,
                                 "pretrain.patience": args.pretrain_epochs + 1, "train.patience": args.epochs + 1,
                                 "retrieval.finetune_encoders": args.finetune or None, **extra})
        settings = Settings(_env_file=None, data_dir=work / "data", results_dir=work / "results",
                            runs_dir=work / "runs", qdrant_engine="edge", qdrant_url=None, threads=threads,
                            device="cpu")
        load0 = load_average()
        gemm0 = gemm_rate(threads)
        t0 = time.perf_counter()
        out = protocol.run_experiment(cfg, settings)
        write_results(out, cfg, settings)
        wall = time.perf_counter() - t0
        run_dir = settings.runs_dir / "bench" / "f0_r0"
        fits = {json.loads(p.read_text())["system"]: json.loads(p.read_text()) for p in run_dir.glob("*.fit.json")}
        split = make_split(ds.y, ds.labeled, ds.folds, 0, 0, cfg.seed)
        tm = out.timings
        rows = stage_rows(ds, split, cfg, tm, fits)
        gemm = max(gemm0, gemm_rate(threads))  # before and after the run: the better one
        add_gemm_gap(rows, model_flops(ds, split, cfg, settings, fits), gemm)
        n_ingest = int(np.count_nonzero(ds.labeled)) + int(np.count_nonzero(~ds.labeled))
        if "ingest" in tm:
            rows.insert(2, {"stage": "2 ingest (embedded edge)", "seconds": tm["ingest"],
                         "samples/s": n_ingest / tm["ingest"], "unit": "points (3 vectors + payload)"})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ramers = [f for label, f in fits.items() if label.startswith("ramer")]  # every trained RAMER variant
    ramer = {k: sum(f.get(k, 0.0) for f in ramers) for k in ("seconds", "retrieval_seconds")}
    pre = tm.get("retrieval", 0.0)
    stage3_ramer = pre + ramer.get("seconds", 0.0)
    share = (pre + ramer.get("retrieval_seconds", 0.0)) / stage3_ramer if stage3_ramer else float("nan")
    result = {
        "script": "bench_training.py", "command": "python benchmarks/bench_training.py " + " ".join(argv or sys.argv[1:]),
        "machine": info, "load_average_at_start": load0, "dataset": {"rows": len(ds), "labeled": int(ds.labeled.sum()),
                                                                  "dims": dict(zip(ds.modalities, ds.manifest.dims))},
        "epochs": {"pretrain": args.pretrain_epochs, "train": args.epochs}, "threads": threads,
        "timings": tm, "fit": {k: {kk: v[kk] for kk in ("seconds", "fit_seconds", "retrieval_seconds", "epochs_run", "val_score",
                                          "best_epoch")}
                                for k, v in fits.items()},
        "rows": rows, "wall_seconds_one_fold_run": wall, "gemm_flops_per_s": gemm,
        "retrieval_share_of_stage3_ramer": share,
        "retrieval_seconds": {"precompute": pre, "during_fit": ramer.get("retrieval_seconds", 0.0)},
        "peak_rss_mib": peak_rss_mib(),
    }
    md = md_table(rows, ["stage", "seconds", "samples/s", "unit", "MFLOP/sample", "GFLOP/s", "x below GEMM"])
    md += (f"\nGEMM rate of this machine ({threads} threads, torch float32 matmul, best of 3 shapes): "
           f"{gemm / 1e9:.1f} GFLOP/s. 'x below GEMM' = that rate / (model FLOPs per sample x samples/s); "
           "FLOPs counted by torch's FlopCounterMode on one batch (matmuls; retrieval search not counted).\n")
    md += (f"\nOne fold x one run: {wall:.0f} s wall ({args.pretrain_epochs} pretrain / {args.epochs} train epochs, "
           f"{threads} threads); the default protocol (5 folds x 3 runs, 40 epochs) is 15 such runs with "
           f"~{40 / max(1, args.epochs):.0f}x the epochs.  \nRAMER stage 3: {100 * share:.1f} % of its time in retrieval "
           f"({pre:.2f} s neighbour precompute + {ramer.get('retrieval_seconds', 0.0):.2f} s fusion during fit, "
           f"of {stage3_ramer:.1f} s).\n")
    save(args.name, result, md, args.out)
    return result


def gemm_rate(threads: int) -> float:
    """Best float32 matmul FLOP/s of a few shapes like the models' (torch, `threads`)."""
    import torch

    torch.set_num_threads(threads)
    best = 0.0
    for m, k, n in ((128, 1024, 256), (256, 256, 512), (512, 1024, 1024)):
        a, b = torch.randn(m, k), torch.randn(k, n)
        for _ in range(3):
            a @ b
        reps = max(3, int(2e9 // (2 * m * k * n)))
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * m * k * n * reps / (time.perf_counter() - t0))
    return best


def _count(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def model_flops(ds: Any, split: Any, cfg: Any, settings: Any, fits: dict[str, dict]) -> dict[str, float]:
    """FLOPs per sample: a stage-1 training pass (mean over modalities), a stage-2 encode
    (mean), and a stage-3 training pass per system, counted on one batch of each."""
    import torch

    from pipeline.data.missing import condition_matrix
    from pipeline.models.registry import model_class
    from pipeline.training.fold_run import FoldRun
    from pipeline.training.stages import fold_context, model_spec
    from pipeline.training.systems import parse_system
    from pipeline.training.trainer import ConditionBatches

    ctx = fold_context(ds, split, model_spec(ds), condition_matrix(ds.manifest), "cpu",
                       settings.runs_dir / "bench" / "f0_r0", cfg.seed, cfg.preprocess)
    fr = FoldRun(ctx, cfg)
    b = cfg.train.batch_size
    batch = next(ConditionBatches(ctx.bank, split.train, split.val, ctx.conds).epoch(
        np.random.default_rng(0), split.train[: b], b, False))
    out = {"pretrain": 0.0, "index": 0.0}
    for i, enc in enumerate(fr.encoders()):
        enc.train()
        x = batch.x[i]
        out["pretrain"] += _count(lambda e=enc, x=x: e.classify(e(x)).sum().backward()) / b / len(batch.x)
        with torch.no_grad():  # train mode: torch's fused eval kernel is invisible to the counter
            out["index"] += _count(lambda e=enc, x=x: e(x)) / b / len(batch.x)
        enc.eval()
    for label in fits:  # the trained variants, by their labels
        text = "ramer(query_space=hidden,fill_norm=unit)" if label.startswith("ramer [") else label
        system = parse_system(text, cfg.retrieval)  # 'ramer [hidden, unit]' labels a variant of these
        if system.candidates or not model_class(system.model).uses_stage1_encoders:
            continue  # a selection (its variants are listed) or a closed-form linear fit
        model = fr.build_model(system).train()
        out[label] = _count(lambda m=model: m(batch).logits.sum().backward()) / b
    return out


def add_gemm_gap(rows: list[dict[str, Any]], flops: dict[str, float], gemm: float) -> None:
    """Each stage row with its model FLOPs per sample, achieved FLOP/s and gap to GEMM."""
    for row in rows:
        stage = row["stage"]
        key = ("pretrain" if stage.startswith("1 ") else "index" if stage.startswith("2 encode")
               else stage[len("3 train "):] if stage.startswith("3 train ") else None)
        if key not in flops or not flops[key]:
            continue
        achieved = flops[key] * row["samples/s"]
        row.update({"MFLOP/sample": flops[key] / 1e6, "GFLOP/s": achieved / 1e9, "x below GEMM": gemm / achieved})


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
