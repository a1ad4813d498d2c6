"""Database scales of the RAMER paper (Table 2), under this project's leakage rule.

    small  = labeled train rows of the fold           (paper: MER_small, all labeled)
    medium = small + a fixed random half of the pool  (paper: MER_medium, half the unlabeled)
    large  = the unlabeled pool only                  (paper: MER_large)
    turbo  = small + the whole pool                   (paper: MER_turbo, everything)

Val/test rows of the fold are never candidates, whatever the scale. The half of the pool
in `medium` is chosen by a hash of the sample name, so it is the same in every fold,
run and process.
"""

from __future__ import annotations

import hashlib

import numpy as np

SCALES = ("small", "medium", "large", "turbo")


def in_medium_half(samples: np.ndarray) -> np.ndarray:
    """(N,) bool: a stable pseudo-random half of the given sample names."""
    return np.fromiter(
        (hashlib.blake2b(str(s).encode(), digest_size=1).digest()[0] < 128 for s in samples),
        dtype=bool, count=len(samples),
    )


def scale_tags(samples: np.ndarray, labeled: np.ndarray) -> list[list[str]]:
    """The scales each row belongs to (the Qdrant `scale` payload), ignoring folds."""
    half = in_medium_half(samples)
    tags = []
    for lab, h in zip(labeled, half):
        if lab:
            tags.append(["small", "medium", "turbo"])
        else:
            tags.append(["medium", "large", "turbo"] if h else ["large", "turbo"])
    return tags


def candidate_mask(
    samples: np.ndarray, labeled: np.ndarray, train_rows: np.ndarray, scale: str
) -> np.ndarray:
    """(N,) bool rows allowed as retrieval neighbours for this fold and scale."""
    if scale not in SCALES:
        raise ValueError(f"unknown DB scale '{scale}'; choose one of {SCALES}")
    train = np.zeros(len(samples), bool)
    train[train_rows] = True
    pool = ~labeled
    if scale == "small":
        return train
    if scale == "medium":
        return train | (pool & in_medium_half(samples))
    if scale == "large":
        return pool
    return train | pool
