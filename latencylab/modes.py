"""Modes of a latency distribution: a Gaussian kernel density estimate and its peaks.

Pure Python (``math`` only): the coordinator runs it over stored raw times, the SDK can run it
over ``Client.raw_times``. Why a KDE and not the bimodality coefficient or Hartigan's dip
test (docs/measurement.md, "Multimodality"): latency samples are right-skewed with a long
tail, which alone pushes the bimodality coefficient over its 5/9 threshold (an exponential
tail sits exactly on it); SciPy has no dip test and the ``diptest`` package is a compiled
extra the coordinator does not carry. The KDE names the modes it finds (where, how much of
the sample), so a flag can say "two modes, at 8.1 ms (55%) and 16.0 ms (45%)".

The estimate: Silverman's rule-of-thumb bandwidth ``0.9 * min(std, IQR / 1.34) * n^(-1/5)``
(it over-smooths a mixture, so it errs towards one mode), never below the data's own
resolution (a coarse timer gives values on a lattice, which must not read as many modes),
on a ``GRID``-point grid over the 0.5th..99.5th percentiles (the far tail forms no mode).
A peak counts as a mode only when the density between it and its neighbour falls below
``MAX_VALLEY`` of the lower peak and its basin holds at least ``MIN_SHARE`` of the sample;
weaker peaks merge into their neighbour.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

MIN_RUNS = 50
"""Fewer samples than this: no mode analysis (a KDE of a few dozen points shows noise)."""
MIN_SHARE = 0.10
"""A mode holds at least this share of the samples (smaller clusters are tail, not a mode)."""
MAX_VALLEY = 0.6
"""Two peaks are separate modes only if the density between them falls below this share of
the lower peak (two equal normal modes 3 sd apart dip to about 0.6)."""
GRID = 256
TAIL = 0.5
"""Percent cut off each end of the sample before the grid is laid (outliers form no mode)."""


@dataclass(frozen=True)
class Mode:
    at_ms: float
    """Where the density peaks."""
    share: float
    """Share of all samples in this mode's basin (0..1)."""


def _percentile(xs: Sequence[float], q: float) -> float:
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _bandwidth(xs: Sequence[float]) -> float:
    n = len(xs)
    mean = math.fsum(xs) / n
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    iqr = _percentile(xs, 75.0) - _percentile(xs, 25.0)
    spread = min(std, iqr / 1.34) if iqr > 0 else std
    h = 0.9 * spread * n ** (-0.2)
    resolution = min((b - a for a, b in pairwise(xs) if b > a), default=0.0)
    return max(h, resolution)


def _density(xs: Sequence[float], lo: float, width: float, h: float) -> list[float]:
    counts = [0] * GRID
    for x in xs:
        i = int((x - lo) / width)
        if 0 <= i < GRID:
            counts[i] += 1
    reach = min(GRID, math.ceil(4.0 * h / width))
    kernel = [math.exp(-0.5 * (j * width / h) ** 2) for j in range(reach + 1)]
    dens = [0.0] * GRID
    for i, c in enumerate(counts):
        if c:
            for j in range(max(0, i - reach), min(GRID, i + reach + 1)):
                dens[j] += c * kernel[abs(i - j)]
    return dens


def _peaks(dens: Sequence[float]) -> list[int]:
    """Grid indices of local maxima (a plateau counts once, at its left end)."""
    out = []
    for i, d in enumerate(dens):
        left = dens[i - 1] if i > 0 else -1.0
        if d <= left or d <= 0.0:
            continue
        j = i
        while j + 1 < len(dens) and dens[j + 1] == d:
            j += 1
        right = dens[j + 1] if j + 1 < len(dens) else -1.0
        if d > right:
            out.append(i)
    return out


def _valley(dens: Sequence[float], a: int, b: int) -> int:
    """Index of the lowest density between peaks ``a`` < ``b``."""
    return min(range(a, b + 1), key=lambda i: dens[i])


def _merge_shallow(dens: Sequence[float], peaks: list[int]) -> list[int]:
    """Drop the lower peak of the pair with the shallowest valley until every valley is deep."""
    peaks = list(peaks)
    while len(peaks) > 1:
        ratios = [dens[_valley(dens, a, b)] / min(dens[a], dens[b]) for a, b in pairwise(peaks)]
        k = max(range(len(ratios)), key=lambda i: ratios[i])
        if ratios[k] <= MAX_VALLEY:
            break
        a, b = peaks[k], peaks[k + 1]
        peaks.remove(a if dens[a] < dens[b] else b)
    return peaks


def _shares(xs: Sequence[float], lo: float, width: float, bounds: list[int]) -> list[float]:
    """Share of samples in each basin; ``bounds`` are the grid indices between basins."""
    edges = [lo + (b + 0.5) * width for b in bounds]
    counts = [0] * (len(edges) + 1)
    k = 0
    for x in xs:  # sorted
        while k < len(edges) and x >= edges[k]:
            k += 1
        counts[k] += 1
    return [c / len(xs) for c in counts]


def modes(times_ms: Sequence[float]) -> list[Mode]:
    """The modes of ``times_ms``, fastest first; ``[]`` when there are too few samples."""
    xs = sorted(float(t) for t in times_ms)
    if len(xs) < MIN_RUNS:
        return []
    lo, hi = _percentile(xs, TAIL), _percentile(xs, 100.0 - TAIL)
    h = _bandwidth(xs)
    if hi <= lo or h <= 0.0:
        return [Mode(at_ms=xs[len(xs) // 2], share=1.0)]
    start = lo - 3.0 * h
    width = (hi - lo + 6.0 * h) / GRID
    dens = _density(xs, start, width, h)
    peaks = _merge_shallow(dens, _peaks(dens))
    while True:
        bounds = [_valley(dens, a, b) for a, b in pairwise(peaks)]
        shares = _shares(xs, start, width, bounds)
        weakest = min(range(len(peaks)), key=lambda i: shares[i])
        if len(peaks) == 1 or shares[weakest] >= MIN_SHARE:
            break
        peaks.pop(weakest)  # its samples join the neighbouring basin
        peaks = _merge_shallow(dens, peaks)
    return [
        Mode(at_ms=start + (p + 0.5) * width, share=s) for p, s in zip(peaks, shares, strict=True)
    ]
