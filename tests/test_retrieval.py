"""FAISS fast path and RAMER fusion: exactness vs brute force, self-exclusion by id,
candidate-only neighbours, fusion math, and the GPU/CPU choice."""

from __future__ import annotations

import logging

import faiss
import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from pipeline.retrieval import FastIndex, ModalityRetriever, faiss_index, fuse_sum_l2


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def brute(db: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int, metric: str,
          exclude: np.ndarray | None) -> np.ndarray:
    """Reference top-k ids by numpy, excluding each query's own id."""
    if metric == "cosine":
        s = unit(q) @ unit(db).T  # (B, N)
    else:
        s = -((q[:, None, :] - db[None]) ** 2).sum(-1)  # (B, N)
    if exclude is not None:
        s = np.where(ids[None, :] == exclude[:, None], -np.inf, s)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return ids[order]


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_fast_index_exact_and_excludes_by_id(metric: str) -> None:
    rng = np.random.default_rng(0)
    db = rng.standard_normal((300, 16)).astype(np.float32)
    ids = rng.permutation(10_000)[:300].astype(np.int64)  # ids are not positions
    pick = rng.choice(300, 20, replace=False)
    q = np.concatenate([db[pick], rng.standard_normal((5, 16)).astype(np.float32)])  # (25, 16)
    exclude = np.concatenate([ids[pick], np.full(5, -1)])
    index = FastIndex(metric, device="cpu").fit(db, ids)
    assert faiss.cvar.distance_compute_blas_threshold == 1
    scores, found = index.search(q, 10, exclude_ids=exclude)
    assert scores.shape == (25, 10) and found.shape == (25, 10) and found.dtype == np.int64
    np.testing.assert_array_equal(found, brute(db, ids, q, 10, metric, exclude))
    assert not (found == exclude[:, None]).any()
    if metric == "cosine":  # similarity, descending
        assert (np.diff(scores, axis=1) <= 1e-6).all()
    else:  # distance, ascending, equal to the true L2 distance
        pos = {int(i): p for p, i in enumerate(ids)}
        d0 = np.linalg.norm(q[0] - db[[pos[int(i)] for i in found[0]]], axis=1)
        np.testing.assert_allclose(scores[0], d0, rtol=1e-4)
    # without exclusion the stored query finds itself first
    _, own = index.search(db[pick[:3]], 1)
    np.testing.assert_array_equal(own[:, 0], ids[pick[:3]])


def test_fast_index_small_db_pads_and_validates() -> None:
    db = np.eye(3, dtype=np.float32)
    index = FastIndex().fit(db, np.array([7, 8, 9]))
    scores, found = index.search(db[:1], 5, exclude_ids=np.array([7]))
    assert sorted(found[0, :2]) == [8, 9] and found[0, 2:].tolist() == [-1, -1, -1]  # 8/9 tie
    assert np.isneginf(scores[0, 2:]).all()
    with pytest.raises(ValueError, match="dim"):
        index.search(np.ones((1, 4), np.float32), 2)
    with pytest.raises(ValueError, match="metric"):
        FastIndex("manhattan").fit(db)


@hsettings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(5, 80), k=st.integers(1, 12),
       metric=st.sampled_from(["cosine", "euclidean"]))
def test_retriever_never_returns_query_or_non_candidates(seed: int, n: int, k: int, metric: str) -> None:
    rng = np.random.default_rng(seed)
    d = 8
    db = {m: rng.standard_normal((n, d)).astype(np.float32) for m in ("audio", "text")}
    present = {m: rng.random(n) > 0.2 for m in db}
    candidates = rng.random(n) > 0.4  # e.g. train + unlabeled of the fold
    ret = ModalityRetriever(k=k, metric=metric, device="cpu").fit(db, present, candidates)
    q_rows = rng.integers(0, n, 6)
    q_rows[-1] = -1  # an external query
    queries = db["audio"][np.maximum(q_rows, 0)]
    rows, scores = ret.search("audio", queries, q_rows)
    assert rows.shape == (6, k) and scores.shape == (6, k)
    assert np.isneginf(scores[rows < 0]).all()
    allowed_rows = np.flatnonzero(candidates & present["audio"]).astype(np.int64)
    for b, qr in enumerate(q_rows):
        got = rows[b][rows[b] >= 0]
        assert qr not in got
        assert set(got) <= set(allowed_rows)
        assert len(got) == min(k, len(allowed_rows) - int(qr in allowed_rows))
        assert (np.diff(scores[b][rows[b] >= 0]) <= 1e-5).all()  # higher = closer, both metrics
        want = brute(db["audio"][allowed_rows], allowed_rows, queries[b:b + 1], k, metric,
                     np.array([qr]))[0][: len(got)]
        np.testing.assert_array_equal(got, want)


