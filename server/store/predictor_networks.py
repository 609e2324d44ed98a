"""The network phases of a predictor build: whole networks predicted, then measured end to
end (``predictor_network`` jobs: one fresh process each, the standard protocol).

``calibrate``  `predictor.validation_set.calibration_networks` (width 1.0 at each of
               ``calibrate_resolutions``, and NAS networks of their own seed: never the
               networks the build is scored on) ->
               `predictor.calibration.fit_calibration` on their network terms -> the
               calibrated bundle and the `CalibrationReport` (``options.calibrate``: skip)
``validate``   `predictor.validation_set.validation_networks`, predicted by the (calibrated)
               bundle and before calibration -> `predictor.accuracy.score` of both

Each network's row keeps its prediction and its network terms under the uncalibrated bundle
(``PredictorNetwork.terms``), so the fit needs no network generated again; a resume queues
the pending rows again from the same generated set.
"""

from __future__ import annotations

import hashlib
import logging
import statistics
from typing import Any

from sqlalchemy.orm import Session

from db.models import utcnow
from db.predictors import Predictor, PredictorNetwork
from latencylab.predictors import CalibrationReport, PredictorOptions
from server.artifacts import ArtifactStore
from server.store import predictor_jobs as jobs
from server.store.predictor_samples import ACTIVE, fail, linked, networks_of, options, value_of

log = logging.getLogger("latencylab.predictors")
ROLE_OF_PHASE = {"calibrate": "calibration", "validate": "validation"}


# ------------------------------------------------------------------ the network sets
def validation_set(p: Predictor) -> list[Any]:
    """The build's held-out networks (``validate_only``: architecture names or families)."""
    from predictor.archs import ARCHS
    from predictor.validation_set import validation_networks

    o = options(p)
    only = set(o.get("validate_only") or [])
    archs = [a for a, (fam, _, _) in ARCHS.items() if a in only or fam in only] if only else None
    if only and not archs and not int(o["validate_random"]):
        return []
    return validation_networks(
        int(o["seed"]),
        resolution=int(o["validate_resolution"]),
        n_random=int(o["validate_random"]),
        archs=archs,
    )


def _calibration_archs(only: list[str] | None) -> list[str]:
    from predictor.archs import ARCHS

    return [a for a, (fam, _, _) in ARCHS.items() if not only or a in only or fam in only]


def calibration_set(p: Predictor) -> list[Any]:
    """The build's calibration networks (``calibrate_only``: architecture names or families,
    each at every one of ``calibrate_resolutions``; ``calibrate_random`` NAS-space networks
    per space)."""
    from predictor.validation_set import SPACES, calibration_networks

    o = options(p)
    archs = _calibration_archs(o.get("calibrate_only"))
    sizes = tuple(dict.fromkeys(int(r) for r in o.get("calibrate_resolutions") or [224]))
    nets = calibration_networks(int(o["seed"]), int(o.get("calibrate_random", 2)), sizes)
    return [n for n in nets if n.family in SPACES or any(n.name.startswith(a + "-") for a in archs)]


def check_options(o: PredictorOptions) -> str | None:
    """What is wrong with the calibration options (None: nothing), for a 422."""
    from predictor.archs import ARCHS
    from predictor.calibration import TERMS
    from predictor.validation_set import SPACES

    if not o.calibrate:
        return None
    known = set(ARCHS) | {fam for fam, _, _ in ARCHS.values()}
    unknown = sorted(set(o.calibrate_only or []) - known)
    if unknown:
        return (
            f"options.calibrate_only: unknown network(s) {unknown}; known architectures and "
            f"families: {', '.join(sorted(known))}"
        )
    archs = len(_calibration_archs(o.calibrate_only)) * len(set(o.calibrate_resolutions))
    n = archs + len(SPACES) * o.calibrate_random
    if n < len(TERMS):
        return (
            f"options: the calibration needs at least {len(TERMS)} networks, these options "
            f"give {n}; list more in calibrate_only or calibrate_resolutions, raise "
            "calibrate_random, or set calibrate to false"
        )
    return None


def bundle_of(p: Predictor) -> Any:
    from predictor.bundle import PredictorBundle

    return PredictorBundle.from_json(p.bundle_json or "")


def store_bundle(p: Predictor, bundle: Any) -> None:
    text = bundle.to_json()
    p.bundle_json, p.bundle_sha256 = text, hashlib.sha256(text.encode()).hexdigest()


# ------------------------------------------------------------------ queueing
def start(session: Session, store: ArtifactStore, p: Predictor, bundle: Any = None) -> None:
    """Predict and queue the networks of the build's phase with ``bundle`` (None: the stored
    one), once: rows already there stay (a phase resumed after its start failed starts)."""
    from predictor.detect import detect_kernels

    role = ROLE_OF_PHASE[p.phase]
    if networks_of(session, p, role):
        return
    bundle = bundle if bundle is not None else bundle_of(p)
    nets = calibration_set(p) if role == "calibration" else validation_set(p)
    plain = bundle.with_calibration(None)
    for i, net in enumerate(nets):
        row = PredictorNetwork(
            predictor_id=p.id, idx=i, name=net.name[:200], family=net.family[:64], role=role
        )
        try:
            det = detect_kernels(net.model, bundle.rules)
            row.predicted_ms = float(bundle.predict_detection(det).latency_ms)
            row.predicted_uncalibrated_ms = float(plain.predict_detection(det).latency_ms)
            row.terms = {k: float(v) for k, v in plain.network_terms(det).items()}
            model, job = jobs.queue_network(session, store, p, net.name, net.model, role)
            row.model_id, row.job_id, row.status = model.id, job.id, "queued"
        except Exception as exc:
            log.exception("predictor %s: %s network %s", p.id, role, net.name)
            row.status, row.error = "failed", f"predicting or queueing failed: {exc}"
            row.finished_at = utcnow()
        session.add(row)
    session.flush()


