"""The samples of predictor builds: scope, links, reuse (shared by every build of a scope)."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import utcnow
from db.predictors import Predictor, PredictorLink, PredictorNetwork, PredictorSample

ACTIVE = ("pending", "queued")
RUNTIME = "runtime_overhead"
"""The kernel type of the runtime's fixed cost per run (``predictor.configs``): always sampled."""


def options(p: Predictor) -> dict[str, Any]:
    return dict(p.settings.get("options") or {})


def sample_key(text: str) -> str:
    return text if len(text) <= 500 else "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def value_of(row: Any, stat: str) -> float | None:
    v = getattr(row, f"{stat}_ms", None)
    return float(v) if v is not None else (float(row.mean_ms) if row.mean_ms is not None else None)


def scope_of(p: Predictor) -> list[Any]:
    return [
        PredictorSample.device_id == p.device_id,
        PredictorSample.runtime == p.runtime,
        PredictorSample.precision == p.precision,
        PredictorSample.batch_size == p.batch_size,
        PredictorSample.threads == p.threads,
        PredictorSample.scope_key == p.scope_key,
    ]


def linked(
    session: Session, p: Predictor, stage: str | None = None
) -> list[tuple[PredictorLink, PredictorSample]]:
    q = (
        select(PredictorLink, PredictorSample)
        .join(PredictorSample, PredictorSample.id == PredictorLink.sample_id)
        .where(PredictorLink.predictor_id == p.id)
        .order_by(PredictorSample.id)
    )
    if stage is not None:
        q = q.where(PredictorLink.stage == stage)
    return [(link, s) for link, s in session.execute(q).all()]


def networks_of(
    session: Session, p: Predictor, role: str | None = "validation"
) -> list[PredictorNetwork]:
    """The build's networks of ``role`` (calibration | validation; None: both)."""
    q = select(PredictorNetwork).where(PredictorNetwork.predictor_id == p.id)
    if role is not None:
        q = q.where(PredictorNetwork.role == role)
    return list(session.scalars(q.order_by(PredictorNetwork.role, PredictorNetwork.idx)))


def fail(p: Predictor, error: str) -> None:
    p.status, p.error, p.finished_at = "failed", error[:4000], utcnow()


def link_samples(
    session: Session, p: Predictor, stage: str, rows: list[tuple[str, str, str, dict[str, Any]]]
) -> list[PredictorSample]:
    """Find or create the scope's samples ``(key, kind, type, params)`` and link them."""
    keys = [r[0] for r in rows]
    found = {
        s.key: s
        for s in session.scalars(
            select(PredictorSample).where(*scope_of(p), PredictorSample.key.in_(keys))
        )
    }
    have = {link.sample_id for link, _ in linked(session, p)}
    out = []
    for key, kind, type_, params in rows:
        s = found.get(key)
        if s is None:
            s = PredictorSample(
                device_id=p.device_id, runtime=p.runtime, precision=p.precision,
                batch_size=p.batch_size, threads=p.threads, scope_key=p.scope_key,
                key=key, kind=kind, type=type_, params=params,
            )  # fmt: skip
            try:
                with session.begin_nested():  # a concurrent build may insert the same sample
                    session.add(s)
            except IntegrityError:
                s = session.scalars(
                    select(PredictorSample).where(*scope_of(p), PredictorSample.key == key)
                ).one()
        elif s.status == "succeeded":
            p.samples_reused += 1
        elif s.status == "failed":
            s.status, s.error, s.job_id = "pending", None, None
        found[key] = s
        if s.id not in have:
            session.add(PredictorLink(predictor_id=p.id, sample_id=s.id, stage=stage))
            have.add(s.id)
        out.append(s)
    session.flush()
    return out
