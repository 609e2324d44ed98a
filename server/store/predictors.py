"""Predictor builds: create / resume on ONE device, show them, serve the bundle, predict.

The build itself (phases, jobs, hooks) is in ``predictor_build``, ``predictor_jobs`` and
``predictor_hooks``; the regressors, kernel detection and scoring in the ``predictor``
package.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, undefer

from db.conversions import Conversion
from db.models import Job, Model
from db.predictors import Predictor, PredictorNetwork
from latencylab.predictors import (
    BiasCheck,
    CalibrationReport,
    KernelLatency,
    ModelPrediction,
    ModelPredictions,
    PredictorCreate,
    PredictorProgress,
    PredictorPublic,
    PredictorResume,
    ValidationPoint,
)
from latencylab.status import FINISHED
from server.artifacts import ArtifactStore
from server.config import Settings
from server.store import predictor_build as build
from server.store import predictor_networks as networks
from server.store import predictor_samples as rows_of
from server.store.conversions import NATIVE_RUNTIMES
from server.store.onnx_graph import GraphUnreadable, graph_of
from server.store.predictor_conversions import KIND as CONVERSION
from server.store.stored_predictions import Computed, cached
from server.store.tables import TableRejected, resolve_device

TERMINAL = ("succeeded", "failed")
SCOPE_EXCLUDES = ("timeout_s",)
"""Settings that do not change what a sample measures (a resume may raise the timeout)."""


class PredictorRejected(TableRejected):
    """A request a predictor cannot serve: ``status_code`` and a message that says why."""


def scope_key(settings: dict[str, Any], statistic: str) -> str:
    kept = {k: v for k, v in settings.items() if k not in SCOPE_EXCLUDES}
    text = json.dumps({"settings": kept, "statistic": statistic}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _want(body: PredictorCreate) -> dict[str, Any]:
    return {
        "kernel": body.settings.model_dump(mode="json"),
        "network": body.network_settings.model_dump(mode="json"),
        "statistic": body.statistic,
        "options": body.options.model_dump(mode="json"),
    }


def _same(session: Session, body: PredictorCreate, device_id: int, key: str) -> Predictor | None:
    q = select(Predictor).where(
        Predictor.device_id == device_id,
        Predictor.runtime == body.runtime,
        Predictor.precision == body.precision,
        Predictor.batch_size == body.batch_size,
        Predictor.threads == body.threads,
        Predictor.scope_key == key,
    )
    want = _want(body)
    for p in session.scalars(q.order_by(Predictor.id.desc())):
        if all(p.settings.get(k) == v for k, v in want.items()):
            return p
    return None


def _check_options(body: PredictorCreate) -> None:
    from predictor.archs import ARCHS

    known = set(ARCHS) | {fam for fam, _, _ in ARCHS.values()}
    unknown = sorted(set(body.options.validate_only or []) - known)
    if unknown:
        raise PredictorRejected(
            f"options.validate_only: unknown network(s) {unknown}; known architectures and "
            f"families: {', '.join(sorted(known))}"
        )
    from predictor.configs import FAMILIES, family

    odd = sorted(k for k in body.options.kinds or [] if family(k) not in FAMILIES)
    if odd:
        raise PredictorRejected(
            f"options.kinds: unknown kernel type(s) or families {odd}; families: "
            f"{', '.join(FAMILIES)} (or a type of one, e.g. dwconv+relu6)"
        )
    if (why := networks.check_options(body.options)) is not None:
        raise PredictorRejected(why)


def create_predictor(
    session: Session, store: ArtifactStore, body: PredictorCreate, owner: int | None, cfg: Settings
) -> tuple[Predictor, bool]:
    """A new build (or the identical existing one, resumed if failed); ``(build, created)``."""
    if body.runtime not in NATIVE_RUNTIMES["onnx"]:
        raise PredictorRejected(
            f"runtime '{body.runtime}' does not run ONNX kernel models natively; predictor "
            f"builds support {', '.join(sorted(NATIVE_RUNTIMES['onnx']))}"
        )
    _check_options(body)
    device = resolve_device(session, body.device, body.runtime, cfg.offline_after_s)
    key = scope_key(body.settings.model_dump(mode="json"), body.statistic)
    if not body.fresh and (old := _same(session, body, device.id, key)) is not None:
        if old.status == "failed":
            resume_predictor(session, store, old, PredictorResume())
        return old, False
    p = Predictor(
        device_id=device.id,
        device_name=device.name,
        device_selector=body.device,
        runtime=body.runtime,
        precision=body.precision,
        batch_size=body.batch_size,
        threads=body.threads,
        scope_key=key,
        settings={**_want(body), "max_attempts": cfg.max_attempts},
        owner_token_id=owner,
    )
    session.add(p)
    session.flush()
    build.advance(session, store, p)
    return p, True


def resume_predictor(
    session: Session, store: ArtifactStore, p: Predictor, body: PredictorResume
) -> Predictor:
    """Retry what failed (samples, bias checks, networks) and re-queue anything stranded;
    measured samples are kept. New timeouts apply to what is measured from now on."""
    settings = dict(p.settings)
    for name, new in (("kernel", body.settings), ("network", body.network_settings)):
        if new is None:
            continue
        dumped = new.model_dump(mode="json")
        if name == "kernel" and scope_key(dumped, settings["statistic"]) != p.scope_key:
            raise PredictorRejected(
                "a resume may change the kernel settings' timeout_s only (the others define "
                "what the measured samples mean); start a new build for other settings"
            )
        settings[name] = dumped
    p.settings = settings
    for _, s in rows_of.linked(session, p):
        job = session.get(Job, s.job_id) if s.job_id else None
        stranded = s.status == "queued" and (job is None or job.status in FINISHED)
        if s.status == "failed" or stranded:
            s.status, s.error, s.job_id = "pending", None, None
        single = session.get(Job, s.single_job_id) if s.single_job_id else None
        if s.single_status == "failed" or (
            s.single_status == "queued" and (single is None or single.status in FINISHED)
        ):
            s.single_status, s.single_job_id, s.single_ms = "pending", None, None
    for n in rows_of.networks_of(session, p, None):
        job = session.get(Job, n.job_id) if n.job_id else None
        if n.status == "failed" or (
            n.status == "queued" and (job is None or job.status in FINISHED)
        ):
            n.status, n.error, n.job_id, n.finished_at = "pending", None, None, None
    if p.status == "failed":
        p.status, p.error, p.finished_at = "building", None, None
    build.advance(session, store, p)
    return p


def kick(session: Session, store: ArtifactStore, p: Predictor) -> None:
    """Queue stranded pending work (e.g. after a restart); cheap when none."""
    if p.status != "building":
        return
    free = select(Predictor.id).where(Predictor.id == p.id).with_for_update(skip_locked=True)
    if session.scalar(free) is None:  # a report is advancing it right now (PostgreSQL)
        return
    build.safely(session, f"predictor {p.id}", lambda: build.advance(session, store, p))


def get_predictor(session: Session, predictor_id: int) -> Predictor | None:
    return session.get(Predictor, predictor_id)


def list_predictors(session: Session, limit: int = 200) -> list[Predictor]:
    return list(session.scalars(select(Predictor).order_by(Predictor.id.desc()).limit(limit)))


def progress_of(session: Session, p: Predictor) -> PredictorProgress:
    rows = rows_of.linked(session, p)
    kernels = [s for _, s in rows if s.kind == "kernel"]
    probes = [s for _, s in rows if s.kind == "probe"]
    convs = [s for _, s in rows if s.kind == CONVERSION]
    bias = [s for link, s in rows if link.bias]
    every = rows_of.networks_of(session, p, None)
    nets = [n for n in every if n.role == "validation"]
    cal = [n for n in every if n.role == "calibration"]
    jobs = {s.job_id for s in kernels + probes + convs if s.job_id} | {
        s.single_job_id for s in bias if s.single_job_id
    }
    counts = {
        "samples_done": sum(s.status in TERMINAL for s in kernels),
        "probes_done": sum(s.status in TERMINAL for s in probes),
        "conversions_done": sum(s.status in TERMINAL for s in convs),
        "bias_done": sum(s.single_status in TERMINAL for s in bias),
        "networks_done": sum(n.status in TERMINAL for n in nets),
        "calibration_done": sum(n.status in TERMINAL for n in cal),
    }
    totals = (len(kernels), len(probes), len(bias), len(nets), len(cal), len(convs))
    return PredictorProgress(
        done=sum(counts.values()),
        total=sum(totals),
        samples_total=totals[0],
        samples_failed=sum(s.status == "failed" for s in kernels),
        samples_reused=p.samples_reused,
        probes_total=totals[1],
        bias_total=totals[2],
        networks_total=totals[3],
        networks_failed=sum(n.status == "failed" for n in nets),
        calibration_total=totals[4],
        calibration_failed=sum(n.status == "failed" for n in cal),
        conversions_total=totals[5],
        conversions_failed=sum(s.status == "failed" for s in convs),
        jobs=len(jobs) + sum(n.job_id is not None for n in every),
        **counts,
    )


def _point(p: Predictor, n: PredictorNetwork) -> ValidationPoint:
    stat = str(p.settings.get("statistic", "min"))
    measured = rows_of.value_of(n, stat) if n.status == "succeeded" else None
    return ValidationPoint(
        name=n.name, family=n.family, role=n.role, predicted_ms=n.predicted_ms,
        predicted_uncalibrated_ms=n.predicted_uncalibrated_ms, measured_ms=measured,
        status=n.status, error=n.error,
    )  # fmt: skip


def predictor_public(session: Session, p: Predictor) -> PredictorPublic:
    failed = [
        {"key": s.key, "type": s.type, "error": s.error}
        for _, s in rows_of.linked(session, p)
        if s.status == "failed"
    ]
    return PredictorPublic(
        id=p.id,
        device=p.device_name,
        device_selector=p.device_selector,
        runtime=p.runtime,
        precision=p.precision,
        batch_size=p.batch_size,
        threads=p.threads,
        status=p.status,
        phase=p.phase,
        round=p.round,
        progress=progress_of(session, p),
        settings=p.settings or {},
        fusion_rules=p.fusion_rules,
        accuracy=p.accuracy,
        accuracy_uncalibrated=p.accuracy_uncalibrated,
        calibration=CalibrationReport.model_validate(p.calibration) if p.calibration else None,
        bias=BiasCheck.model_validate(p.bias) if p.bias else None,
        points=[_point(p, n) for n in rows_of.networks_of(session, p)],
        calibration_points=[_point(p, n) for n in rows_of.networks_of(session, p, "calibration")],
        failed_samples=failed[:50],
        error=p.error,
        created_at=p.created_at,
        finished_at=p.finished_at,
    )


# ------------------------------------------------------------------ bundles and prediction
def bundle_json(session: Session, p: Predictor) -> str:
    """The trained bundle's JSON; 409 before the first training."""
    row = session.scalar(
        select(Predictor).where(Predictor.id == p.id).options(undefer(Predictor.bundle_json))
    )
    if row is None or not row.bundle_json:
        raise untrained(p)
    return row.bundle_json


