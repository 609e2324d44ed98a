"""Driving a predictor build from database state, one step per finished job.

Every finished job of a build (its kind's ``on_finished`` hook, ``predictor_hooks``, in the
agent's report transaction) files what it measured and calls ``advance``, which queues what
the build needs next and moves it on when a phase ends. A restart loses nothing: the rows
say where the build stands, and ``advance`` is idempotent. The phases::

    discovery  fusion-rule probes (predictor.discovery replayed over measured probes: each
               round queues the probes the replay still asks for)
    initial    predictor.sampling.plan_initial -> kernel models in batch jobs (+ the bias
               check: a few kernels also measured alone; the layout conversions as kernels
               of their own where the samples' profiles show conversions,
               ``predictor_conversions``) -> predictor.train (regressors, and the layout
               model from each sample's layout-conversion time, priced per shape by the
               measured conversions)
    refine     predictor.sampling.plan_refinement (per round) -> batches -> train again
    calibrate  calibration networks measured end to end -> predictor.calibration fitted,
               the calibrated bundle stored (``options.calibrate`` false: skipped)
    validate   predictor.validation_set networks, predicted, then measured end to end
    done       predictor.accuracy.score -> the stored report      (status succeeded)

The network phases are in ``predictor_networks``.

A phase whose samples failed beyond ``max_failed_share`` fails the build (resume retries
the failed ones; measured samples are kept and never measured again in that scope).
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from db.models import utcnow
from db.predictors import Predictor, PredictorSample
from server.artifacts import ArtifactStore
from server.store import predictor_conversions as conv
from server.store import predictor_jobs as jobs
from server.store import predictor_networks as nets
from server.store.predictor_discovery import discovery
from server.store.predictor_samples import (
    ACTIVE,
    RUNTIME,
    fail,
    link_samples,
    linked,
    networks_of,
    options,
    sample_key,
    value_of,
)

log = logging.getLogger("latencylab.predictors")
WINDOW = 2
"""Batch jobs of one build queued or running at once."""


# ------------------------------------------------------------------ kernel stages
def rules_of(p: Predictor) -> Any:
    from predictor.fusion import FusionRules, default_rules

    return FusionRules.model_validate(p.fusion_rules) if p.fusion_rules else default_rules()


def plan(session: Session, p: Predictor, stage: str, configs: Sequence[Any]) -> None:
    o = options(p)
    kinds = set(o.get("kinds") or [])
    keep = kinds | {RUNTIME}
    cfgs = [c for c in configs if not kinds or c.type in keep or c.family in keep]
    rows = [(sample_key(c.key()), "kernel", c.type, dict(c.params)) for c in cfgs]
    samples = link_samples(session, p, stage, rows)
    if stage == "initial" and int(o["bias_check_n"]) > 0 and samples:
        rng = random.Random(int(o["seed"]))
        chosen = {s.id for s in rng.sample(samples, min(len(samples), int(o["bias_check_n"])))}
        for link, _ in linked(session, p, "initial"):
            link.bias = link.sample_id in chosen


@lru_cache(maxsize=16)
def initial_plan(per_type: int, seed: int, rules_json: str) -> tuple[Any, ...]:
    """``plan_initial`` (pure: same arguments, same plan), memoized: it runs kernel detection
    over every reference architecture, which takes seconds."""
    from predictor.fusion import FusionRules
    from predictor.sampling import plan_initial

    rules = FusionRules.model_validate_json(rules_json)
    return tuple(plan_initial(per_type, seed, rules, prior=list(conv.real_kernels(rules_json))))


_REFINEMENTS: OrderedDict[tuple[str, int, int], list[Any]] = OrderedDict()
"""Refinement plans by (bundle hash, per type, seed): pure, but seconds to compute."""


def refinement_plan(p: Predictor, bundle: Any, per_type: int, seed: int) -> list[Any]:
    """``plan_refinement`` of the bundle just trained, memoized by the bundle's hash (a
    build reusing another's samples trains the same bundle and gets the same plan)."""
    from predictor.sampling import plan_refinement

    key = (p.bundle_sha256 or "", per_type, seed)
    if key not in _REFINEMENTS:
        _REFINEMENTS[key] = plan_refinement(bundle, per_type, seed)
        while len(_REFINEMENTS) > 16:
            _REFINEMENTS.popitem(last=False)
    return list(_REFINEMENTS[key])


def _config(s: PredictorSample) -> Any:
    from predictor.configs import KernelConfig

    return KernelConfig(type=s.type, params=s.params)


def _model_of(s: PredictorSample, seed: int) -> Any:
    """The sample's model: a layout conversion's, or a kernel's."""
    from predictor.kernel_models import kernel_model

    return conv.model(_config(s)) if s.kind == conv.KIND else kernel_model(_config(s), seed=seed)


def _refill_kernels(session: Session, store: ArtifactStore, p: Predictor, stage: str) -> None:
    rows = [s for _, s in linked(session, p, stage)]
    queued_jobs = {s.job_id for s in rows if s.status == "queued"}
    per = int(options(p)["kernels_per_job"])
    pending = [s for s in rows if s.status == "pending"]
    while pending and len(queued_jobs) < WINDOW:
        chunk, pending = pending[:per], pending[per:]
        models = []
        for s in chunk:
            if not jobs.claim(session, PredictorSample, s.id):
                continue
            session.refresh(s)
            try:
                models.append((s, _model_of(s, int(options(p)["seed"]))))
            except Exception as exc:  # a config that cannot be built is a failed sample
                log.exception("predictor %s: building kernel %s failed", p.id, s.key)
                s.status, s.error, s.finished_at = (
                    "failed",
                    f"building the kernel model failed: {exc}",
                    utcnow(),
                )
        if models:
            job = jobs.queue_batch(session, store, p, [(s.key, m) for s, m in models])
            for s, _ in models:
                s.job_id = job.id
            queued_jobs.add(job.id)


