"""Jobs as the API shows them, the lease answer, and storing a device's benchmark report.

State transitions are not made here: ``server.queue.lifecycle`` owns them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import Device, Job, Result, ResultSeries
from latencylab.schemas import JobPublic, LeasedJob, MeasureResult
from latencylab.status import JobStatus
from server.queue import lifecycle
from server.queue import statements as sql
from server.queue.kinds import JobContext
from server.store import quality
from server.store.devices import can_take
from server.store.models import model_public


def stored_result(session: Session, job_id: int) -> Result | None:
    return session.scalar(select(Result).where(Result.job_id == job_id))


def _result_values(job: Job, device: Device, result: MeasureResult) -> dict[str, Any]:
    return dict(
        job_id=job.id,
        benchmark_id=job.benchmark_id,
        device_id=device.id,
        device_name=device.name,
        status=result.status,
        error=result.error,
        latency=result.latency_ms.model_dump() if result.latency_ms else None,
        runs=result.runs,
        stop_reason=result.stop_reason,
        steady_duration_s=result.steady_duration_s,
        load_ms=result.load_ms,
        first_inference_ms=result.first_inference_ms,
        memory=dict(result.memory),
        # warnings live in the environment JSON (no column of their own): result_public reads them
        environment={
            **result.environment,
            **({"warnings": result.warnings} if result.warnings else {}),
        },
        quality=quality.record(job, result),  # flags computed here, not taken from the agent
    )


def report_result(
    ctx: JobContext, device: Device, job_id: int, result: MeasureResult
) -> tuple[Result, bool]:
    """Store the device's result and end its job; ``(row, created)``. A retried report --
    also one racing the first -- returns the stored row unchanged (``created`` False).
    ``KeyError``: no such job; ``LeaseLost``: the device does not hold it."""
    session = ctx.session

    def stored() -> Result | None:
        row = stored_result(session, job_id)
        if row is not None and row.device_id != device.id:
            raise lifecycle.LeaseLost(f"job {job_id} was reported by another device")
        return row

    def attach(job: Job) -> Result:
        # INSERT ... RETURNING (no unit-of-work flush): the row comes back as a loaded Result
        values = [_result_values(job, device, result)]
        row = session.scalars(insert(Result).returning(Result), values).one()
        series = {
            "result_id": row.id,
            "times_ms": list(result.times_ms),
            "warmup_ms": list(result.warmup_ms),
            "profile": [p.model_dump() for p in result.profile],
        }
        session.execute(insert(ResultSeries), [series])
        return row

    # The first report is the common case: try the transition at once (the conditional
    # update admits only the holder); a retry or a stray report is told apart afterwards.
    ok = result.status == JobStatus.succeeded
    try:
        _, row = lifecycle.finish(ctx, device, job_id, ok, result.error, attach)
    except lifecycle.LeaseLost:
        if (row := stored()) is not None:  # a retry: the stored result, unchanged
            return row, False
        if session.get(Job, job_id) is None:
            raise KeyError(job_id) from None
        raise
    except IntegrityError:
        # results.job_id is unique: a duplicate report won a race the conditional update
        # did not see (it cannot on PostgreSQL, where the device row lock orders them).
        # Nothing of ours stands; answer with the stored result in a fresh transaction.
        session.rollback()
        if (row := stored()) is not None:
            return row, False
        raise
    assert row is not None
    return row, True


def job_public(job: Job, devices: list[Device] | None = None) -> JobPublic:
    candidates: list[str] = []
    if job.status == JobStatus.queued and devices is not None:
        candidates = [d.name for d in devices if can_take(d, job.device_selector, job.runtime)]
    return JobPublic(
        id=job.id,
        kind=job.kind,
        status=JobStatus(job.status),
        runtime=job.runtime,
        device=job.device_selector,
        device_name=job.device.name
        if job.device
        else (job.result.device_name if job.result else None),
        precision=job.precision,
        batch_size=job.batch_size,
        threads=job.threads,
        attempts=job.attempts,
        progress=job.progress or {},
        error=job.error,
        candidates=candidates,
    )


def get_job(session: Session, job_id: int) -> Job | None:
    return session.get(Job, job_id)


def list_jobs(session: Session, status: JobStatus | None = None, limit: int = 200) -> list[Job]:
    q = select(Job).order_by(Job.id.desc()).limit(limit)
    if status:
        q = q.where(Job.status == status)
    return list(session.scalars(q))


def leased(ctx: JobContext, job: Job) -> LeasedJob:
    """The lease answer: the job, its model, the artifact to fetch, and what its kind adds
    (a conversion's task, a converted artifact's metadata)."""
    session = ctx.session
    assert job.lease_expires_at is not None and job.artifact_sha256
    params = {"p_model": job.model_id, "p_sha256": job.artifact_sha256}
    model, artifact_format = session.execute(sql.LEASED_MODEL, params).one()
    fields = {
        "artifact_metadata": dict(model.artifact_meta or {}),  # e.g. a zipped .mlpackage
        **ctx.kinds[job.kind].lease_extra(ctx, job),
    }
    return LeasedJob(
        id=job.id,
        kind=job.kind,
        runtime=job.runtime,
        precision=job.precision,
        batch_size=job.batch_size,
        threads=job.threads,
        settings=job.settings,
        model=model_public(model),
        artifact_sha256=job.artifact_sha256,
        artifact_format=artifact_format or model.format,
        lease_expires_at=job.lease_expires_at,
        attempt=job.attempts,
        options=job.options or {},
        **fields,
    )
