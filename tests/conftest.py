"""Shared test set-up: one torch thread (tiny models; 2 threads only add contention)."""

from __future__ import annotations

import os

os.environ.setdefault("RAMER_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

torch.set_num_threads(1)
