"""A predictor on the users' own models: every succeeded benchmark of a user model on the
predictor's device and settings (runtime, precision, batch size, threads), predicted and
measured side by side, scored like the validation networks.

Computed on read from the stored results, so each new measured benchmark adds its point
without a hook, whichever process stored it, and a deleted model drops out.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Job, Model, Result
from db.predictors import Predictor
from latencylab.predictors import TrackedPoint, TrackedReport
from latencylab.status import JobStatus
from server.artifacts import ArtifactStore
from server.store.predictors import PredictorRejected, predict_model, untrained

USER_FAMILY = "user"


def tracked(session: Session, store: ArtifactStore, p: Predictor, limit: int) -> TrackedReport:
    """The newest measured result of up to ``limit`` user models, each with its prediction."""
    if not p.bundle_sha256:  # the hash, not the multi-MB bundle column, says it is trained
        raise untrained(p)
    stat = str((p.settings or {}).get("statistic", "min"))
    q = (
        select(Result, Model)
        .join(Job, Result.job_id == Job.id)
        .join(Model, Job.model_id == Model.id)
        .where(
            Result.status == JobStatus.succeeded,
            Result.device_id == p.device_id,
            Model.kind == "user",
            Model.deleted_at.is_(None),
            Job.runtime == p.runtime,
            Job.precision == p.precision,
            Job.batch_size == p.batch_size,
            Job.threads == p.threads,
        )
        .order_by(Result.id.desc())
    )
    report = TrackedReport(predictor_id=p.id, statistic=stat)
    seen: set[int] = set()
    for result, model in session.execute(q):
        measured = (result.latency or {}).get(stat)
        if model.id in seen or measured is None or not measured > 0:
            continue
        seen.add(model.id)
        point = TrackedPoint(
            model_id=model.id, name=model.name, result_id=result.id, measured_ms=float(measured)
        )
        try:
            point.predicted_ms = predict_model(session, store, p, model).latency_ms
        except PredictorRejected as exc:
            point.error = exc.message
        report.points.append(point)
        if len(report.points) >= limit:
            break
    rows = [
        (USER_FAMILY, pt.predicted_ms, pt.measured_ms)
        for pt in report.points
        if pt.predicted_ms is not None
    ]
    if rows:
        from predictor.accuracy import score  # the optional `predict` extra, as predict_model

        report.accuracy = score(rows).model_dump(mode="json")
    return report
