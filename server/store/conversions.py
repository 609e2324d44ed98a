"""Conversions: queued as jobs for converter workers, reused when identical, and the
benchmark jobs that wait for them released (or failed) when they finish."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.conversions import Conversion
from db.models import Artifact, Device, Job, Model, Result
from latencylab.conversions import (
    ArtifactRef,
    ConversionError,
    ConversionOutcome,
    ConversionPublic,
    ConversionTask,
    Validation,
)
from latencylab.runtimes import RUNTIMES
from latencylab.status import JobStatus
from server.queue import lifecycle
from server.queue.kinds import JobContext, PlainKind
from server.store.artifacts import claim
from server.store.devices import can_take, list_devices

# Derived from the runtime declarations (latencylab.runtimes): the converter target each
# runtime needs when an upload is not native to it, and the runtimes each stored format runs
# on as it is.
RUNTIME_FORMAT: dict[str, str] = RUNTIMES.runtime_format
NATIVE_RUNTIMES: dict[str, set[str]] = RUNTIMES.native_runtimes
CONVERTER_SELECTOR = "class:converter"


class ConversionRejected(ValueError):
    def __init__(self, message: str, status_code: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


def converter_selector(target: str, device: str | None) -> str:
    """TensorRT engines are built on the GPU that runs them; the rest on converter workers."""
    decl = RUNTIMES.by_target(target)
    if decl is not None and decl.built_on_device:
        if not device:
            raise ConversionRejected(
                "a TensorRT conversion needs 'device': the GPU/Jetson selector whose agent "
                "builds the engine (an engine is tied to its GPU and TensorRT version)"
            )
        return device
    return CONVERTER_SELECTOR


def input_shapes(model: Model, batch_size: int) -> dict[str, list[int]]:
    shapes = {}
    for spec in model.inputs:
        dims = list(spec["shape"])
        if dims and not isinstance(dims[0], int):
            dims[0] = batch_size
        shapes[spec["name"]] = [int(d) for d in dims]
    return shapes


def _reuse_key(model: Model, target: str, precision: str, batch: int, selector: str) -> str:
    where = selector if target == "tensorrt" else ""
    raw = f"{model.sha256}|{target}|{precision}|{batch}|{where}"
    return hashlib.sha256(raw.encode()).hexdigest()


def _check_converter(devices: list[Device], target: str, selector: str) -> None:
    runtime = f"convert:{target}"
    if any(can_take(d, selector, runtime) for d in devices):
        return
    converters = [d.name for d in devices if any(r.startswith("convert:") for r in d.runtimes)]
    where = f"devices matching '{selector}'" if target == "tensorrt" else "no converter worker"
    raise ConversionRejected(
        f"{where} can produce '{target}' (registered converters: {', '.join(converters) or 'none'}); "
        + (
            "the GPU agent must have TensorRT installed"
            if target == "tensorrt"
            else "start one with 'latencylab converter --server URL --token T' (make run starts one)"
        )
    )


def _reusable(session: Session, key: str) -> Conversion | None:
    return session.scalar(  # a conversion whose file was garbage-collected is done again
        select(Conversion)
        .outerjoin(Artifact, Artifact.sha256 == Conversion.artifact_sha256)
        .where(
            Conversion.reuse_key == key,
            Conversion.status != JobStatus.failed,
            Artifact.purged_at.is_(None),
        )
        .order_by(Conversion.id.desc())
    )


def check_possible(
    session: Session, model: Model | None, target: str, spec: Any, devices: list[Device]
) -> None:
    """Raise ConversionRejected unless an identical conversion exists or a worker can do it
    (``model`` None: a model not uploaded yet, which no stored conversion can be of)."""
    selector = converter_selector(target, spec.device if target == "tensorrt" else None)
    if model is not None:
        key = _reuse_key(model, target, spec.precision, spec.batch_size, selector)
        if _reusable(session, key) is not None:
            return
    _check_converter(devices, target, selector)


def get_or_create(
    session: Session,
    model: Model,
    target: str,
    precision: str = "fp32",
    batch_size: int = 1,
    device: str | None = None,
    max_attempts: int = 3,
) -> tuple[Conversion, bool]:
    """An identical queued/running/succeeded conversion is reused; else a new one is queued."""
    selector = converter_selector(target, device)
    key = _reuse_key(model, target, precision, batch_size, selector)
    existing = _reusable(session, key)
    if existing is not None:
        return existing, False
    _check_converter(list_devices(session), target, selector)
    conv = Conversion(
        model_id=model.id,
        source_sha256=model.sha256,
        target=target,
        precision=precision,
        batch_size=batch_size,
        device_selector=selector,
        reuse_key=key,
    )
    session.add(conv)
    session.flush()
    job = Job(
        kind="convert",
        model_id=model.id,
        artifact_sha256=model.sha256,
        conversion_id=conv.id,
        runtime=f"convert:{target}",
        device_selector=selector,
        precision=precision,
        batch_size=batch_size,
        threads=0,
        settings={},
        max_attempts=max_attempts,
    )
    lifecycle.enqueue(session, job)
    conv.job_id = job.id
    return conv, True


def task_for(session: Session, job: Job) -> ConversionTask | None:
    if job.kind != "convert" or job.conversion_id is None:
        return None
    conv = session.get(Conversion, job.conversion_id)
    model = session.get(Model, job.model_id)
    assert conv is not None and model is not None
    return ConversionTask(
        conversion_id=conv.id,
        target=conv.target,
        precision=conv.precision,
        batch_size=conv.batch_size,
        input_shapes=input_shapes(model, conv.batch_size),
    )


def _finish(ctx: JobContext, conv: Conversion, ok: bool, error: dict[str, Any] | None) -> None:
    """The conversion ended: its waiting benchmark jobs are released onto the converted
    artifact, or fail with the conversion's error (in the same transaction)."""
    conv.status = JobStatus.succeeded if ok else JobStatus.failed
    conv.error = error
    conv.finished_at = ctx.now()
    if ok and conv.artifact_sha256:
        lifecycle.release_waiting(ctx, conv.id, conv.artifact_sha256)
        return
    waiting = ctx.session.scalars(
        select(Job.id).where(
            Job.conversion_id == conv.id,
            Job.kind != "convert",
            Job.status == JobStatus.waiting,
        )
    )
    reason = f"conversion to {conv.target} failed: {error_line(error)}"
    lifecycle.end_unstarted(ctx, list(waiting), JobStatus.failed, reason)


