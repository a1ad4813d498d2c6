"""What machine a benchmark ran on, and where its results go.

Every benchmark prints `describe()` first and stores `machine_info()` beside its numbers:
cores, CPU model, memory, BLAS libraries (threadpoolctl), FAISS build, GPU or not, and the
load average at the start (the machine may be shared; a number taken under load says so).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def machine_info() -> dict[str, Any]:
    import numpy as np

    info: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "host_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": _mem_gib(),
        "load_average_1_5_15": load_average(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
    }
    for lib in ("faiss", "torch"):  # load their BLAS/OpenMP libraries before listing them
        try:
            __import__(lib)
        except ImportError:
            pass
    try:
        from threadpoolctl import threadpool_info

        info["thread_pools"] = [
            {k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture", "prefix")}
            for p in threadpool_info()
        ]
    except ImportError:
        info["thread_pools"] = "threadpoolctl not installed"
    try:
        import faiss

        from pipeline.retrieval.faiss_index import gpu_count

        info["faiss"] = {"version": faiss.__version__, "compile": faiss.get_compile_options(),
                         "omp_threads": faiss.omp_get_max_threads(), "gpus": gpu_count()}
    except ImportError:
        info["faiss"] = None
    try:
        import torch

        info["torch"] = {"version": torch.__version__, "threads": torch.get_num_threads(),
                         "cuda": torch.cuda.is_available(),
                         "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    except ImportError:
        info["torch"] = None
    return info


def describe(info: dict[str, Any]) -> str:
    blas = ", ".join(
        f"{p['internal_api']} {p.get('version') or ''} x{p['num_threads']} ({p.get('prefix')})"
        for p in info.get("thread_pools") or [] if isinstance(p, dict)
    )
    gpu = "none"
    if info.get("torch") and info["torch"].get("gpu"):
        gpu = info["torch"]["gpu"]
    elif info.get("faiss") and info["faiss"].get("gpus"):
        gpu = f"{info['faiss']['gpus']} (FAISS)"
    faiss = info.get("faiss") or {}
    return (
        f"machine: {info['usable_cores']} cores ({info['cpu']}), {info['memory_gib']} GiB, "
        f"load average {info['load_average_1_5_15']}\n"
        f"BLAS/OpenMP: {blas}\n"
        f"FAISS {faiss.get('version')} ({faiss.get('compile')}), GPU: {gpu}"
    )


def md_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"
        return str(v)

    head = "| " + " | ".join(columns) + " |\n|" + "|".join("---" for _ in columns) + "|\n"
    return head + "".join("| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |\n" for r in rows)


def save(name: str, result: dict[str, Any], markdown: str, out_dir: Path | None = None) -> Path:
    """results/<name>.json (everything) and results/<name>.md (the table + machine line);
    prints the table and where it was written."""
    out = Path(out_dir) if out_dir else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    result = {**result, "load_average_at_end": load_average()}
    (out / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    header = describe(result["machine"]).replace("\n", "  \n")
    md = (f"<!-- written by benchmarks/{result.get('script', name)} -->\n"
          f"{header}  \nload average at end: {result['load_average_at_end']}  \n"
          f"command: `{result.get('command', '')}`\n\n{markdown}")
    path = out / f"{name}.md"
    path.write_text(md)
    print(markdown)
    print(f"written {path}")
    return path
