"""The hot path's SQL, built once: lease, heartbeat, report and the token lookup.

Building a SQLAlchemy statement (the ORM's coercions, the selector-matching subqueries of
``server.queue.terms``) and computing its cache key cost more CPU than the database takes to
run it; these statements are immutable constants with bound parameters (``p_*``), executed
as ``session.execute(STMT, {"p_device": ...})``. They say exactly what ``lifecycle``'s
conditions say (``held_by``, ``terms.takeable``), only built from parameters.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import DateTime, Integer, Table, and_, bindparam, select, update
from sqlalchemy.orm import aliased, defer

from db.models import ApiToken, Artifact, Device, Job, Model
from latencylab.status import JobStatus
from server.queue import terms

DEVICE = bindparam("p_device", type_=Integer)
JOB = bindparam("p_job", type_=Integer)
NOW = bindparam("p_now", type_=DateTime)
EXPIRES = bindparam("p_expires", type_=DateTime)

HELD = and_(Job.device_id == DEVICE, Job.status == JobStatus.running)
"""``lifecycle.held_by`` over ``p_device``."""

_RETURNING = {"synchronize_session": False, "populate_existing": True}

# Core tables, not the mapped classes: these updates skip the ORM's bulk-DML machinery
_devices: Table = Device.__table__  # type: ignore[assignment]
_jobs: Table = Job.__table__  # type: ignore[assignment]

SEEN = update(_devices).where(_devices.c.id == DEVICE).values(last_seen=NOW)
"""Mark ``p_device`` seen at ``p_now`` (the first row a device's transition locks)."""

_HELD_BY_DEVICE = and_(_jobs.c.device_id == DEVICE, _jobs.c.status == JobStatus.running)
SEEN_HOLDING = (
    update(_devices)
    .where(_devices.c.id == DEVICE)
    .values(last_seen=NOW)
    .returning(select(_jobs.c.id).where(_HELD_BY_DEVICE).limit(1).scalar_subquery())
)
"""``SEEN``, returning the id of the job ``p_device`` holds (None if none): a lease's first
statement, so "already holds a job" costs no round trip of its own."""


def _queued_for_device(j: Any) -> Any:
    return and_(
        j.status == JobStatus.queued,
        j.attempts < j.max_attempts,
        terms.takeable(DEVICE, j.queue_key_id),
    )


_j = aliased(Job)
_PICK = (
    select(_j.id)
    .where(_queued_for_device(_j))
    .order_by(_j.id)
    .limit(1)
    .with_for_update(skip_locked=True, of=_j)
    .scalar_subquery()
)
LEASE = (
    update(Job)
    .where(Job.id == _PICK, Job.status == JobStatus.queued)
    .values(
        status=JobStatus.running,
        device_id=DEVICE,
        attempts=Job.attempts + 1,
        lease_expires_at=EXPIRES,
        started_at=NOW,
        progress={"phase": "leased"},
    )
    .returning(Job)
    .execution_options(**_RETURNING)
)
"""Claim the oldest queued job ``p_device`` may take (rows others hold are skipped)."""

HAS_WORK = select(Job.id).where(_queued_for_device(Job)).limit(1)
"""A queued job ``p_device`` may take, if any (the long-poll's cheap read)."""

_HELD_CORE = and_(
    _jobs.c.id == JOB, _jobs.c.device_id == DEVICE, _jobs.c.status == JobStatus.running
)
EXTEND = update(_jobs).where(_HELD_CORE).values(lease_expires_at=EXPIRES)
EXTEND_WITH_PROGRESS = (
    update(_jobs)
    .where(_HELD_CORE)
    .values(lease_expires_at=EXPIRES, progress=bindparam("p_progress"))
)
"""A heartbeat: extend the lease of ``p_job`` if ``p_device`` holds it (and its progress)."""

FINISH = (
    update(Job)
    .where(Job.id == JOB, HELD)
    .values(
        status=bindparam("p_status"),
        error=bindparam("p_error"),
        finished_at=NOW,
        lease_expires_at=None,
        progress={"phase": "done"},
    )
    .returning(Job)
    .execution_options(**_RETURNING)
)
"""End ``p_job`` (``p_status``, ``p_error``) if ``p_device`` holds it; the job as it is now."""

LEASED_MODEL = (
    select(Model, Artifact.format)
    .outerjoin(Artifact, Artifact.sha256 == bindparam("p_sha256"))
    .where(Model.id == bindparam("p_model", type_=Integer))
)
"""A lease answer's model and its artifact's format."""

TOKEN_BY_HASH = select(ApiToken).where(ApiToken.token_hash == bindparam("p_hash"))
"""The token row of a hashed bearer secret (revoked or not)."""

TOKEN_AND_DEVICE = (
    select(ApiToken, Device)
    .outerjoin(Device, Device.id == DEVICE)
    .where(ApiToken.token_hash == bindparam("p_hash"))
    .options(
        defer(ApiToken.device_scope),
        defer(Device.runtimes),
        defer(Device.attributes),
        defer(Device.info),
    )
)
"""An agent request's token row and its device ``p_device`` (None if unknown): one read.
The JSON columns no lease, heartbeat or report reads are deferred (loaded if read)."""