def report(ctx: JobContext, device: Device, job: Job, outcome: ConversionOutcome) -> Conversion:
    """Store a converter's outcome and end its job (idempotent: a retried report changes
    nothing). ``LeaseLost`` if the device does not hold the job."""
    session = ctx.session
    conv = session.get(Conversion, job.conversion_id) if job.conversion_id else None
    if conv is None:
        raise KeyError(job.id)
    if conv.status in (JobStatus.succeeded, JobStatus.failed) and conv.job_id == job.id:
        return conv
    try:
        with session.begin_nested():  # a concurrent duplicate report: undone, see below
            _store_outcome(ctx, device, job, conv, outcome)
    except lifecycle.LeaseLost:
        session.refresh(conv)
        if conv.status in (JobStatus.succeeded, JobStatus.failed) and conv.job_id == job.id:
            return conv  # the same report, a moment earlier
        raise
    return conv


def _store_outcome(
    ctx: JobContext, device: Device, job: Job, conv: Conversion, outcome: ConversionOutcome
) -> None:
    session = ctx.session
    lifecycle.holds(session, device, job.id)  # before anything is claimed or written
    for sha in (outcome.artifact_sha256, outcome.log_sha256):
        if sha and not claim(session, sha, purged_ok=False):  # claimed: GC spares it
            raise ValueError(f"artifact {sha} was not uploaded; upload it before reporting")
    ok = outcome.status == JobStatus.succeeded and outcome.artifact_sha256 is not None
    conv.artifact_sha256 = outcome.artifact_sha256
    conv.artifact_meta = dict(outcome.artifact_metadata)
    conv.validation = outcome.validation.model_dump() if outcome.validation else None
    conv.log_sha256 = outcome.log_sha256
    conv.seconds = outcome.seconds
    error = outcome.error.model_dump() if outcome.error else None
    if not ok and error is None:
        error = {"step": "convert", "message": "the converter reported no artifact"}
    conv.error = error
    session.flush()
    lifecycle.finish(ctx, device, job.id, ok, error_line(error) if error else None)


