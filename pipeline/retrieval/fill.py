"""Filling missing modalities from retrieved neighbours (RAMER 3.2.3).

For a sample whose modality t is missing, the available modality q's vector searches
q's database; the K neighbours' t-vectors are summed and L2-normalised. With two
available modalities there are two candidate neighbour sets; `rule` picks:

    kth-score  the query modality whose K-th neighbour is more similar (the reference
               code's rule: the set whose worst member is still close is trusted more)
    both       fuse the union of both sets (2K vectors) - uses every retrieved vector

With `keys` (the stored vectors of every row) the queries are the sample's own stored
vectors (frozen encoders): every neighbour list can then be computed once and cached.
The fill of a listed row's modality t then depends only on which other modalities are
available, so it is fused once per (t, that set) into a table and read from it (the same
numbers as fusing per batch, without the per-step gather). Without keys, the queries
are the model's current hidden vectors (fine-tuned encoders),
searched per batch. Live search is the cost of fine-tuning, so two things
cut it: evaluation remembers each (modality, row, query vector)'s neighbours, exact since
the result depends on nothing else (validation's 6 conditions query each row's modality
up to 3 times with the same vector), and `refresh_every` reuses a training row's
neighbour list for that many epochs (1 = every batch; 0, the default: for good once it exists). `fuse="mean"` averages the neighbours' vectors instead of summing
and normalising them: kNN imputation of raw features (the `lr-knn` reference), whose
widths may differ per modality (`fill` takes and returns one array per modality).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from pipeline.data.mapped import release
from pipeline.retrieval.retriever import ModalityRetriever, fuse_sum_l2

RULES = ("kth-score", "both")
# RAMER's sum then L2-normalise (the paper) | the same with each neighbour weighted by its
# similarity (`weighted_weights`) | a plain mean (kNN imputation)
FUSIONS = ("sum-l2", "weighted", "mean")


def weighted_weights(scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(B, K) similarity weights of a row's valid neighbours: softmax of their scores
    standardised within the row, exp((s - max s) / std s), so a neighbour one spread
    less similar than the best counts e^-1 as much, whatever the metric's scale (no
    temperature to tune); equal scores give equal weights, invalid neighbours 0."""
    s = np.where(valid, scores, 0.0).astype(np.float64)  # (B, K)
    n = np.maximum(valid.sum(axis=1, keepdims=True), 1)  # (B, 1)
    mean = s.sum(axis=1, keepdims=True) / n  # (B, 1) over valid neighbours
    spread = np.sqrt((np.where(valid, s - mean, 0.0) ** 2).sum(axis=1, keepdims=True) / n)  # (B, 1)
    top = np.where(valid, s, -np.inf).max(axis=1, keepdims=True)  # (B, 1)
    top = np.where(np.isfinite(top), top, 0.0)  # rows without a valid neighbour
    w = np.exp(np.minimum(s - top, 0.0) / np.maximum(spread, 1e-6))  # (B, K) in (0, 1]
    return np.where(valid, w, 0.0).astype(np.float32)


@dataclass
class Neighbours:
    rows: np.ndarray  # (B, K) int64 dataset rows, -1 = none
    scores: np.ndarray  # (B, K) float32, higher = more similar


@dataclass
class Precomputed:
    """Neighbour lists of stored queries: `lists[m].rows[r]` for every r in `rows`."""

    rows: np.ndarray  # (n,) sorted dataset rows that were searched
    lists: dict[str, Neighbours]  # m -> lists by dataset row (N, K); -1 for rows not searched


TABLE_BYTES = 1 << 30  # fill tables are built only while all of them would fit in this
GATHER_BYTES = 64 << 20  # neighbour vectors gathered at a time while building a fill table