def test_fuse_sum_then_l2_skipping_absent() -> None:
    neigh = np.array([[[3.0, 0.0], [0.0, 4.0], [100.0, 100.0]],
                      [[1.0, 1.0], [5.0, 5.0], [9.0, 9.0]]], np.float32)  # (B=2, K=3, d=2)
    valid = np.array([[True, True, False], [False, False, False]])
    out = fuse_sum_l2(neigh, valid)
    np.testing.assert_allclose(out[0], [0.6, 0.8], rtol=1e-6)  # (3, 4) / 5; the absent one skipped
    np.testing.assert_array_equal(out[1], [0.0, 0.0])  # nothing present -> zeros, not NaN
    np.testing.assert_allclose(fuse_sum_l2(neigh)[1], unit(np.array([15.0, 15.0])), rtol=1e-6)


def test_retriever_fuse_uses_target_modality_of_neighbours() -> None:
    rng = np.random.default_rng(3)
    db = {"audio": rng.standard_normal((6, 4)).astype(np.float32),
          "text": rng.standard_normal((6, 4)).astype(np.float32)}
    present = {"audio": np.ones(6, bool), "text": np.array([1, 0, 1, 1, 1, 1], bool)}
    ret = ModalityRetriever(k=3).fit(db, present, np.ones(6, bool))
    rows = np.array([[0, 1, 2], [1, -1, -1]])  # row 1 lacks text; -1 = padding
    out = ret.fuse(rows, "text")
    np.testing.assert_allclose(out[0], unit(db["text"][0] + db["text"][2]), rtol=1e-5)
    np.testing.assert_array_equal(out[1], np.zeros(4))


def test_cpu_when_no_gpu_visible(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0, raising=False)
    faiss_index._ANNOUNCED.clear()  # the decision is logged at INFO once per process
    with caplog.at_level(logging.INFO, logger=faiss_index.__name__):
        index = FastIndex(device="auto").fit(np.eye(4, dtype=np.float32))
    assert index.gpu_ is None and "FAISS on CPU (no GPU visible)" in caplog.text
    monkeypatch.delattr(faiss, "StandardGpuResources", raising=False)  # a CPU-only build
    assert faiss_index.gpu_count() == 0


def test_gpu_path_logic_with_a_fake_gpu(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The GPU branch (resources, cpu->gpu copy, k cap) without a GPU: the 'GPU' index is
    the CPU one, so results stay checkable."""
    moved = []
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1, raising=False)
    monkeypatch.setattr(faiss, "StandardGpuResources", lambda: object(), raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", lambda res, dev, idx: moved.append(dev) or idx, raising=False)
    monkeypatch.setattr(faiss_index, "GPU_MAX_K", 4)
    db = np.random.default_rng(0).standard_normal((20, 8)).astype(np.float32)
    faiss_index._ANNOUNCED.clear()
    with caplog.at_level(logging.INFO, logger=faiss_index.__name__):
        index = FastIndex(device="auto").fit(db)
        _, found = index.search(db[:2], 10, exclude_ids=np.array([0, 1]))
    assert moved == [0] and index.gpu_ == 0 and "FAISS on GPU 0" in caplog.text
    assert found.shape == (2, 3) and "caps k" in caplog.text
    assert FastIndex(device="cpu").fit(db).gpu_ is None
    assert FastIndex(device="cuda:3").fit(db).gpu_ is None  # no such GPU -> CPU, logged
