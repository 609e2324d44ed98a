"""How far a measurement can be trusted: quality flags and the between-run summary.

Light imports only (pydantic). ``assess`` is one pure function from a result's raw iteration
times, statistics, settings and environment to its flags; the coordinator runs it when a
result is reported and, for results stored before flags existed, when they are read. The
thresholds are named constants documented with their reasons in docs/measurement.md
("Quality flags"). ``between_runs`` summarizes a measurement repeated in fresh processes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from latencylab.modes import modes

Severity = Literal["info", "warning"]

HIGH_COV = 0.10
"""CoV (std / mean) at or above which a result is flagged ``high_cov``."""
MIN_MODE_SEPARATION = 0.05
"""Two modes this far apart (relative to the faster one) make a result ``multimodal``."""
BUSY_LOADAVG_PER_CPU = 1.0
"""A 1-minute load average above this many runnable tasks per logical CPU: ``busy_host``."""
BUSY_OTHER_CPU_SHARE = 0.25
"""Other processes using at least this share of all CPU time just before the steady state:
``busy_host``."""
RUNS_DISAGREE_SPREAD = 0.05
"""Repeat medians spanning more than this (max / min - 1): ``runs_disagree`` (MLPerf Mobile
asks for 5 runs within 5%)."""
CAPS = ("max_duration", "max_runs")

# Two-sided 95% Student t quantiles t(0.975, df) for df = 1..30 (tests check them with SciPy).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class QualityFlag(_Model):
    code: str = Field(
        description="high_cov | multimodal | ci_not_converged | too_few_runs | busy_host | "
        "runs_disagree | within_process_ci"
    )
    severity: Severity = Field(
        description="warning: the numbers deserve less trust; info: what they do not cover"
    )
    message: str = Field(description="What was found, with the numbers")
    value: float | None = Field(None, description="The figure that raised the flag")
    threshold: float | None = Field(None, description="The threshold it was compared with")


class RepeatRun(_Model):
    """One of the fresh processes of a repeated measurement."""

    index: int = Field(description="0-based; raw times are concatenated in this order")
    runs: int
    p50_ms: float | None
    mean_ms: float
    cov: float | None = None
    stop_reason: str | None = None
    ci_rel_halfwidth: float | None = Field(
        None, description="Half-width of this process's own 95% CI of the median / median"
    )
    steady_duration_s: float | None = None
    load_ms: float | None = None
    host_load: dict[str, Any] = Field(
        default_factory=dict, description="environment.host_load of this process"
    )
    pid: int | None = Field(None, description="Process id of the measuring process")


class RepeatsSummary(_Model):
    """The steady state measured in ``count`` independent fresh processes."""

    count: int
    runs: list[RepeatRun]
    p50_median_ms: float = Field(description="Median of the repeat medians")
    p50_mean_ms: float = Field(description="Mean of the repeat medians")
    p50_cov: float = Field(description="CoV of the repeat medians: the between-run spread")
    p50_spread: float = Field(description="max / min - 1 of the repeat medians")
    p50_ci95_low: float | None = Field(
        None, description="95% CI of the median across runs (t-interval over repeat medians)"
    )
    p50_ci95_high: float | None = None
    ci_rel_halfwidth: float | None = Field(
        None, description="(p50_ci95_high - p50_ci95_low) / 2 / p50_mean_ms"
    )
    ci_method: str = "t-interval over the repeat medians"


def t975(df: int) -> float:
    """Two-sided 95% Student t quantile for ``df`` >= 1 degrees of freedom."""
    if df < 1:
        raise ValueError("t975 needs at least 1 degree of freedom")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964  # Cornish-Fisher expansion around the normal quantile: within 1e-4 above 30
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def between_runs(runs: Sequence[RepeatRun]) -> RepeatsSummary:
    """Summary of repeats: spread and a t-interval of the median over the repeat medians."""
    medians = [r.p50_ms if r.p50_ms is not None else r.mean_ms for r in runs]
    k = len(medians)
    if k == 0:
        raise ValueError("between_runs needs at least one repeat")
    xs = sorted(medians)
    mid = xs[k // 2] if k % 2 else (xs[k // 2 - 1] + xs[k // 2]) / 2
    mean = math.fsum(xs) / k
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (k - 1)) if k > 1 else 0.0
    low = high = rel = None
    if k > 1:
        half = t975(k - 1) * sd / math.sqrt(k)
        low, high = mean - half, mean + half
        rel = half / mean if mean > 0 else None
    return RepeatsSummary(
        count=k,
        runs=list(runs),
        p50_median_ms=mid,
        p50_mean_ms=mean,
        p50_cov=sd / mean if mean > 0 else 0.0,
        p50_spread=xs[-1] / xs[0] - 1.0 if xs[0] > 0 else 0.0,
        p50_ci95_low=low,
        p50_ci95_high=high,
        ci_rel_halfwidth=rel,
    )


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _rel_halfwidth(latency: Mapping[str, Any]) -> float | None:
    p50, low, high = latency.get("p50"), latency.get("ci95_low"), latency.get("ci95_high")
    if p50 is None or low is None or high is None or p50 <= 0:
        return None
    return float(max(p50 - low, high - p50) / p50)


def _host_busy(host: Mapping[str, Any], environment: Mapping[str, Any]) -> str | None:
    """Why the host was busy, or None: load average per CPU, other processes' CPU share."""
    cpus = host.get("logical_cores") or environment.get("logical_cores")
    load = host.get("loadavg_1m")
    if load is None and isinstance(environment.get("loadavg"), list) and environment["loadavg"]:
        load = environment["loadavg"][0]
    why = []
    if cpus and load is not None and load > BUSY_LOADAVG_PER_CPU * cpus:
        why.append(f"load average {load:.2f} on {cpus} CPUs")
    share = host.get("other_share")
    if share is not None and share >= BUSY_OTHER_CPU_SHARE:
        window = host.get("window_s", 0)
        why.append(
            f"other processes used {host.get('other_cpus', 0):.2f} of {cpus} CPUs "
            f"({_pct(share)}) in the {window:g} s before the steady state"
        )
    return "; ".join(why) or None


