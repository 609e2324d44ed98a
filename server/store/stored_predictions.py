"""Predictions kept once computed (``db.prediction_cache``): read back by any process.

``cached(...)`` returns the stored prediction of a bundle for an ONNX graph and input
shapes, or computes it with ``compute`` and keeps it. Two processes computing the same one
at once both answer; the second insert is skipped (``ON CONFLICT DO NOTHING``), so a
concurrent read never fails on the unique key. Rejections (no ONNX yet, an unreadable
graph) are not kept: they may change when a conversion finishes. On SQLite (the embedded
default) a GET request reads through a deferred transaction that must not write
(`_may_write`): there a prediction is kept only by a writing request (``POST
/predictors/{id}/predict``), and GET pages (Pareto, model page) compute the others afresh.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from db.engine import READ_ONLY
from db.prediction_cache import StoredPrediction
from latencylab.predictors import KernelLatency

Shapes = Mapping[str, Sequence[int]] | None


def shapes_key(shapes: Shapes) -> str:
    text = json.dumps({k: list(v) for k, v in (shapes or {}).items()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Computed:
    """What a prediction consists of (``predictor.bundle.Prediction``'s shape)."""

    latency_ms: float
    kernels: list[KernelLatency]
    notes: list[str]


def _may_write(session: Session) -> bool:
    """False in an SQLite read transaction (a GET request's: begun deferred, it must never
    take the write lock, which would bypass the writers' queue and could fail with SQLITE_BUSY
    while an agent reports); PostgreSQL read sessions write like any other."""
    conn = session.connection()
    return not (conn.dialect.name == "sqlite" and conn.get_execution_options().get(READ_ONLY))


def cached(
    session: Session,
    bundle_sha256: str,
    onnx_sha256: str,
    shapes: Shapes,
    compute: Callable[[], Computed],
) -> Computed:
    key = shapes_key(shapes)
    row = session.scalar(
        select(StoredPrediction).where(
            StoredPrediction.bundle_sha256 == bundle_sha256,
            StoredPrediction.onnx_sha256 == onnx_sha256,
            StoredPrediction.shapes_key == key,
        )
    )
    if row is not None:
        return Computed(
            row.latency_ms, [KernelLatency.model_validate(k) for k in row.kernels], list(row.notes)
        )
    out = compute()
    if not _may_write(session):
        return out
    values = {
        "bundle_sha256": bundle_sha256, "onnx_sha256": onnx_sha256, "shapes_key": key,
        "latency_ms": out.latency_ms, "kernels": [k.model_dump() for k in out.kernels],
        "notes": out.notes,
    }  # fmt: skip
    postgres = session.get_bind().dialect.name == "postgresql"
    stmt = (pg_insert if postgres else sqlite_insert)(StoredPrediction).values(**values)
    session.execute(stmt.on_conflict_do_nothing())
    return out
