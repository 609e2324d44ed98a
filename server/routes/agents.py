from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from db.models import ApiToken, Device, Job
from latencylab.conversions import ConversionOutcome, ConversionPublic
from latencylab.errors import ErrorCode
from latencylab.fields import Id, Text
from latencylab.schemas import (
    DevicePublic,
    DeviceRegister,
    Heartbeat,
    JobReport,
    LeasedJob,
    ResultPublic,
)
from server.artifacts import UploadTooLarge
from server.deps import (
    AGENT,
    AgentSecret,
    AppState,
    CurrentAgent,
    SessionDep,
    StateDep,
    admit,
    commit,
)
from server.errors import ApiError
from server.openapi import AUTH, errors
from server.queue import lifecycle
from server.security import hash_token
from server.store import artifacts as artifact_store
from server.store import benchmarks as bench_store
from server.store import bindings
from server.store import conversions as conv_store
from server.store import devices as store
from server.store import jobs as job_store
from server.upload import UPLOAD_FILE_BODY, BadUpload, receive_form

router = APIRouter(prefix="/agents", tags=["agents"], responses=AUTH)


def _own_device(session: SessionDep, device_id: int, token: ApiToken) -> Device:
    """The caller's device: 404 ``device_not_registered`` if the coordinator does not know it
    (register again), 403 ``forbidden`` if it is not bound to this token (any more)."""
    return _bound(store.get_device(session, device_id), device_id, token)


def _agent_device(session: Session, device_id: int, secret: str) -> Device:
    """``_own_device`` for the agent secret sent, with its token checked (``admit``): the
    token and the device in one read, in the request's transaction."""
    token, device = store.token_and_device(session, hash_token(secret), device_id)
    return _bound(device, device_id, admit(token, AGENT))


def _bound(device: Device | None, device_id: int, token: ApiToken) -> Device:
    if device is None:
        raise ApiError(
            404,
            ErrorCode.device_not_registered,
            f"device {device_id} is not registered; register first",
        )
    if device.token_id is None:
        raise ApiError(
            403,
            ErrorCode.forbidden,
            f"device {device_id} ('{device.name}') was released by an admin and is no longer "
            "bound to this token; restart the agent to register it again",
        )
    if device.token_id != token.id:
        raise ApiError(
            403,
            ErrorCode.forbidden,
            f"device {device_id} ('{device.name}') is registered with another token",
        )
    return device


@router.post(
    "/register",
    response_model=DevicePublic,
    response_model_by_alias=True,
    responses=errors(400, 409, 422),
)
def register(
    body: DeviceRegister, session: SessionDep, state: StateDep, token: CurrentAgent
) -> DevicePublic:
    """Register (or re-register) a device with its capabilities; frees jobs it held before.

    A name belongs to the token that registered it: another token gets 409 ``device_taken``
    until an admin releases the device (``POST /devices/{id}/release``) or revokes that token.
    A token scoped to device names gets 403 ``forbidden`` for a name outside its scope."""
    try:
        device = bindings.register_device(state.context(session), body, token)
    except bindings.DeviceTaken as exc:
        raise ApiError(409, ErrorCode.device_taken, str(exc)) from exc
    except bindings.DeviceOutOfScope as exc:
        raise ApiError(403, ErrorCode.forbidden, str(exc)) from exc
    answer = store.device_public(session, device, state.settings.offline_after_s)
    commit(session, state)
    return answer


@router.post("/{device_id}/heartbeat", responses=errors(400, 404, 409, 422, 503))
def heartbeat(
    device_id: Id, body: Heartbeat, session: SessionDep, state: StateDep, secret: AgentSecret
) -> dict[str, bool]:
    """Keep the device online and its job's lease alive. 409 ``lease_lost``: the job is no
    longer this device's (lease expired, requeued, finished); abandon it."""
    device = _agent_device(session, device_id, secret)
    try:
        lifecycle.heartbeat(state.context(session), device, body.job_id, body.progress)
    except lifecycle.LeaseLost as exc:
        commit(session, state)  # the device was seen all the same
        raise ApiError(409, ErrorCode.lease_lost, str(exc)) from exc
    commit(session, state)
    return {"keep": True}


def _try_lease(state: AppState, session: Session, device_id: int, secret: str) -> LeasedJob | None:
    """One lease attempt in its own transaction (the token checked in it, so a revoked one
    stops a long-poll too): the answer, or None (nothing for it)."""
    device = _agent_device(session, device_id, secret)
    ctx = state.context(session)
    try:
        job = lifecycle.lease(ctx, device)
    except lifecycle.LeaseConflict as exc:
        raise ApiError(409, ErrorCode.conflict, str(exc)) from exc
    answer = job_store.leased(ctx, job) if job is not None else None
    commit(session, state)
    return answer


def _has_work(state: AppState, device_id: int) -> bool:
    with state.read_sessions() as session:
        return lifecycle.has_work(session, device_id)


WaitS = Annotated[
    float,
    Query(
        ge=0,
        le=600,
        description="Long-poll: wait up to this many seconds for a job before answering 204 "
        "(capped by LATENCYLAB_LEASE_WAIT_MAX_S); 0: answer at once",
    ),
]


