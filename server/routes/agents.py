from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status

from db.models import ApiToken, Artifact, Device
from latencylab.schemas import (
    DevicePublic,
    DeviceRegister,
    Heartbeat,
    JobReport,
    LeasedJob,
    ResultPublic,
)
from server.deps import CurrentAgent, SessionDep, StateDep
from server.store import benchmarks as bench_store
from server.store import devices as store
from server.store import jobs as job_store
from server.store.models import get_model, model_public

router = APIRouter(prefix="/agents", tags=["agents"])


def _own_device(session: SessionDep, device_id: int, token: ApiToken) -> Device:
    device = store.get_device(session, device_id)
    if device is None:
        raise HTTPException(404, f"device {device_id} is not registered; register first")
    if device.token_id != token.id:
        raise HTTPException(403, f"device {device_id} was registered with another token")
    return device


@router.post("/register", response_model=DevicePublic, response_model_by_alias=True)
def register(
    body: DeviceRegister, session: SessionDep, state: StateDep, token: CurrentAgent
) -> DevicePublic:
    """Register (or re-register) a device with its capabilities; frees jobs it held before."""
    device = store.register_device(session, body, token.id)
    return store.device_public(session, device, state.settings.offline_after_s)


@router.post("/{device_id}/heartbeat")
def heartbeat(
    device_id: int, body: Heartbeat, session: SessionDep, state: StateDep, token: CurrentAgent
) -> dict[str, bool]:
    """Keep the device online and its job's lease alive; ``keep: false`` means abandon the job."""
    device = _own_device(session, device_id, token)
    keep = job_store.heartbeat(session, device, body.job_id, body.progress, state.settings.lease_s)
    return {"keep": keep}


@router.post(
    "/{device_id}/lease",
    response_model=LeasedJob,
    responses={204: {"description": "No job for this device right now"}},
)
def lease(
    device_id: int, session: SessionDep, state: StateDep, token: CurrentAgent
) -> LeasedJob | Response:
    """Lease the oldest queued job this device can run (one at a time, with an expiring lease)."""
    device = _own_device(session, device_id, token)
    try:
        job = job_store.lease_job(session, device, state.settings.lease_s)
    except job_store.LeaseConflict as exc:
        raise HTTPException(409, str(exc)) from exc
    job_store.heartbeat(session, device, None, {}, state.settings.lease_s)
    if job is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    m = get_model(session, job.model_id)
    artifact = session.get(Artifact, job.artifact_sha256)
    assert m is not None and job.lease_expires_at is not None
    return LeasedJob(
        id=job.id,
        kind=job.kind,
        runtime=job.runtime,
        precision=job.precision,
        batch_size=job.batch_size,
        threads=job.threads,
        settings=job.settings,
        model=model_public(m),
        artifact_sha256=job.artifact_sha256,
        artifact_format=artifact.format if artifact else m.format,
        lease_expires_at=job.lease_expires_at,
        attempt=job.attempts,
    )


@router.post("/{device_id}/jobs/{job_id}/report", response_model=ResultPublic)
def report(
    device_id: int,
    job_id: int,
    body: JobReport,
    response: Response,
    session: SessionDep,
    token: CurrentAgent,
) -> ResultPublic:
    """Report a job's measurement; repeating a report returns the stored result (idempotent)."""
    device = _own_device(session, device_id, token)
    try:
        before = job_store.get_job(session, job_id)
        existed = before is not None and before.result is not None
        row = job_store.report_result(session, device, job_id, body.result)
    except KeyError as exc:
        raise HTTPException(404, f"job {job_id} does not exist") from exc
    except job_store.LeaseConflict as exc:
        raise HTTPException(409, str(exc)) from exc
    response.status_code = status.HTTP_200_OK if existed else status.HTTP_201_CREATED
    session.refresh(row)
    return bench_store.result_public(row)
