"""Agents' uploads straight to object storage: a presigned ticket, then a finalize call.

With the local-disk store the ticket says ``coordinator`` and the agent POSTs the file to
``/agents/{device}/jobs/{job}/artifacts`` (``server.routes.agents``). See
``latencylab.transfers`` for the exchange and ``server.s3`` for what the storage checks.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, status
from fastapi import Path as PathParam

from db.models import Device, Job
from latencylab.errors import ErrorCode
from latencylab.fields import Id
from latencylab.transfers import StoredArtifact, UploadFinish, UploadStart, UploadTicket
from server.artifacts import UploadTooLarge
from server.deps import CurrentAgent, SessionDep, StateDep
from server.errors import ApiError
from server.openapi import AUTH, errors
from server.queue import lifecycle
from server.routes.agents import _held_job, _own_device
from server.store import artifacts as artifact_store

router = APIRouter(prefix="/agents", tags=["agents"], responses=AUTH)
UploadIdPath = Annotated[str, PathParam(pattern=r"^[0-9a-f]{32}$")]


def _holding(session: SessionDep, device: Device, job_id: int) -> Job:
    _held_job(session, device, job_id)  # 404 for a job that does not exist
    try:
        return lifecycle.holds(session, device, job_id)
    except lifecycle.LeaseLost as exc:
        raise ApiError(409, ErrorCode.lease_lost, f"{exc}; no upload is issued for it") from exc


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        ErrorCode.payload_too_large,
        f"artifact exceeds the upload limit of {limit} bytes (LATENCYLAB_MAX_UPLOAD_MB)",
    )


@router.post(
    "/{device_id}/jobs/{job_id}/uploads",
    response_model=UploadTicket,
    responses=errors(404, 409, 413, 422),
)
def start_upload(
    device_id: Id,
    job_id: Id,
    body: UploadStart,
    session: SessionDep,
    state: StateDep,
    token: CurrentAgent,
) -> UploadTicket:
    """Ask where to send a file a job produced (a converted artifact, a log). ``presigned``:
    PUT it to ``url`` with exactly ``headers``, then finalize with ``upload_id``;
    ``coordinator`` (local-disk store): POST it to ``.../artifacts``. 409 ``lease_lost`` when
    the device no longer holds the job: no URL is issued."""
    device = _own_device(session, device_id, token)
    _holding(session, device, job_id)
    limit = state.settings.max_upload_bytes
    if body.size > limit:
        raise _too_large(limit)
    return state.store.upload_ticket(job_id, body.size, body.sha256)


@router.post(
    "/{device_id}/jobs/{job_id}/uploads/{upload_id}",
    response_model=StoredArtifact,
    status_code=status.HTTP_201_CREATED,
    responses=errors(404, 409, 413, 422),
)
def finish_upload(
    device_id: Id,
    job_id: Id,
    upload_id: UploadIdPath,
    body: UploadFinish,
    session: SessionDep,
    state: StateDep,
    token: CurrentAgent,
) -> StoredArtifact:
    """Finalize a presigned upload: the coordinator reads the object once to verify its
    SHA-256 (422 ``checksum_mismatch``: deleted, upload again), files it under its hash and
    records the artifact. 404: nothing was uploaded under that id (or the ticket expired)."""
    device = _own_device(session, device_id, token)
    _holding(session, device, job_id)
    session.commit()  # no connection held while the object is read back
    limit = state.settings.max_upload_bytes
    try:
        staged = state.store.staged_upload(job_id, upload_id, body.sha256, limit)
    except UploadTooLarge as exc:
        raise _too_large(limit) from exc
    try:
        sha, size, _ = artifact_store.add_artifact(session, staged, body.format)
    except BaseException:
        staged.discard()
        raise
    return StoredArtifact(sha256=sha, size=size, format=body.format)
