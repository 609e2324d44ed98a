from __future__ import annotations

from fastapi import APIRouter, HTTPException
from sqlalchemy import select

from db.models import Job
from latencylab.schemas import DevicePublic, JobPublic
from server.deps import CurrentUser, SessionDep, StateDep
from server.store import devices as store
from server.store import jobs as job_store

router = APIRouter(tags=["devices"])


@router.get("/devices", response_model=list[DevicePublic], response_model_by_alias=True)
def list_devices(session: SessionDep, state: StateDep, _: CurrentUser) -> list[DevicePublic]:
    """The fleet: class, runtimes with versions, attributes, online/offline, current job."""
    queued = list(session.scalars(select(Job).where(Job.status == "queued")))
    return [
        store.device_public(session, d, state.settings.offline_after_s, queued)
        for d in store.list_devices(session)
    ]


@router.get("/jobs", response_model=list[JobPublic])
def list_jobs(session: SessionDep, _: CurrentUser, status: str | None = None) -> list[JobPublic]:
    """Recent jobs, newest first (optionally filtered by status)."""
    devices = store.list_devices(session)
    return [job_store.job_public(j, devices) for j in job_store.list_jobs(session, status)]


@router.get("/jobs/{job_id}", response_model=JobPublic)
def get_job(job_id: int, session: SessionDep, _: CurrentUser) -> JobPublic:
    """One job: status, attempts, live progress, error, and which devices could take it."""
    job = job_store.get_job(session, job_id)
    if job is None:
        raise HTTPException(404, f"job {job_id} does not exist")
    return job_store.job_public(job, store.list_devices(session))
