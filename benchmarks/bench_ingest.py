"""Ingest benchmark: points/s into the hidden-feature store, per upsert batch size.

Each point is what RAMER's stage 2 writes: three named 256-d vectors (audio, visual,
text; ~10% of samples lack one) and the full payload (sample, dataset, split, fold,
label, label_name, scale tags, modalities), through `HiddenFeatureStore.upsert_hidden`
into a fresh collection made from the packaged spec (payload indexes first).
- embedded (qdrant-edge-py) always, in a folder on the same disk as --workdir;
- a Qdrant server only when QDRANT_URL is set; there parallelism (threads, each
  upserting its share of the rows) is also measured.

    python benchmarks/bench_ingest.py                    # 50,000 points, batches 256/1024/4096
    QDRANT_URL=http://localhost:6333 python benchmarks/bench_ingest.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, machine_info, md_table, peak_rss_mib, save

MODS = ("audio", "visual", "text")
CLASSES = ["neutral", "angry", "happy", "sad", "worried", "surprise"]


def points(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, dict[str, Any], dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    samples = np.array([f"s{i:07d}" for i in range(n)])
    labeled = np.arange(n) < max(1, n // 24)  # MER2024's 5,030 of 120,625
    label = np.where(labeled, rng.integers(0, len(CLASSES), n), -1)
    payload = {
        "split": np.where(labeled, np.array(["train", "val", "test"])[rng.integers(0, 3, n)], "unlabeled"),
        "fold": np.where(labeled, rng.integers(0, 5, n), -1),
        "label": label,
        "label_name": np.where(labeled, np.array(CLASSES)[np.maximum(label, 0)], "unlabeled"),
        "scale": [["small", "medium", "turbo"] if lab else ["large", "turbo"] for lab in labeled],
    }
    vectors = {m: rng.standard_normal((n, d), dtype=np.float32) for m in MODS}
    present = {m: rng.random(n) > 0.1 for m in MODS}
    present["text"] |= ~(present["audio"] | present["visual"])
    return samples, payload, vectors, present


def measure(store: Any, name: str, data: tuple, batch: int, parallel: int) -> float:
    samples, payload, vectors, present = data
    n = len(samples)
    if name in store.list_collections():
        store.drop(name)
    store.apply(name, list(MODS), dim=vectors["audio"].shape[1])
    parts = np.array_split(np.arange(n), parallel)

    def part(rows: np.ndarray) -> int:
        sl = slice(int(rows[0]), int(rows[-1]) + 1)
        return store.upsert_hidden(name, "bench", samples[sl], {k: v[sl] for k, v in payload.items()},
                                   {m: v[sl] for m, v in vectors.items()}, {m: p[sl] for m, p in present.items()},
                                   batch_size=batch, progress=False)

    t0 = time.perf_counter()
    if parallel == 1:
        part(parts[0])
    else:
        with ThreadPoolExecutor(parallel) as pool:
            list(pool.map(part, parts))
    secs = time.perf_counter() - t0
    assert store.count(name) == n, "every point stored"
    return secs


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=50_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--batches", default="256,1024,4096", help="upsert batch sizes")
    ap.add_argument("--parallel", default="1,2,4", help="server only: upload threads")
    ap.add_argument("--workdir", type=Path, default=None, help="where the embedded store goes (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    args = ap.parse_args(argv)
    from pipeline.config import Settings
    from pipeline.store import HiddenFeatureStore

    info = machine_info()
    print(describe(info), flush=True)
    data = points(args.points, args.dim)
    batches = [int(b) for b in args.batches.split(",")]
    rows: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="ramer-bench-ingest-", dir=args.workdir))
    try:
        settings = Settings(_env_file=None, qdrant_path=work / "qdrant", qdrant_engine="edge", qdrant_url=None)
        with HiddenFeatureStore.open(settings) as st:
            for b in batches:
                secs = measure(st, "bench_ingest", data, b, 1)
                disk = st.info("bench_ingest").disk_bytes or 0
                rows.append({"store": "qdrant edge (embedded)", "points": args.points, "batch": b, "parallel": 1,
                             "seconds": secs, "points/s": args.points / secs, "bytes/point": disk / args.points})
                print(f"edge   batch {b:>5}: {args.points / secs:9,.0f} points/s ({secs:.1f} s)", flush=True)
        url = os.environ.get("QDRANT_URL")
        if url:
            server = Settings(qdrant_url=url)
            with HiddenFeatureStore.open(server, timeout=60) as st:
                for b in batches:
                    for p in [int(x) for x in args.parallel.split(",")]:
                        secs = measure(st, "ramer_bench_ingest", data, b, p)
                        rows.append({"store": f"qdrant server {url}", "points": args.points, "batch": b,
                                     "parallel": p, "seconds": secs, "points/s": args.points / secs})
                        print(f"server batch {b:>5} x{p}: {args.points / secs:9,.0f} points/s", flush=True)
                st.drop("ramer_bench_ingest")
        else:
            print("QDRANT_URL not set: server ingest not measured", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"script": "bench_ingest.py", "command": "python benchmarks/bench_ingest.py " + " ".join(argv or sys.argv[1:]),
              "machine": info, "rows": rows, "store_folder": str(work), "peak_rss_mib": peak_rss_mib(),
              "point": "3 named 256-d vectors (~10% of samples lack one) + full payload"}
    md = md_table(rows, ["store", "points", "batch", "parallel", "seconds", "points/s", "bytes/point"])
    save("ingest", result, md, args.out)
    return result


if __name__ == "__main__":
    main()