def requeue_networks(session: Session, store: ArtifactStore, p: Predictor) -> None:
    """Queue pending networks again (after a resume), from the same generated set."""
    for role, generate in (("calibration", calibration_set), ("validation", validation_set)):
        pending = [n for n in networks_of(session, p, role) if n.status == "pending"]
        if not pending:
            continue
        by_name = {n.name[:200]: n for n in generate(p)}
        for row in pending:
            if row.name not in by_name or not jobs.claim(session, PredictorNetwork, row.id):
                continue
            session.refresh(row)
            net = by_name[row.name]
            model, job = jobs.queue_network(session, store, p, row.name, net.model, role)
            row.model_id, row.job_id = model.id, job.id


# ------------------------------------------------------------------ calibration
def calibrated(session: Session, p: Predictor) -> bool:
    """True once the calibration networks are in and the calibration is fitted and stored
    (or the build failed: too few of them measured)."""
    from predictor.calibration import TERMS, apply, fit_calibration

    nets = networks_of(session, p, "calibration")
    if any(n.status in ACTIVE for n in nets):
        return False
    stat = str(p.settings.get("statistic", "min"))
    rows = [
        (n.name, dict(n.terms), float(m))
        for n in nets
        if n.status == "succeeded" and n.terms and (m := value_of(n, stat))
    ]
    failed = [n for n in nets if n.status != "succeeded"]
    if len(rows) < len(TERMS):
        why = f": {failed[0].error}" if failed else ""
        fail(
            p,
            f"{len(rows)} of {len(nets)} calibration networks measured, the calibration needs "
            f"{len(TERMS)} (resume to retry, or build with options.calibrate false){why}",
        )
        return True
    bundle = bundle_of(p).with_calibration(None)
    cal = fit_calibration(rows, bundle.overhead_ms)
    loo: dict[str, float] | None = None
    if len(rows) > len(TERMS):  # leave-one-out: an honest error estimate, cheap (NNLS)
        loo = {}
        for i, (name, terms, measured) in enumerate(rows):
            other = fit_calibration(rows[:i] + rows[i + 1 :], bundle.overhead_ms)
            loo[name] = (bundle.overhead_ms + apply(other.coef, terms)) / measured - 1
    p.calibration = CalibrationReport(
        terms=list(cal.terms),
        coef=list(cal.coef),
        networks=list(cal.networks),
        fit_rmspe=cal.fit_rmspe,
        uncalibrated_rmspe=cal.uncalibrated_rmspe,
        leave_one_out_errors=loo,
        leave_one_out_rmspe=statistics.fmean(e * e for e in loo.values()) ** 0.5 if loo else None,
        measured_ms={name: m for name, _, m in rows},
        failed=len(failed),
    ).model_dump(mode="json")
    store_bundle(p, bundle.with_calibration(cal))
    return True


# ------------------------------------------------------------------ validation and score
def bias_report(session: Session, p: Predictor) -> dict[str, Any]:
    stat = str(p.settings.get("statistic", "min"))
    points: list[dict[str, Any]] = []
    for link, s in linked(session, p, "initial"):
        single = (s.single_ms or {}).get(stat)
        batched = value_of(s, stat)
        if link.bias and s.single_status == "succeeded" and single and batched:
            points.append(
                {
                    "key": s.key,
                    "type": s.type,
                    "batched_ms": batched,
                    "single_ms": float(single),
                    "ratio": batched / float(single),
                }
            )
    ratios = [float(pt["ratio"]) for pt in points]
    return {
        "n": len(points),
        "median_ratio": statistics.median(ratios) if ratios else None,
        "max_abs_dev": max(abs(r - 1) for r in ratios) if ratios else None,
        "points": points,
    }


def score(session: Session, p: Predictor) -> None:
    """Score the validation networks (calibrated and before), then the build is done."""
    from predictor.accuracy import score as accuracy

    stat = str(p.settings.get("statistic", "min"))
    nets = networks_of(session, p, "validation")
    done = [
        (n, float(m))
        for n in nets
        if n.status == "succeeded" and n.predicted_ms is not None and (m := value_of(n, stat))
    ]
    p.bias = bias_report(session, p)
    if nets and not done:
        fail(p, f"all {len(nets)} validation networks failed (resume to retry): {nets[0].error}")
        return
    rows = [(n.family, float(n.predicted_ms or 0), m) for n, m in done]
    plain = [
        (n.family, float(n.predicted_uncalibrated_ms), m)
        for n, m in done
        if n.predicted_uncalibrated_ms is not None
    ]
    p.accuracy = accuracy(rows).model_dump(mode="json") if rows else None
    with_cal = p.calibration is not None and plain
    p.accuracy_uncalibrated = accuracy(plain).model_dump(mode="json") if with_cal else None
    failed = len(nets) - len(done)
    p.error = f"{failed} of {len(nets)} validation networks failed" if failed else None
    p.status, p.phase, p.finished_at = "succeeded", "done", utcnow()