def _segments(times: Sequence[float], repeats: RepeatsSummary | None) -> list[Sequence[float]]:
    sizes = [r.runs for r in repeats.runs] if repeats else []
    if len(sizes) < 2 or sum(sizes) != len(times):
        return [times]
    out, at = [], 0
    for n in sizes:
        out.append(times[at : at + n])
        at += n
    return out


def _runs_of(
    runs: int, stop_reason: str | None, latency: Mapping[str, Any], repeats: RepeatsSummary | None
) -> list[tuple[str, int, str | None, float | None]]:
    """(label, runs, stop_reason, ci half-width) of each process that measured."""
    if repeats is not None and repeats.count > 1:
        return [
            (f"repeat {r.index + 1}", r.runs, r.stop_reason, r.ci_rel_halfwidth)
            for r in repeats.runs
        ]
    return [("", runs, stop_reason, _rel_halfwidth(latency))]


def _per_process(
    procs: list[tuple[str, int, str | None, float | None]], min_runs: int, target_rel_ci: float
) -> list[QualityFlag]:
    flags = []
    short = [(label, n, reason) for label, n, reason, _ in procs if n < min_runs]
    if short:
        where = ", ".join(
            (f"{label}: " if label else "") + str(n) + (f", stopped by {reason}" if reason else "")
            for label, n, reason in short
        )
        flags.append(
            QualityFlag(
                code="too_few_runs",
                severity="warning",
                message=f"fewer steady-state runs than min_runs={min_runs} ({where}): the "
                "statistics rest on fewer samples than asked",
                value=float(min(n for _, n, _ in short)),
                threshold=float(min_runs),
            )
        )
    open_ci = [
        (label, reason, hw)
        for label, _, reason, hw in procs
        if reason in CAPS and (hw is None or hw > target_rel_ci)
    ]
    if open_ci:
        parts = [
            f"{label + ': ' if label else ''}{reason} with "
            + (f"the CI at ±{_pct(hw)}" if hw is not None else "too few runs for any CI")
            for label, reason, hw in open_ci
        ]
        known = [hw for _, _, hw in open_ci if hw is not None]
        flags.append(
            QualityFlag(
                code="ci_not_converged",
                severity="warning",
                message=f"stopped before the 95% CI of the median reached ±{_pct(target_rel_ci)} "
                f"(target_rel_ci): {'; '.join(parts)}",
                value=max(known) if known else None,
                threshold=target_rel_ci,
            )
        )
    return flags


