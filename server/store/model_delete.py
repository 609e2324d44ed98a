"""Deleting a model: with its results kept (a soft delete) or with everything measured on it.

``keep``: the model row stays, marked ``deleted_at``; it leaves every list, the Pareto page
and ``GET /models/{id}`` (410), while its benchmarks, results and conversions stay readable by
id. Garbage collection then frees its file (the row stays: jobs and conversions name it).

``delete``: the model goes with its benchmarks, jobs, results (raw times, profiles) and
conversions. A conversion that another model's job waits on or used (a duplicate upload of the
same bytes reuses conversions) is handed over to that model instead.

Either way queued and waiting jobs of the model are cancelled (status ``cancelled``, error
"cancelled: ..."; a benchmark of only such jobs reads ``failed``); a
job an agent is running makes the delete a 409 ``model_busy`` (retry once it has finished or
its lease expired). A model a latency table refers to is a 409 ``model_in_use``.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from db.conversions import Conversion
from db.models import ApiToken, Benchmark, Job, Model, Result, ResultSeries, utcnow
from db.nas import TableEntry, TableNetwork
from latencylab.errors import ErrorCode
from latencylab.status import JobStatus
from server.errors import ApiError
from server.queue import lifecycle
from server.queue.kinds import JobContext
from server.store.models import check_owner, lock_model


class ResultsPolicy(StrEnum):
    """What ``DELETE /models/{id}`` does with what was measured on the model."""

    keep = "keep"
    delete = "delete"


def _check_tables(session: Session, model: Model) -> None:
    jobs = select(Job.id).where(Job.model_id == model.id)
    for row in (TableEntry, TableNetwork):
        used = session.scalar(
            select(row.id).where(or_(row.model_id == model.id, row.job_id.in_(jobs))).limit(1)
        )
        if used is not None:
            raise ApiError(
                409,
                ErrorCode.model_in_use,
                f"model {model.id} ({model.kind}) was generated for a latency table, which "
                "still uses it; it cannot be deleted on its own",
            )


def _needed_elsewhere(session: Session, model: Model) -> dict[int, int]:
    """Conversions of this model that another model's jobs use: conversion id → that model."""
    rows = session.execute(
        select(Job.conversion_id, Job.model_id)
        .join(Conversion, Conversion.id == Job.conversion_id)
        .where(Conversion.model_id == model.id, Job.model_id != model.id)
        .order_by(Job.id)
    )
    heirs: dict[int, int] = {}
    for conv_id, model_id in rows:
        if conv_id is not None:
            heirs.setdefault(conv_id, model_id)
    return heirs


def _cancel_unstarted(ctx: JobContext, model: Model, keep_convs: set[int]) -> None:
    """Cancel the model's queued and waiting jobs (not the conversions others need), running
    their kinds' hooks (a cancelled conversion job fails its conversion): benchmark jobs
    first, so they carry this reason rather than their conversion's."""
    unstarted = Job.status.in_((JobStatus.queued, JobStatus.waiting))
    q = select(Job).where(Job.model_id == model.id, unstarted)
    jobs = list(ctx.session.scalars(q.with_for_update().order_by(Job.kind != "benchmark", Job.id)))
    ids = [j.id for j in jobs if not (j.kind == "convert" and j.conversion_id in keep_convs)]
    converts = {j.id for j in jobs if j.kind == "convert"}
    why = f"cancelled: model {model.id} was deleted"
    for batch in ([i for i in ids if i not in converts], [i for i in ids if i in converts]):
        lifecycle.end_unstarted(ctx, batch, JobStatus.cancelled, why)  # sorts each batch


def _check_running(session: Session, model: Model, keep_convs: set[int]) -> None:
    running = [
        (job_id, conv_id)
        for job_id, conv_id in session.execute(
            select(Job.id, Job.conversion_id).where(
                Job.model_id == model.id, Job.status == JobStatus.running
            )
        )
        if conv_id is None or conv_id not in keep_convs
    ]
    if running:
        ids = ", ".join(str(j) for j, _ in running)
        raise ApiError(
            409,
            ErrorCode.model_busy,
            f"model {model.id} has job(s) running on a device ({ids}); nothing was deleted. "
            "Retry once they have finished or their leases expired",
        )


def _artifacts_of(session: Session, model: Model) -> set[str]:
    shas = {model.sha256}
    shas.update(
        s for s in session.scalars(select(Job.artifact_sha256).where(Job.model_id == model.id)) if s
    )
    for art, log in session.execute(
        select(Conversion.artifact_sha256, Conversion.log_sha256).where(
            Conversion.model_id == model.id
        )
    ):
        shas.update(s for s in (art, log) if s)
    return shas


def _purge(session: Session, model: Model, heirs: dict[int, int]) -> None:
    """Remove the model and everything measured on it (the order follows the foreign keys;
    conversions and jobs name each other, so those links are cut first)."""
    nosync = {"synchronize_session": False}
    for conv_id, heir in heirs.items():  # other models use these conversions: hand them over
        session.execute(
            update(Conversion).where(Conversion.id == conv_id).values(model_id=heir), nosync
        )
        session.execute(
            update(Job)
            .where(Job.conversion_id == conv_id, Job.model_id == model.id, Job.kind == "convert")
            .values(model_id=heir),
            nosync,
        )
    jobs = select(Job.id).where(Job.model_id == model.id).scalar_subquery()
    results = select(Result.id).where(Result.job_id.in_(jobs)).scalar_subquery()
    session.execute(update(Job).where(Job.model_id == model.id).values(conversion_id=None), nosync)
    session.execute(
        update(Conversion).where(Conversion.model_id == model.id).values(job_id=None), nosync
    )
    session.execute(delete(ResultSeries).where(ResultSeries.result_id.in_(results)), nosync)
    session.execute(delete(Result).where(Result.job_id.in_(jobs)), nosync)
    session.execute(delete(Conversion).where(Conversion.model_id == model.id), nosync)
    session.execute(delete(Job).where(Job.model_id == model.id), nosync)
    session.execute(delete(Benchmark).where(Benchmark.model_id == model.id), nosync)
    session.execute(delete(Model).where(Model.id == model.id), nosync)
    session.expunge(model)


def delete_model(
    ctx: JobContext, model_id: int, token: ApiToken, results: ResultsPolicy
) -> set[str]:
    """Delete the model as ``results`` says; returns the hashes of the artifacts it used (for
    a garbage collection once this transaction has committed)."""
    session = ctx.session
    model = lock_model(session, model_id)
    if model is None:
        raise ApiError(404, ErrorCode.not_found, f"model {model_id} does not exist")
    if model.deleted_at is not None and results is ResultsPolicy.keep:
        raise ApiError(
            410,
            ErrorCode.model_deleted,
            f"model {model_id} was already deleted with its results kept; "
            "delete it with results=delete to remove those too",
        )
    check_owner(model, token)
    _check_tables(session, model)
    heirs = _needed_elsewhere(session, model)
    _cancel_unstarted(ctx, model, set(heirs))
    _check_running(session, model, set(heirs))
    shas = _artifacts_of(session, model)
    if results is ResultsPolicy.keep:
        model.deleted_at = utcnow()
        session.flush()
    else:
        _purge(session, model, heirs)
    return shas
