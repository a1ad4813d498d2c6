"""Retrieval benchmark: batched exact top-K against the machine's compute limit.

For N database vectors and B queries (d = 256, K = 10), on the same synthetic vectors:
- `matmul`: the bare float32 product Q @ X.T of the same shapes (numpy BLAS, output
  buffer preallocated, blocked over N so B = 4,096 fits) - the compute limit;
- `matmul+topk`: that plus numpy argpartition top-K (what a hand-written search costs);
- `fast path`: `FastIndex.search` exactly as training calls it (cosine, self-exclusion
  by id, so FAISS returns K+1);
- `qdrant edge`: the embedded store's exact filtered search (the leakage filter of
  `HiddenFeatureStore.search`), one query per call: a few queries, extrapolated;
- `ivf`: an approximate FAISS IVF-Flat index for N >= --approx-min, with recall@10
  against the exact result and its build time.
- with `--device cuda`: the same search on the GPU (`FastIndex` on the device, queries
  sent from and results returned to host memory, as training calls it) beside the bare
  torch product of the same shapes there (its limit; float32, TF32 off, data resident).
Vectors: 64 clusters + 16-d within-cluster variation + isotropic noise, L2-normalised (a
stand-in for trained hidden features; only the recall depends on it).

    python benchmarks/bench_retrieval.py                      # N = 5k, 50k, 120k
    python benchmarks/bench_retrieval.py --sizes 5000,50000,120000,1000000
    python benchmarks/bench_retrieval.py --sizes 120000,1000000 --device cuda   # + the GPU rows
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, load_average, machine_info, md_table, peak_rss_mib, save

D, K = 256, 10


def hidden_like(n: int, seed: int, d: int = D, chunk: int = 131072) -> np.ndarray:
    """(n, d) float32 unit vectors with cluster structure (see module doc)."""
    rng = np.random.default_rng(seed)
    world = np.random.default_rng(12345)  # the same clusters for database and queries
    centers = world.standard_normal((64, d)).astype(np.float32) / np.sqrt(d)
    basis = world.standard_normal((16, d)).astype(np.float32) / np.sqrt(d)
    out = np.empty((n, d), np.float32)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        c = rng.integers(0, 64, hi - lo)
        x = centers[c] + 0.6 * rng.standard_normal((hi - lo, 16), dtype=np.float32) @ basis
        x += 0.25 / np.sqrt(d) * rng.standard_normal((hi - lo, d), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[lo:hi] = x
    return out


def timed(fn: Callable[[], Any], min_seconds: float, max_reps: int) -> tuple[float, int]:
    """Median wall time of `fn` after one warm-up call (the warm-up counts as the only
    sample when a single call already exceeds `min_seconds`)."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    if first >= min_seconds or max_reps <= 1:
        return first, 1
    times: list[float] = []
    spent = 0.0
    while len(times) < max_reps and (spent < min_seconds or len(times) < 2):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        spent += times[-1]
    return float(np.median(times)), len(times)


def paired(fns: list[Callable[[], Any]], min_seconds: float, max_reps: int,
           min_rounds: int = 3) -> tuple[list[float], list[float], int]:
    """Interleaved timing for a shared machine: each round runs every fn once, so all see
    the same load. After one warm-up round, at least `min_rounds` rounds and then more
    until each fn had ~`min_seconds` (at most `max_reps`). Returns median seconds per fn,
    the median per-round ratio of each fn to the first, and the rounds counted."""
    rounds: list[list[float]] = []
    spent = 0.0
    while True:
        times = []
        for fn in fns:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        rounds.append(times)
        warm = rounds[1:]
        spent = sum(map(sum, warm))
        if len(warm) >= max(1, max_reps) or (len(warm) >= min_rounds and spent >= min_seconds * len(fns)):
            break
    t = np.array(warm)  # (R, F)
    return np.median(t, 0).tolist(), np.median(t / t[:, :1], 0).tolist(), len(warm)


