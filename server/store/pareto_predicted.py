"""Predicted Pareto points: models not measured on a target, placed by the target's predictor.

A target (device, runtime, precision, batch size, optionally threads) with a succeeded
predictor gets one predicted point per model that carries the metric and has no measured
result there yet; once it is measured, the measured point replaces it. Predictions come
from ``server.store.predictors.predict_model``, which keeps each one once computed
(``stored_predictions``: bundle hash, ONNX hash, input shapes), so a model costs its ONNX
parse and kernel detection once per trained bundle, in whichever process asks first (on
SQLite a GET request does not write: there it is computed on every call unless a POST kept it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Model
from db.predictors import Predictor
from latencylab.pareto import ParetoPoint
from server.artifacts import ArtifactStore
from server.store.predictors import PredictorRejected, predict_model

SUCCEEDED = "succeeded"


def predictor_for(
    session: Session,
    *,
    device: str,
    runtime: str,
    precision: str,
    batch_size: int,
    threads: int | None = None,
) -> Predictor | None:
    """The newest succeeded predictor of that target (any threads unless ``threads``)."""
    q = select(Predictor).where(
        Predictor.status == SUCCEEDED,
        Predictor.device_name == device,
        Predictor.runtime == runtime,
        Predictor.precision == precision,
        Predictor.batch_size == batch_size,
    )
    if threads is not None:
        q = q.where(Predictor.threads == threads)
    return session.scalars(q.order_by(Predictor.id.desc()).limit(1)).first()


def candidates(session: Session, model_ids: list[int] | None) -> list[Model]:
    """Live user models (optionally only ``model_ids``), oldest first."""
    q = select(Model).where(Model.kind == "user", Model.deleted_at.is_(None))
    if model_ids is not None:
        q = q.where(Model.id.in_(model_ids))
    return list(session.scalars(q.order_by(Model.id)))


def predicted_points(
    session: Session,
    store: ArtifactStore,
    p: Predictor,
    models: Iterable[Model],
    accuracy_of: Callable[[Model], float],
    tags_of: Callable[[Model], list[str]],
) -> tuple[list[ParetoPoint], list[dict[str, Any]]]:
    """A point per model the predictor can estimate, and ``{model_id, name, error}`` for the
    others (no ONNX yet, an archived ONNX, a graph it cannot read)."""
    points: list[ParetoPoint] = []
    failed: list[dict[str, Any]] = []
    for model in models:
        try:
            pred = predict_model(session, store, p, model)
        except PredictorRejected as exc:
            failed.append({"model_id": model.id, "name": model.name, "error": exc.message})
            continue
        points.append(
            ParetoPoint(
                model_id=model.id,
                name=model.name,
                latency_ms=pred.latency_ms,
                accuracy=accuracy_of(model),
                on_front=False,
                size=model.size,
                tags=tags_of(model),
                threads=p.threads,
                predicted=True,
                predictor_id=p.id,
            )
        )
    return points, failed


def predictor_targets(session: Session) -> dict[tuple[str, str, str, int], int]:
    """(device, runtime, precision, batch size) → the newest succeeded predictor's id."""
    q = select(Predictor).where(Predictor.status == SUCCEEDED).order_by(Predictor.id)
    return {(p.device_name, p.runtime, p.precision, p.batch_size): p.id for p in session.scalars(q)}