@router.post(
    "/{device_id}/lease",
    response_model=LeasedJob,
    responses={
        204: {"description": "No job for this device (within wait_s)"},
        **errors(404, 409, 422, 503),
    },
)
async def lease(
    device_id: Id,
    request: Request,
    session: SessionDep,
    state: StateDep,
    secret: AgentSecret,
    wait_s: WaitS = 0,
) -> LeasedJob | Response:
    """Lease the oldest queued job this device can run (one at a time, with an expiring
    lease). With ``wait_s`` the request waits for one to be queued (a long-poll holding no
    database connection meanwhile): a job queued on this coordinator process is handed out
    at once, and on PostgreSQL one queued through another replica too (``LISTEN``/``NOTIFY``);
    ``LATENCYLAB_LEASE_RECHECK_S`` is the fallback re-check."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(wait_s, state.settings.lease_wait_max_s)
    seen = state.signal.generation
    answer = await run_in_threadpool(_try_lease, state, session, device_id, secret)
    while answer is None:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return Response(status_code=status.HTTP_204_NO_CONTENT)
        # Woken by a job queued in this process or (PostgreSQL) another one, or time for
        # the fallback re-check; a cheap read first, then the write transaction.
        await state.signal.wait(seen, min(remaining, state.settings.lease_recheck_s))
        seen = state.signal.generation
        if await request.is_disconnected():  # nobody to hand a job to
            return Response(status_code=status.HTTP_204_NO_CONTENT)
        if await run_in_threadpool(_has_work, state, device_id):
            answer = await run_in_threadpool(_try_lease, state, session, device_id, secret)
    return answer


@router.post(
    "/{device_id}/jobs/{job_id}/report",
    response_model=ResultPublic,
    responses={
        201: {"model": ResultPublic, "description": "The first report: the result was stored"},
        **errors(400, 404, 409, 422, 503),
    },
)
def report(
    device_id: Id,
    job_id: Id,
    body: JobReport,
    response: Response,
    session: SessionDep,
    state: StateDep,
    secret: AgentSecret,
) -> ResultPublic:
    """Report a job's measurement; repeating a report -- even concurrently -- returns the
    stored result with 200 (idempotent)."""
    device = _agent_device(session, device_id, secret)
    try:
        row, created = job_store.report_result(state.context(session), device, job_id, body.result)
    except KeyError as exc:
        raise ApiError(404, ErrorCode.not_found, f"job {job_id} does not exist") from exc
    except lifecycle.LeaseLost as exc:
        raise ApiError(409, ErrorCode.lease_lost, str(exc)) from exc
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    answer = bench_store.result_public(row)
    commit(session, state)
    return answer


def _held_job(session: SessionDep, device: Device, job_id: int, kind: str | None = None) -> Job:
    job = job_store.get_job(session, job_id)
    if job is None:
        raise ApiError(404, ErrorCode.not_found, f"job {job_id} does not exist")
    if kind and job.kind != kind:
        raise ApiError(
            409, ErrorCode.conflict, f"job {job_id} is a {job.kind} job, not a {kind} job"
        )
    return job


@router.post(
    "/{device_id}/jobs/{job_id}/artifacts",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=UPLOAD_FILE_BODY,
    responses=errors(400, 404, 409, 413, 415, 422),
)
async def upload_artifact(
    device_id: Id,
    job_id: Id,
    request: Request,
    session: SessionDep,
    state: StateDep,
    token: CurrentAgent,
    format: Annotated[Text, Query(max_length=32, description="tflite, openvino, coreml, log, ...")],
) -> dict[str, Any]:
    """Upload a file a job produced (a converted artifact or a log) into the artifact store,
    through the coordinator. Ask ``POST .../uploads`` first: with object storage the ticket
    is a presigned URL and the bytes bypass the coordinator (this route still accepts them)."""
    device = await run_in_threadpool(_own_device, session, device_id, token)
    await run_in_threadpool(_held_job, session, device, job_id)
    try:
        await run_in_threadpool(lifecycle.holds, session, device, job_id)
    except lifecycle.LeaseLost as exc:
        raise ApiError(409, ErrorCode.lease_lost, f"{exc}; nothing was stored") from exc
    await run_in_threadpool(commit, session, state)  # no lock or connection during the upload
    try:
        form = await receive_form(request, state.store, state.settings.max_upload_bytes)
    except UploadTooLarge as exc:
        raise HTTPException(
            413, "artifact exceeds the upload limit (LATENCYLAB_MAX_UPLOAD_MB)"
        ) from exc
    except BadUpload as exc:
        raise HTTPException(exc.status_code, exc.message) from exc
    assert form.file is not None
    sha, size, _ = await run_in_threadpool(artifact_store.add_artifact, session, form.file, format)
    return {"sha256": sha, "size": size, "format": format}


@router.post(
    "/{device_id}/jobs/{job_id}/conversion",
    response_model=ConversionPublic,
    responses=errors(400, 404, 409, 422),
)
def report_conversion(
    device_id: Id,
    job_id: Id,
    body: ConversionOutcome,
    session: SessionDep,
    state: StateDep,
    token: CurrentAgent,
) -> ConversionPublic:
    """Report a conversion job's outcome (upload its artifact and log first); idempotent."""
    device = _own_device(session, device_id, token)
    job = _held_job(session, device, job_id, "convert")
    try:
        conv = conv_store.report(state.context(session), device, job, body)
    except lifecycle.LeaseLost as exc:
        raise ApiError(409, ErrorCode.lease_lost, str(exc)) from exc
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    answer = conv_store.public(session, conv)
    commit(session, state)
    return answer
