"""The job kinds of predictor builds: ``predictor_batch`` (many kernel models in one job),
``predictor_single`` (one kernel model in a fresh process: the bias check) and
``predictor_network`` (a calibration or validation network end to end). Each files what its job measured,
then lets every build waiting on it advance. Registered at app start (``server.wiring``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from db.models import Job, Result
from db.predictors import Predictor, PredictorNetwork, PredictorSample
from latencylab.predictors import BATCH_ENV_KEY, KernelOutcome
from latencylab.status import JobStatus
from server.queue.kinds import JobContext, PlainKind
from server.store.predictor_build import advance, safely


def _stats(result: Result | None, job: Job) -> tuple[dict[str, Any] | None, str | None]:
    if result is not None and result.status == JobStatus.succeeded and result.latency:
        return result.latency, None
    error = (result.error if result is not None else None) or job.error
    return None, error or "measurement failed"


def _advance_scope(ctx: JobContext, s: PredictorSample) -> None:
    """Advance every building predictor of the sample's scope (they may share it)."""
    builds = ctx.session.scalars(
        select(Predictor).where(
            Predictor.status == "building",
            Predictor.device_id == s.device_id,
            Predictor.runtime == s.runtime,
            Predictor.precision == s.precision,
            Predictor.batch_size == s.batch_size,
            Predictor.threads == s.threads,
            Predictor.scope_key == s.scope_key,
        )
    )
    for p in list(builds):
        advance(ctx.session, ctx.store, p)


def _outcomes(result: Result | None) -> dict[str, KernelOutcome]:
    if result is None or result.status != JobStatus.succeeded:
        return {}
    raw = (result.environment or {}).get(BATCH_ENV_KEY) or []
    return {o.key: o for o in (KernelOutcome.model_validate(x) for x in raw)}


def batch_finished(ctx: JobContext, job: Job, result: Result | None) -> None:
    session = ctx.session

    def run() -> None:
        samples = list(
            session.scalars(select(PredictorSample).where(PredictorSample.job_id == job.id))
        )
        if not samples:
            return
        got = _outcomes(result)
        whole = (result.error if result is not None else None) or job.error or "batch failed"
        for s in samples:
            if s.status != "queued":
                continue
            s.finished_at = ctx.now()
            o = got.get(s.key)
            r = o.result if o is not None else None
            if r is None or r.status != "succeeded" or r.latency_ms is None:
                s.status = "failed"
                s.error = (r.error if r is not None else None) or f"not measured: {whole}"
                continue
            lat = r.latency_ms
            s.status, s.error, s.measured = "succeeded", None, (s.measured or 0) + 1
            s.mean_ms, s.p50_ms, s.min_ms, s.runs = lat.mean, lat.p50, lat.min, r.runs
            s.times_ms = list(r.times_ms)
            s.layout_ms = o.layout_ms if o is not None else None
        if result is not None and got:  # the raw times live on in the samples
            env = dict(result.environment or {})
            env[BATCH_ENV_KEY] = {"moved_to": "predictor_samples", "models": len(got)}
            result.environment = env
        session.flush()
        _advance_scope(ctx, samples[0])

    safely(session, f"batch job {job.id}", run)


def single_finished(ctx: JobContext, job: Job, result: Result | None) -> None:
    session = ctx.session

    def run() -> None:
        s = session.scalar(select(PredictorSample).where(PredictorSample.single_job_id == job.id))
        if s is None:
            return
        lat, error = _stats(result, job)
        if lat is None:
            s.single_status, s.single_ms = "failed", {"error": error}
        else:
            s.single_status = "succeeded"
            s.single_ms = {"mean": lat.get("mean"), "p50": lat.get("p50"), "min": lat.get("min")}
        session.flush()
        _advance_scope(ctx, s)

    safely(session, f"single kernel job {job.id}", run)


def network_finished(ctx: JobContext, job: Job, result: Result | None) -> None:
    session = ctx.session

    def run() -> None:
        net = session.scalar(select(PredictorNetwork).where(PredictorNetwork.job_id == job.id))
        if net is None or net.status != "queued":
            return
        lat, error = _stats(result, job)
        net.finished_at = ctx.now()
        if lat is None:
            net.status, net.error = "failed", error
        else:
            net.status, net.error = "succeeded", None
            net.mean_ms, net.p50_ms, net.min_ms = float(lat["mean"]), lat.get("p50"), lat.get("min")
        session.flush()
        p = session.get(Predictor, net.predictor_id)
        if p is not None:
            advance(session, ctx.store, p)

    safely(session, f"network job {job.id}", run)


class BatchKind(PlainKind):
    def on_finished(self, ctx: JobContext, job: Job, result: Result | None) -> None:
        batch_finished(ctx, job, result)


class SingleKind(PlainKind):
    def on_finished(self, ctx: JobContext, job: Job, result: Result | None) -> None:
        single_finished(ctx, job, result)


class ValidationKind(PlainKind):
    def on_finished(self, ctx: JobContext, job: Job, result: Result | None) -> None:
        network_finished(ctx, job, result)
