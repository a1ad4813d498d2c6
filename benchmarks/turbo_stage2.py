"""Paper scale: RAMER stage 2 (encode + ingest + fast path) on a turbo-size dataset.

MER2024's turbo database: 5,030 labeled + 115,595 unlabeled samples, inputs
1024 / 768 / 5120-d (120,625 x 6,912 float32 = 3.3 GB of raw features). Two phases, each
in its own process so each peak RSS (getrusage) is its own:
1. generate: `write_synthetic_streamed` writes the dataset chunk by chunk (4,096 rows);
2. stage 2: stream the parquet in row batches (never more than --chunk raw rows in
   memory), encode each modality with the stage-1 encoder architecture (default
   EncoderConfig, freshly initialised: stage 2's cost does not depend on the weights),
   upsert every chunk into the fold's embedded (edge) collection with the full payload,
   then build the FAISS fast path over the allowed candidates (train + unlabeled), run
   the stage-3 neighbour precompute for the labeled rows, and rebuild one modality's
   index from the store of record (`fetch_matrix`) to price that path too.
Only the 256-d hidden vectors (120,625 x 3 x 256 float32 = 370 MB) live for the whole run.

    python benchmarks/turbo_stage2.py                    # ~10+ min on 2 cores
    python benchmarks/turbo_stage2.py --unlabeled 20000  # smaller try-out
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, load_average, machine_info, md_table, peak_rss_mib, save

DIMS = {"audio": 1024, "visual": 768, "text": 5120}


def phase_generate(out: Path, labeled: int, unlabeled: int, seed: int) -> dict[str, Any]:
    from pipeline.data.synth import SynthConfig
    from pipeline.data.synth_stream import write_synthetic_streamed

    t0 = time.perf_counter()
    write_synthetic_streamed(out, SynthConfig(labeled=labeled, unlabeled=unlabeled, dims=DIMS, seed=seed))
    return {"seconds": time.perf_counter() - t0, "peak_rss_mib": peak_rss_mib(),
            "features_bytes": (out / "features.parquet").stat().st_size}


def phase_stage2(data: Path, store_dir: Path, chunk: int, threads: int) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from pipeline.config import Settings
    from pipeline.data.dataset import Dataset, _fixed_list_to_numpy
    from pipeline.data.scales import candidate_mask
    from pipeline.data.schema import FEATURES, MANIFEST, Manifest
    from pipeline.data.splits import make_split
    from pipeline.models.encoders import EncoderConfig, UnimodalEncoder
    from pipeline.retrieval.fill import RetrievalFiller
    from pipeline.retrieval.retriever import ModalityRetriever, fast_index_from_store
    from pipeline.store import HiddenFeatureStore, collection_name, ingest_hidden

    torch.set_num_threads(threads)
    t_all = time.perf_counter()
    man = Manifest.load(data / MANIFEST)
    # pre_buffer=False: with the default, iter_batches kept every batch read so far
    # (arrow memory grew by ~110 MB per 4,096-row batch, 6.8 GB peak at turbo size)
    pf = pq.ParquetFile(data / FEATURES, pre_buffer=False)
    meta = pf.read(columns=["sample", "label", "fold"])  # per-row scalars only
    n = meta.num_rows
    labeled = meta.column("label").is_valid().to_numpy(zero_copy_only=False)
    y = meta.column("label").fill_null(-1).to_numpy().astype(np.int64)
    folds = meta.column("fold").to_numpy().astype(np.int8)
    samples = meta.column("sample").to_numpy(zero_copy_only=False).astype(str)
    del meta
    split = make_split(y, labeled, folds, 0, 0, man.seed)
    mods = man.modality_names
    present = {m: np.zeros(n, bool) for m in mods}
    # A Dataset without feature matrices: ingest_hidden reads only rows' scalars and presence.
    ds = Dataset(man, data, samples, y, labeled, folds, features={}, present=present)
    torch.manual_seed(0)
    enc_cfg = EncoderConfig()
    encoders = {m.name: UnimodalEncoder(m.dim, len(man.classes), enc_cfg).eval() for m in man.modalities}
    hidden = {m: np.zeros((n, enc_cfg.hidden), np.float32) for m in mods}  # (N, 256) each
    name = collection_name(man.name, "turbo", 0)
    settings = Settings(_env_file=None, qdrant_path=store_dir, qdrant_engine="edge", qdrant_url=None)
    t = {"read": 0.0, "encode": 0.0, "ingest": 0.0}
    rss_after_stream = 0.0
    with HiddenFeatureStore.open(settings) as store:
        start = 0
        t0 = time.perf_counter()
        for batch in pf.iter_batches(batch_size=chunk, columns=mods):
            b = batch.num_rows
            rows = np.arange(start, start + b)
            x = {}
            for m, spec in zip(mods, man.modalities):
                x[m], present[m][rows] = _fixed_list_to_numpy(pa.chunked_array([batch.column(m)]), spec.dim, m)
            t["read"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            with torch.no_grad():
                for m in mods:
                    hidden[m][rows] = encoders[m](torch.from_numpy(np.array(x[m]))).numpy()  # (b, 256)
            del x, batch
            t["encode"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            ingest_hidden(store, name, ds, split, {m: hidden[m][rows] for m in mods}, rows=rows,
                          batch_size=1024, progress=False)
            t["ingest"] += time.perf_counter() - t0
            start += b
            if start // chunk % 5 == 0:
                print(f"  {start:,}/{n:,} rows  read {t['read']:.0f} s  encode {t['encode']:.0f} s  "
                      f"ingest {t['ingest']:.0f} s  rss {peak_rss_mib():,.0f} MiB", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
        rss_after_stream = peak_rss_mib()
        t0 = time.perf_counter()
        store.backend.flush()
        points = store.count(name)
        disk = store.info(name).disk_bytes
        t["flush+count"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, mat = fast_index_from_store(store, name, "text", scale="turbo", device="cpu")
        t["fast path of 1 modality from the store (fetch_matrix + fit)"] = time.perf_counter() - t0
        from_store_rows = len(mat)
        del mat
    t0 = time.perf_counter()
    cand = candidate_mask(samples, labeled, split.train, "turbo")
    retr = ModalityRetriever(k=10, device="cpu", threads=threads).fit(hidden, present, cand)
    t["fast path build (3 modalities, FAISS flat)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    filler = RetrievalFiller(retr, mods, hidden, present, k=10, keys=hidden)
    filler.precompute(np.flatnonzero(labeled))
    t["neighbour precompute (labeled rows x 3 modalities, K=10)"] = time.perf_counter() - t0
    return {"rows": n, "points": points, "candidates": int(cand.sum()), "disk_bytes": disk,
            "from_store_rows": from_store_rows, "timings": t, "seconds": time.perf_counter() - t_all,
            "peak_rss_mib": peak_rss_mib(), "peak_rss_after_stream_mib": rss_after_stream, "chunk": chunk,
            "encoder": "EncoderConfig() defaults, untrained (seeded)", "threads": threads}


def _child(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"phase {args[:2]} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labeled", type=int, default=5030)
    ap.add_argument("--unlabeled", type=int, default=115_595)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk", type=int, default=4096, help="raw rows in memory at a time (stage 2)")
    ap.add_argument("--threads", type=int, default=None, help="torch/FAISS threads (default: all cores)")
    ap.add_argument("--workdir", type=Path, default=None, help="dataset + store go here (default: temp dir, removed)")
    ap.add_argument("--keep", action="store_true", help="keep the dataset and store")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    ap.add_argument("--phase", choices=["generate", "stage2"], help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    threads = args.threads or len(os.sched_getaffinity(0))
    if args.phase == "generate":
        print(json.dumps(phase_generate(args.data, args.labeled, args.unlabeled, args.seed)))
        return {}
    if args.phase == "stage2":
        print(json.dumps(phase_stage2(args.data, args.store, args.chunk, threads)))
        return {}
    info = machine_info()
    print(describe(info), flush=True)
    work = Path(tempfile.mkdtemp(prefix="ramer-turbo-", dir=args.workdir))
    data, store = work / "turbo", work / "qdrant"
    try:
        load0 = load_average()
        n = args.labeled + args.unlabeled
        print(f"generating {n:,} rows x {sum(DIMS.values()):,} dims into {data} ...", flush=True)
        gen = _child(["--phase", "generate", "--data", str(data), "--labeled", str(args.labeled),
                      "--unlabeled", str(args.unlabeled), "--seed", str(args.seed)])
        print(f"  {gen['seconds']:.0f} s, peak RSS {gen['peak_rss_mib']:,.0f} MiB", flush=True)
        load1 = load_average()
        print("stage 2 (encode + ingest + fast path) ...", flush=True)
        st2 = _child(["--phase", "stage2", "--data", str(data), "--store", str(store), "--chunk", str(args.chunk),
                      "--threads", str(threads)])
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    raw = n * sum(DIMS.values()) * 4
    rows = [{"step": "generate (streamed parquet)", "seconds": gen["seconds"], "rows/s": n / gen["seconds"],
             "peak RSS MiB": gen["peak_rss_mib"]}]
    for k, v in st2["timings"].items():
        per = n if k in ("read", "encode", "ingest") else None
        rows.append({"step": f"stage 2: {k}", "seconds": v, "rows/s": (per / v) if per and v else "",
                     "peak RSS MiB": ""})
    rows.append({"step": "stage 2 total", "seconds": st2["seconds"], "rows/s": n / st2["seconds"],
                 "peak RSS MiB": st2["peak_rss_mib"]})
    result = {"script": "turbo_stage2.py", "command": "python benchmarks/turbo_stage2.py " + " ".join(argv or sys.argv[1:]),
              "machine": info, "load_average_at_start": load0, "load_average_before_stage2": load1,
              "rows": n, "dims": DIMS, "raw_feature_bytes": raw, "generate": gen, "stage2": st2, "table": rows}
    md = md_table(rows, ["step", "seconds", "rows/s", "peak RSS MiB"])
    md += (f"\n{n:,} rows ({args.labeled:,} labeled), raw features {raw / 2**30:.2f} GiB "
           f"(parquet {gen['features_bytes'] / 2**30:.2f} GiB); chunk {args.chunk} rows; "
           f"{st2['points']:,} points in the edge collection, {(st2['disk_bytes'] or 0) / 2**20:,.0f} MiB on disk "
           f"({(st2['disk_bytes'] or 0) / max(1, st2['points']):,.0f} B/point); FAISS candidates {st2['candidates']:,}; "
           f"{threads} threads; encoders: {st2['encoder']}.\n")
    save("turbo_stage2", result, md, args.out)
    return result


if __name__ == "__main__":
    main()