def untrained(p: Predictor) -> PredictorRejected:
    """The 409 of a predictor asked for what needs its bundle before its first training."""
    return PredictorRejected(
        f"predictor {p.id} is {p.status} in phase {p.phase}: nothing trained yet; wait for "
        "it (GET /predictors/{id}) or resume it if it failed",
        409,
    )


_BUNDLES: OrderedDict[str, Any] = OrderedDict()
"""Parsed bundles by content hash (immutable; a few kept): parsing costs more than predicting."""


def _bundle(session: Session, p: Predictor) -> Any:
    from predictor.bundle import PredictorBundle

    sha = p.bundle_sha256 or ""
    if sha and sha in _BUNDLES:
        _BUNDLES.move_to_end(sha)
        return _BUNDLES[sha]
    bundle = PredictorBundle.from_json(bundle_json(session, p))
    _BUNDLES[sha] = bundle
    while len(_BUNDLES) > 8:
        _BUNDLES.popitem(last=False)
    return bundle


def onnx_ref(session: Session, model: Model) -> tuple[str, dict[str, Any]]:
    """The hash and artifact metadata of the model's ONNX: the upload, or its conversion."""
    sha = model.sha256 if model.format == "onnx" else None
    meta = dict(model.artifact_meta or {})
    if sha is None:
        conv = session.scalar(
            select(Conversion)
            .where(Conversion.model_id == model.id, Conversion.target == "onnx")
            .where(Conversion.status == "succeeded")
            .order_by(Conversion.id.desc())
        )
        if conv is None or conv.artifact_sha256 is None:
            raise PredictorRejected(
                f"model {model.id} is {model.format} and has no ONNX conversion yet; benchmark "
                "it on an ONNX runtime first (that converts it), then predict",
                409,
            )
        sha, meta = conv.artifact_sha256, dict(conv.artifact_meta or {})
    return sha, meta


