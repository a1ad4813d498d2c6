"""Near-duplicate rows across the labeled set and the unlabeled pool.

A sample copied into the pool (or into two folds) under another name is a leak that a
check by sample name misses: retrieval finds the test row's own features in the pool,
or a model is tested on a row it was trained on. Rule (documented in docs/your_data.md):

    rows i and j are duplicates when the modalities present in one are a subset of those
    present in the other, and on every one of them the cosine of the two vectors, after
    per-column standardisation over the whole file, is >= `threshold` (default 0.999).

Standardisation first, because raw features with a large common offset (all-positive
activations, pixel averages) have cosine near 1 for any pair. A row equal to the column
means on a modality (a constant placeholder) carries nothing there: it is compared on its
other modalities, and agrees on that one only with rows that are placeholders too. Only
pairs that can leak are searched: labeled x labeled and labeled x pool (not pool x pool).

Search: each row queries once, through the first modality it has (the subset rule means
a duplicate pair always shares the smaller row's modalities), in blocks of at most
`BLOCK_FLOATS` float32 similarities computed from the raw matrix (the standardisation is
folded into the query side), so memory stays bounded, the features are never copied and
no N x N matrix exists. Candidates above a slightly looser threshold are then confirmed
in float64 on every shared modality. Measured on one CPU thread, 100k rows (10k labeled),
dims 256/128/256: 27 s with numpy blocks (the first version, on a standardised copy),
140 s with FAISS's exact range search (IndexFlatIP), so there is no FAISS path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.999
BLOCK_FLOATS = 1 << 24  # similarities per block: 64 MB of float32
TOLERANCE = 1e-5  # threshold 1 still means identical: rounding of the float64 check stays below this
PREFILTER = 1e-3  # the float32 block products may be this far off (mean subtracted after the product)
CONFIRM_PAIRS = 4096  # candidate pairs checked at a time
RULE = ("modalities of one row a subset of the other's, cosine >= {t} on each after "
        "per-column standardisation")


@dataclass
class Duplicates:
    """What `find_duplicates` found. Row indices refer to the input arrays."""

    threshold: float
    pool_rows: np.ndarray  # (P,) pool rows that duplicate some labeled row
    labeled_pairs: np.ndarray  # (E, 2) labeled row pairs (i < j) that duplicate each other
    rule: str = field(init=False)

    def __post_init__(self) -> None:
        self.rule = RULE.format(t=self.threshold)

    def cross_fold(self, folds: np.ndarray) -> np.ndarray:
        """(E,) bool: which labeled pairs sit in different folds."""
        if not len(self.labeled_pairs):
            return np.zeros(0, bool)
        return folds[self.labeled_pairs[:, 0]] != folds[self.labeled_pairs[:, 1]]

    def clusters(self, n: int) -> np.ndarray:
        """(n,) int cluster id per row: rows joined by a labeled pair share one id."""
        parent = np.arange(n)

        def root(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for i, j in self.labeled_pairs:
            a, b = root(int(i)), root(int(j))
            if a != b:
                parent[max(a, b)] = min(a, b)
        return np.array([root(i) for i in range(n)])

    def summary(self, folds: np.ndarray | None = None) -> dict:
        """Counts for the manifest's provenance and the import summary."""
        rows = np.unique(self.labeled_pairs)
        out = {"rule": self.rule, "threshold": self.threshold, "pool_rows": len(self.pool_rows),
               "labeled_pairs": len(self.labeled_pairs), "labeled_rows": len(rows)}
        if folds is not None:
            out["cross_fold_pairs"] = int(self.cross_fold(folds).sum())
        return out


class _Space:
    """One modality's per-column standardisation, applied a block at a time, so the
    (possibly 5120-d, 100k-row) matrix is never copied: z = (x - mean) * inv."""

    def __init__(self, mat: np.ndarray, present: np.ndarray):
        rows = mat[present]
        self.mat = mat
        self.mean = (rows.mean(0, dtype=np.float64) if len(rows) else np.zeros(mat.shape[1])).astype(np.float32)
        std = rows.std(0, dtype=np.float64) if len(rows) else np.ones(mat.shape[1])
        self.inv = np.where(std > 0, 1.0 / np.where(std > 0, std, 1.0), 1.0).astype(np.float32)
        step = _rows_per_block(mat.shape[1])
        norm = np.zeros(len(mat), np.float32)
        for s in range(0, len(mat), step):
            norm[s : s + step] = np.linalg.norm(self.z(slice(s, s + step)), axis=1)
        # a row equal to the column means carries nothing on this modality: never compared through it
        self.informative = present & (norm > 1e-6 * np.sqrt(mat.shape[1]))
        self.norm = np.where(self.informative, norm, np.inf).astype(np.float32)

    def z(self, rows) -> np.ndarray:
        return (self.mat[rows] - self.mean) * self.inv

    def sims(self, q_rows: np.ndarray, t_rows: np.ndarray | None) -> np.ndarray:
        """(b, T) cosines of standardised rows, computed from the raw targets:
        z_q . z_t = (z_q * inv) . t - (z_q * inv) . mean. `t_rows` None: every row."""
        a = self.z(q_rows) * self.inv / self.norm[q_rows][:, None]  # (b, D)
        targets = self.mat if t_rows is None else self.mat[t_rows]
        tn = self.norm if t_rows is None else self.norm[t_rows]
        return (a @ targets.T - (a @ self.mean)[:, None]) / tn[None, :]


