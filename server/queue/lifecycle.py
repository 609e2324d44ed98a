"""The job lifecycle: the one owner of every job state transition.

::

    waiting --release--> queued --lease--> running --finish--> succeeded | failed
       |                   ^                  |
       |                   +---requeue--------+  (lease expired, agent restarted, released)
       +--fail / cancel--> failed | cancelled    --> failed once max_attempts leases were lost

Every transition is a *conditional* UPDATE of the job row (``WHERE status = ... AND
device_id = ... AND attempts = ...``), never a read-modify-write of a loaded object, so a
report and a concurrent requeue cannot both win, and nothing writes back values it read
before someone else changed the row. Leasing is one statement: the database picks the oldest
queued job whose queue key the device satisfies (``server.queue.terms``), skipping rows other
transactions hold (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite runs one write
transaction at a time, begun ``IMMEDIATE``). A partial unique index allows one running job
per device, so a concurrent second lease fails in the database (``LeaseConflict``).

Row locks are taken in one order -- the device row first (marking it seen), then jobs -- so
two transactions never wait on each other in a cycle. Kinds hook in through
``server.queue.kinds`` (same transaction, explicit context).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from db.models import Device, Job, Result
from latencylab.status import JobStatus
from server.queue import statements as sql
from server.queue import terms
from server.queue.kinds import JobContext

QUEUED_FLAG = "latencylab.jobs_queued"
"""``session.info`` key: this transaction made a job leasable (long-polls wake on commit)."""


class LeaseConflict(Exception):
    """The device already holds a job and asks for another (409 ``conflict``)."""


class LeaseLost(Exception):
    """The job is not (or no longer) held by this device: its lease expired, it was requeued
    or reported by another device (409 ``lease_lost``)."""


def _queued(session: Session) -> None:
    session.info[QUEUED_FLAG] = True


def _changed(res: Any) -> int:
    return int(res.rowcount)


def held_by(device_id: int) -> ColumnElement[bool]:
    """The one "this device holds this job" condition (for queries and conditional updates)."""
    return and_(Job.device_id == device_id, Job.status == JobStatus.running)


def holds(session: Session, device: Device, job_id: int) -> Job:
    """The job ``device`` holds now, or ``LeaseLost``."""
    job = session.scalar(select(Job).where(Job.id == job_id, held_by(device.id)))
    if job is None:
        raise LeaseLost(
            f"job {job_id} is not held by device '{device.name}' (its lease expired, or it was "
            "requeued or finished); drop it"
        )
    return job


def _seen(ctx: JobContext, device: Device, stmt: Any = sql.SEEN) -> Any:
    """Mark the device seen: always the first row a device's transition locks (one UPDATE,
    no unit-of-work flush; the loaded object gets the value as if it had been loaded so).
    ``stmt`` may return something besides (``sql.SEEN_HOLDING``); its result is returned."""
    now = ctx.now()
    res = ctx.session.execute(stmt, {"p_device": device.id, "p_now": now})
    set_committed_value(device, "last_seen", now)
    return res


# ------------------------------------------------------------------ enqueue
def enqueue(session: Session, job: Job) -> Job:
    """Add a new job -- queued, or ``waiting`` for its conversion -- with its queue key."""
    if job.status is None:
        job.status = JobStatus.queued
    job.queue_key_id = terms.queue_key(session, job.device_selector, job.runtime)
    session.add(job)
    session.flush()
    if job.status == JobStatus.queued:
        _queued(session)
    return job


def release_waiting(ctx: JobContext, conversion_id: int, artifact_sha256: str) -> None:
    """A conversion succeeded: its waiting benchmark jobs become leasable, on its artifact."""
    res = ctx.session.execute(
        update(Job)
        .where(
            Job.conversion_id == conversion_id,
            Job.kind != "convert",
            Job.status == JobStatus.waiting,
        )
        .values(status=JobStatus.queued, artifact_sha256=artifact_sha256, progress={})
        .execution_options(synchronize_session="fetch")
    )
    if _changed(res):
        _queued(ctx.session)


def end_unstarted(ctx: JobContext, job_ids: list[int], status: JobStatus, reason: str) -> list[Job]:
    """Fail or cancel jobs that never ran (queued or waiting), in the order given (the
    caller's lock order), each with its kind's ``on_finished``; returns those it ended."""
    ended = []
    for job_id in job_ids:
        res = ctx.session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status.in_((JobStatus.queued, JobStatus.waiting)))
            .values(status=status, error=reason, finished_at=ctx.now(), progress={})
            .execution_options(synchronize_session=False)
        )
        if _changed(res):
            job = ctx.session.get(Job, job_id, populate_existing=True)
            assert job is not None
            ctx.kinds[job.kind].on_finished(ctx, job, None)
            ended.append(job)
    return ended


# ------------------------------------------------------------------ lease and heartbeat
def lease(ctx: JobContext, device: Device) -> Job | None:
    """Hand the oldest queued job this device may take to it, or None.

    One statement picks and claims it; a device that holds a job already gets
    ``LeaseConflict`` (read by the statement that marks the device seen, for the message;
    enforced by the unique index, which also stops a concurrent second lease)."""
    session, now = ctx.session, ctx.now()
    held = _seen(ctx, device, sql.SEEN_HOLDING).scalar()
    if held is not None:
        raise LeaseConflict(f"device '{device.name}' already holds job {held}; report it first")
    params = {
        "p_device": device.id,
        "p_now": now,
        "p_expires": now + timedelta(seconds=ctx.settings.lease_s),
    }
    try:  # no savepoint: a conflict ends the whole transaction (the caller rolls back)
        job = session.scalars(sql.LEASE, params).one_or_none()
    except IntegrityError as exc:  # a concurrent lease of this device won: one job each
        raise LeaseConflict(
            f"device '{device.name}' leased another job at the same moment; report it first"
        ) from exc
    if job is None:
        return None
    ctx.kinds[job.kind].on_leased(ctx, job)
    return job


def has_work(session: Session, device_id: int) -> bool:
    """Whether a queued job exists that ``device_id`` may take (a cheap read)."""
    return session.scalar(sql.HAS_WORK, {"p_device": device_id}) is not None


def heartbeat(ctx: JobContext, device: Device, job_id: int | None, progress: dict) -> None:
    """Mark the device seen; extend its job's lease. ``LeaseLost`` if the job is no longer
    its own (the device is marked seen all the same: commit before answering the error)."""
    _seen(ctx, device)
    if job_id is None:
        return
    params: dict[str, Any] = {
        "p_job": job_id,
        "p_device": device.id,
        "p_expires": ctx.now() + timedelta(seconds=ctx.settings.lease_s),
    }
    stmt = sql.EXTEND
    if progress:
        stmt, params["p_progress"] = sql.EXTEND_WITH_PROGRESS, dict(progress)
    if not _changed(ctx.session.execute(stmt, params)):
        raise LeaseLost(
            f"job {job_id} is not held by device '{device.name}' (its lease expired, or it was "
            "requeued or finished); drop it"
        )


# ------------------------------------------------------------------ finish
def finish(
    ctx: JobContext,
    device: Device,
    job_id: int,
    ok: bool,
    error: str | None,
    attach: Callable[[Job], Result | None] | None = None,
) -> tuple[Job, Result | None]:
    """The device's report ends its job: succeeded (``ok``) or failed. ``attach`` stores what
    the report carries (a result row) in the same transaction, before the kind's hook runs.
    ``LeaseLost`` if the device does not hold the job (nothing is changed)."""
    _seen(ctx, device)
    params = {
        "p_job": job_id,
        "p_device": device.id,
        "p_status": JobStatus.succeeded if ok else JobStatus.failed,
        "p_error": error,
        "p_now": ctx.now(),
    }
    job = ctx.session.scalars(sql.FINISH, params).one_or_none()
    if job is None:
        raise LeaseLost(
            f"job {job_id} is not held by device '{device.name}' (its lease expired or it was "
            "requeued); nothing was stored"
        )
    result = attach(job) if attach is not None else None
    if result is not None and result.job_id == job.id:
        # the result's job is this one, already loaded: no lazy load when it is read
        set_committed_value(result, "job", job)
    ctx.kinds[job.kind].on_finished(ctx, job, result)
    return job, result


# ------------------------------------------------------------------ requeue, release, expire
def requeue_or_fail(ctx: JobContext, job: Job, reason: str) -> bool:
    """Give a running job back to the queue, or fail it once it used up its attempts.

    Conditional on the job being exactly as read (running, same device, same attempt):
    a report or another requeue that came first wins, and this changes nothing (False)."""
    device_id, attempts = job.device_id, job.attempts
    if job.status != JobStatus.running or device_id is None:
        return False
    give_up = attempts >= job.max_attempts
    values: dict[str, Any] = {"device_id": None, "lease_expires_at": None, "progress": {}}
    if give_up:
        values.update(
            status=JobStatus.failed,
            error=f"{reason}; gave up after {attempts} attempt(s)",
            finished_at=ctx.now(),
        )
    else:
        values.update(
            status=JobStatus.queued,
            error=f"{reason}; requeued (attempt {attempts} of {job.max_attempts})",
        )
    res = ctx.session.execute(
        update(Job)
        .where(Job.id == job.id, held_by(device_id), Job.attempts == attempts)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if not _changed(res):
        return False
    ctx.session.refresh(job)
    if give_up:
        ctx.kinds[job.kind].on_finished(ctx, job, None)
    else:
        _queued(ctx.session)
    return True


def release_device(ctx: JobContext, device: Device, reason: str) -> int:
    """Every job ``device`` holds goes back to the queue (or fails); how many."""
    jobs = ctx.session.scalars(select(Job).where(held_by(device.id)).order_by(Job.id))
    return sum(requeue_or_fail(ctx, job, reason) for job in list(jobs))


def expire(ctx: JobContext) -> int:
    """Requeue (or fail) every running job whose lease has run out; how many. Rows another
    transaction holds (a report in flight) are skipped: the next sweep sees them."""
    q = (
        select(Job, Device.name)
        .outerjoin(Device, Device.id == Job.device_id)
        .where(Job.status == JobStatus.running, Job.lease_expires_at < ctx.now())
        .order_by(Job.id)
        .with_for_update(skip_locked=True, of=Job)
    )
    done = 0
    for job, holder in ctx.session.execute(q).all():
        why = f"lease expired on device '{holder or 'an unknown device'}' (no heartbeat)"
        done += requeue_or_fail(ctx, job, why)
    return done
