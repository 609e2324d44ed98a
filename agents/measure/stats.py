"""Latency statistics: percentiles, dispersion, a distribution-free CI of the median.

Pure Python (``math`` only) so it can be used anywhere; results match numpy's defaults
(``numpy.percentile(..., method="linear")`` and ``numpy.std(..., ddof=1)``).

The 95% confidence interval of the median uses binomial order statistics: for ``n``
i.i.d. samples, the interval ``[X_(r), X_(n-r+1)]`` (1-based order statistics) covers
the true median with probability ``1 - 2 * P(B <= r - 1)`` where ``B ~ Binomial(n, 1/2)``.
We pick the largest ``r`` whose coverage is still at least 95%. No distributional
assumption is made, which suits latency samples (skewed, heavy right tail). With fewer
than 6 samples no such interval reaches 95% and the bounds are ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

from latencylab.schemas import LatencyStats

CONFIDENCE = 0.95
TUKEY_K = 1.5
_MIN_N_FOR_CI = 6  # 1 - 2 / 2**n >= 0.95 needs n >= 6


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` (0..100) of already sorted values.

    Same as numpy's default (``method="linear"``): position ``(n - 1) * q / 100``.
    """
    n = len(sorted_values)
    if n == 0:
        raise ValueError("percentile of an empty sequence")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be within [0, 100], got {q}")
    pos = (n - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    a, b = float(sorted_values[lo]), float(sorted_values[hi])
    return a + (b - a) * frac


@lru_cache(maxsize=4096)
def median_ci_ranks(n: int, confidence: float = CONFIDENCE) -> tuple[int, int] | None:
    """0-based indices ``(lo, hi)`` of the order statistics bounding the median's CI.

    Returns ``None`` when ``n`` is too small for any interval to reach ``confidence``.
    Exact binomial tail; the sum starts 8 standard deviations below the mean (the
    neglected mass is < 1e-15), so the cost is O(sqrt(n)) and large ``n`` stays cheap.
    """
    alpha_half = (1.0 - confidence) / 2.0
    if n < _MIN_N_FOR_CI or 2.0 * 0.5**n > 1.0 - confidence:
        return None
    mean, sd = n / 2.0, math.sqrt(n) / 2.0
    start = max(0, math.floor(mean - 8.0 * sd))
    log_norm = math.lgamma(n + 1) - n * math.log(2.0)
    cdf = 0.0
    k = start
    # Find the largest r (1-based) with P(B <= r - 1) <= alpha_half, i.e. the first k
    # where the CDF exceeds alpha_half gives r - 1 = k - 1  ->  r = k.
    while True:
        cdf += math.exp(log_norm - math.lgamma(k + 1) - math.lgamma(n - k + 1))
        if cdf > alpha_half:
            break
        k += 1
    r = k  # 1-based rank of the lower bound; k >= 1 because 0.5**n <= alpha_half
    return r - 1, n - r


def _median_of_sorted(sorted_values: Sequence[float]) -> float:
    return percentile(sorted_values, 50.0)


def median_ci(sorted_values: Sequence[float]) -> tuple[float, float] | None:
    """95% CI ``(low, high)`` of the median of sorted values, or ``None`` if n < 6."""
    ranks = median_ci_ranks(len(sorted_values))
    if ranks is None:
        return None
    lo, hi = ranks
    return float(sorted_values[lo]), float(sorted_values[hi])


def median_ci_rel_halfwidth(sorted_times: Sequence[float]) -> float:
    """Relative half-width of the 95% CI of the median (``inf`` if not available).

    Defined as ``max(median - low, high - median) / median``: the CI lies within
    ``median * (1 ± value)``, which is what ``MeasureSettings.target_rel_ci`` promises.
    Only the order statistics at the CI ranks and the median ranks are read, so an
    array partitioned at those indices (``numpy.partition``) works as well as a sorted one.
    """
    ci = median_ci(sorted_times)
    if ci is None:
        return math.inf
    med = _median_of_sorted(sorted_times)
    if med <= 0.0:
        return math.inf
    low, high = ci
    return max(med - low, high - med) / med


def tukey_outliers(sorted_values: Sequence[float], k: float = TUKEY_K) -> tuple[int, int]:
    """Counts of values below ``Q1 - k*IQR`` and above ``Q3 + k*IQR`` (Tukey fences)."""
    if len(sorted_values) < 4:
        return 0, 0
    q1 = percentile(sorted_values, 25.0)
    q3 = percentile(sorted_values, 75.0)
    iqr = q3 - q1
    low_fence, high_fence = q1 - k * iqr, q3 + k * iqr
    low = sum(1 for v in sorted_values if v < low_fence)
    high = sum(1 for v in sorted_values if v > high_fence)
    return low, high


def summarize(times_ms: Sequence[float]) -> LatencyStats:
    """Summary statistics of per-iteration latencies (milliseconds).

    ``std`` is the sample standard deviation (ddof=1; 0.0 for a single sample),
    ``cov = std / mean`` (0.0 when the mean is 0).
    """
    n = len(times_ms)
    if n == 0:
        raise ValueError("summarize() needs at least one latency sample")
    xs = sorted(float(t) for t in times_ms)
    if any(math.isnan(x) for x in xs):
        raise ValueError("latency samples contain NaN")
    mean = math.fsum(xs) / n
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    ci = median_ci(xs)
    low, high = tukey_outliers(xs)
    return LatencyStats(
        min=xs[0],
        mean=mean,
        p50=percentile(xs, 50.0),
        p90=percentile(xs, 90.0),
        p95=percentile(xs, 95.0),
        p99=percentile(xs, 99.0),
        max=xs[-1],
        std=std,
        cov=std / mean if mean != 0.0 else 0.0,
        ci95_low=ci[0] if ci else None,
        ci95_high=ci[1] if ci else None,
        outliers_low=low,
        outliers_high=high,
    )
