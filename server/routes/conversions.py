from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import Response

from latencylab.conversions import ConversionCreate, ConversionPublic
from latencylab.fields import Id
from server.artifacts import artifact_response
from server.deps import CurrentUser, SessionDep, StateDep
from server.openapi import AUTH, errors
from server.store import conversions as store
from server.store.models import get_model

router = APIRouter(tags=["conversions"], responses=AUTH)


@router.post(
    "/conversions",
    response_model=ConversionPublic,
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(400, 404, 422),
)
def create_conversion(
    body: ConversionCreate, session: SessionDep, state: StateDep, _: CurrentUser
) -> ConversionPublic:
    """Queue a conversion of a model (an identical one already queued or done is reused)."""
    model = get_model(session, body.model_id)
    if model is None:
        raise HTTPException(404, f"model {body.model_id} does not exist")
    try:
        conv, _created = store.get_or_create(
            session,
            model,
            body.target,
            body.precision,
            body.batch_size,
            body.device,
            state.settings.max_attempts,
        )
    except store.ConversionRejected as exc:
        raise HTTPException(exc.status_code, exc.message) from exc
    return store.public(session, conv)


@router.get(
    "/conversions/{conversion_id}", response_model=ConversionPublic, responses=errors(404, 422)
)
def get_conversion(conversion_id: Id, session: SessionDep, _: CurrentUser) -> ConversionPublic:
    """A conversion: status, artifact, numerical validation, error with a hint, log link."""
    conv = store.get(session, conversion_id)
    if conv is None:
        raise HTTPException(404, f"conversion {conversion_id} does not exist")
    return store.public(session, conv)


@router.get(
    "/conversions/{conversion_id}/log",
    response_class=Response,
    responses={
        200: {"description": "The log", "content": {"text/plain": {"schema": {"type": "string"}}}},
        **errors(404, 422),
    },
)
def get_conversion_log(
    conversion_id: Id, session: SessionDep, state: StateDep, _: CurrentUser
) -> Response:
    """Download the converter's full log (text), served by the coordinator whatever the
    artifact store."""
    conv = store.get(session, conversion_id)
    if conv is None or not conv.log_sha256 or not state.store.exists(conv.log_sha256):
        raise HTTPException(404, f"conversion {conversion_id} has no log (yet)")
    return artifact_response(
        state.store,
        conv.log_sha256,
        media_type="text/plain; charset=utf-8",
        filename=f"conversion-{conversion_id}.log",
    )


@router.get(
    "/models/{model_id}/conversions",
    response_model=list[ConversionPublic],
    responses=errors(404, 422),
)
def list_model_conversions(
    model_id: Id, session: SessionDep, _: CurrentUser
) -> list[ConversionPublic]:
    """Every conversion of a model, oldest first."""
    if get_model(session, model_id) is None:
        raise HTTPException(404, f"model {model_id} does not exist")
    return [store.public(session, c) for c in store.list_for_model(session, model_id)]
