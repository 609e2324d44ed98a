from __future__ import annotations

import re

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from db.models import Artifact, Device, Job
from latencylab.errors import ErrorCode
from latencylab.status import JobStatus
from server.artifacts import artifact_response
from server.deps import AnyToken, SessionDep, StateDep
from server.errors import ApiError
from server.openapi import AUTH, errors

router = APIRouter(tags=["artifacts"], responses=AUTH)
_SHA256 = re.compile(r"[0-9a-f]{64}")


@router.get(
    "/artifacts/{sha256}",
    response_class=Response,
    responses={
        200: {
            "description": "The artifact's bytes",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        },
        307: {
            "description": "Object storage, agent token: fetch the bytes from the presigned URL "
            "in `Location` (without this API's Authorization header); it expires",
            "headers": {"Location": {"schema": {"type": "string"}}},
        },
        **errors(404),
    },
)
def download_artifact(
    sha256: str, session: SessionDep, state: StateDep, token: AnyToken
) -> Response:
    """Download an artifact by sha256. An agent token only gets artifacts of jobs its devices
    hold: otherwise 403 ``lease_lost`` (the job's lease expired or it was requeued meanwhile;
    the agent drops the job). With object storage (``LATENCYLAB_ARTIFACTS_URL=s3://…``) an
    agent gets a 307 to a presigned URL, so the bytes never pass through the coordinator;
    other tokens (the dashboard, the SDK) get the bytes streamed through it."""
    artifact = session.get(Artifact, sha256) if _SHA256.fullmatch(sha256) else None
    if artifact is None or not state.store.exists(sha256):
        raise ApiError(404, ErrorCode.not_found, f"no artifact {sha256}")
    filename = f"{sha256}.{artifact.format}"
    headers = {"X-Content-SHA256": sha256}
    if token.scope == "agent":
        held = session.scalar(
            select(Job.id)
            .join(Device, Job.device_id == Device.id)
            .where(
                Job.artifact_sha256 == sha256,
                Job.status == JobStatus.running,
                Device.token_id == token.id,
            )
        )
        if held is None:
            raise ApiError(
                403,
                ErrorCode.lease_lost,
                f"no job holding artifact {sha256} is leased to a device of this token (its lease "
                "expired or it was requeued): agents may only download artifacts of jobs they hold",
            )
        url = state.store.download_url(sha256, filename)
        if url is not None:
            return RedirectResponse(url, status_code=307, headers=headers)
    return artifact_response(
        state.store,
        sha256,
        media_type="application/octet-stream",
        filename=filename,
        headers=headers,
    )