class ConvertKind(PlainKind):
    """Convert jobs: the conversion runs while its job does and ends with it."""

    def on_leased(self, ctx: JobContext, job: Job) -> None:
        conv = ctx.session.get(Conversion, job.conversion_id) if job.conversion_id else None
        if conv is not None and conv.status == JobStatus.queued:
            conv.status = JobStatus.running

    def lease_extra(self, ctx: JobContext, job: Job) -> dict[str, Any]:
        return {"conversion": task_for(ctx.session, job)}

    def on_finished(self, ctx: JobContext, job: Job, result: Result | None) -> None:
        """Reported (the outcome is on the conversion already), or ended without a report
        (leases ran out, cancelled): the conversion ends with the job."""
        conv = ctx.session.get(Conversion, job.conversion_id) if job.conversion_id else None
        if conv is None or conv.status in (JobStatus.succeeded, JobStatus.failed):
            return
        ok = job.status == JobStatus.succeeded and conv.artifact_sha256 is not None
        lost = {"step": "run", "message": job.error or "converter lost"}
        _finish(ctx, conv, ok, None if ok else (conv.error or lost))


class BenchmarkKind(PlainKind):
    """Benchmark jobs: one that runs a converted artifact gets the conversion's metadata
    (layout, I/O names); one that runs the upload, the model's own (e.g. a zipped package)."""

    def lease_extra(self, ctx: JobContext, job: Job) -> dict[str, Any]:
        if job.conversion_id is None:
            return {}
        conv = ctx.session.get(Conversion, job.conversion_id)
        return {"artifact_metadata": dict(conv.artifact_meta or {}) if conv else {}}


def error_line(error: dict[str, Any] | None) -> str:
    if not error:
        return ""
    parts = [f"[{error.get('step') or 'convert'}]"]
    if error.get("op"):
        parts.append(f"op {error['op']}:")
    parts.append(str(error.get("message", "")))
    if error.get("hint"):
        parts.append(f"— {error['hint']}")
    return " ".join(parts)


def get(session: Session, conv_id: int) -> Conversion | None:
    return session.get(Conversion, conv_id)


def list_for_model(session: Session, model_id: int) -> list[Conversion]:
    q = select(Conversion).where(Conversion.model_id == model_id).order_by(Conversion.id)
    return list(session.scalars(q))


def public(session: Session, conv: Conversion) -> ConversionPublic:
    artifact = None
    if conv.artifact_sha256:
        row = session.get(Artifact, conv.artifact_sha256)
        if row is not None:
            artifact = ArtifactRef(
                sha256=row.sha256,
                size=row.size,
                format=row.format,
                metadata=conv.artifact_meta or {},
            )
    return ConversionPublic(
        id=conv.id,
        model_id=conv.model_id,
        status=conv.status,
        target=conv.target,
        precision=conv.precision,
        batch_size=conv.batch_size,
        artifact=artifact,
        validation=Validation(**conv.validation) if conv.validation else None,
        error=error_line(conv.error) or None,
        error_detail=ConversionError(**conv.error) if conv.error else None,
        log=f"/api/v1/conversions/{conv.id}/log" if conv.log_sha256 else None,
        job_id=conv.job_id,
        seconds=conv.seconds,
        created_at=conv.created_at,
    )
