from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from latencylab.errors import ErrorCode
from latencylab.fields import MAX_ID, Text
from latencylab.pareto import ParetoOptions, ParetoResponse
from latencylab.schemas import Precision
from server.deps import CurrentUser, SessionDep, StateDep
from server.errors import ApiError
from server.openapi import AUTH, errors
from server.store import pareto as store

router = APIRouter(prefix="/pareto", tags=["pareto"], responses=AUTH)


def _ids(raw: str | None) -> list[int] | None:
    if raw is None or not raw.strip():
        return None
    try:
        ids = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError as exc:
        raise ApiError(
            422,
            ErrorCode.validation_error,
            f"model_ids must be comma-separated integers, got {raw[:200]!r}",
        ) from exc
    if not all(1 <= i <= MAX_ID for i in ids):
        raise ApiError(422, ErrorCode.validation_error, f"model_ids must be ids from 1 to {MAX_ID}")
    return ids


@router.get("", response_model=ParetoResponse, responses=errors(404, 422))
def get_pareto(
    session: SessionDep,
    state: StateDep,
    _: CurrentUser,
    # Annotated[Text, Query()], not `Text = Query()`: only this form keeps Text's NUL check.
    device: Annotated[Text, Query(description="A device name (as listed by /devices)")],
    runtime: Annotated[Text, Query()] = "onnxruntime",
    precision: Precision = Query("fp32"),
    batch_size: int = Query(1, ge=1, le=4096),
    metric: Annotated[Text, Query(min_length=1, description="A key of metadata.accuracy")] = "top1",
    tag: Annotated[Text | None, Query(description="Only models carrying this tag")] = None,
    threads: int | None = Query(
        None, ge=0, le=1024, description="Only results measured with this many"
    ),
    model_ids: str | None = Query(None, description="Only these models (comma-separated ids)"),
    hide_flagged: bool = Query(
        False, description="Leave out models whose latest result has a warning quality flag"
    ),
    include_predicted: bool = Query(
        False,
        description="Add predicted points (the target's newest succeeded predictor) for models "
        "not measured there yet",
    ),
) -> ParetoResponse:
    """Latency (p50) vs accuracy of every model measured on a target, with its Pareto front.

    One target (device, runtime, precision, batch size) per call, with its own front: the
    dashboard overlays several series (say onnxruntime and OpenVINO on one device) by calling
    it once per series, so each series' front is computed among that series' points only.
    """
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
            hide_flagged=hide_flagged,
            include_predicted=include_predicted,
            store=state.store,
        )
    except store.ParetoError as exc:
        raise HTTPException(exc.status_code, exc.message) from exc


@router.get("/options", response_model=ParetoOptions)
def get_pareto_options(
    session: SessionDep,
    _: CurrentUser,
    include_predicted: bool = Query(False, description="Also the targets of predictors"),
) -> ParetoOptions:
    """The targets (device, runtime, precision, batch size) with results, metrics and tags."""
    return store.options(session, include_predicted)