def assess(
    times_ms: Sequence[float],
    *,
    latency: Mapping[str, Any] | None,
    runs: int,
    stop_reason: str | None,
    min_runs: int,
    target_rel_ci: float,
    environment: Mapping[str, Any],
    repeats: RepeatsSummary | None = None,
) -> list[QualityFlag]:
    """Every quality flag of one succeeded result (pure: the same inputs, the same flags).

    ``times_ms`` are the raw steady-state times (pooled over repeats, in repeat order; empty
    for a device tool that reports aggregates only: then no mode analysis), ``latency`` the
    result's ``LatencyStats`` as a dict, ``min_runs``/``target_rel_ci`` the job's settings.
    """
    lat = latency or {}
    flags = _per_process(_runs_of(runs, stop_reason, lat, repeats), min_runs, target_rel_ci)
    cov, mean = lat.get("cov"), lat.get("mean")
    if cov is not None and cov >= HIGH_COV:
        flags.append(
            QualityFlag(
                code="high_cov",
                severity="warning",
                message=f"CoV {_pct(cov)} (std {lat.get('std') or 0:.3g} ms over mean "
                f"{mean or 0:.3g} ms) is at or above {_pct(HIGH_COV)}: iterations vary a lot",
                value=cov,
                threshold=HIGH_COV,
            )
        )
    for i, seg in enumerate(_segments(times_ms, repeats)):
        found = modes(seg)
        if len(found) > 1 and found[-1].at_ms >= (1 + MIN_MODE_SEPARATION) * found[0].at_ms:
            where = f"repeat {i + 1}: " if repeats is not None and repeats.count > 1 else ""
            flags.append(
                QualityFlag(
                    code="multimodal",
                    severity="warning",
                    message=f"{where}{len(found)} modes in the iteration times: "
                    + ", ".join(f"{m.at_ms:.3g} ms ({_pct(m.share)})" for m in found)
                    + "; the median depends on how the runs split between them",
                    value=found[-1].at_ms / found[0].at_ms - 1.0,
                    threshold=MIN_MODE_SEPARATION,
                )
            )
            break
    hosts = [r.host_load for r in repeats.runs] if repeats and repeats.count > 1 else []
    hosts = hosts or [environment.get("host_load") or {}]
    busy = [(i, why) for i, h in enumerate(hosts) if (why := _host_busy(h, environment))]
    if busy:
        label = (lambda i: f"repeat {i + 1}: ") if len(hosts) > 1 else (lambda i: "")
        flags.append(
            QualityFlag(
                code="busy_host",
                severity="warning",
                message="the host was busy when measuring started: "
                + "; ".join(label(i) + why for i, why in busy),
                value=max((h.get("other_share") or 0.0) for h in hosts),
                threshold=BUSY_OTHER_CPU_SHARE,
            )
        )
    if repeats is not None and repeats.count > 1:
        if repeats.p50_spread > RUNS_DISAGREE_SPREAD:
            lo = min(r.p50_ms or r.mean_ms for r in repeats.runs)
            hi = max(r.p50_ms or r.mean_ms for r in repeats.runs)
            flags.append(
                QualityFlag(
                    code="runs_disagree",
                    severity="warning",
                    message=f"the medians of the {repeats.count} repeats span "
                    f"{_pct(repeats.p50_spread)} ({lo:.3g} to {hi:.3g} ms), more than "
                    f"{_pct(RUNS_DISAGREE_SPREAD)}",
                    value=repeats.p50_spread,
                    threshold=RUNS_DISAGREE_SPREAD,
                )
            )
    else:
        hw = _rel_halfwidth(lat)
        ci = f" (±{_pct(hw)})" if hw is not None else ""
        flags.append(
            QualityFlag(
                code="within_process_ci",
                severity="info",
                message=f"one process measured this: the 95% CI of the median{ci} covers the "
                "variation within that process only; medians of fresh processes vary more "
                "(settings.repeats >= 3 measures that)",
                value=hw,
            )
        )
    return flags


def flagged(flags: Sequence[QualityFlag]) -> bool:
    """Whether any flag is a warning (info flags say what a number covers, not that it is off)."""
    return any(f.severity == "warning" for f in flags)
