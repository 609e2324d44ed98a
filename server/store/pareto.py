"""Latency-accuracy Pareto fronts over the latest succeeded result of each model."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Device, Job, Model, Result
from latencylab.pareto import (
    ParetoOptions,
    ParetoPoint,
    ParetoResponse,
    ParetoTarget,
    PredictorTarget,
    pareto_front,
)
from latencylab.quality import flagged
from latencylab.schemas import RUNTIMES
from latencylab.status import JobStatus
from server.artifacts import ArtifactStore
from server.store import pareto_predicted, quality


class ParetoError(ValueError):
    def __init__(self, message: str, status_code: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


def _accuracy(model: Model) -> dict[str, float]:
    acc = (model.meta or {}).get("accuracy") or {}
    if not isinstance(acc, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in acc.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _tags(model: Model) -> list[str]:
    tags = (model.meta or {}).get("tags") or []
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def _succeeded(session: Session) -> Any:
    """(Result, Job, Model) rows of succeeded results of user models, oldest first."""
    return (
        select(Result, Job, Model)
        .join(Job, Result.job_id == Job.id)
        .join(Model, Job.model_id == Model.id)
        .where(
            Result.status == JobStatus.succeeded, Model.kind == "user", Model.deleted_at.is_(None)
        )
        .order_by(Result.id)
    )


def _latest(rows: Iterable[Any]) -> dict[int, tuple[Result, Job, Model]]:
    """The latest (highest id) result per model; ``rows`` come oldest first."""
    latest: dict[int, tuple[Result, Job, Model]] = {}
    for result, job, model in rows:
        if result.latency and result.latency.get("p50") is not None:
            latest[model.id] = (result, job, model)
    return latest


def pareto(
    session: Session,
    *,
    device: str,
    runtime: str,
    precision: str = "fp32",
    batch_size: int = 1,
    metric: str = "top1",
    tag: str | None = None,
    threads: int | None = None,
    model_ids: list[int] | None = None,
    hide_flagged: bool = False,
    include_predicted: bool = False,
    store: ArtifactStore | None = None,
) -> ParetoResponse:
    """Every model carrying ``metric`` with a succeeded result on that target; the front marked.

    ``hide_flagged`` leaves out models whose latest result carries a warning quality flag (the
    front is computed without them; ``hidden_flagged`` counts them). ``include_predicted``
    (needs ``store``) adds, from the target's newest succeeded predictor, a predicted point
    for every other model carrying ``metric``; the front is computed over both kinds."""
    if session.scalar(select(Device.id).where(Device.name == device)) is None:
        known = sorted(session.scalars(select(Device.name)))
        raise ParetoError(
            f"device '{device}' is not registered; registered devices: "
            + (", ".join(known) or "none yet"),
            404,
        )
    if runtime not in RUNTIMES:
        raise ParetoError(f"unknown runtime '{runtime}'; one of: {', '.join(RUNTIMES)}")
    q = _succeeded(session).where(
        Result.device_name == device,
        Job.runtime == runtime,
        Job.precision == precision,
        Job.batch_size == batch_size,
    )
    if threads is not None:
        q = q.where(Job.threads == threads)
    if model_ids is not None:
        q = q.where(Job.model_id.in_(model_ids))
    latest = _latest(session.execute(q))
    quality.ensure(session, [r for r, _, _ in latest.values()])
    metrics: set[str] = set()
    points: list[ParetoPoint] = []
    hidden = 0
    for result, job, model in latest.values():
        acc = _accuracy(model)
        metrics.update(acc)
        tags = _tags(model)
        if metric not in acc or (tag is not None and tag not in tags):
            continue
        flags = quality.flags_of(result)
        if hide_flagged and flagged(flags):
            hidden += 1
            continue
        lat = result.latency or {}
        points.append(
            ParetoPoint(
                model_id=model.id,
                name=model.name,
                latency_ms=float(lat["p50"]),
                accuracy=acc[metric],
                on_front=False,
                p90_ms=lat.get("p90"),
                p99_ms=lat.get("p99"),
                mean_ms=lat.get("mean"),
                size=model.size,
                tags=tags,
                result_id=result.id,
                benchmark_id=result.benchmark_id,
                threads=job.threads,
                measured_at=result.created_at,
                flags=flags,
                mode=quality.mode_of_result(result),
            )
        )
    extra: dict[str, Any] = {}
    if include_predicted and store is not None:
        target = {"device": device, "runtime": runtime, "precision": precision}
        pred = pareto_predicted.predictor_for(
            session, **target, batch_size=batch_size, threads=threads
        )
        if pred is not None:
            models = pareto_predicted.candidates(session, model_ids)
            for m in models:
                metrics.update(_accuracy(m))
            todo = [
                m
                for m in models
                if m.id not in latest
                and metric in _accuracy(m)
                and (tag is None or tag in _tags(m))
            ]
            more, failed = pareto_predicted.predicted_points(
                session, store, pred, todo, lambda m: _accuracy(m)[metric], _tags
            )
            points.extend(more)
            extra = {
                "predictor_id": pred.id,
                "predictor_statistic": str((pred.settings or {}).get("statistic", "min")),
                "predictor_accuracy": (pred.accuracy or {}).get("overall"),
                "predicted_failed": failed,
            }
    front = pareto_front((p.model_id, p.latency_ms, p.accuracy) for p in points)
    on_front = set(front)
    for p in points:
        p.on_front = p.model_id in on_front
    points.sort(key=lambda p: (p.latency_ms, -p.accuracy, p.model_id))
    return ParetoResponse(
        metric=metric,
        points=points,
        front=front,
        device=device,
        runtime=runtime,
        precision=precision,
        batch_size=batch_size,
        tag=tag,
        metrics=sorted(metrics),
        hidden_flagged=hidden,
        **extra,
    )


def options(session: Session, include_predicted: bool = False) -> ParetoOptions:
    """The targets with succeeded results, and the metrics and tags of the models measured;
    ``include_predicted`` adds the targets of succeeded predictors (listed in ``predictors``
    with their id, and in ``targets`` with ``models`` 0 when none is measured there) and the
    metrics and tags of every live user model (any of them can be predicted)."""
    targets: dict[tuple[str, str, str, int], set[int]] = {}
    metrics: set[str] = set()
    tags: set[str] = set()
    for result, job, model in session.execute(_succeeded(session)):
        if not result.latency:
            continue
        key = (result.device_name, job.runtime, job.precision, job.batch_size)
        targets.setdefault(key, set()).add(model.id)
        metrics.update(_accuracy(model))
        tags.update(_tags(model))
    predictors: dict[tuple[str, str, str, int], int] = {}
    if include_predicted:
        predictors = pareto_predicted.predictor_targets(session)
        for key in predictors:
            targets.setdefault(key, set())
        for model in pareto_predicted.candidates(session, None):
            metrics.update(_accuracy(model))
            tags.update(_tags(model))
    return ParetoOptions(
        targets=[
            ParetoTarget(device=d, runtime=r, precision=p, batch_size=b, models=len(ids))
            for (d, r, p, b), ids in sorted(targets.items())
        ],
        predictors=[
            PredictorTarget(device=d, runtime=r, precision=p, batch_size=b, predictor_id=i)
            for (d, r, p, b), i in sorted(predictors.items())
        ],
        metrics=sorted(metrics),
        tags=sorted(tags),
    )