class RetrievalFiller:
    """Callable used by `RAMER.complete`: (h, avail, rows) -> fills for missing slots."""

    def __init__(
        self,
        retriever: ModalityRetriever,
        modalities: list[str],
        values: dict[str, np.ndarray],
        value_present: dict[str, np.ndarray],
        k: int,
        rule: str = "kth-score",
        keys: dict[str, np.ndarray] | None = None,
        drop_first_hit: bool = False,
        fuse: str = "sum-l2",
    ):
        if rule not in RULES:
            raise ValueError(f"unknown two-modality rule '{rule}', choose one of {RULES}")
        if fuse not in FUSIONS:
            raise ValueError(f"unknown fusion '{fuse}', choose one of {FUSIONS}")
        self.retriever, self.modalities, self.k, self.rule, self.fuse = retriever, modalities, k, rule, fuse
        self.values, self.value_present = values, value_present  # m -> (N, H), (N,)
        self.keys = keys  # m -> (N, d) stored query vectors; None = live queries
        # The published code's (leaky) self-exclusion: drop column 0 instead of the query's id.
        self.drop_first_hit = drop_first_hit
        self._cache: dict[str, Neighbours] = {}
        # Stored queries: the fill of modality t of a listed row depends only on which other
        # modalities are available, so each (t, that set) is fused once for every listed row.
        self._slot: np.ndarray | None = None
        self._listed = np.zeros(0, np.int64)
        self._tables: dict[tuple[int, int], np.ndarray] = {}  # (t, set bits) -> (n_listed, D_t)
        self._tables_fit = False
        self.refresh_every = 1  # epochs a live training row's neighbour list is reused; 0 = for good
        self._epoch, self._training = 0, False
        self._stale: dict[str, tuple[Neighbours, np.ndarray]] = {}  # m -> lists (N, K), epoch (N,)
        self._memo: dict[tuple[str, int, bytes], tuple[np.ndarray, np.ndarray]] = {}  # eval queries
        self.seconds = 0.0  # time spent searching and fusing (for the retrieval-share figure)

    # ------------------------------------------------------------ search
    def precompute(self, rows: np.ndarray, chunk: int = 4096) -> Precomputed:
        """Cache neighbour lists of `rows` for every modality (db queries only); returns
        them (read-only: another filler over the same keys and index may `use_precomputed`)."""
        if self.keys is None:
            raise RuntimeError("precompute needs stored keys (query_from='db')")
        rows = np.unique(np.asarray(rows, np.int64))
        n = len(next(iter(self.values.values())))
        lists = {}
        for m in self.modalities:
            nb_rows = np.full((n, self.k), -1, np.int64)
            nb_scores = np.full((n, self.k), -np.inf, np.float32)
            for i in range(0, len(rows), chunk):
                r = rows[i : i + chunk]
                got_r, got_s = self._search(m, self.keys[m][r], r)
                nb_rows[r], nb_scores[r] = got_r, got_s
            lists[m] = Neighbours(nb_rows, nb_scores)
        done = Precomputed(rows, lists)
        self.use_precomputed(done)
        return done

    def use_precomputed(self, done: Precomputed) -> None:
        """Adopt `precompute`'s lists of a filler with the same keys, index, K and rule
        of self-exclusion (they depend on nothing else)."""
        if self.keys is None:
            raise RuntimeError("precomputed lists serve stored queries only (query_from='db')")
        self._cache = dict(done.lists)
        n = len(next(iter(self.values.values())))
        self._slot = np.full(n, -1, np.int64)  # dataset row -> its row in the fill tables
        self._slot[done.rows] = np.arange(len(done.rows))
        self._listed, self._tables = done.rows, {}
        patterns = 2 ** (len(self.modalities) - 1) - 1  # nonempty sets of other modalities
        width = sum(v.shape[1] for v in self.values.values())
        self._tables_fit = len(done.rows) * width * patterns * 4 <= TABLE_BYTES

    def set_training(self, training: bool) -> None:
        """The model's train()/eval(): each switch into training starts an epoch."""
        if training and not self._training:
            self._epoch += 1
            self._memo.clear()  # the weights move from here: old query vectors will not recur
        self._training = training

    def neighbours(self, m: str, queries: np.ndarray | None, rows: np.ndarray) -> Neighbours:
        """Neighbour lists of `rows` (dataset rows; -1 = an external query, which needs
        `queries` and is always searched live)."""
        rows = np.asarray(rows, np.int64)
        external = bool((rows < 0).any())
        if m in self._cache and not external:
            c = self._cache[m]
            return Neighbours(c.rows[rows], c.scores[rows])
        if external and queries is None:
            raise ValueError("external queries (row -1) need their query vectors")
        q = self.keys[m][rows] if self.keys is not None and not external else queries
        q = np.ascontiguousarray(q, dtype=np.float32)  # (B, d)
        if external or self.keys is not None:
            return Neighbours(*self._search(m, q, rows))
        if self._training and self.refresh_every != 1:
            return self._reused(m, q, rows)
        return self._remembered(m, q, rows) if not self._training else Neighbours(*self._search(m, q, rows))

    def _reused(self, m: str, q: np.ndarray, rows: np.ndarray) -> Neighbours:
        """Training rows' lists, searched again only when `refresh_every` epochs old
        (0: never, once searched)."""
        if m not in self._stale:
            n = len(next(iter(self.values.values())))
            empty = Neighbours(np.full((n, self.k), -1, np.int64), np.full((n, self.k), -np.inf, np.float32))
            self._stale[m] = (empty, np.full(n, -(10**9)))
        lists, searched = self._stale[m]
        never = searched[rows] < 0  # (B,) no list yet
        old = never if self.refresh_every == 0 else never | (self._epoch - searched[rows] >= self.refresh_every)
        if old.any():
            r, s = self._search(m, q[old], rows[old])
            lists.rows[rows[old]], lists.scores[rows[old]] = r, s
            searched[rows[old]] = self._epoch
        return Neighbours(lists.rows[rows], lists.scores[rows])

    def _remembered(self, m: str, q: np.ndarray, rows: np.ndarray) -> Neighbours:
        """Evaluation: a (row, query vector) searched before gets the same lists again."""
        keys = [(m, int(r), v.tobytes()) for r, v in zip(rows, q)]
        new = np.array([k not in self._memo for k in keys], bool)  # (B,)
        if new.any():
            r, s = self._search(m, q[new], rows[new])
            for key, rr, ss in zip((k for k, n in zip(keys, new) if n), r, s):
                self._memo[key] = (rr, ss)
        got = [self._memo[k] for k in keys]
        return Neighbours(np.stack([g[0] for g in got]), np.stack([g[1] for g in got]))

    def _search(self, m: str, queries: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.drop_first_hit:
            return self.retriever.search(m, queries, rows, self.k)
        r, s = self.retriever.search(m, queries, np.full(len(rows), -1), self.k + 1)
        return r[:, 1:], s[:, 1:]

    # ------------------------------------------------------------ fusion
    def _gather(self, t: str, nb_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, K, H) neighbour t-vectors and (B, K) validity (neighbour exists and has t)."""
        safe = np.clip(nb_rows, 0, None)
        valid = (nb_rows >= 0) & self.value_present[t][safe]
        return self.values[t][safe], valid

    def __call__(self, h: np.ndarray, avail: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """h (B, M, H) -> (B, M, H) fills (zero where available): every modality one width."""
        return np.stack(self.fill([h[:, i] for i in range(h.shape[1])], avail, rows), axis=1)

    def fill(self, h: list[np.ndarray], avail: np.ndarray, rows: np.ndarray) -> list[np.ndarray]:
        """h: M x (B, D_m) query vectors -> M x (B, D_m) fills of the values' widths, zero
        where the modality is available (or nothing could be retrieved)."""
        t0 = time.perf_counter()
        try:
            return self._fill(h, avail, rows)
        finally:
            self.seconds += time.perf_counter() - t0

    def _fill(self, h: list[np.ndarray], avail: np.ndarray, rows: np.ndarray) -> list[np.ndarray]:
        rows = np.asarray(rows, np.int64)
        if self._tables_fit and self._slot is not None and (rows >= 0).all() and (self._slot[rows] >= 0).all():
            return self._from_tables(avail, rows)
        return self._fill_batch(h, avail, rows)

    def _from_tables(self, avail: np.ndarray, rows: np.ndarray) -> list[np.ndarray]:
        """What `_fill_batch` computes for listed rows of stored queries, read from the
        (t, available others) tables: the same numbers, fused once instead of per step."""
        slots, m = self._slot[rows], len(self.modalities)  # (B,)
        out = []
        for ti, t in enumerate(self.modalities):
            fused = np.zeros((len(rows), self.values[t].shape[1]), np.float32)  # (B, D_t)
            need = ~avail[:, ti]
            bits = np.delete(avail, ti, axis=1).astype(np.int64) @ (1 << np.arange(m - 1))  # (B,) others
            for code in np.unique(bits[need]):
                if code:  # 0: no other modality to query with -> zeros, as in `_fill_batch`
                    sel = need & (bits == code)
                    fused[sel] = self._table(ti, int(code))[slots[sel]]
            out.append(fused)
        return out

    def _table(self, ti: int, code: int, chunk: int = 2048) -> np.ndarray:
        """(n_listed, D_t) fills of modality `ti` of every listed row when exactly the other
        modalities in bit set `code` are available. Built `chunk` rows at a time, fewer for
        wide values (each (rows, K, D) gather of an unavailable modality stays under
        GATHER_BYTES); each row's fill depends on that row alone, so the chunking changes
        no value."""
        if (ti, code) not in self._tables:
            width = max(v.shape[1] for v in self.values.values())  # every unavailable one is gathered
            chunk = max(1, min(chunk, GATHER_BYTES // (4 * self.k * width)))
            m = len(self.modalities)
            others = [i for i in range(m) if i != ti]  # bit j of `code` = others[j] available
            pattern = np.zeros(m, bool)
            pattern[[q for j, q in enumerate(others) if code >> j & 1]] = True
            rows = self._listed
            table = np.empty((len(rows), self.values[self.modalities[ti]].shape[1]), np.float32)
            for i in range(0, len(rows), chunk):
                r = rows[i : i + chunk]
                unused = [np.zeros((len(r), 1), np.float32)] * m  # stored keys: queries are not read
                table[i : i + len(r)] = self._fill_batch(unused, np.broadcast_to(pattern, (len(r), m)), r)[ti]
                for values in self.values.values():  # neighbours' rows of a mapped table: read once
                    release(values)
            self._tables[ti, code] = table
        return self._tables[ti, code]

    def _fill_batch(self, h: list[np.ndarray], avail: np.ndarray, rows: np.ndarray) -> list[np.ndarray]:
        out = []
        for ti, src in enumerate(self.sources(h, avail, rows)):
            if src is None:  # available everywhere, or nothing to query with
                out.append(np.zeros((len(rows), self.values[self.modalities[ti]].shape[1]), np.float32))
                continue
            vecs, valid = self._gather(self.modalities[ti], src.rows)
            fused = self._combine(vecs, valid, src.scores)  # (B, D_t)
            fused[avail[:, ti]] = 0.0
            out.append(fused)
        return out

    def sources(self, h: list[np.ndarray], avail: np.ndarray, rows: np.ndarray) -> list[Neighbours | None]:
        """Per modality t, the neighbours whose t-vectors fill it (B, K) - K or 2K columns
        under rule 'both' - with rows -1 where t is available; None where no row needs t."""
        nbs = self._query_neighbours(h, avail, rows)
        out: list[Neighbours | None] = []
        for ti in range(len(self.modalities)):
            need = ~avail[:, ti]
            if not need.any() or not nbs:
                out.append(None)
                continue
            src = self._source_for(ti, nbs, avail)
            out.append(Neighbours(np.where(need[:, None], src.rows, -1), np.where(need[:, None], src.scores, -np.inf)))
        return out

    def _query_neighbours(self, h: list[np.ndarray], avail: np.ndarray, rows: np.ndarray) -> dict[int, Neighbours]:
        """Query modality index -> its (B, K) neighbours (rows -1 where it is unavailable)."""
        b, nbs = len(rows), {}
        for qi, q in enumerate(self.modalities):
            sel = avail[:, qi]
            if sel.any():
                nb = self.neighbours(q, h[qi][sel], rows[sel])
                full_r = np.full((b, self.k), -1, np.int64)
                full_s = np.full((b, self.k), -np.inf, np.float32)
                full_r[sel], full_s[sel] = nb.rows, nb.scores
                nbs[qi] = Neighbours(full_r, full_s)
        return nbs

    def _combine(self, vecs: np.ndarray, valid: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """(B, K, D) neighbour vectors + (B, K) validity and similarity -> (B, D)."""
        if self.fuse == "sum-l2":
            return fuse_sum_l2(vecs, valid)
        if self.fuse == "weighted":
            return fuse_sum_l2(vecs * weighted_weights(scores, valid)[:, :, None], valid)
        w = valid.astype(np.float32)[:, :, None]  # (B, K, 1)
        return ((vecs * w).sum(1) / np.maximum(w.sum(1), 1.0)).astype(np.float32)

    def _source_for(self, ti: int, nbs: dict[int, Neighbours], avail: np.ndarray) -> Neighbours:
        queries = [qi for qi in nbs if qi != ti]
        if not queries:  # the batch's only available modality is t itself: nothing to query with
            b = len(avail)
            return Neighbours(np.full((b, self.k), -1, np.int64), np.full((b, self.k), -np.inf, np.float32))
        if self.rule == "both":  # the union of every available modality's neighbours (B, K*Q)
            return Neighbours(np.concatenate([nbs[qi].rows for qi in queries], axis=1),
                              np.concatenate([nbs[qi].scores for qi in queries], axis=1))
        # kth-score: per sample the available query modality with the highest K-th score
        kth = np.stack([np.where(avail[:, qi], nbs[qi].scores[:, -1], -np.inf) for qi in queries], 1)
        best = kth.argmax(axis=1)  # (B,) index into `queries`
        pick = np.arange(len(best))
        return Neighbours(np.stack([nbs[qi].rows for qi in queries], 1)[pick, best],  # (B, K)
                          np.stack([nbs[qi].scores for qi in queries], 1)[pick, best])
