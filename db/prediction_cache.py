"""Stored predictions: a trained predictor bundle's prediction for one ONNX graph.

A prediction is a pure function of the bundle (``Predictor.bundle_sha256``), the ONNX file
(its artifact hash) and the input shapes, so it is kept once computed and read back by every
coordinator process: the Pareto explorer's predicted points and the model page ask for the
same predictions on every load, and an archived ONNX in S3 would otherwise be fetched each
time. Rows are never updated; a new bundle (a rebuilt or resumed predictor) has a new hash.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, utcnow


class StoredPrediction(Base):
    __tablename__ = "stored_predictions"
    __table_args__ = (
        UniqueConstraint(
            "bundle_sha256", "onnx_sha256", "shapes_key", name="uq_stored_predictions_key"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    bundle_sha256: Mapped[str] = mapped_column(String(64))
    onnx_sha256: Mapped[str] = mapped_column(String(64), index=True)
    shapes_key: Mapped[str] = mapped_column(String(64), doc="hash of the fixed input shapes")
    latency_ms: Mapped[float] = mapped_column(Float)
    kernels: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    notes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
