"""The job queue: leasing with expiry, heartbeats, idempotent reports, the lease reaper."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, object_session

from db.models import Artifact, Device, Job, Model, Result, ResultSeries, utcnow
from latencylab.schemas import JobPublic, LeasedJob, MeasureResult
from server.store import quality
from server.store.devices import can_take
from server.store.hooks import job_finished

SCAN_LIMIT = 500


class LeaseConflict(Exception):
    """The device already holds a job and asks for another (409 ``conflict``)."""


class LeaseLost(Exception):
    """The job is not (or no longer) held by this device: its lease expired, it was requeued
    or reported by another device (409 ``lease_lost``)."""


def requeue_or_fail(job: Job, reason: str) -> None:
    """Give a lost job back to the queue, or fail it once it used up its attempts."""
    if job.attempts >= job.max_attempts:
        job.status = "failed"
        job.error = f"{reason}; gave up after {job.attempts} attempt(s)"
        job.finished_at = utcnow()
        job_finished(object_session(job), job, None)  # type: ignore[arg-type]
    else:
        job.status = "queued"
        job.error = f"{reason}; requeued (attempt {job.attempts} of {job.max_attempts})"
    job.device_id = None
    job.lease_expires_at = None
    job.progress = {}


def expire_leases(session: Session) -> int:
    """Requeue (or fail) every running job whose lease has run out; returns how many."""
    now = utcnow()
    expired = list(
        session.scalars(
            select(Job).where(Job.status == "running", Job.lease_expires_at < now).with_for_update()
        )
    )
    for job in expired:
        holder = job.device.name if job.device else "an unknown device"
        requeue_or_fail(job, f"lease expired on device '{holder}' (no heartbeat)")
    session.flush()
    return len(expired)


def lease_job(session: Session, device: Device, lease_s: float) -> Job | None:
    """Atomically hand the oldest queued job this device can take to it (or None)."""
    expire_leases(session)
    held = session.scalar(select(Job.id).where(Job.device_id == device.id, Job.status == "running"))
    if held is not None:
        raise LeaseConflict(f"device '{device.name}' already holds job {held}; report it first")
    candidates = session.scalars(
        select(Job).where(Job.status == "queued").order_by(Job.id).limit(SCAN_LIMIT)
    )
    for job in candidates:
        if not can_take(device, job.device_selector, job.runtime):
            continue
        now = utcnow()
        claimed = session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == "queued")
            .values(
                status="running",
                device_id=device.id,
                attempts=Job.attempts + 1,
                lease_expires_at=now + timedelta(seconds=lease_s),
                started_at=now,
                progress={"phase": "leased"},
            )
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount == 1:  # type: ignore[attr-defined]
            session.refresh(job)
            from server.store.conversions import mark_running

            mark_running(session, job)
            return job
    return None


def heartbeat(
    session: Session, device: Device, job_id: int | None, progress: dict, lease_s: float
) -> None:
    """Mark the device seen; extend its job's lease. ``LeaseLost`` if the job is no longer its
    own (the device is marked seen all the same: flush before handling the error)."""
    device.last_seen = utcnow()
    if job_id is None:
        return
    job = session.get(Job, job_id)
    if job is None or job.device_id != device.id or job.status != "running":
        raise LeaseLost(
            f"job {job_id} is not held by device '{device.name}' (its lease expired, or it was "
            "requeued or finished); drop it"
        )
    job.lease_expires_at = utcnow() + timedelta(seconds=lease_s)
    if progress:
        job.progress = dict(progress)


def report_result(session: Session, device: Device, job_id: int, result: MeasureResult) -> Result:
    """Store the device's result; a retried report returns the stored one unchanged."""
    job = session.get(Job, job_id)
    if job is None:
        raise KeyError(job_id)
    existing = session.scalar(select(Result).where(Result.job_id == job_id))
    if existing is not None:
        if existing.device_id != device.id:
            raise LeaseLost(f"job {job_id} was reported by another device")
        return existing
    if job.device_id != device.id or job.status != "running":
        raise LeaseLost(
            f"job {job_id} is not held by device '{device.name}' (its lease expired or it was "
            "requeued); the result was not stored"
        )
    row = Result(
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
    session.add(row)
    session.flush()
    session.add(
        ResultSeries(
            result_id=row.id,
            times_ms=list(result.times_ms),
            warmup_ms=list(result.warmup_ms),
            profile=[p.model_dump() for p in result.profile],
        )
    )
    job.status = "succeeded" if result.status == "succeeded" else "failed"
    job.error = result.error
    job.finished_at = utcnow()
    job.lease_expires_at = None
    job.progress = {"phase": "done"}
    device.last_seen = utcnow()
    session.flush()
    job_finished(session, job, row)
    return row


def job_public(job: Job, devices: list[Device] | None = None) -> JobPublic:
    candidates: list[str] = []
    if job.status == "queued" and devices is not None:
        candidates = [d.name for d in devices if can_take(d, job.device_selector, job.runtime)]
    return JobPublic(
        id=job.id,
        kind=job.kind,
        status=job.status,
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


def list_jobs(session: Session, status: str | None = None, limit: int = 200) -> list[Job]:
    q = select(Job).order_by(Job.id.desc()).limit(limit)
    if status:
        q = q.where(Job.status == status)
    return list(session.scalars(q))


def leased(session: Session, job: Job) -> LeasedJob:
    """The lease answer: the job, its model, the artifact to fetch and, for conversions, the task."""
    from server.store import conversions
    from server.store.models import model_public

    model = session.get(Model, job.model_id)
    assert model is not None and job.lease_expires_at is not None and job.artifact_sha256
    artifact = session.get(Artifact, job.artifact_sha256)
    meta: dict = dict(model.artifact_meta or {})  # the upload itself (e.g. a zipped .mlpackage)
    if job.kind != "convert" and job.conversion_id is not None:
        conv = conversions.get(session, job.conversion_id)
        meta = dict(conv.artifact_meta or {}) if conv else {}
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
        artifact_format=artifact.format if artifact else model.format,
        artifact_metadata=meta,
        options=job.options or {},
        lease_expires_at=job.lease_expires_at,
        attempt=job.attempts,
        conversion=conversions.task_for(session, job),
    )
