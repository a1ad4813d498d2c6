"""Shared test set-up: one torch thread (tiny models; 2 threads only add contention),
hypothesis profiles, and an address-space cap for tests that feed readers bad files.

Hypothesis profiles (`pytest --hypothesis-profile=NAME`):
- `ci` (the default, and what `.ci/run` selects): derandomised, so every run of the suite
  tries the same examples and CI passes or fails for a reason, never by chance;
- `fuzz`: long randomised fuzzing on demand, 5,000 examples per fuzz test, e.g.
  `pytest --hypothesis-profile=fuzz tests/test_fuzz_import.py` (tests that fix their own
  example count keep it).
"""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Iterator

os.environ.setdefault("RAMER_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch
from hypothesis import HealthCheck, settings

torch.set_num_threads(1)

_QUIET = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("ci", derandomize=True, database=None, deadline=None, max_examples=100,
                          suppress_health_check=_QUIET, print_blob=True)
settings.register_profile("fuzz", max_examples=5000, deadline=None, suppress_health_check=_QUIET,
                          print_blob=True)
settings.load_profile("ci")  # `--hypothesis-profile` (loaded after this file) overrides it

CAP_HEADROOM = 3 << 30  # address space a capped test may add to what the process already maps


def _mapped_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


@contextlib.contextmanager
def address_space_cap(headroom: int = CAP_HEADROOM) -> Iterator[int]:
    """Lower this process's soft RLIMIT_AS to what it maps now + `headroom`, restoring it
    after: an unbounded allocation becomes a MemoryError in the test, never a machine-wide
    OOM kill. Yields the cap in bytes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _mapped_bytes() + headroom
    if soft != resource.RLIM_INFINITY:
        cap = min(cap, soft)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield cap
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.fixture()
def memory_cap() -> Iterator[int]:
    with address_space_cap() as cap:
        yield cap
