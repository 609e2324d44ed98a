"""Benchmarks: one job per target, results gathered back, status aggregated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from db.models import Benchmark, Device, Job, Model, Result, ResultSeries
from latencylab.checks import BenchmarkCheck, BenchmarkCheckPublic, TargetVerdict
from latencylab.runtimes import RUNTIMES
from latencylab.schemas import (
    BenchmarkCreate,
    BenchmarkPublic,
    LatencyStats,
    RawTimes,
    ResultPublic,
    Target,
)
from latencylab.status import UNFINISHED, JobStatus
from server.queue import lifecycle
from server.store import conversions, quality
from server.store.devices import (
    SelectorError,
    can_take,
    device_matches,
    list_devices,
    parse_selector,
)
from server.store.jobs import job_public


class BenchmarkRejected(ValueError):
    """A benchmark (or its dry run) refused: ``message`` names the first refused target,
    ``errors`` every refused one (``loc`` ``["targets", i]``, ``msg``, ``type``)."""

    def __init__(
        self, message: str, status_code: int = 422, errors: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.errors = errors or []


@dataclass(frozen=True)
class TargetPlan:
    """How an accepted target will run: converted first (``convert_to``) or not, and which
    registered devices could take its job."""

    target: Target
    convert_to: str | None
    candidates: list[str]


def _describe(devices: list[Device]) -> str:
    if not devices:
        return "no device has registered yet (start one: latencylab agent --server URL --token T)"
    return "registered devices: " + ", ".join(
        f"{d.name} (class {d.device_class}; runtimes {', '.join(sorted(d.runtimes)) or 'none'})"
        for d in devices
    )


def check_target(model_format: str | None, target: Target, devices: list[Device]) -> str | None:
    """Refuse a target nothing could run; return the format to convert to (None: native).
    ``model_format`` None: the model's format is not known yet (not checked)."""
    convert_to = None
    fmt = model_format
    if fmt is not None and target.runtime not in conversions.NATIVE_RUNTIMES.get(fmt, set()):
        convert_to = conversions.RUNTIME_FORMAT.get(target.runtime)
        decl = RUNTIMES.get(target.runtime)
        if convert_to is None or decl is None or fmt not in decl.converts_from:
            raise BenchmarkRejected(
                f"runtime '{target.runtime}' cannot run a {fmt} model and LatencyLab "
                f"cannot convert {fmt} to what it runs; upload ONNX or a .pt2 program"
            )
    try:
        parse_selector(target.device)
    except SelectorError as exc:
        raise BenchmarkRejected(str(exc)) from exc
    matching = [d for d in devices if device_matches(d, target.device)]
    if not matching:
        raise BenchmarkRejected(
            f"no registered device matches '{target.device}'; {_describe(devices)}"
        )
    if not any(can_take(d, target.device, target.runtime) for d in matching):
        raise BenchmarkRejected(
            f"devices matching '{target.device}' do not offer runtime '{target.runtime}'; "
            f"{_describe(matching)}"
        )
    return convert_to


def plan_targets(
    session: Session,
    targets: list[Target],
    devices: list[Device],
    model: Model | None = None,
    model_format: str | None = None,
) -> list[TargetPlan]:
    """The one rule for benchmark targets (``POST /benchmarks`` and its dry run): every target
    checked against the fleet and, where it needs one, a conversion; ``BenchmarkRejected``
    names the first refused target and lists every refused one. ``model`` (stored) or
    ``model_format`` (not uploaded yet) says what is to run."""
    fmt = model.format if model is not None else model_format
    plans: list[TargetPlan] = []
    refused: list[tuple[int, BenchmarkRejected]] = []
    for i, target in enumerate(targets):
        try:
            convert_to = check_target(fmt, target, devices)
            if convert_to is not None:
                try:
                    conversions.check_possible(session, model, convert_to, target, devices)
                except conversions.ConversionRejected as exc:
                    raise BenchmarkRejected(exc.message, exc.status_code) from exc
        except BenchmarkRejected as exc:
            refused.append((i, exc))
            continue
        names = [d.name for d in devices if can_take(d, target.device, target.runtime)]
        plans.append(TargetPlan(target, convert_to, names))
    if refused:
        first = refused[0][1]
        errors = [
            {"loc": ["targets", i], "msg": exc.message, "type": "target_refused"}
            for i, exc in refused
        ]
        raise BenchmarkRejected(first.message, first.status_code, errors)
    return plans


def check_benchmark(session: Session, body: BenchmarkCheck) -> BenchmarkCheckPublic:
    """The dry run of ``create_benchmark``: the same rule, nothing created."""
    model = None
    if body.model_id is not None:
        model = session.get(Model, body.model_id)
        if model is None:
            raise BenchmarkRejected(f"model {body.model_id} does not exist", 404)
    plans = plan_targets(session, body.targets, list_devices(session), model, body.model_format)
    return BenchmarkCheckPublic(
        targets=[
            TargetVerdict(
                runtime=p.target.runtime,
                device=p.target.device,
                precision=p.target.precision,
                convert_to=p.convert_to,
                candidates=p.candidates,
            )
            for p in plans
        ]
    )


