from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from latencylab.errors import ErrorBody, default_code
from latencylab.fields import MAX_INT64, Id
from latencylab.schemas import ModelPublic, ModelUpdate
from server.artifacts import UploadTooLarge
from server.deps import CurrentUser, SessionDep, StateDep
from server.errors import ApiError
from server.formats import InspectLimits, ModelRejected
from server.openapi import AUTH, errors
from server.store import model_delete as deleting
from server.store import models as store
from server.store.gc import collect_garbage
from server.store.model_delete import ResultsPolicy
from server.upload import BadUpload, multipart_body, receive_form

log = logging.getLogger("latencylab.server")
router = APIRouter(prefix="/models", tags=["models"], responses=AUTH)

_UPLOAD_BODY = multipart_body(
    {
        "file": "The model file (.onnx)",
        "name": "Display name; default: the file name",
        "metadata": 'JSON object, e.g. {"accuracy": {"top1": 75.3}, '
        '"input_shapes": {"input": [1,3,224,224]}, "tags": ["mbv2"]}',
    }
)

_UPLOAD_422: dict[int | str, dict[str, Any]] = {
    422: {
        "model": ErrorBody,
        "description": "The file is not a model LatencyLab can read (`detail` names the file and "
        "what is wrong), or `code: inspection_limit`: checking it needs more memory or time than "
        "the coordinator's sandboxed model check may use (LATENCYLAB_INSPECT_MEMORY_MB, "
        "LATENCYLAB_INSPECT_TIMEOUT_S); nothing was stored",
    }
}


@router.post(
    "",
    response_model=ModelPublic,
    status_code=status.HTTP_201_CREATED,
    openapi_extra=_UPLOAD_BODY,
    responses={**errors(400, 413, 415), **_UPLOAD_422},
)
async def upload_model(
    request: Request, session: SessionDep, state: StateDep, token: CurrentUser
) -> ModelPublic:
    """Upload a model (multipart: file, name, metadata); it is streamed, validated and stored."""
    limit = state.settings.max_upload_bytes
    try:
        form = await receive_form(request, state.store, limit)
    except UploadTooLarge as exc:
        raise HTTPException(
            413,
            f"upload exceeds the limit of {state.settings.max_upload_mb:g} MB "
            "(LATENCYLAB_MAX_UPLOAD_MB)",
        ) from exc
    except BadUpload as exc:
        raise HTTPException(exc.status_code, exc.message) from exc
    assert form.file is not None
    try:
        model = await run_in_threadpool(
            store.create_model,
            session,
            state.store,
            form.file,
            filename=form.filename,
            name=form.fields.get("name"),
            metadata_raw=form.fields.get("metadata"),
            owner_token_id=token.id,
            limits=InspectLimits.of(state.settings),
        )
    except ModelRejected as exc:
        code = exc.code or default_code(exc.status_code)
        raise ApiError(exc.status_code, code, exc.message) from exc
    return store.model_public(model)


@router.get("", response_model=list[ModelPublic], responses=errors(422))
def list_models(
    session: SessionDep,
    _: CurrentUser,
    limit: int = Query(500, ge=1, le=5000),
    offset: int = Query(0, ge=0, le=MAX_INT64),
    sha256: str | None = Query(
        None, pattern=r"^[0-9a-f]{64}$", description="Only models of this file (SHA-256, hex)"
    ),
) -> list[ModelPublic]:
    """List uploaded models, newest first (optionally only those of one file, by sha256)."""
    return [store.model_public(m) for m in store.list_models(session, limit, offset, sha256)]


@router.get("/{model_id}", response_model=ModelPublic, responses=errors(404, 410, 422))
def get_model(model_id: Id, session: SessionDep, _: CurrentUser) -> ModelPublic:
    """One model: format, hash, size, inputs, outputs, opset and metadata (410
    ``model_deleted`` once deleted with its results kept)."""
    return store.model_public(store.find_model(session, model_id))


@router.patch("/{model_id}", response_model=ModelPublic, responses=errors(400, 403, 404, 410, 422))
def update_model(
    model_id: Id, body: ModelUpdate, session: SessionDep, token: CurrentUser
) -> ModelPublic:
    """Correct a model's name, accuracy, tags or other metadata; only the fields given change.

    ``accuracy`` and ``tags`` replace those metadata keys as a whole (null removes them);
    ``metadata`` is merged key by key (null removes a key). Only the token that uploaded the
    model, or an admin, may change it (403 otherwise). A bad body changes nothing (422)."""
    return store.model_public(store.update_model(session, model_id, body, token))


@router.delete(
    "/{model_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=errors(403, 404, 409, 410, 422),
)
def delete_model(
    model_id: Id,
    session: SessionDep,
    state: StateDep,
    token: CurrentUser,
    results: ResultsPolicy = Query(
        ResultsPolicy.keep,
        description="`keep`: the model leaves every list, the Pareto page and GET (410), its "
        "benchmarks and results stay readable by id. `delete`: its benchmarks, jobs, results "
        "and conversions go too (also for a model deleted before with `keep`)",
    ),
) -> Response:
    """Delete a model (its uploader or an admin; 403 otherwise).

    Queued and waiting jobs of the model are cancelled; a job a device is running makes it a
    409 `model_busy` (retry when it has finished), a model a latency table uses a 409
    `model_in_use`. Afterwards the artifacts nothing needs any more (the model's file, its
    conversions) are garbage-collected at once."""
    shas = deleting.delete_model(state.context(session), model_id, token, results)
    session.commit()
    try:
        collect_garbage(state.sessions, state.store, grace_s=0, only=shas)
    except SQLAlchemyError:  # the delete stands; the periodic collection retries
        log.warning("collecting the artifacts of deleted model %s failed", model_id, exc_info=True)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
