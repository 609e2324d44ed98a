from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, Request, status
from starlette.concurrency import run_in_threadpool

from latencylab.schemas import ModelPublic
from server.artifacts import UploadTooLarge
from server.deps import CurrentUser, SessionDep, StateDep
from server.formats import ModelRejected
from server.store import models as store
from server.upload import BadUpload, multipart_body, receive_form

router = APIRouter(prefix="/models", tags=["models"])

_UPLOAD_BODY = multipart_body(
    {
        "file": "The model file (.onnx)",
        "name": "Display name; default: the file name",
        "metadata": 'JSON object, e.g. {"accuracy": {"top1": 75.3}, '
        '"input_shapes": {"input": [1,3,224,224]}, "tags": ["mbv2"]}',
    }
)


@router.post(
    "",
    response_model=ModelPublic,
    status_code=status.HTTP_201_CREATED,
    openapi_extra=_UPLOAD_BODY,
    responses={
        413: {"description": "Over the size limit"},
        415: {"description": "Unsupported format"},
    },
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
            max_unpacked=4 * state.settings.max_upload_bytes,
        )
    except ModelRejected as exc:
        raise HTTPException(exc.status_code, exc.message) from exc
    return store.model_public(model)


@router.get("", response_model=list[ModelPublic])
def list_models(
    session: SessionDep,
    _: CurrentUser,
    limit: int = Query(500, ge=1, le=5000),
    offset: int = Query(0, ge=0),
) -> list[ModelPublic]:
    """List uploaded models, newest first."""
    return [store.model_public(m) for m in store.list_models(session, limit, offset)]


@router.get("/{model_id}", response_model=ModelPublic)
def get_model(model_id: int, session: SessionDep, _: CurrentUser) -> ModelPublic:
    """One model: format, hash, size, inputs, outputs, opset and metadata."""
    model = store.get_model(session, model_id)
    if model is None:
        raise HTTPException(404, f"model {model_id} does not exist")
    return store.model_public(model)
