"""Is a retrieval database usable? Two numbers per modality, checked after stage 2.

A modality whose hidden vectors all point one way makes cosine retrieval meaningless:
every neighbour scores ~1.0 and the K "most similar" samples are arbitrary. Seen on real
features in native units (a 6-d view next to 200-d ones) before stage-0 scaling existed.

    concentration   |mean of the unit vectors|: 0 = spread out, 1 = one direction
    effective rank  exp(entropy of the normalised singular values) of the unit vectors
                    (Roy and Vetterli 2007): ~1 when they span one direction only
"""

from __future__ import annotations

import numpy as np

MAX_CONCENTRATION = 0.98  # above: (almost) one direction
MIN_EFFECTIVE_RANK = 2.0  # below: (almost) a line
SAMPLE = 4096  # rows used: the statistics settle long before that


def vector_health(vectors: np.ndarray, seed: int = 0) -> dict[str, float]:
    """{'concentration', 'effective_rank', 'degenerate' (0/1)} of (N, d) vectors."""
    x = np.asarray(vectors, np.float64)
    if len(x) > SAMPLE:
        x = x[np.random.default_rng(seed).choice(len(x), SAMPLE, replace=False)]
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = x[norms[:, 0] > 1e-12] / norms[norms[:, 0] > 1e-12]  # (n, d)
    if len(unit) == 0:
        return {"concentration": float("nan"), "effective_rank": 0.0, "degenerate": 1.0}
    concentration = float(np.linalg.norm(unit.mean(0)))
    sv = np.linalg.svd(unit, compute_uv=False)
    p = sv / sv.sum()
    p = p[p > 0]
    erank = float(np.exp(-(p * np.log(p)).sum()))
    bad = concentration > MAX_CONCENTRATION or erank < MIN_EFFECTIVE_RANK
    return {"concentration": concentration, "effective_rank": erank, "degenerate": float(bad)}
