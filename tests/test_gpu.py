"""The GPU path: FAISS on the GPU returns the CPU index's neighbours under the leakage
filter, and RAMER trains on CUDA. The checks are benchmarks/gpu_check.py's, run as the
script runs on a GPU machine (benchmarks/gpu_check.sh); the CUDA ones are skipped without
a CUDA GPU and faiss-gpu."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"


def _faiss_gpus() -> int:
    from pipeline.errors import RamerError
    from pipeline.extras import load_faiss

    try:
        return int(load_faiss().get_num_gpus())
    except RamerError:  # no FAISS at all: nothing to check here
        return 0


def _checks(*args: str) -> dict[str, dict]:
    """gpu_check.py's JSON line per check, by name; its exit status agrees with them."""
    done = subprocess.run([sys.executable, str(SCRIPT), *args], check=False, capture_output=True, text=True,
                          timeout=600)
    results = {r["check"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert set(results) == {"neighbours", "train"}, done.stderr[-2000:]
    assert done.returncode == (0 if all(r["ok"] for r in results.values()) else 1)
    return results


needs_gpu = pytest.mark.skipif(not torch.cuda.is_available() or _faiss_gpus() == 0,
                               reason="needs a CUDA GPU and faiss-gpu")


@needs_gpu
def test_faiss_gpu_neighbours_equal_cpu_and_ramer_trains_on_cuda():
    results = _checks("--device", "cuda")
    assert not results["neighbours"]["leak"]
    assert results["neighbours"]["ok"], results["neighbours"]
    assert results["train"]["ok"] and results["train"]["param_device"] == "cuda", results["train"]


def test_the_checks_pass_on_cpu_against_cpu():
    """The dry run the script falls back to: the same checks, CPU against CPU."""
    results = _checks("--device", "cpu", "--rows", "3000", "--queries", "64", "--steps", "3")
    assert results["neighbours"]["ok"] and not results["neighbours"]["leak"]
    assert results["train"]["ok"]


def test_ramer_state_follows_the_model_to_another_device():
    """Every tensor RAMER keeps (here the fill lengths) moves with `.to()`: a plain tensor
    attribute would stay on the CPU and fail on the device. A dtype change goes through
    the same path as a device change, so the CPU sees it."""
    from pipeline.models.base import ModelSpec
    from pipeline.models.registry import create_model

    model = create_model("ramer", ModelSpec(("a", "v"), (8, 6), 3, "single_label"), d_model=16, hidden=8,
                         heads=2, ff=16).to(torch.float64)
    assert model.fill_length.dtype == torch.float64
    assert "fill_length" not in model.state_dict()  # checkpoints keep their keys
