"""Database scales of the RAMER paper (Table 2), under this project's leakage rule.

A scale names which rows may be retrieved. The explicit names say what they hold:

    train            the fold's labeled train rows
    half-pool        a fixed random half of the unlabeled pool
    pool             the whole unlabeled pool
    train+half-pool  train rows + that half of the pool
    train+pool       train rows + the whole pool

The paper's names (Table 2) are aliases with the paper's meanings:

    small  = train       (MER_small: the labeled data, 5,030 samples)
    medium = half-pool   (MER_medium: 57,780 of the 115,595 unlabeled samples, nothing else)
    large  = pool        (MER_large: every unlabeled sample)
    turbo  = train+pool  (MER_turbo: everything)

Val/test rows of the fold are never candidates, whatever the scale. The half of the pool
is chosen by a hash of the sample name, so it is the same in every fold, run and process.
"""

from __future__ import annotations

import hashlib

import numpy as np

# explicit name -> (train rows, half of the pool, the rest of the pool)
_PARTS = {
    "train": (True, False, False),
    "half-pool": (False, True, False),
    "pool": (False, True, True),
    "train+half-pool": (True, True, False),
    "train+pool": (True, True, True),
}
PAPER_SCALES = {"small": "train", "medium": "half-pool", "large": "pool", "turbo": "train+pool"}
SCALES = (*PAPER_SCALES, *_PARTS)  # every accepted name: the paper's first


def canonical_scale(scale: str) -> str:
    """The explicit name of a scale ('medium' -> 'half-pool'); unknown names are errors."""
    if scale in _PARTS:
        return scale
    if scale in PAPER_SCALES:
        return PAPER_SCALES[scale]
    raise ValueError(f"unknown DB scale '{scale}'; choose one of {', '.join(SCALES)}")


def in_medium_half(samples: np.ndarray) -> np.ndarray:
    """(N,) bool: a stable pseudo-random half of the given sample names."""
    return np.fromiter(
        (hashlib.blake2b(str(s).encode(), digest_size=1).digest()[0] < 128 for s in samples),
        dtype=bool, count=len(samples),
    )


def scale_tags(samples: np.ndarray, labeled: np.ndarray) -> list[list[str]]:
    """The scales each row belongs to (the Qdrant `scale` payload), ignoring folds: a
    labeled row is in the scales that hold train rows (the split filter then keeps only
    the fold's train rows), a pool row in those that hold its half of the pool."""
    half = in_medium_half(samples)
    tags = []
    for lab, h in zip(labeled, half):
        part = 0 if lab else (1 if h else 2)
        tags.append([s for s in SCALES if _PARTS[canonical_scale(s)][part]])
    return tags


def candidate_mask(
    samples: np.ndarray, labeled: np.ndarray, train_rows: np.ndarray, scale: str
) -> np.ndarray:
    """(N,) bool rows allowed as retrieval neighbours for this fold and scale."""
    use_train, use_half, use_rest = _PARTS[canonical_scale(scale)]
    train = np.zeros(len(samples), bool)
    train[train_rows] = True
    pool = ~labeled
    half = pool & in_medium_half(samples)
    return (train & use_train) | (half & use_half) | (pool & ~half & use_rest)