def _refill_bias(session: Session, store: ArtifactStore, p: Predictor) -> bool:
    """Queue the bias check's single measurements; True while some are unfinished."""
    from predictor.kernel_models import kernel_model

    busy = False
    for link, s in linked(session, p, "initial"):
        if not link.bias or s.status != "succeeded":
            continue
        if s.single_status is None:
            s.single_status = "pending"
            session.flush()
        if s.single_status == "pending" and jobs.claim(
            session, PredictorSample, s.id, "single_status"
        ):
            session.refresh(s)
            job = jobs.queue_single(
                session, store, p, s.key, kernel_model(_config(s), seed=int(options(p)["seed"]))
            )
            s.single_job_id = job.id
        busy = busy or s.single_status in ACTIVE
    return busy


def _train(session: Session, p: Predictor) -> Any:
    """The regressors, and the layout model from the samples' layout-conversion times
    (where their measurements had a profile) priced per shape by the measured conversions,
    as ``bench.predictor`` trains them."""
    from predictor.train import train

    stat = str(p.settings.get("statistic", "min"))
    got = [
        (s, _config(s), v)
        for _, s in linked(session, p)
        if s.kind == "kernel" and s.status == "succeeded" and (v := value_of(s, stat)) is not None
    ]
    layout = [(c, float(s.layout_ms)) for s, c, _ in got if s.layout_ms is not None]
    conversions = conv.measured(session, p, stat)
    bundle = train(
        [(c, v) for _, c, v in got],
        rules_of(p),
        layout=layout or None,
        conversions=conversions or None,
    )
    nets.store_bundle(p, bundle)
    return bundle


def _kernel_stage(session: Session, store: ArtifactStore, p: Predictor, stage: str) -> bool:
    """Measure a stage's samples; True once it is over (trained, or the build failed).
    Failed conversions never fail it (``predictor_conversions``)."""
    _refill_kernels(session, store, p, stage)
    every = [s for _, s in linked(session, p, stage)]
    if any(s.status in ACTIVE for s in every):
        return False
    rows = [s for s in every if s.kind != conv.KIND]
    failed = [s for s in rows if s.status == "failed"]
    share = float(options(p)["max_failed_share"])
    if rows and (len(failed) > share * len(rows) or len(failed) == len(rows)):
        fail(
            p,
            f"{len(failed)} of {len(rows)} {stage} samples failed (resume to retry): {failed[0].error}",
        )
        return True
    return True


# ------------------------------------------------------------------ the driver
def advance(session: Session, store: ArtifactStore, p: Predictor) -> None:
    """Queue what the build needs next; move it on when a phase ends (idempotent). A phase
    that cannot go on (nothing to train on, a network that cannot be generated) fails the
    build with the reason; database errors propagate (the hook's savepoint undoes them)."""
    if p.status != "building":
        return
    try:
        _advance(session, store, p)
    except SQLAlchemyError:
        raise
    except Exception as exc:
        log.exception("predictor %s: phase %s failed", p.id, p.phase)
        fail(p, f"the {p.phase} phase failed: {type(exc).__name__}: {exc}")


def _advance(session: Session, store: ArtifactStore, p: Predictor) -> None:
    session.flush()
    session.refresh(p, with_for_update=True)  # one advance of a build at a time (PostgreSQL)
    if p.status != "building":
        return
    o = options(p)
    if p.phase == "discovery":
        if not discovery(session, store, p):
            return
        cfgs = initial_plan(
            int(o["initial_per_type"]), int(o["seed"]), rules_of(p).model_dump_json()
        )
        plan(session, p, "initial", list(cfgs))
        conv.plan(session, p, rules_of(p).model_dump_json())  # the probes showed conversions
        p.phase = "initial"
    if p.phase in ("initial", "refine"):
        stage = "initial" if p.phase == "initial" else f"refine{p.round}"
        _refill_bias(session, store, p)  # the bias check's single jobs interleave
        if not _kernel_stage(session, store, p, stage) or p.status != "building":
            return
        if stage == "initial" and conv.plan(session, p, rules_of(p).model_dump_json()):
            return _advance(session, store, p)  # the kernels showed conversions: measure them
        bundle = _train(session, p)
        if p.round < int(o["refine_rounds"]) and int(o["refine_per_type"]) > 0:
            p.round += 1
            p.phase = "refine"
            refined = refinement_plan(
                p, bundle, int(o["refine_per_type"]), int(o["seed"]) + p.round
            )
            plan(session, p, f"refine{p.round}", refined)
            return _advance(session, store, p)
        p.phase = "calibrate" if o.get("calibrate", True) else "validate"
        nets.start(session, store, p, bundle)
    if p.phase == "calibrate":
        nets.start(session, store, p)
        nets.requeue_networks(session, store, p)
        _refill_bias(session, store, p)
        if not nets.calibrated(session, p) or p.status != "building":
            return
        p.phase = "validate"
        nets.start(session, store, p)
    if p.phase == "validate":
        nets.start(session, store, p)
        nets.requeue_networks(session, store, p)
        bias_busy = _refill_bias(session, store, p)
        if bias_busy or any(n.status in ACTIVE for n in networks_of(session, p)):
            return
        nets.score(session, p)


def safely(session: Session, what: str, fn: Any) -> None:
    """Run a hook body in a savepoint: a build bug must never fail an agent's report."""
    try:
        with session.begin_nested():
            fn()
    except Exception:
        log.exception("predictor hook failed: %s", what)
