"""Kernel-level latency predictors: the build, its measured samples and validation networks.

Samples are shared between builds: one row per kernel configuration key and measurement
scope (device, runtime, precision, batch size, threads and a hash of the measurement
settings), so a new or resumed build reuses every sample already measured in that scope.
``PredictorLink`` says which samples a build uses, and in which stage.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, deferred, mapped_column

from db.base import Base, utcnow


class Predictor(Base):
    """A predictor build for one device and setting; ``status`` building -> succeeded | failed,
    ``phase`` discovery -> initial -> refine -> calibrate -> validate -> done."""

    __tablename__ = "predictors"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    device_name: Mapped[str] = mapped_column(String(200))
    device_selector: Mapped[str] = mapped_column(String(200))
    runtime: Mapped[str] = mapped_column(String(32))
    precision: Mapped[str] = mapped_column(String(8))
    batch_size: Mapped[int] = mapped_column(Integer)
    threads: Mapped[int] = mapped_column(Integer)
    scope_key: Mapped[str] = mapped_column(String(64), doc="hash of the kernel settings")
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="building", index=True)
    phase: Mapped[str] = mapped_column(String(16), default="discovery")
    round: Mapped[int] = mapped_column(Integer, default=0)
    fusion_rules: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    bundle_json: Mapped[str | None] = deferred(mapped_column(Text, default=None))
    bundle_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    accuracy: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    accuracy_uncalibrated: Mapped[dict[str, Any] | None] = mapped_column(
        default=None, doc="the validation score of the predictions before calibration"
    )
    calibration: Mapped[dict[str, Any] | None] = mapped_column(
        default=None, doc="latencylab.predictors.CalibrationReport"
    )
    bias: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    samples_reused: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    owner_token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class PredictorSample(Base):
    """One kernel model (or fusion probe) measured in one scope; ``status`` pending -> queued
    -> succeeded | failed. ``single_*``: the same model measured alone (the bias check)."""

    __tablename__ = "predictor_samples"
    __table_args__ = (
        UniqueConstraint(
            "device_id",
            "runtime",
            "precision",
            "batch_size",
            "threads",
            "scope_key",
            "key",
            name="uq_predictor_samples_scope_key",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"))
    runtime: Mapped[str] = mapped_column(String(32))
    precision: Mapped[str] = mapped_column(String(8))
    batch_size: Mapped[int] = mapped_column(Integer)
    threads: Mapped[int] = mapped_column(Integer)
    scope_key: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(500))
    kind: Mapped[str] = mapped_column(String(16), default="kernel", doc="kernel | probe")
    type: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), default=None, index=True)
    mean_ms: Mapped[float | None] = mapped_column(Float, default=None)
    p50_ms: Mapped[float | None] = mapped_column(Float, default=None)
    min_ms: Mapped[float | None] = mapped_column(Float, default=None)
    runs: Mapped[int | None] = mapped_column(Integer, default=None)
    times_ms: Mapped[list[Any]] = deferred(mapped_column(JSON, default=list, nullable=False))
    layout_ms: Mapped[float | None] = mapped_column(
        Float, default=None, doc="time of the median in layout conversions (its profile)"
    )
    measured: Mapped[int] = mapped_column(Integer, default=0, doc="times a batch measured it")
    error: Mapped[str | None] = mapped_column(Text, default=None)
    single_status: Mapped[str | None] = mapped_column(String(16), default=None)
    single_job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id"), default=None, index=True
    )
    single_ms: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class PredictorLink(Base):
    """A sample a build uses: ``stage`` probe | initial | refine1 ... ; ``bias``: also
    measured alone for this build's bias check."""

    __tablename__ = "predictor_links"

    predictor_id: Mapped[int] = mapped_column(ForeignKey("predictors.id"), primary_key=True)
    sample_id: Mapped[int] = mapped_column(ForeignKey("predictor_samples.id"), primary_key=True)
    stage: Mapped[str] = mapped_column(String(16))
    bias: Mapped[bool] = mapped_column(default=False)


class PredictorNetwork(Base):
    """A whole network of a build, predicted then measured end to end: ``role`` calibration
    (the network-level calibration is fitted on it) or validation (the build is scored on
    it). ``terms``: its ``PredictorBundle.network_terms`` under the uncalibrated bundle."""

    __tablename__ = "predictor_networks"

    id: Mapped[int] = mapped_column(primary_key=True)
    predictor_id: Mapped[int] = mapped_column(ForeignKey("predictors.id"), index=True)
    idx: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    family: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16), default="validation", server_default="validation")
    predicted_ms: Mapped[float | None] = mapped_column(Float, default=None)
    predicted_uncalibrated_ms: Mapped[float | None] = mapped_column(Float, default=None)
    terms: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), default=None, index=True)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"), default=None)
    mean_ms: Mapped[float | None] = mapped_column(Float, default=None)
    p50_ms: Mapped[float | None] = mapped_column(Float, default=None)
    min_ms: Mapped[float | None] = mapped_column(Float, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
