from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query

from latencylab.pareto import ParetoOptions, ParetoResponse
from latencylab.schemas import Precision
from server.deps import CurrentUser, SessionDep
from server.store import pareto as store

router = APIRouter(prefix="/pareto", tags=["pareto"])


def _ids(raw: str | None) -> list[int] | None:
    if raw is None or not raw.strip():
        return None
    try:
        return [int(part) for part in raw.split(",") if part.strip()]
    except ValueError as exc:
        raise HTTPException(
            422, f"model_ids must be comma-separated integers, got {raw!r}"
        ) from exc


@router.get("", response_model=ParetoResponse)
def get_pareto(
    session: SessionDep,
    _: CurrentUser,
    device: str = Query(description="A device name (as listed by /devices)"),
    runtime: str = Query("onnxruntime"),
    precision: Precision = Query("fp32"),
    batch_size: int = Query(1, ge=1, le=4096),
    metric: str = Query("top1", min_length=1, description="A key of metadata.accuracy"),
    tag: str | None = Query(None, description="Only models carrying this tag"),
    threads: int | None = Query(None, ge=0, description="Only results measured with this many"),
    model_ids: str | None = Query(None, description="Only these models (comma-separated ids)"),
) -> ParetoResponse:
    """Latency (p50) vs accuracy of every model measured on a target, with its Pareto front."""
    try:
        return store.pareto(
            session,
            device=device,
            runtime=runtime,
            precision=precision,
            batch_size=batch_size,
            metric=metric,
            tag=tag or None,
            threads=threads,
            model_ids=_ids(model_ids),
        )
    except store.ParetoError as exc:
        raise HTTPException(exc.status_code, exc.message) from exc


@router.get("/options", response_model=ParetoOptions)
def get_pareto_options(session: SessionDep, _: CurrentUser) -> ParetoOptions:
    """The targets (device, runtime, precision, batch size) with results, metrics and tags."""
    return store.options(session)
