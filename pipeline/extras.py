"""Optional dependencies, imported on first use so that a plain `pip install ramer` keeps
`ramer --help`, `ramer data ...` and `ramer collections ...` working without them; a
command that needs one stops with one line naming the pip command that adds it."""

from __future__ import annotations

import functools
import importlib
import logging
from importlib import metadata
from types import ModuleType

from pipeline.errors import RamerError

log = logging.getLogger(__name__)

FAISS_FIX = "pip install 'ramer[cpu]', or 'ramer[gpu]' for the CUDA build (in a clone: pip install -e '.[cpu]')"
# Distributions that all install the same top-level `faiss/` folder.
FAISS_DISTS = ("faiss-cpu", "faiss-gpu", "faiss-gpu-cu11", "faiss-gpu-cu12")


class MissingDependency(RamerError):
    """An optional package a command needs is not installed (or cannot be imported)."""


def optional_import(module: str, needed_for: str, fix: str) -> ModuleType:
    """`import module`, or one MissingDependency line saying what needs it and how to add it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(f"{needed_for} needs the '{module}' package ({exc}): {fix}") from None


def load_faiss() -> ModuleType:
    """The faiss module: the training-time fast path."""
    faiss = optional_import("faiss", "the FAISS fast path (training, indexing, predict, explore)", FAISS_FIX)
    _warn_if_two_faiss_builds()
    return faiss


@functools.cache
def _warn_if_two_faiss_builds() -> None:
    """Two FAISS builds share one folder: whichever pip unpacked last wins, and
    uninstalling either breaks the other. Said once per process."""
    found = [d for d in FAISS_DISTS if _installed(d)]
    if len(found) > 1:
        log.warning("%s are all installed into the same faiss/ folder; keep one: pip uninstall -y %s, "
                    "then pip install -e '.[cpu]' or '.[gpu]'", " and ".join(found), " ".join(found))


def _installed(dist: str) -> bool:
    try:
        metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return False
    return True