def create_benchmark(
    session: Session, body: BenchmarkCreate, owner_token_id: int | None, max_attempts: int
) -> Benchmark:
    model = session.get(Model, body.model_id)
    if model is None or model.deleted_at is not None:
        raise BenchmarkRejected(f"model {body.model_id} does not exist", 404)
    # every target is validated before anything is created
    plans = [
        p.convert_to for p in plan_targets(session, body.targets, list_devices(session), model)
    ]
    bench = Benchmark(
        model_id=model.id, settings=body.settings.model_dump(), owner_token_id=owner_token_id
    )
    session.add(bench)
    session.flush()
    for target, convert_to in zip(body.targets, plans, strict=True):
        job = Job(
            kind="benchmark",
            benchmark_id=bench.id,
            model_id=model.id,
            artifact_sha256=model.sha256,
            runtime=target.runtime,
            device_selector=target.device,
            precision=target.precision,
            batch_size=target.batch_size,
            threads=target.threads,
            settings=body.settings.model_dump(),
            options=dict(target.options),
            max_attempts=max_attempts,
        )
        if convert_to is not None:
            conv, _ = conversions.get_or_create(
                session,
                model,
                convert_to,
                target.precision,
                target.batch_size,
                target.device if convert_to == "tensorrt" else None,
                max_attempts,
            )
            job.conversion_id = conv.id
            if conv.status == JobStatus.succeeded:
                job.artifact_sha256 = conv.artifact_sha256
            else:  # released (or failed) when the conversion ends
                job.artifact_sha256 = None
                job.status = JobStatus.waiting
                job.progress = {"phase": "converting", "conversion_id": conv.id}
        lifecycle.enqueue(session, job)
    return bench


def aggregate_status(statuses: list[str]) -> str:
    """One status for a benchmark's jobs (a cancelled job counts as failed)."""
    if not statuses or all(s == JobStatus.queued for s in statuses):
        return "queued"
    if any(s in UNFINISHED for s in statuses):
        return "running"
    if all(s == JobStatus.succeeded for s in statuses):
        return "succeeded"
    if all(s in (JobStatus.failed, JobStatus.cancelled) for s in statuses):
        return "failed"
    return "partial"


def result_public(r: Result) -> ResultPublic:
    job = r.job
    return ResultPublic(
        id=r.id,
        job_id=r.job_id,
        runtime=job.runtime,
        device=r.device_name,
        precision=job.precision,
        batch_size=job.batch_size,
        threads=job.threads,
        status=r.status,
        error=r.error,
        latency_ms=LatencyStats(**r.latency) if r.latency else None,
        runs=r.runs,
        stop_reason=r.stop_reason,
        steady_duration_s=r.steady_duration_s,
        load_ms=r.load_ms,
        first_inference_ms=r.first_inference_ms,
        memory=r.memory or {},
        environment=r.environment or {},
        warnings=list((r.environment or {}).get("warnings", [])),
        flags=quality.flags_of(r),
        mode=quality.mode_of_result(r),
        repeats=quality.repeats_of(r),
    )


def get_benchmark(session: Session, bench_id: int) -> Benchmark | None:
    return session.scalar(
        select(Benchmark)
        .where(Benchmark.id == bench_id)
        .options(selectinload(Benchmark.jobs).selectinload(Job.result))
    )


def list_benchmarks(
    session: Session, model_id: int | None = None, limit: int = 200
) -> list[Benchmark]:
    q = select(Benchmark).order_by(Benchmark.id.desc()).limit(limit)
    if model_id is not None:
        q = q.where(Benchmark.model_id == model_id)
    return list(session.scalars(q.options(selectinload(Benchmark.jobs).selectinload(Job.result))))


def benchmark_public(session: Session, bench: Benchmark) -> BenchmarkPublic:
    devices = list_devices(session)
    jobs = bench.jobs
    quality.ensure(session, [j.result for j in jobs if j.result is not None])
    return BenchmarkPublic(
        id=bench.id,
        model_id=bench.model_id,
        status=aggregate_status([j.status for j in jobs]),
        settings=bench.settings or {},
        jobs=[job_public(j, devices) for j in jobs],
        results=[result_public(j.result) for j in jobs if j.result is not None],
        created_at=bench.created_at,
    )


def get_result(session: Session, bench_id: int, result_id: int) -> Result | None:
    r = session.get(Result, result_id)
    if r is None or r.benchmark_id != bench_id:
        return None
    return r


def get_series(session: Session, result_id: int) -> ResultSeries | None:
    return session.get(ResultSeries, result_id)


def raw_times(session: Session, result_id: int, series: ResultSeries) -> RawTimes:
    """The raw times, with the runs of each repeat when several processes measured."""
    r = session.get(Result, result_id)
    repeats = quality.repeats_of(r) if r is not None else None
    return RawTimes(
        times_ms=series.times_ms,
        warmup_ms=series.warmup_ms,
        repeat_runs=[run.runs for run in repeats.runs] if repeats is not None else [],
    )