class Matmul:
    """Q @ X.T into a preallocated (B, block) buffer, over blocks of X; optional top-K.
    One block holds up to 256 MB of scores: a single GEMM call for B = 128 up to N = 500k,
    16,384-row blocks for B = 4,096 (a (4096, 1M) result would need 16 GB)."""

    def __init__(self, x: np.ndarray, b: int, buffer_bytes: int = 256 << 20) -> None:
        self.x, self.block = x, min(len(x), max(16384, buffer_bytes // (4 * b)))
        self.buf = np.empty((b, self.block), np.float32)

    def product(self, q: np.ndarray) -> None:
        for lo in range(0, len(self.x), self.block):
            xb = self.x[lo : lo + self.block]
            np.matmul(q, xb.T, out=self.buf[:, : len(xb)])

    def topk(self, q: np.ndarray, k: int = K) -> np.ndarray:
        parts_s, parts_i = [], []
        for lo in range(0, len(self.x), self.block):
            xb = self.x[lo : lo + self.block]
            s = self.buf[:, : len(xb)]
            np.matmul(q, xb.T, out=s)  # (B, block)
            idx = np.argpartition(-s, k - 1, axis=1)[:, :k]  # (B, k) unordered
            parts_s.append(np.take_along_axis(s, idx, 1))
            parts_i.append(idx + lo)
        s, i = np.hstack(parts_s), np.hstack(parts_i)  # (B, k * blocks)
        top = np.argsort(-s, axis=1)[:, :k]
        return np.take_along_axis(i, top, 1)


def qdrant_edge(x: np.ndarray, queries: np.ndarray, n_queries: int, workdir: Path) -> dict[str, Any]:
    """Ingest x into an edge collection, then time single exact filtered searches."""
    from pipeline.config import Settings
    from pipeline.store import HiddenFeatureStore

    settings = Settings(_env_file=None, qdrant_path=workdir / "qdrant", qdrant_engine="edge", qdrant_url=None)
    n = len(x)
    with HiddenFeatureStore.open(settings) as st:
        st.apply("bench", ["v"], dim=x.shape[1])
        payload = {"split": np.where(np.arange(n) % 10 < 9, "unlabeled", "train"),
                   "label": np.full(n, -1), "scale": [["turbo"]] * n}
        t0 = time.perf_counter()
        st.upsert_hidden("bench", "bench", [f"p{i}" for i in range(n)], payload, {"v": x},
                         batch_size=1024, progress=False)
        ingest = time.perf_counter() - t0
        st.search("bench", "v", queries[0], k=K)  # warm-up (loads segments)
        lat = []
        for q in queries[1 : n_queries + 1]:
            t0 = time.perf_counter()
            st.search("bench", "v", q, k=K)
            lat.append(time.perf_counter() - t0)
    shutil.rmtree(workdir / "qdrant", ignore_errors=True)
    return {"ingest_seconds": ingest, "per_query": float(np.median(lat)), "queries_timed": len(lat)}


def ivf(x: np.ndarray, queries: np.ndarray, exact_ids: np.ndarray, nprobes: list[int]) -> list[dict[str, Any]]:
    import faiss

    n = len(x)
    nlist = int(2 ** round(math.log2(4 * math.sqrt(n))))
    quant = faiss.IndexFlatIP(D)
    index = faiss.IndexIVFFlat(quant, D, nlist, faiss.METRIC_INNER_PRODUCT)
    train = x[np.random.default_rng(0).choice(n, min(n, 64 * nlist), replace=False)]
    t0 = time.perf_counter()
    index.train(train)
    index.add(x)
    build = time.perf_counter() - t0
    rows = []
    for nprobe in nprobes:
        index.nprobe = nprobe
        secs, reps = timed(lambda: index.search(queries, K), 1.0, 3)
        _, ids = index.search(queries, K)
        recall = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(ids, exact_ids)]))
        rows.append({"nlist": nlist, "nprobe": nprobe, "build_s": build, "B": len(queries), "seconds": secs,
                     "qps": len(queries) / secs, "recall@10": recall, "reps": reps})
    return rows


