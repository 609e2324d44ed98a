"""Garbage collection of the artifact store on demand (it also runs periodically)."""

from __future__ import annotations

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from latencylab.schemas import GcReport
from server.deps import CurrentAdmin, StateDep
from server.openapi import AUTH, errors
from server.store.gc import collect_garbage

router = APIRouter(tags=["artifacts"], responses=AUTH)


@router.post("/artifacts/gc", response_model=GcReport, responses=errors(422))
async def collect(
    state: StateDep,
    _: CurrentAdmin,
    grace_s: float | None = Query(
        None,
        ge=0,
        le=10 * 365 * 86400,
        description="Spare artifacts used this recently (seconds); default "
        "LATENCYLAB_GC_GRACE_S. 0 also takes a converted file an agent has uploaded but not "
        "yet reported",
    ),
) -> GcReport:
    """Delete the artifacts nothing needs (admin): rows no model, job or conversion names go
    with their files; files only deleted models, finished table jobs or conversions of deleted
    models need go, their rows kept (marked purged); files no row knows go. Returns what was
    freed."""
    grace = state.settings.gc_grace_s if grace_s is None else grace_s
    return await run_in_threadpool(collect_garbage, state.sessions, state.store, grace)
