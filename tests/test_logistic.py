"""The linear references' solver: the block design is the stacked design exactly, and
L-BFGS over it reaches scikit-learn's optimum (multinomial, binary, multi-label)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.models.logistic import BlockDesign, fit_logistic

DIMS = (5, 4, 6)
CONDS = np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0], [1, 0, 0]], bool)  # (C, M) available


def _design(seed: int = 0, n: int = 240, fill: bool = False) -> tuple[list[np.ndarray], np.ndarray]:
    """Per condition (n, sum D): each modality's own features where available, zeros
    (or, with `fill`, a fill that depends on the available set) where not."""
    rng = np.random.default_rng(seed)
    own = [rng.normal(size=(n, d)).astype(np.float32) for d in DIMS]
    latent = rng.normal(size=n)
    for m, x in enumerate(own):
        x[:, 0] += (m + 1) * latent  # a signal in every modality
    feats = []
    for cond in CONDS:
        blocks = []
        for m, x in enumerate(own):
            if cond[m]:
                blocks.append(x)
            elif fill:
                blocks.append(sum(own[o][:, :1] for o in np.flatnonzero(cond)) * np.ones((1, DIMS[m]), np.float32))
            else:
                blocks.append(np.zeros_like(x))
        feats.append(np.concatenate(blocks, axis=1))
    return feats, latent


@pytest.mark.parametrize("fill", [False, True])
def test_blocks_are_the_stacked_design_and_share_repeats(fill: bool) -> None:
    feats, _ = _design(fill=fill)
    design = BlockDesign.from_conditions(feats, DIMS)
    np.testing.assert_array_equal(design.dense(), np.concatenate(feats))
    own_blocks = [int(CONDS[:, m].any()) for m in range(3)]
    fills = [len({tuple(c) for c in CONDS if not c[m]}) if fill else 0 for m in range(3)]
    assert [len(b) for b in design.blocks] == [o + f for o, f in zip(own_blocks, fills)]
    assert (design.refs[~CONDS] == -1).all() != fill  # zeros are not stored


def _sklearn_objective(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray, c: float, loss: str) -> float:
    z = x.astype(np.float64) @ w.T + b
    if loss == "softmax":
        z = z - z.max(axis=1, keepdims=True)
        ce = np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]
    else:
        ce = np.logaddexp(0.0, np.where(y > 0.5, -z, z)).sum(axis=1)
    return float(ce.mean() + 0.5 * np.sum(w * w) / (c * len(x)))


@pytest.mark.parametrize("strength", [0.01, 1.0])
def test_multinomial_reaches_sklearns_optimum(strength: float) -> None:
    from sklearn.linear_model import LogisticRegression

    feats, latent = _design(fill=True)
    y = np.digitize(latent, [-0.5, 0.5])  # 3 classes
    x, ys = np.concatenate(feats), np.tile(y, len(CONDS))
    ref = LogisticRegression(C=strength, tol=1e-8, max_iter=5000).fit(x, ys)
    w, b, _ = fit_logistic(BlockDesign.from_conditions(feats, DIMS), y, "softmax", strength, 2000)
    ours = _sklearn_objective(x, ys, w, b, strength, "softmax")
    theirs = _sklearn_objective(x, ys, ref.coef_, ref.intercept_, strength, "softmax")
    assert ours <= theirs + 1e-6
    np.testing.assert_allclose(w, ref.coef_, atol=2e-3)
    np.testing.assert_allclose(b, ref.intercept_, atol=2e-3)


def test_binary_and_multi_label_reach_sklearns_optima() -> None:
    from sklearn.linear_model import LogisticRegression

    feats, latent = _design(seed=1)
    labels = np.stack([latent > 0, latent > 1], axis=1)  # (n, 2) two binary labels
    x = np.concatenate(feats)
    w, b, _ = fit_logistic(BlockDesign.from_conditions(feats, DIMS), labels.astype(np.float64), "sigmoid", 0.1, 2000)
    for j in range(2):  # the joint fit of separable losses = each label's own fit
        ref = LogisticRegression(C=0.1, tol=1e-8, max_iter=5000).fit(x, np.tile(labels[:, j], len(CONDS)))
        np.testing.assert_allclose(w[j], ref.coef_[0], atol=2e-3)
        np.testing.assert_allclose(b[j], ref.intercept_[0], atol=2e-3)


def test_warm_start_reaches_the_cold_optimum() -> None:
    feats, latent = _design(seed=2)
    y = np.digitize(latent, [-0.5, 0.5])
    design = BlockDesign.from_conditions(feats, DIMS)
    _, _, theta = fit_logistic(design, y, "softmax", 0.01, 2000)
    warm_w, _, _ = fit_logistic(design, y, "softmax", 1.0, 2000, start=theta)
    cold_w, _, _ = fit_logistic(design, y, "softmax", 1.0, 2000)
    np.testing.assert_allclose(warm_w, cold_w, atol=2e-3)


def test_linear_fit_keeps_absent_classes_out_and_binary_as_one_row() -> None:
    """`lr`'s _fit: a class with no training row can never win; two classes present are
    one sigmoid row (as sklearn keeps them); a multi-label label that is constant in
    training gets a constant logit."""
    from pipeline.models.linear import ABSENT_CLASS_LOGIT, _fit

    feats, latent = _design(seed=3)
    design = BlockDesign.from_conditions(feats, DIMS)
    y = np.where(latent > 0, 3, 1)  # classes 1 and 3 of 5
    w, b = _fit("single_label", design, y, 1.0, 5, 500, {})
    assert (b[[0, 2, 4]] == ABSENT_CLASS_LOGIT).all() and (w[[0, 1, 2, 4]] == 0).all() and b[1] == 0.0
    pred = (np.concatenate(feats) @ w.T + b).argmax(axis=1)
    assert set(pred) <= {1, 3} and (pred == np.tile(y, len(CONDS))).mean() > 0.7
    multi = np.stack([latent > 0, np.ones_like(latent, bool), np.zeros_like(latent, bool)], axis=1)
    w, b = _fit("multi_label", design, multi.astype(np.float32), 1.0, 3, 500, {})
    assert b[1] == -ABSENT_CLASS_LOGIT and b[2] == ABSENT_CLASS_LOGIT and not w[1:].any()
