"""Fusion-rule discovery of a predictor build, driven by measured probes.

``predictor.discovery.discover_fusion_rules`` asks for one measurement at a time; here it is
replayed over the probes measured so far, and each round queues (as batch jobs) the probes
it still asks for, until it completes. A placeholder of 0 ms makes a pair look unfused, so a
longer candidate is asked for only once its prefix is measured.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy.orm import Session

from db.predictors import Predictor, PredictorSample
from server.artifacts import ArtifactStore
from server.store import predictor_jobs as jobs
from server.store.predictor_samples import ACTIVE, link_samples, linked, options, value_of


def _probe_key(proto: Any) -> str:
    return "probe:" + hashlib.sha256(proto.SerializeToString()).hexdigest()[:40]


def replay_discovery(p: Predictor, measured: dict[str, float]) -> tuple[Any, dict[str, Any]]:
    """Run discovery over measured probes: ``(rules, {})`` once complete, else
    ``(None, {probe key: model})`` of the probes it still needs (placeholders of 0 ms make
    a pair look unfused, so no longer candidate is asked for before its prefix is known)."""
    from predictor.discovery import discover_fusion_rules
    from predictor.probes import ProbeShape

    o = options(p)
    missing: dict[str, Any] = {}

    def measure(model: Any) -> float:
        key = _probe_key(model)
        if key in measured:
            return measured[key]
        missing[key] = model
        return 0.0

    shape = ProbeShape(hw=o["probe_hw"], channels=o["probe_channels"], kernel=o["probe_kernel"])
    rules = discover_fusion_rules(
        measure, o.get("fusion_candidates"), shape, device=p.device_name, runtime=p.runtime
    )
    return (None if missing else rules), missing


def discovery(session: Session, store: ArtifactStore, p: Predictor) -> bool:
    """True once the rules are known (measured, or the defaults when asked or failing)."""
    from predictor.fusion import default_rules

    o = options(p)
    if not o.get("discover_fusion", True):
        p.fusion_rules = default_rules().model_dump(mode="json")
        return True
    stat = str(p.settings.get("statistic", "min"))
    for _ in range(8):  # rounds answered by samples measured before: go on at once
        rows = linked(session, p, "probe")
        if any(s.status in ACTIVE for _, s in rows):
            return False
        measured = {
            s.key: v
            for _, s in rows
            if s.status == "succeeded" and (v := value_of(s, stat)) is not None
        }
        failed = [s for _, s in rows if s.status == "failed"]
        rules, missing = replay_discovery(p, measured)
        if rules is not None:
            p.fusion_rules = rules.model_dump(mode="json")
            return True
        if failed:
            notes = [*p.settings.get("notes", [])]
            notes.append(
                f"fusion discovery: {len(failed)} probe(s) failed ({failed[0].error}); "
                "default rules used"
            )
            p.settings = {**p.settings, "notes": notes}
            p.fusion_rules = default_rules().model_dump(mode="json")
            return True
        samples = link_samples(session, p, "probe", [(k, "probe", "probe", {}) for k in missing])
        todo = [(s.key, missing[s.key]) for s in samples if s.status == "pending"]
        if todo:
            _queue(session, store, p, todo, samples)
            return False
    return False


def _queue(
    session: Session,
    store: ArtifactStore,
    p: Predictor,
    todo: list[tuple[str, Any]],
    samples: list[PredictorSample],
) -> None:
    per = int(options(p)["kernels_per_job"])
    for i in range(0, len(todo), per):
        chunk = [(k, m) for k, m in todo[i : i + per] if _claim_sample(session, k, samples)]
        if chunk:
            job = jobs.queue_batch(session, store, p, chunk)
            keys = {k for k, _ in chunk}
            for s in samples:
                if s.key in keys:
                    s.job_id = job.id


def _claim_sample(session: Session, key: str, samples: list[PredictorSample]) -> bool:
    s = next(s for s in samples if s.key == key)
    if not jobs.claim(session, PredictorSample, s.id):
        return False
    session.refresh(s)
    return True
