"""Latency tables of NAS search spaces: the table, its block entries and its validation nets.

Block entries are shared between tables: one row per block key and measurement scope
(device, runtime, precision, batch size, threads), so a new or resumed build reuses every
block already measured in that scope.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, utcnow


class LatencyTable(Base):
    """A latency table of one space at one resolution for one device and setting."""

    __tablename__ = "latency_tables"

    id: Mapped[int] = mapped_column(primary_key=True)
    space: Mapped[str] = mapped_column(String(32))
    resolution: Mapped[int] = mapped_column(Integer)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    device_name: Mapped[str] = mapped_column(String(200))
    device_selector: Mapped[str] = mapped_column(String(200))
    runtime: Mapped[str] = mapped_column(String(32))
    precision: Mapped[str] = mapped_column(String(8))
    batch_size: Mapped[int] = mapped_column(Integer)
    threads: Mapped[int] = mapped_column(Integer)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="building", index=True)
    blocks_total: Mapped[int] = mapped_column(Integer, default=0)
    blocks_reused: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    quality: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    calibration: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    owner_token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    blocks_finished_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class TableEntry(Base):
    """One block measured in one scope; ``status`` pending -> queued -> succeeded | failed."""

    __tablename__ = "table_entries"
    __table_args__ = (
        UniqueConstraint(
            "device_id",
            "runtime",
            "precision",
            "batch_size",
            "threads",
            "block_key",
            name="uq_table_entries_scope_key",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"))
    runtime: Mapped[str] = mapped_column(String(32))
    precision: Mapped[str] = mapped_column(String(8))
    batch_size: Mapped[int] = mapped_column(Integer)
    threads: Mapped[int] = mapped_column(Integer)
    block_key: Mapped[str] = mapped_column(String(300))
    block: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), default=None, index=True)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"), default=None)
    mean_ms: Mapped[float | None] = mapped_column(Float, default=None)
    p50_ms: Mapped[float | None] = mapped_column(Float, default=None)
    min_ms: Mapped[float | None] = mapped_column(Float, default=None)
    var_ms2: Mapped[float | None] = mapped_column(Float, default=None)
    count: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class TableNetwork(Base):
    """A whole sampled network of a table's validation, measured end to end."""

    __tablename__ = "table_networks"

    id: Mapped[int] = mapped_column(primary_key=True)
    table_id: Mapped[int] = mapped_column(ForeignKey("latency_tables.id"), index=True)
    idx: Mapped[int] = mapped_column(Integer)
    arch: Mapped[dict[str, Any]] = mapped_column(default=dict)
    lut_sum_ms: Mapped[float | None] = mapped_column(Float, default=None)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), default=None, index=True)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"), default=None)
    mean_ms: Mapped[float | None] = mapped_column(Float, default=None)
    p50_ms: Mapped[float | None] = mapped_column(Float, default=None)
    min_ms: Mapped[float | None] = mapped_column(Float, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