def device_rows(x: np.ndarray, qmax: np.ndarray, batches: list[int], device: str, min_seconds: float,
                max_reps: int) -> list[dict[str, Any]]:
    """The fast path on `device` (a GPU) against the bare torch product there."""
    import torch

    from pipeline.retrieval.faiss_index import FastIndex

    index = FastIndex("cosine", device=device).fit(x)
    if index.gpu_ is None:  # FastIndex fell back to CPU (and logged why): no GPU rows to report
        return []
    torch.backends.cuda.matmul.allow_tf32 = False  # the same float32 arithmetic as the CPU rows
    xt = torch.as_tensor(x, device=device)  # (N, d) resident, as the index holds it
    rows = []
    n = len(x)
    for b in batches:
        q = qmax[:b]
        qt = torch.as_tensor(q, device=device)  # (B, d)
        self_ids = np.full(b, -1, np.int64)

        def product(qt: Any = qt) -> None:
            for lo in range(0, n, 262_144):  # (B, 256k) blocks: B = 4,096 x 1M would be 16 GB at once
                qt @ xt[lo : lo + 262_144].T
            torch.cuda.synchronize()

        product()  # warm-up outside `timed`: the first call pays CUDA's and cuBLAS's start-up
        index.search(q, K, exclude_ids=self_ids)
        t_mm, _ = timed(product, min_seconds, max_reps)
        t_fp, reps = timed(lambda q=q, ex=self_ids: index.search(q, K, exclude_ids=ex), min_seconds, max_reps)
        base = {"N": n, "B": b, "reps": reps}
        rows += [{**base, "method": f"torch matmul on {device} (GPU limit)", "seconds": t_mm, "qps": b / t_mm,
                  "x matmul": 1.0},
                 {**base, "method": f"fast path on {device} (FastIndex, FAISS GPU)", "seconds": t_fp,
                  "qps": b / t_fp, "x matmul": t_fp / t_mm}]
        print(f"N={n:>8,} B={b:>5}: {device} matmul {t_mm * 1e3:9.2f} ms | fast path {t_fp * 1e3:9.2f} ms "
              f"({t_fp / t_mm:.2f}x)", flush=True)
    return rows  # the index and xt go with this frame; torch's cache reuses their memory for the next N


