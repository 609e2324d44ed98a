"""Statistics of the measurement protocol against numpy and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.measure.stats import (
    median_ci,
    median_ci_ranks,
    median_ci_rel_halfwidth,
    percentile,
    summarize,
    tukey_outliers,
)


def _coverage(n: int, lo: int) -> float:
    """Exact coverage of [X_(lo+1), X_(n-lo)] (1-based) for the median."""
    return 1.0 - 2.0 * sum(math.comb(n, i) for i in range(lo + 1)) / 2**n


def test_summarize_matches_numpy() -> None:
    rng = np.random.default_rng(42)
    xs = rng.lognormal(mean=1.0, sigma=0.4, size=1001)
    s = summarize(xs.tolist())
    assert s.min == pytest.approx(xs.min())
    assert s.max == pytest.approx(xs.max())
    assert s.mean == pytest.approx(xs.mean())
    for field, q in (("p50", 50), ("p90", 90), ("p95", 95), ("p99", 99)):
        assert getattr(s, field) == pytest.approx(np.percentile(xs, q)), field
    assert s.std == pytest.approx(np.std(xs, ddof=1))
    assert s.cov == pytest.approx(np.std(xs, ddof=1) / xs.mean())
    assert s.ci95_low is not None and s.ci95_high is not None
    assert s.ci95_low <= s.p50 <= s.ci95_high


def test_summarize_hand_computed() -> None:
    s = summarize([5.0, 1.0, 4.0, 2.0, 3.0])
    assert (s.min, s.max, s.mean, s.p50) == (1.0, 5.0, 3.0, 3.0)
    assert s.p90 == pytest.approx(4.6)  # position 0.9 * 4 = 3.6 -> 4 + 0.6 * (5 - 4)
    assert s.p99 == pytest.approx(4.96)
    assert s.std == pytest.approx(math.sqrt(2.5))
    assert s.cov == pytest.approx(math.sqrt(2.5) / 3.0)
    assert s.ci95_low is None and s.ci95_high is None  # n = 5 < 6: no 95% interval exists
    assert (s.outliers_low, s.outliers_high) == (0, 0)


def test_percentile_interpolation_even_n() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile([1.0, 2.0, 3.0, 4.0], 25) == pytest.approx(1.75)
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_edge_case_single_sample() -> None:
    s = summarize([2.5])
    assert s.min == s.max == s.mean == s.p50 == s.p90 == s.p95 == s.p99 == 2.5
    assert s.std == 0.0 and s.cov == 0.0
    assert s.ci95_low is None and s.ci95_high is None
    assert (s.outliers_low, s.outliers_high) == (0, 0)


def test_edge_case_two_samples() -> None:
    s = summarize([1.0, 3.0])
    assert s.p50 == pytest.approx(2.0)
    assert s.p90 == pytest.approx(np.percentile([1.0, 3.0], 90))
    assert s.std == pytest.approx(np.std([1.0, 3.0], ddof=1))
    assert s.ci95_low is None


def test_empty_and_nan_rejected() -> None:
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError):
        summarize([1.0, float("nan")])


def test_zero_mean_gives_zero_cov() -> None:
    assert summarize([0.0, 0.0, 0.0]).cov == 0.0


@pytest.mark.parametrize(
    ("n", "expected_1_based"),
    [(6, (1, 6)), (10, (2, 9)), (20, (6, 15)), (50, (18, 33)), (100, (40, 61))],
)
def test_median_ci_ranks_match_binomial_tables(n: int, expected_1_based: tuple[int, int]) -> None:
    ranks = median_ci_ranks(n)
    assert ranks is not None
    assert (ranks[0] + 1, ranks[1] + 1) == expected_1_based


def test_median_ci_ranks_are_the_tightest_with_95_coverage() -> None:
    for n in range(1, 6):
        assert median_ci_ranks(n) is None
    for n in range(6, 400):
        ranks = median_ci_ranks(n)
        assert ranks is not None
        lo, hi = ranks
        assert hi == n - 1 - lo  # symmetric
        assert _coverage(n, lo) >= 0.95, n
        assert _coverage(n, lo + 1) < 0.95, n  # one rank tighter would undercover


def test_median_ci_ranks_large_n_close_to_normal_approximation() -> None:
    n = 1_000_000
    ranks = median_ci_ranks(n)
    assert ranks is not None
    approx = n / 2 - 1.959964 * math.sqrt(n) / 2
    assert abs(ranks[0] - approx) <= 2


def test_median_ci_coverage_on_skewed_data() -> None:
    """The distribution-free CI covers the true median ~95% (or a bit more) of the time."""
    rng = np.random.default_rng(7)
    true_median = math.log(2.0)  # exponential(1)
    n, reps, hits = 50, 3000, 0
    for _ in range(reps):
        ci = median_ci(np.sort(rng.exponential(size=n)).tolist())
        assert ci is not None
        hits += ci[0] <= true_median <= ci[1]
    rate = hits / reps
    assert 0.945 <= rate <= 0.985, rate  # exact coverage for n=50 is 0.967


def test_median_ci_rel_halfwidth() -> None:
    assert median_ci_rel_halfwidth([1.0, 2.0, 3.0]) == math.inf
    xs = [float(v) for v in range(1, 101)]  # median 50.5, CI [40, 61]
    assert median_ci_rel_halfwidth(xs) == pytest.approx(10.5 / 50.5)
    assert median_ci_rel_halfwidth([7.0] * 30) == 0.0
    assert median_ci_rel_halfwidth([0.0] * 30) == math.inf


def test_median_ci_rel_halfwidth_accepts_partitioned_array() -> None:
    rng = np.random.default_rng(3)
    for n in (57, 200, 1001):
        xs = rng.gamma(2.0, size=n)
        lo, hi = median_ci_ranks(n) or (0, 0)
        mid = (n - 1) // 2
        part = np.partition(xs, sorted({lo, hi, mid, min(mid + 1, n - 1)}))
        assert median_ci_rel_halfwidth(part) == pytest.approx(median_ci_rel_halfwidth(np.sort(xs)))


def test_tukey_outlier_counts() -> None:
    base = [float(v) for v in range(1, 11)]  # Q1 3.25, Q3 7.75, IQR 4.5 -> fences -3.5, 14.5
    assert tukey_outliers(base) == (0, 0)
    xs = sorted([*base, 14.5, 14.6, 40.0, -3.6])
    q1, q3 = np.percentile(xs, [25, 75])
    iqr = q3 - q1
    expected = (
        int(np.sum(np.array(xs) < q1 - 1.5 * iqr)),
        int(np.sum(np.array(xs) > q3 + 1.5 * iqr)),
    )
    assert tukey_outliers(xs) == expected
    s = summarize(xs)
    assert (s.outliers_low, s.outliers_high) == expected
    assert expected[1] >= 1


def test_tukey_hand_case() -> None:
    s = summarize([*[float(v) for v in range(1, 11)], 100.0, -100.0])
    assert (s.outliers_low, s.outliers_high) == (1, 1)
