"""The GPU path (issue 17): FAISS on the GPU returns the CPU index's neighbours under the
leakage filter, and RAMER trains on CUDA. Skipped without a CUDA GPU and faiss-gpu;
benchmarks/gpu_check.sh runs the same checks (and a demo fold, and the retrieval
benchmark) on a GPU machine."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import gpu_check


def _faiss_gpus() -> int:
    from pipeline.errors import RamerError
    from pipeline.extras import load_faiss

    try:
        return int(load_faiss().get_num_gpus())
    except RamerError:  # no FAISS at all: nothing to check here
        return 0


needs_gpu = pytest.mark.skipif(not torch.cuda.is_available() or _faiss_gpus() == 0,
                               reason="needs a CUDA GPU and faiss-gpu")


@needs_gpu
def test_faiss_gpu_neighbours_equal_cpu_under_the_leakage_filter():
    result = gpu_check.neighbours("cuda")
    assert not result["leak"]
    assert result["ok"], result


@needs_gpu
def test_ramer_trains_on_cuda():
    result = gpu_check.train("cuda")
    assert result["ok"], result


def test_the_checks_pass_on_cpu_against_cpu():
    """The dry run the script falls back to: the same checks, CPU against CPU."""
    assert gpu_check.neighbours("cpu", n=3000, b=64)["ok"]
    assert gpu_check.train("cpu", steps=3)["ok"]


def test_ramer_state_follows_the_model_to_another_device():
    """Every tensor RAMER keeps (here the fill lengths) moves with `.to()`: a plain tensor
    attribute stayed on the CPU and broke the first CUDA run (device check, 2026-12-04).
    A dtype change goes through the same path as a device change, so the CPU sees it."""
    from pipeline.models.base import ModelSpec
    from pipeline.models.registry import create_model

    model = create_model("ramer", ModelSpec(("a", "v"), (8, 6), 3, "single_label"), d_model=16, hidden=8,
                         heads=2, ff=16).to(torch.float64)
    assert model.fill_length.dtype == torch.float64
    assert "fill_length" not in model.state_dict()  # checkpoints keep their keys
