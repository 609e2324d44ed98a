"""The stored quality of a result (``results.quality``): flags, measurement mode, repeats.

Computed by the coordinator, never taken from the agent: when a result is reported
(``record``) and, for a result stored before the column existed, the first time it is read
(``ensure``: from its stored raw times; the value is kept, so it is computed once). The
between-run summary is recomputed here from the agent's per-repeat figures.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Job, Result, ResultSeries
from latencylab.presets import mode_of
from latencylab.quality import QualityFlag, RepeatsSummary, assess, between_runs
from latencylab.schemas import LeasedSettings, MeasureResult
from latencylab.status import JobStatus

VERSION = 1


def _compute(
    job: Job,
    *,
    status: str,
    latency: dict[str, Any] | None,
    runs: int,
    stop_reason: str | None,
    environment: dict[str, Any],
    times: Sequence[float],
    repeats: RepeatsSummary | None,
) -> dict[str, Any]:
    settings = LeasedSettings.model_validate(job.settings or {})
    flags: list[QualityFlag] = []
    if status == JobStatus.succeeded:
        flags = assess(
            times,
            latency=latency,
            runs=runs,
            stop_reason=stop_reason,
            min_runs=settings.min_runs,
            target_rel_ci=settings.target_rel_ci,
            environment=environment,
            repeats=repeats,
        )
    return {
        "version": VERSION,
        "flags": [f.model_dump() for f in flags],
        "mode": mode_of(settings),
        "repeats": repeats.model_dump() if repeats is not None else None,
    }


def record(job: Job, result: MeasureResult) -> dict[str, Any]:
    """``results.quality`` of a result being reported."""
    repeats = between_runs(result.repeats.runs) if result.repeats is not None else None
    return _compute(
        job,
        status=result.status,
        latency=result.latency_ms.model_dump() if result.latency_ms else None,
        runs=result.runs,
        stop_reason=result.stop_reason,
        environment=result.environment,
        times=result.times_ms,
        repeats=repeats,
    )


def ensure(session: Session, rows: Iterable[Result]) -> None:
    """Fill ``quality`` of rows stored before it existed, from their raw times (kept)."""
    missing = [r for r in rows if r.quality is None]
    if not missing:
        return
    ids = [r.id for r in missing if r.status == JobStatus.succeeded]
    series: dict[int, list[Any]] = {}
    if ids:
        query = select(ResultSeries).where(ResultSeries.result_id.in_(ids))
        series = {s.result_id: s.times_ms for s in session.scalars(query)}
    for r in missing:
        r.quality = _compute(
            r.job,
            status=r.status,
            latency=r.latency,
            runs=r.runs,
            stop_reason=r.stop_reason,
            environment=r.environment or {},
            times=series.get(r.id) or [],
            repeats=None,
        )


def flags_of(r: Result) -> list[QualityFlag]:
    return [QualityFlag.model_validate(f) for f in (r.quality or {}).get("flags") or []]


def mode_of_result(r: Result) -> str:
    return str((r.quality or {}).get("mode") or mode_of(r.job.settings))


def repeats_of(r: Result) -> RepeatsSummary | None:
    raw = (r.quality or {}).get("repeats")
    return RepeatsSummary.model_validate(raw) if raw else None
