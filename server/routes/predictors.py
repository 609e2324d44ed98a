from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, Response, status

from db.predictors import Predictor
from latencylab.fields import Id
from latencylab.predictors import (
    ModelPrediction,
    ModelPredictions,
    ModelPredictRequest,
    PredictorCreate,
    PredictorPublic,
    PredictorResume,
    TrackedReport,
)
from server.deps import CurrentUser, SessionDep, StateDep
from server.openapi import AUTH, errors
from server.store import predictor_tracking
from server.store import predictors as store
from server.store.models import find_model

router = APIRouter(tags=["predictors"], responses=AUTH)


def _predictor(session: SessionDep, predictor_id: int) -> Predictor:
    p = store.get_predictor(session, predictor_id)
    if p is None:
        raise HTTPException(404, f"predictor {predictor_id} does not exist")
    return p


@router.post(
    "/predictors",
    response_model=PredictorPublic,
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(400, 422),
)
def create_predictor(
    body: PredictorCreate, session: SessionDep, state: StateDep, token: CurrentUser
) -> PredictorPublic:
    """Build a kernel-level latency predictor on one device (identical builds are reused)."""
    try:
        p, created = store.create_predictor(session, state.store, body, token.id, state.settings)
    except store.TableRejected as exc:
        raise HTTPException(exc.status_code, exc.message) from exc
    return store.predictor_public(session, p).model_copy(update={"reused": not created})


@router.get("/predictors", response_model=list[PredictorPublic], responses=errors(422))
def list_predictors(
    session: SessionDep, _: CurrentUser, limit: int = Query(200, ge=1, le=2000)
) -> list[PredictorPublic]:
    """Predictor builds, newest first, with status, progress and accuracy."""
    return [store.predictor_public(session, p) for p in store.list_predictors(session, limit)]


@router.get(
    "/predictors/{predictor_id}", response_model=PredictorPublic, responses=errors(404, 422)
)
def get_predictor(
    predictor_id: Id, session: SessionDep, state: StateDep, _: CurrentUser
) -> PredictorPublic:
    """A build's status, progress, accuracy report and predicted-vs-measured points."""
    p = _predictor(session, predictor_id)
    store.kick(session, state.store, p)
    return store.predictor_public(session, p)


@router.post(
    "/predictors/{predictor_id}/resume",
    response_model=PredictorPublic,
    responses=errors(400, 404, 422),
)
def resume_predictor(
    predictor_id: Id,
    session: SessionDep,
    state: StateDep,
    _: CurrentUser,
    body: PredictorResume | None = None,
) -> PredictorPublic:
    """Retry a build's failed samples and networks (optionally with longer timeouts)."""
    try:
        p = store.resume_predictor(
            session, state.store, _predictor(session, predictor_id), body or PredictorResume()
        )
    except store.PredictorRejected as exc:
        raise HTTPException(exc.status_code, exc.message) from exc
    return store.predictor_public(session, p)


@router.get(
    "/predictors/{predictor_id}/bundle",
    responses={
        200: {"content": {"application/json": {"schema": {"type": "object"}}}},
        **errors(404, 409, 422),
    },
)
def get_bundle(predictor_id: Id, session: SessionDep, _: CurrentUser) -> Response:
    """The trained predictor as JSON (predictor.bundle.PredictorBundle.from_json reads it)."""
    try:
        text = store.bundle_json(session, _predictor(session, predictor_id))
    except store.PredictorRejected as exc:
        raise HTTPException(exc.status_code, exc.message) from exc
    return Response(text, media_type="application/json")


@router.post(
    "/predictors/{predictor_id}/predict",
    response_model=ModelPrediction,
    responses=errors(400, 404, 409, 410, 422),
)
def predict(
    predictor_id: Id,
    body: ModelPredictRequest,
    session: SessionDep,
    state: StateDep,
    _: CurrentUser,
) -> ModelPrediction:
    """Predicted latency of an uploaded model, with the per-kernel breakdown."""
    p = _predictor(session, predictor_id)
    model = find_model(session, body.model_id)
    try:
        return store.predict_model(session, state.store, p, model)
    except store.PredictorRejected as exc:
        raise HTTPException(exc.status_code, exc.message) from exc


@router.get(
    "/models/{model_id}/predictions",
    response_model=ModelPredictions,
    responses=errors(404, 410, 422),
)
def model_predictions(
    model_id: Id, session: SessionDep, state: StateDep, _: CurrentUser
) -> ModelPredictions:
    """The model's predicted latency on every device that has a succeeded predictor."""
    return store.model_predictions(session, state.store, find_model(session, model_id))


@router.get(
    "/predictors/{predictor_id}/tracked",
    response_model=TrackedReport,
    responses=errors(404, 409, 422),
)
def tracked(
    predictor_id: Id,
    session: SessionDep,
    state: StateDep,
    _: CurrentUser,
    limit: int = Query(100, ge=1, le=500),
) -> TrackedReport:
    """Predicted vs measured on the users' own benchmarked models, with its accuracy."""
    try:
        return predictor_tracking.tracked(
            session, state.store, _predictor(session, predictor_id), limit
        )
    except store.PredictorRejected as exc:
        raise HTTPException(exc.status_code, exc.message) from exc
