from __future__ import annotations

from fastapi import APIRouter, HTTPException

from latencylab.errors import ErrorCode
from latencylab.fields import Id
from latencylab.schemas import DevicePublic, JobPublic, JobStatus
from server.deps import CurrentAdmin, CurrentUser, SessionDep, StateDep
from server.errors import ApiError
from server.openapi import AUTH, errors
from server.store import bindings
from server.store import devices as store
from server.store import jobs as job_store

router = APIRouter(tags=["devices"], responses=AUTH)


@router.get("/devices", response_model=list[DevicePublic], response_model_by_alias=True)
def list_devices(session: SessionDep, state: StateDep, _: CurrentUser) -> list[DevicePublic]:
    """The fleet: class, runtimes with versions, attributes, online/offline, current job."""
    return [
        store.device_public(session, d, state.settings.offline_after_s)
        for d in store.list_devices(session)
    ]


@router.post(
    "/devices/{device_id}/release",
    response_model=DevicePublic,
    response_model_by_alias=True,
    responses=errors(404, 422),
)
def release_device(
    device_id: Id, session: SessionDep, state: StateDep, _: CurrentAdmin
) -> DevicePublic:
    """Free a device from the token it was registered with (admin only): any agent token whose
    device scope admits the name may then register it. The jobs it is running go back to the
    queue, and the agent that held it gets 403 on its next heartbeat. Idempotent."""
    device = store.get_device(session, device_id)
    if device is None:
        raise ApiError(404, ErrorCode.not_found, f"device {device_id} does not exist")
    why = f"device '{device.name}' was released by an admin"
    bindings.release_device(state.context(session), device, why)
    return store.device_public(session, device, state.settings.offline_after_s)


@router.get("/jobs", response_model=list[JobPublic], responses=errors(422))
def list_jobs(
    session: SessionDep, _: CurrentUser, status: JobStatus | None = None
) -> list[JobPublic]:
    """Recent jobs, newest first (optionally filtered by status)."""
    devices = store.list_devices(session)
    return [job_store.job_public(j, devices) for j in job_store.list_jobs(session, status)]


@router.get("/jobs/{job_id}", response_model=JobPublic, responses=errors(404, 422))
def get_job(job_id: Id, session: SessionDep, _: CurrentUser) -> JobPublic:
    """One job: status, attempts, live progress, error, and which devices could take it."""
    job = job_store.get_job(session, job_id)
    if job is None:
        raise HTTPException(404, f"job {job_id} does not exist")
    return job_store.job_public(job, store.list_devices(session))