def onnx_of(store: ArtifactStore, model: Model, ref: tuple[str, dict[str, Any]]) -> Any:
    """The model's ONNX (`onnx_ref`) as a ModelProto; an archived one: its graph, without
    the weights."""
    sha, meta = ref
    try:
        return graph_of(store, sha, meta)
    except GraphUnreadable as exc:
        raise PredictorRejected(
            f"model {model.id}: cannot read its ONNX graph: {exc}; upload it again as one "
            ".onnx file, or as a zip of the .onnx file and its external data files",
            422,
        ) from exc
    except Exception as exc:  # a file onnx cannot parse (or no longer stored)
        raise PredictorRejected(f"model {model.id}: cannot read its ONNX file: {exc}", 422) from exc


def _shapes(model: Model, batch: int) -> dict[str, list[int]] | None:
    """Concrete input shapes: symbolic dimensions become the batch size (first) or 1."""
    out, symbolic = {}, False
    for t in model.inputs or []:
        dims = []
        for i, d in enumerate(t.get("shape") or []):
            concrete = isinstance(d, int) and d > 0
            symbolic = symbolic or not concrete
            dims.append(int(d) if concrete else (batch if i == 0 else 1))
        out[str(t.get("name"))] = dims
    return out if symbolic else None


def predict_model(
    session: Session, store: ArtifactStore, p: Predictor, model: Model
) -> ModelPrediction:
    """The prediction of ``p`` for the model, kept once computed (``stored_predictions``)."""
    bundle = _bundle(session, p)
    shapes = _shapes(model, p.batch_size)

    ref = onnx_ref(session, model)

    def compute() -> Computed:
        proto = onnx_of(store, model, ref)
        try:
            pred = bundle.predict_onnx(proto, shapes)
        except Exception as exc:
            raise PredictorRejected(f"model {model.id}: prediction failed: {exc}", 422) from exc
        kernels = [KernelLatency.model_validate(k.model_dump()) for k in pred.kernels]
        return Computed(float(pred.latency_ms), kernels, list(pred.notes))

    pred = cached(session, p.bundle_sha256 or "", ref[0], shapes, compute)
    return ModelPrediction(
        predictor_id=p.id,
        device=p.device_name,
        runtime=p.runtime,
        latency_ms=pred.latency_ms,
        kernels=pred.kernels,
        notes=pred.notes,
        accuracy=(p.accuracy or {}).get("overall"),
    )


def model_predictions(session: Session, store: ArtifactStore, model: Model) -> ModelPredictions:
    """The model's predicted latency on every device with a succeeded predictor (the newest
    per device, runtime, precision, batch size and threads)."""
    seen: set[tuple[Any, ...]] = set()
    out = ModelPredictions(model_id=model.id)
    q = select(Predictor).where(Predictor.status == "succeeded").order_by(Predictor.id.desc())
    for p in session.scalars(q):
        scope = (p.device_id, p.runtime, p.precision, p.batch_size, p.threads)
        if scope in seen:
            continue
        seen.add(scope)
        try:
            pred = predict_model(session, store, p, model)
        except PredictorRejected as exc:
            out.errors.append({"predictor_id": p.id, "device": p.device_name, "error": exc.message})
            continue
        out.predictions.append(pred.model_copy(update={"kernels": pred.kernels}))
    return out
