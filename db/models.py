"""Typed SQLAlchemy 2.0 models of everything the coordinator stores.

Timestamps are naive UTC (``db.models.utcnow``) on both SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: DateTime()}


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Artifact(Base):
    """A content-addressed file in the artifact store."""

    __tablename__ = "artifacts"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Model(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    format: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(ForeignKey("artifacts.sha256"), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    inputs: Mapped[list[Any]] = mapped_column(default=list)
    outputs: Mapped[list[Any]] = mapped_column(default=list)
    opset: Mapped[int | None] = mapped_column(default=None)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    owner_token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    device_class: Mapped[str] = mapped_column("class", String(32))
    runtimes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"), default=None)
    registered_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)


class Benchmark(Base):
    __tablename__ = "benchmarks"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    owner_token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    jobs: Mapped[list[Job]] = relationship(back_populates="benchmark", order_by="Job.id")


class Job(Base):
    """One unit of work for one device: a benchmark target (later: a conversion, a table entry)."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), default="benchmark")
    benchmark_id: Mapped[int | None] = mapped_column(ForeignKey("benchmarks.id"), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    artifact_sha256: Mapped[str] = mapped_column(ForeignKey("artifacts.sha256"))
    runtime: Mapped[str] = mapped_column(String(32))
    device_selector: Mapped[str] = mapped_column(String(200))
    precision: Mapped[str] = mapped_column(String(8))
    batch_size: Mapped[int] = mapped_column(Integer)
    threads: Mapped[int] = mapped_column(Integer)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id"), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)

    benchmark: Mapped[Benchmark | None] = relationship(back_populates="jobs")
    device: Mapped[Device | None] = relationship()
    result: Mapped[Result | None] = relationship(back_populates="job", uselist=False)


class Result(Base):
    """The measurement a device reported for a job (one per job: reports are idempotent)."""

    __tablename__ = "results"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), unique=True)
    benchmark_id: Mapped[int | None] = mapped_column(ForeignKey("benchmarks.id"), index=True)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id"))
    device_name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text, default=None)
    latency: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    runs: Mapped[int] = mapped_column(Integer, default=0)
    stop_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    steady_duration_s: Mapped[float | None] = mapped_column(Float, default=None)
    load_ms: Mapped[float | None] = mapped_column(Float, default=None)
    first_inference_ms: Mapped[float | None] = mapped_column(Float, default=None)
    memory: Mapped[dict[str, Any]] = mapped_column(default=dict)
    environment: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    job: Mapped[Job] = relationship(back_populates="result")


class ResultSeries(Base):
    """Bulky per-result data kept apart from the result row: raw times and the layer profile."""

    __tablename__ = "result_series"

    result_id: Mapped[int] = mapped_column(ForeignKey("results.id"), primary_key=True)
    times_ms: Mapped[list[Any]] = mapped_column(default=list)
    warmup_ms: Mapped[list[Any]] = mapped_column(default=list)
    profile: Mapped[list[Any]] = mapped_column(default=list)