def run(sizes: list[int], batches: list[int], edge_max: int, edge_queries: int, approx_min: int,
        nprobes: list[int], min_seconds: float, max_reps: int, diagnose: bool,
        device: str = "cpu") -> dict[str, Any]:
    from pipeline.retrieval.faiss_index import FastIndex

    rows: list[dict[str, Any]] = []
    approx: list[dict[str, Any]] = []
    diag: list[dict[str, Any]] = []
    qmax = hidden_like(max(batches) + edge_queries + 1, seed=1)
    for n in sizes:
        x = hidden_like(n, seed=0)
        index = FastIndex("cosine", device="cpu").fit(x)
        for b in batches:
            q = qmax[:b]
            self_ids = np.full(b, -1, np.int64)  # external queries: nothing to exclude, K+1 searched
            mm = Matmul(x, b)
            rounds = 1 if n * b > 500_000_000 else 3  # 1M x 4,096: ~80 s per round
            (t_mm, t_tk, t_fp), (_, x_tk, x_fp), reps = paired([
                lambda mm=mm, q=q: mm.product(q),
                lambda mm=mm, q=q: mm.topk(q),
                lambda q=q, ex=self_ids, ix=index: ix.search(q, K, exclude_ids=ex),
            ], min_seconds, max(max_reps, rounds), rounds)
            if diagnose and n == max(s for s in sizes if s <= 200_000):
                diag += diagnostics(index, q, lambda mm=mm, q=q: mm.product(q), min_seconds, max_reps)
            mm = None  # free its score buffer before the next shape
            base = {"N": n, "B": b, "reps": reps}
            rows += [
                {**base, "method": "matmul (BLAS limit)", "seconds": t_mm, "qps": b / t_mm, "x matmul": 1.0},
                {**base, "method": "matmul + numpy top-k", "seconds": t_tk, "qps": b / t_tk, "x matmul": x_tk},
                {**base, "method": "fast path (FastIndex)", "seconds": t_fp, "qps": b / t_fp, "x matmul": x_fp},
            ]
            print(f"N={n:>8,} B={b:>5}: matmul {t_mm * 1e3:9.1f} ms | +top-k {t_tk * 1e3:9.1f} ms | "
                  f"fast path {t_fp * 1e3:9.1f} ms ({x_fp:.2f}x, {reps} rounds)  [load {load_average()[:1]}]",
                  flush=True)
        if device != "cpu":
            rows += device_rows(x, qmax, batches, device, min_seconds, max_reps)
        if n <= edge_max:
            with tempfile.TemporaryDirectory(prefix="ramer-bench-") as tmp:
                e = qdrant_edge(x, qmax, edge_queries, Path(tmp))
            for b in batches:
                secs = e["per_query"] * b
                t_mm = next(r["seconds"] for r in rows if r["N"] == n and r["B"] == b and r["method"].startswith("matmul ("))
                rows.append({"N": n, "B": b, "method": f"qdrant edge exact ({e['queries_timed']} queries, extrapolated)",
                             "seconds": secs, "qps": 1 / e["per_query"], "x matmul": secs / t_mm, "reps": e["queries_timed"]})
            print(f"N={n:>8,}: qdrant edge ingest {e['ingest_seconds']:.1f} s, exact filtered query "
                  f"{e['per_query'] * 1e3:.1f} ms", flush=True)
            rows[-1]["edge_ingest_s"] = e["ingest_seconds"]
        if n >= approx_min:
            _, exact = index.search(qmax[: max(batches)], K)
            approx += [{"N": n, **r} for r in ivf(x, qmax[: max(batches)], exact, nprobes)]
            print(f"N={n:>8,}: IVF " + ", ".join(f"nprobe {r['nprobe']}: recall {r['recall@10']:.3f} "
                                                 f"{r['qps']:,.0f} q/s" for r in approx[-len(nprobes):]), flush=True)
        del index, x
    return {"rows": rows, "approx": approx, "diagnostics": diag}


