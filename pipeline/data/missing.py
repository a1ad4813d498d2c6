"""Missing-modality conditions of the papers: which modalities are available.

A condition is named by the letters of its available modalities in manifest order
("a", "v", "l", "av", "al", "vl", "avl" for audio/visual/text).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from pipeline.data.schema import Manifest


def condition_names(manifest: Manifest, include_full: bool = False) -> list[str]:
    """Every non-empty proper subset of modalities (plus the full set if asked), by size."""
    letters = [m.letter for m in manifest.modalities]
    n = len(letters)
    sizes = range(1, n + 1 if include_full else n)
    return ["".join(c) for k in sizes for c in combinations(letters, k)]


def condition_mask(manifest: Manifest, name: str) -> np.ndarray:
    """(M,) bool: which modalities the condition keeps."""
    letters = [m.letter for m in manifest.modalities]
    unknown = set(name) - set(letters)
    if unknown or not name:
        raise ValueError(f"condition '{name}' uses letters {sorted(unknown)} not in {letters}")
    return np.array([ch in name for ch in letters])


def condition_matrix(manifest: Manifest, include_full: bool = False) -> np.ndarray:
    """(C, M) bool availability masks of `condition_names`, in the same order."""
    return np.stack([condition_mask(manifest, c) for c in condition_names(manifest, include_full)])
