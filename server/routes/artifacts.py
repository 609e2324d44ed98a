from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse
from sqlalchemy import select

from db.models import Artifact, Device, Job
from server.deps import AnyToken, SessionDep, StateDep

router = APIRouter(tags=["artifacts"])


@router.get("/artifacts/{sha256}", response_class=FileResponse)
def download_artifact(
    sha256: str, session: SessionDep, state: StateDep, token: AnyToken
) -> FileResponse:
    """Download an artifact by sha256; an agent token only gets artifacts of jobs it holds."""
    artifact = session.get(Artifact, sha256)
    if artifact is None or not state.store.exists(sha256):
        raise HTTPException(404, f"no artifact {sha256}")
    if token.scope == "agent":
        held = session.scalar(
            select(Job.id)
            .join(Device, Job.device_id == Device.id)
            .where(
                Job.artifact_sha256 == sha256, Job.status == "running", Device.token_id == token.id
            )
        )
        if held is None:
            raise HTTPException(403, "agents may only download artifacts of jobs they hold")
    return FileResponse(
        state.store.path_for(sha256),
        media_type="application/octet-stream",
        filename=f"{sha256}.{artifact.format}",
        headers={"X-Content-SHA256": sha256},
    )
