"""RAMER's fusion of the K neighbours: the paper's sum then L2-normalise, and
a similarity-weighted variant (`retrieval.fusion = "weighted"`) whose weights need no
temperature: the scores are standardised within each row."""

from __future__ import annotations

import numpy as np

from pipeline.retrieval.fill import RetrievalFiller, weighted_weights
from pipeline.retrieval.retriever import ModalityRetriever
from pipeline.training.config import resolve_layers


def test_weights_follow_similarity_and_ignore_invalid_neighbours():
    scores = np.array([[0.9, 0.8, 0.7, 0.1], [0.5, 0.5, 0.5, 0.5], [0.3, 0.2, 0.0, 0.0]], np.float32)
    valid = np.array([[1, 1, 1, 1], [1, 1, 1, 0], [0, 0, 0, 0]], bool)
    w = weighted_weights(scores, valid)
    assert w[0, 0] == 1.0 and np.all(np.diff(w[0]) < 0)  # the most similar counts most
    assert np.allclose(w[1, :3], 1.0) and w[1, 3] == 0.0  # equal scores: equal; invalid: 0
    assert np.all(w[2] == 0.0)  # no valid neighbour: no weight, no NaN
    # the same ranking and spread on another scale gives the same weights (no temperature)
    assert np.allclose(weighted_weights(10 * scores[:1] - 3, valid[:1]), w[:1], atol=1e-6)


def test_weighted_fill_leans_towards_the_closer_neighbour():
    # query modality a: row 0 is the query; rows 1 and 2 its neighbours, row 1 much closer
    a = np.array([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0], [-1.0, 0.0]], np.float32)
    b = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], np.float32)  # what fills b
    vectors = {"a": a, "b": b}
    present = {m: np.ones(4, bool) for m in vectors}
    cand = np.array([False, True, True, False])
    retr = ModalityRetriever(k=2, metric="cosine").fit(vectors, present, cand)
    avail = np.array([[True, False]])
    fills = {}
    for fuse in ("sum-l2", "weighted"):
        f = RetrievalFiller(retr, ["a", "b"], vectors, present, k=2, fuse=fuse)
        fills[fuse] = f.fill([a[:1], b[:1]], avail, np.array([0]))[1][0]  # (2,) the fill of b
    assert np.isclose(np.linalg.norm(fills["weighted"]), 1.0)
    assert np.allclose(fills["sum-l2"], [2 ** -0.5, 2 ** -0.5], atol=1e-5)  # the paper: an equal sum
    assert fills["weighted"][0] > fills["weighted"][1]  # row 1's b weighs more


def test_the_paper_preset_names_the_papers_fusion():
    assert resolve_layers(preset="paper").retrieval.fusion == "sum-l2"
