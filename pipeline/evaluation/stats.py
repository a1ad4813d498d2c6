"""The paired test every report uses: one system against another over (fold, run) units.

Two systems scored on the same folds and runs give one pair of values per unit; the
differences of those pairs are what is tested (paired two-tailed t-test, as M3S's
Table 5, and the Wilcoxon signed-rank test, which assumes no normality).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairedTest:
    """`x` against `y` over n paired units. `mean_difference` is the mean of x - y (of
    y - x when lower is better, so positive always means x better) and `wins` counts the
    units where x is better. A p-value is NaN where its test is undefined: under two
    pairs, a t-test over differences that are all equal (zero variance), a Wilcoxon test
    over differences that are all zero."""

    n: int
    mean_difference: float
    wins: int
    t_p: float
    wilcoxon_p: float


def paired_test(x: np.ndarray, y: np.ndarray, lower_is_better: bool = False) -> PairedTest:
    """Paired t-test and Wilcoxon signed-rank test of aligned per-unit values x and y
    (x[i] and y[i] from the same fold and run)."""
    from scipy import stats

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired_test needs two aligned 1-D arrays, got shapes {x.shape} and {y.shape}")
    n = len(x)
    d = y - x if lower_is_better else x - y
    mean = float(d.mean()) if n else math.nan
    t_p = w_p = math.nan
    if n > 1 and d.std() > 0:  # all-equal differences: t is infinite, its p meaningless
        t_p = float(stats.ttest_rel(x, y).pvalue)
    if n > 1 and np.any(d != 0):
        try:
            w_p = float(stats.wilcoxon(x, y).pvalue)
        except ValueError:  # scipy refuses some degenerate inputs: undefined as well
            w_p = math.nan
    return PairedTest(n=n, mean_difference=mean, wins=int((d > 0).sum()), t_p=t_p, wilcoxon_p=w_p)


def paired_units(x: Mapping[Hashable, float], y: Mapping[Hashable, float]) -> tuple[np.ndarray, np.ndarray]:
    """The values of x and y over the units (e.g. (fold, run)) both have, aligned in
    sorted unit order: a unit only one system finished is not a pair."""
    keys = sorted(set(x) & set(y))
    return np.array([x[k] for k in keys], np.float64), np.array([y[k] for k in keys], np.float64)


def t_interval(d: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The `level` confidence interval of the mean of paired differences d, from the t
    distribution with n - 1 degrees of freedom: the paired t-test's p is below 1 - level
    exactly when this interval leaves out 0. (NaN, NaN) under two values; a zero-width
    interval when every difference is equal (the t-test is undefined there)."""
    from scipy import stats

    d = np.asarray(d, np.float64)
    if d.ndim != 1:
        raise ValueError(f"t_interval needs a 1-D array of differences, got shape {d.shape}")
    n = len(d)
    if n < 2:
        return math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * d.std(ddof=1) / math.sqrt(n))
    return float(d.mean()) - half, float(d.mean()) + half