def _rows_per_block(width: int) -> int:
    return max(1, BLOCK_FLOATS // max(1, width))


def _candidate_pairs(space: _Space, q_rows: np.ndarray, t_rows: np.ndarray | None, thr: float) -> np.ndarray:
    """(C, 2) row pairs whose float32 cosine clears a looser threshold, block by block; the
    exact check (float64) is `_confirm`'s."""
    n_t = len(space.mat) if t_rows is None else len(t_rows)
    step = _rows_per_block(n_t)
    out = []
    for s in range(0, len(q_rows), step):
        block = q_rows[s : s + step]
        qi, tj = np.nonzero(space.sims(block, t_rows) >= thr - PREFILTER)
        out.append(np.stack([block[qi], tj if t_rows is None else t_rows[tj]], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 2), np.int64)


def find_duplicates(
    feats: dict[str, np.ndarray], present: dict[str, np.ndarray], labeled: np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
) -> Duplicates:
    """Labeled x labeled and labeled x pool duplicates under the module's rule."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"duplicate threshold {threshold}: must be in (0, 1]")
    mods = list(feats)
    spaces = {m: _Space(feats[m], present[m]) for m in mods}
    pres = np.stack([present[m] for m in mods], axis=1)  # (N, M)
    info = np.stack([spaces[m].informative for m in mods], axis=1)  # (N, M)
    first = np.where(info.any(1), np.argmax(info, axis=1), -1)  # each row queries once, here
    thr = threshold - TOLERANCE
    pairs = []
    for mi, m in enumerate(mods):
        queries = np.flatnonzero(first == mi)
        targets = np.flatnonzero(info[:, mi] & labeled)
        if len(queries[labeled[queries]]):  # labeled -> every row (columns of other rows score 0)
            pairs.append(_candidate_pairs(spaces[m], queries[labeled[queries]], None, thr))
        if len(queries[~labeled[queries]]) and len(targets):  # pool -> labeled
            pairs.append(_candidate_pairs(spaces[m], queries[~labeled[queries]], targets, thr))
    cand = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
    cand = cand[cand[:, 0] != cand[:, 1]]
    keep = _confirm(cand, pres, info, spaces, mods, thr)
    return _collect(cand[keep], labeled, threshold, len(labeled))


def _confirm(cand: np.ndarray, pres: np.ndarray, info: np.ndarray, spaces: dict, mods: list[str],
             thr: float) -> np.ndarray:
    """(C,) bool: the subset rule holds and every shared modality agrees, in float64; a
    modality uninformative in both rows (their column means) agrees, in one only does not."""
    ok = np.zeros(len(cand), bool)
    for s in range(0, len(cand), CONFIRM_PAIRS):
        i, j = cand[s : s + CONFIRM_PAIRS, 0], cand[s : s + CONFIRM_PAIRS, 1]
        a, b = pres[i], pres[j]
        good = ((a & ~b).sum(1) == 0) | ((b & ~a).sum(1) == 0)
        for mi, m in enumerate(mods):
            sp = spaces[m]
            zi, zj = sp.z(i).astype(np.float64), sp.z(j).astype(np.float64)
            cos = np.einsum("ij,ij->i", zi, zj) / np.maximum(
                np.linalg.norm(zi, axis=1) * np.linalg.norm(zj, axis=1), 1e-300)
            same = np.where(info[i, mi] & info[j, mi], cos >= thr, info[i, mi] == info[j, mi])
            good &= ~(a[:, mi] & b[:, mi]) | same
        ok[s : s + CONFIRM_PAIRS] = good
    return ok


def _collect(pairs: np.ndarray, labeled: np.ndarray, threshold: float, n: int) -> Duplicates:
    """Split confirmed pairs into pool rows and unique labeled pairs (i < j)."""
    la, lb = labeled[pairs[:, 0]], labeled[pairs[:, 1]]
    pool = np.unique(np.concatenate([pairs[la & ~lb, 1], pairs[~la & lb, 0]]))
    both = pairs[la & lb]
    both = np.unique(np.sort(both, axis=1), axis=0) if len(both) else np.zeros((0, 2), np.int64)
    log.info("duplicate check (threshold %s): %d pool rows, %d labeled pairs", threshold, len(pool), len(both))
    return Duplicates(threshold, pool.astype(np.int64), both.astype(np.int64))