def diagnostics(index: Any, q: np.ndarray, matmul: Callable[[], Any], min_seconds: float,
                max_reps: int) -> list[dict[str, Any]]:
    """Where the fast path's time goes beyond the bare product (at the target N, 120k):
    FAISS alone (no id handling), almost no top-k work (k=1), and FAISS's default BLAS
    blocks (4096 queries x 1024 rows) against FastIndex's (`_blas_blocks`)."""
    import faiss

    from pipeline.retrieval.faiss_index import _blas_blocks

    out = []
    b = len(q)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    raw = index.index_
    _blas_blocks(b)
    ours = (faiss.cvar.distance_compute_blas_query_bs, faiss.cvar.distance_compute_blas_database_bs)
    variants = (
        (f"faiss k=11, blocks {ours[0]}x{ours[1]} (FastIndex)", *ours, K + 1),
        (f"faiss k=1, blocks {ours[0]}x{ours[1]} (no top-k work)", *ours, 1),
        ("faiss k=11, blocks 4096x1024 (FAISS default)", 4096, 1024, K + 1),
    )

    def variant(qbs: int, dbs: int, k: int) -> Callable[[], Any]:
        def search() -> Any:
            faiss.cvar.distance_compute_blas_query_bs = qbs
            faiss.cvar.distance_compute_blas_database_bs = dbs
            return raw.search(qn, k)
        return search

    times, ratios, _ = paired([matmul, *(variant(*v[1:]) for v in variants)], min_seconds, max_reps)
    for (label, *_), t, x in zip(variants, times[1:], ratios[1:]):
        out.append({"N": raw.ntotal, "B": b, "variant": label, "seconds": t, "x matmul": x})
    for r in out:
        print(f"   diag B={b}: {r['variant']:<52s} {r['seconds'] * 1e3:9.1f} ms ({r['x matmul']:.2f}x)", flush=True)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="5000,50000,120000", help="database sizes N (comma list)")
    ap.add_argument("--batches", default="128,4096", help="query batch sizes B")
    ap.add_argument("--edge-max", type=int, default=120_000, help="largest N also loaded into Qdrant edge")
    ap.add_argument("--edge-queries", type=int, default=16, help="single queries timed against Qdrant edge")
    ap.add_argument("--approx-min", type=int, default=100_000, help="N from which an IVF index is also measured")
    ap.add_argument("--nprobes", default="8,32,128", help="IVF nprobe values")
    ap.add_argument("--min-seconds", type=float, default=1.0, help="time budget per measurement (median of reps)")
    ap.add_argument("--max-reps", type=int, default=5)
    ap.add_argument("--no-diagnostics", action="store_true", help="skip the FAISS block-size/heap diagnostics")
    ap.add_argument("--threads", type=int, default=None,
                    help="BLAS/OpenMP threads for numpy and FAISS alike (default: all cores); 1 gives "
                         "steadier ratios on a busy machine")
    ap.add_argument("--device", default="cpu",
                    help="also time the fast path on this device (cuda, cuda:N) against torch's product there")
    ap.add_argument("--name", default="retrieval", help="result file name (results/<name>.json|md)")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    args = ap.parse_args(argv)
    if args.threads:
        import faiss
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=args.threads)  # numpy's and FAISS's BLAS, and OpenMP
        faiss.omp_set_num_threads(args.threads)
    info = machine_info()
    print(describe(info), flush=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    t0 = time.perf_counter()
    res = run(sizes, batches, args.edge_max, args.edge_queries, args.approx_min,
              [int(p) for p in args.nprobes.split(",")], args.min_seconds, args.max_reps, not args.no_diagnostics,
              args.device)
    target = {}
    for b in batches:
        n = 120_000 if 120_000 in sizes else max(sizes)
        fp = [r for r in res["rows"] if r["N"] == n and r["B"] == b and r["method"] == "fast path (FastIndex)"]  # the CPU row
        if fp:
            target[f"N={n} B={b}"] = {"x matmul": round(fp[0]["x matmul"], 3), "within 1.5x": fp[0]["x matmul"] <= 1.5}
    result = {"script": "bench_retrieval.py", "threads": args.threads or "all cores", "device": args.device, "command": "python benchmarks/bench_retrieval.py " + " ".join(argv or sys.argv[1:]),
              "machine": info, "d": D, "k": K, **res, "target": target, "wall_seconds": time.perf_counter() - t0,
              "peak_rss_mib": peak_rss_mib()}
    md = md_table(res["rows"], ["N", "B", "method", "seconds", "qps", "x matmul"])
    if res["approx"]:
        md += "\nApproximate (FAISS IVF-Flat, recall@10 against exact):\n\n" + md_table(
            res["approx"], ["N", "nlist", "nprobe", "build_s", "B", "seconds", "qps", "recall@10"])
    if res["diagnostics"]:
        md += "\nWhere the fast path's time goes:\n\n" + md_table(res["diagnostics"], ["N", "B", "variant", "seconds", "x matmul"])
    md += "\nTarget (fast path within 1.5x of the matmul at N = 120k): " + ", ".join(
        f"{k}: {v['x matmul']}x {'yes' if v['within 1.5x'] else 'NO'}" for k, v in target.items()) + "\n"
    md = f"Threads: {result['threads']}.\n\n" + md
    save(args.name, result, md, args.out)
    return result


if __name__ == "__main__":
    main()
