"""Conversions: one row per (source artifact, target, precision, batch size[, device])."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, utcnow


class Conversion(Base):
    __tablename__ = "conversions"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    source_sha256: Mapped[str] = mapped_column(ForeignKey("artifacts.sha256"))
    target: Mapped[str] = mapped_column(String(16))
    precision: Mapped[str] = mapped_column(String(8))
    batch_size: Mapped[int] = mapped_column(Integer)
    device_selector: Mapped[str] = mapped_column(String(200))
    reuse_key: Mapped[str] = mapped_column(String(128), index=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), default=None)
    artifact_sha256: Mapped[str | None] = mapped_column(
        ForeignKey("artifacts.sha256"), default=None
    )
    artifact_meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    validation: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    error: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    log_sha256: Mapped[str | None] = mapped_column(ForeignKey("artifacts.sha256"), default=None)
    seconds: Mapped[float | None] = mapped_column(Float, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
