"""Peak memory per stage of the commands users run, at MER2024's feature dims, per row.

Two phases, each in its own process so each peak is its own:
1. synth: `ramer data synth`'s path (`write_synthetic_streamed`, then the dataset read
   back, which builds its memory-mapped features once);
2. run: `ramer run --folds 0 --runs 1` (default systems) on that dataset, with a thread
   sampling /proc/self/status every 50 ms and booking each sample to the stage the
   protocol reports (load, stages 1-2, each system's training, results).
Resident memory is split into anonymous (the process's own) and file-backed pages (the
memory-mapped features: shared by every process that maps them, and given back by the
kernel under pressure). Bytes per row = peak / rows: what a larger dataset adds.

    python benchmarks/bench_memory.py                       # 20,000 rows: safe on a shared 24 GB machine
    python benchmarks/bench_memory.py --unlabeled 115595    # MER2024's size (5,030 + 115,595 rows)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Self

from machine import describe, load_average, machine_info, md_table, save

DIMS = {"audio": 1024, "visual": 768, "text": 5120}
MIB = 2**20


class StageMemory:
    """Samples this process's resident memory and keeps each stage's peak."""

    def __init__(self, period: float = 0.05) -> None:
        self.stage, self.period = "start", period
        self.peaks: dict[str, dict[str, float]] = {}
        self.started: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Self:
        self.enter("start")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def enter(self, stage: str) -> None:
        self.sample()  # the last sample of the stage before
        self.stage = stage
        self.started.setdefault(stage, time.perf_counter())
        self.sample()

    def sample(self) -> None:
        now = _status()
        peak = self.peaks.setdefault(self.stage, {"rss": 0.0, "anon": 0.0, "file": 0.0})
        if now["rss"] >= peak["rss"]:
            peak.update(now)

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            self.sample()


def _status() -> dict[str, float]:
    """Resident MiB now: total, anonymous and file-backed (mapped features)."""
    fields = {"VmRSS:": "rss", "RssAnon:": "anon", "RssFile:": "file"}
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key = line.split(maxsplit=1)[0]
            if key in fields:
                out[fields[key]] = int(line.split()[1]) / 1024
    return out


def phase_synth(data: Path, labeled: int, unlabeled: int) -> dict[str, Any]:
    from pipeline.data.dataset import load_dataset
    from pipeline.data.synth import SynthConfig
    from pipeline.data.synth_stream import write_synthetic_streamed

    with StageMemory() as mem:
        mem.enter("synth: generate + write (streamed)")
        write_synthetic_streamed(data, SynthConfig(labeled=labeled, unlabeled=unlabeled, dims=DIMS))
        mem.enter("synth: read back (builds features.mmap/)")
        load_dataset(data, validate=False)
    return {"peaks": mem.peaks, "seconds": _durations(mem)}


def phase_run(data: Path, work: Path, jobs: int) -> dict[str, Any]:
    from pipeline.config import Settings
    from pipeline.data.dataset import load_dataset
    from pipeline.experiment import protocol
    from pipeline.experiment.results import write_results
    from pipeline.training.config import ExperimentConfig

    settings = Settings(_env_file=None, results_dir=work / "results", runs_dir=work / "runs",
                        qdrant_path=work / "qdrant", qdrant_url=None)
    cfg = ExperimentConfig(experiment="memory", dataset=str(data), folds=[0], runs=1)
    with StageMemory() as mem:
        mem.enter("load (mapped features, validated)")
        load_dataset(data)
        stage = lambda text: mem.enter(text.split(" · ", 1)[-1].split(" · ")[0])
        out = protocol.run_experiment(cfg, settings, protocol.Progress(on_stage=stage), fresh=True, jobs=jobs)
        mem.enter("results (report, collection view)")
        write_results(out, cfg, settings)
    return {"peaks": mem.peaks, "seconds": _durations(mem), "timings": out.timings,
            "precompute_tflop": _precompute_tflop(cfg, load_dataset(data, validate=False), cfg.encoder.hidden),
            "gemm_gflops": _gemm_gflops()}


def _precompute_tflop(cfg, ds, hidden: int) -> float:
    """Exact products of the unit's neighbour precompute: every labeled row of fold 0
    queries the candidates of each modality, once in the hidden space and once in the
    scaled feature space (RAMER's feature queries and lr-knn share that search)."""
    import numpy as np

    from pipeline.data.scales import candidate_mask
    from pipeline.data.splits import make_split

    split = make_split(ds.y, ds.labeled, ds.folds, 0, 0, cfg.seed)
    cand = candidate_mask(ds.samples, ds.labeled, split.train, cfg.retrieval.scale)
    queries = len(np.concatenate([split.train, split.val, split.test]))
    flop = sum(2 * queries * int((cand & ds.present[m]).sum()) * (d + hidden)
               for m, d in zip(ds.modalities, ds.manifest.dims))
    return flop / 1e12


def _gemm_gflops(n: int = 4096, d: int = 5120, tries: int = 3) -> float:
    """This machine's float32 GEMM rate now, at the precompute's shape (queries x dims x block)."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((n, d), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((d, n), dtype=np.float32)
    best = float("inf")
    for _ in range(tries):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n * n * d / best / 1e9


def _durations(mem: StageMemory) -> dict[str, float]:
    names = list(mem.started)
    ends = [mem.started[n] for n in names[1:]] + [time.perf_counter()]
    return {n: round(e - mem.started[n], 1) for n, e in zip(names, ends)}


def _child(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"phase {args[:2]} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _rows(phase: dict[str, Any], n: int) -> list[dict[str, Any]]:
    out = []
    for stage, peak in phase["peaks"].items():
        if stage == "start":
            continue
        out.append({"stage": stage, "seconds": phase["seconds"].get(stage, ""), "peak RSS MiB": peak["rss"],
                    "anon MiB": peak["anon"], "file MiB": peak["file"],
                    "bytes/row": round(peak["rss"] * MIB / n)})
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labeled", type=int, default=5030)
    ap.add_argument("--unlabeled", type=int, default=14970, help="MER2024: 115595 (default: 20,000 rows in all)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=None, help="dataset, store and runs go here (default: temp)")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    ap.add_argument("--phase", choices=["synth", "run"], help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.phase == "synth":
        print(json.dumps(phase_synth(args.data, args.labeled, args.unlabeled)))
        return {}
    if args.phase == "run":
        print(json.dumps(phase_run(args.data, args.workdir, args.jobs)))
        return {}
    info = machine_info()
    print(describe(info), flush=True)
    work = Path(tempfile.mkdtemp(prefix="ramer-memory-", dir=args.workdir))
    data = work / "mer"
    n = args.labeled + args.unlabeled
    try:
        load0 = load_average()
        print(f"synth: {n:,} rows x {sum(DIMS.values()):,} dims ...", flush=True)
        synth = _child(["--phase", "synth", "--data", str(data), "--labeled", str(args.labeled),
                        "--unlabeled", str(args.unlabeled)])
        print(f"run: fold 0, run 0, default systems, --jobs {args.jobs} ...", flush=True)
        run = _child(["--phase", "run", "--data", str(data), "--workdir", str(work), "--jobs", str(args.jobs)])
        load1 = load_average()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = _rows(synth, n) + _rows(run, n)
    raw = n * sum(DIMS.values()) * 4
    result = {"script": "bench_memory.py", "command": "python benchmarks/bench_memory.py " + " ".join(argv or sys.argv[1:]),
              "machine": info, "load_average": [load0, load1], "rows": n, "dims": DIMS, "jobs": args.jobs,
              "raw_feature_bytes": raw, "synth": synth, "run": run, "table": rows}
    md = md_table(rows, ["stage", "seconds", "peak RSS MiB", "anon MiB", "file MiB", "bytes/row"])
    md += (f"\n{n:,} rows ({args.labeled:,} labeled), dims {DIMS}: raw features {raw / 2**30:.2f} GiB "
           f"({raw / n:,.0f} bytes/row); --jobs {args.jobs}; load average {load0} -> {load1}. "
           "file MiB: memory-mapped features (shared, reclaimable); bytes/row: peak RSS / rows.\n")
    pre = run["timings"].get("retrieval", 0.0)
    md += (f"Neighbour precompute: {run['precompute_tflop']:.2f} TFLOP of exact products in {pre:.1f} s = "
           f"{run['precompute_tflop'] * 1e3 / max(pre, 1e-9):.0f} GFLOP/s; float32 GEMM on this machine now: "
           f"{run['gemm_gflops']:.0f} GFLOP/s.\n")
    print(md)
    save("bench_memory", result, md, args.out)
    return result


if __name__ == "__main__":
    main()
