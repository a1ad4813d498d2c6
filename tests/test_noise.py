"""NMER's noise scheduler: schedules, the t = 0 / t = 100 ends, impulse share, seeding."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from pipeline.data.noise import NoiseScheduler, NoiseStats, parse_noise

SCHEDULES = ["linear", "scaled-linear", "cosine"]


def _xs(seed: int = 0, b: int = 256) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, d, generator=g) * s + 0.5 for d, s in ((64, 1.0), (32, 3.0))]


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_alpha_bar_decreases_from_one_to_almost_zero(schedule):
    s = NoiseScheduler("gaussian", schedule)
    abar = [s.alpha_bar(t) for t in range(101)]
    assert abar[0] == 1.0 and abar[100] < 1e-3
    assert all(a >= b for a, b in itertools.pairwise(abar))


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("kind", ["gaussian", "impulse"])
def test_t0_leaves_features_unchanged(kind, schedule):
    xs = _xs()
    out = NoiseScheduler(kind, schedule)(xs, 0, torch.Generator().manual_seed(1))
    for x, o in zip(xs, out):
        torch.testing.assert_close(o, x)
    almost = NoiseScheduler(kind, schedule)(xs, 1, torch.Generator().manual_seed(1))
    for x, o in zip(xs, almost):  # t = 1: still (almost) the features
        assert float(((o - x) ** 2).mean() / (x**2).mean()) < 0.05


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_t100_gaussian_is_almost_pure_noise_of_the_data_scale(schedule):
    xs = _xs(b=2048)
    stats = NoiseStats.of(xs)
    out = NoiseScheduler("gaussian", schedule)(xs, 100, torch.Generator().manual_seed(2), stats)
    for x, o, sd in zip(xs, out, stats.std):
        corr = np.corrcoef(x.flatten().numpy(), o.flatten().numpy())[0, 1]
        assert abs(corr) < 0.05, "signal survived at t = 100"
        assert abs(float(o.std()) / sd - 1) < 0.05 and abs(float(o.mean())) < 0.05 * sd


@pytest.mark.parametrize("t", [20, 40, 60, 80, 100])
def test_impulse_replaces_the_documented_share_with_max_magnitude_values(t):
    xs = _xs(b=2048)
    stats = NoiseStats.of(xs)
    sched = NoiseScheduler("impulse")
    out = sched(xs, t, torch.Generator().manual_seed(3), stats)
    for x, o, amp in zip(xs, out, stats.maxabs):
        changed = o != x
        assert float(changed.float().mean()) == pytest.approx(sched.corrupt_share(t), abs=0.01)
        assert torch.all(o[changed].abs() == amp), "replaced values are not +/- max |x|"
        signs = (o[changed] > 0).float().mean()
        assert 0.45 < float(signs) < 0.55 or changed.sum() < 100


@pytest.mark.parametrize("kind", ["gaussian", "impulse"])
def test_evaluation_noise_is_identical_for_the_same_seed(kind):
    xs = _xs()
    a = NoiseScheduler(kind)(xs, 60, torch.Generator().manual_seed(42))
    b = NoiseScheduler(kind)(xs, 60, torch.Generator().manual_seed(42))
    c = NoiseScheduler(kind)(xs, 60, torch.Generator().manual_seed(43))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not all(torch.equal(u, v) for u, v in zip(a, c))


def test_absent_modalities_stay_zero():
    xs = _xs(b=8)
    xs[1][:4] = 0
    out = NoiseScheduler("gaussian")(xs, 80, torch.Generator().manual_seed(0))
    assert torch.all(out[1][:4] == 0) and not torch.all(out[1][4:] == xs[1][4:])


def test_noisy_bank_is_seeded_per_call_and_identical_across_runs():
    from pipeline.data.bank import FeatureBank
    from pipeline.evaluation.robustness import noisy_bank

    class Bank:  # the attributes noisy_bank reads, and FeatureBank's copy-with-rows
        pos = np.arange(16)
        x = _xs(b=16)
        with_rows = FeatureBank.with_rows

    stats = NoiseStats.of(Bank.x)
    rows = np.arange(0, 16, 2)
    a = noisy_bank(Bank(), rows, NoiseScheduler("gaussian"), 60, 7, stats)
    b = noisy_bank(Bank(), rows, NoiseScheduler("gaussian"), 60, 7, stats)
    for xa, xb, x in zip(a.x, b.x, Bank.x):
        assert torch.equal(xa, xb) and torch.equal(xa[1::2], x[1::2]) and not torch.equal(xa[::2], x[::2])


def test_parse_noise():
    assert parse_noise("gaussian:20,40") == ("gaussian", [20, 40])
    for bad in ("gauss:20", "impulse:", "impulse:120", "impulse"):
        with pytest.raises(ValueError):
            parse_noise(bad)
