"""Accuracy of predicted against measured latencies: acc5, acc10, RMSPE, Spearman rho.

``acc5`` / ``acc10``: share of networks predicted within ±5% / ±10% of the measured
latency; ``rmspe``: root mean squared percentage error (a share: 0.05 = 5%); ``rho``:
Spearman rank correlation of predicted and measured (None for fewer than 3 networks or
constant values). Per family and over all rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy.stats import spearmanr


class Accuracy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int
    acc5: float
    acc10: float
    rmspe: float
    rho: float | None
    mean_error: float
    worst_error: float


class AccuracyReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overall: Accuracy
    families: dict[str, Accuracy]


def _score(pred: np.ndarray, meas: np.ndarray) -> Accuracy:
    err = (pred - meas) / meas
    rho: float | None = None
    if len(pred) >= 3 and np.ptp(pred) > 0 and np.ptp(meas) > 0:
        rho = float(spearmanr(pred, meas).statistic)
    return Accuracy(
        n=len(pred),
        acc5=float(np.mean(np.abs(err) <= 0.05)),
        acc10=float(np.mean(np.abs(err) <= 0.10)),
        rmspe=float(np.sqrt(np.mean(err**2))),
        rho=rho,
        mean_error=float(np.mean(err)),
        worst_error=float(err[np.argmax(np.abs(err))]),
    )


def score(rows: Sequence[tuple[str, float, float]]) -> AccuracyReport:
    """Score ``(family, predicted_ms, measured_ms)`` rows (see the module docstring)."""
    if not rows:
        raise ValueError("no rows to score: give (family, predicted_ms, measured_ms) tuples")
    bad = [r for r in rows if not r[2] > 0]
    if bad:
        raise ValueError(f"measured latencies must be positive; got {bad[:3]}")
    by: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for fam, p, m in rows:
        by[fam].append((p, m))
    arr = np.array([(p, m) for _, p, m in rows], dtype=np.float64)
    return AccuracyReport(
        overall=_score(arr[:, 0], arr[:, 1]),
        families={
            f: _score(np.array([p for p, _ in v]), np.array([m for _, m in v]))
            for f, v in sorted(by.items())
        },
    )
