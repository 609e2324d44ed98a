"""How well a latency table predicts whole networks: nn-Meter's accuracy, RMSPE, Spearman,
and a least-squares linear calibration ``a * lut_sum + b`` scored out of sample.

Pure Python (no numpy): a validation sample holds a few hundred numbers at most.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

MIN_FIT = 4
"""Fewest validated networks that get a calibration (each fold must fit on >= 3)."""


def ranks(xs: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing their average rank."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    out = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    n = len(xs)
    if n < 2:
        return None
    mx, my = math.fsum(xs) / n, math.fsum(ys) / n
    sxy = math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = math.fsum((x - mx) ** 2 for x in xs)
    syy = math.fsum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    return pearson(ranks(xs), ranks(ys))


def score(pred: Sequence[float], meas: Sequence[float]) -> dict[str, Any]:
    """n, acc5 / acc10 (share within +-5% / +-10%), RMSPE, Spearman rho, bias (mean relative
    error); shares and errors are fractions (0.95 = 95%)."""
    errs = [(p - m) / m for p, m in zip(pred, meas, strict=True)]
    n = len(errs)
    if n == 0:
        return {"n": 0, "acc5": 0.0, "acc10": 0.0, "rmspe": 0.0, "spearman": None, "bias": 0.0}
    rho = spearman(pred, meas)
    return {
        "n": n,
        "acc5": sum(abs(e) <= 0.05 for e in errs) / n,
        "acc10": sum(abs(e) <= 0.10 for e in errs) / n,
        "rmspe": math.sqrt(math.fsum(e * e for e in errs) / n),
        "spearman": None if rho is None else round(rho, 6),
        "bias": math.fsum(errs) / n,
    }


def fit_linear(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least squares ``y = a * x + b`` (``a = 1`` offset fit if the xs are all equal)."""
    n = len(xs)
    mx, my = math.fsum(xs) / n, math.fsum(ys) / n
    sxx = math.fsum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 1.0, my - mx
    a = math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return a, my - a * mx


def cross_validated(xs: Sequence[float], ys: Sequence[float], folds: int) -> list[float]:
    """Out-of-fold predictions: arch ``i`` is predicted by a fit on the folds without it."""
    k = max(2, min(folds, len(xs)))
    pred = [0.0] * len(xs)
    for f in range(k):
        train = [i for i in range(len(xs)) if i % k != f]
        a, b = fit_linear([xs[i] for i in train], [ys[i] for i in train])
        for i in range(f, len(xs), k):
            pred[i] = a * xs[i] + b
    return pred


def _points(lut: Sequence[float], pred: Sequence[float], meas: Sequence[float]) -> list[Any]:
    return [
        {"lut_sum_ms": x, "predicted_ms": p, "measured_ms": m}
        for x, p, m in zip(lut, pred, meas, strict=True)
    ]


def assess(
    lut: Sequence[float], meas: Sequence[float], folds: int = 5
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``(quality, calibration)`` of a validation sample; calibration None if not better.

    ``quality["points"]`` pairs each measurement with the best predictor's out-of-sample
    prediction."""
    if not meas:
        return None, None
    plain = score(lut, meas)
    method = (
        f"{len(meas)} random archs measured whole; lut_sum scored on all of them; linear "
        f"calibration a*lut_sum+b (least squares) scored out of sample by {folds}-fold CV, "
        "then fitted on all"
    )
    quality: dict[str, Any] = {**plain, "predictor": "lut_sum", "lut_sum": plain, "method": method}
    quality["points"] = _points(lut, lut, meas)
    if len(meas) < MIN_FIT:
        quality["method"] = f"{len(meas)} archs: too few to calibrate; lut_sum only"
        return quality, None
    oof = cross_validated(lut, meas, folds)
    cal = score(oof, meas)
    quality["calibrated"] = cal
    a, b = fit_linear(lut, meas)
    calibration = {"kind": "linear", "a": a, "b": b, "n_fit": len(meas), "folds": folds}
    if (cal["acc10"], -cal["rmspe"]) > (plain["acc10"], -plain["rmspe"]):
        quality.update({k: cal[k] for k in cal}, predictor="linear")
        quality["points"] = _points(lut, oof, meas)
        return quality, calibration
    return quality, None


def _ratios(xs: Sequence[float]) -> dict[str, float]:
    s = sorted(xs)
    n = len(s)
    mid = s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
    return {"n": n, "mean": math.fsum(s) / n, "median": mid, "min": s[0], "max": s[-1]}


def assess_kinds(
    rows: Sequence[tuple[str, int, str, float, float | None]],
    quality: dict[str, Any],
    calibration: dict[str, Any] | None,
    ops: dict[str, dict[str, int]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per kind of validation network, how well the table predicts it.

    ``rows`` are ``(kind, idx, arch key, lut_sum_ms, measured_ms)`` of every measured
    network. ``generated`` repeats ``quality`` (its own out-of-sample figures); every other
    kind is scored with the table's final predictor (the calibration fitted on generated
    networks, if any: out of sample for them by construction) and compared, arch by arch,
    with the generated network of the same arch (``vs_generated``: measured over measured).
    """
    a, b = (calibration["a"], calibration["b"]) if calibration else (1.0, 0.0)
    by_kind: dict[str, list[tuple[int, str, float, float]]] = {}
    for kind, idx, key, lut_ms, meas_ms in rows:
        if meas_ms is not None and meas_ms > 0:
            by_kind.setdefault(kind, []).append((idx, key, lut_ms, float(meas_ms)))
    generated = {key: meas for _, key, _, meas in by_kind.get("generated", [])}
    out: dict[str, dict[str, Any]] = {}
    for kind, items in by_kind.items():
        lut = [x[2] for x in items]
        meas = [x[3] for x in items]
        if kind == "generated":
            keys = ("n", "acc5", "acc10", "rmspe", "spearman", "bias", "predictor", "lut_sum")
            entry = {k: quality[k] for k in keys if k in quality}
            entry["points"] = quality.get("points", [])
        else:
            pred = [a * x + b for x in lut]
            entry = {**score(pred, meas), "predictor": "linear" if calibration else "lut_sum"}
            entry["lut_sum"] = score(lut, meas)
            entry["points"] = [
                {"idx": i, "lut_sum_ms": x, "predicted_ms": p, "measured_ms": m}
                for (i, _, x, m), p in zip(items, pred, strict=True)
            ]
            paired = [m / generated[k] for _, k, _, m in items if k in generated]
            if paired:
                entry["vs_generated"] = _ratios(paired)
        entry["ops"] = (ops or {}).get(kind, {})
        out[kind] = entry
    return out
