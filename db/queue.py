"""What the lease statement matches: each job's queue key and each device's terms.

A job's device selector and runtime are normalized once, at enqueue, into a *queue key*: the
set of ``(key, value)`` terms a device must offer to take it (``server.queue.terms``). Jobs
with the same selector and runtime share one key, so the lease statement checks each
distinct key once, in the database, however many jobs are queued. A device's terms are
written when it registers.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base

TERM_LEN = 200
"""Longest key or value of a term (a selector is at most 200 characters)."""


class QueueKey(Base):
    __tablename__ = "queue_keys"
    __table_args__ = (UniqueConstraint("selector", "runtime", name="uq_queue_keys_selector"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    selector: Mapped[str] = mapped_column(String(200))
    runtime: Mapped[str] = mapped_column(String(64))


class QueueKeyTerm(Base):
    """One term a device must offer to take the jobs of ``queue_key_id``."""

    __tablename__ = "queue_key_terms"

    queue_key_id: Mapped[int] = mapped_column(
        ForeignKey("queue_keys.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(TERM_LEN), primary_key=True)
    value: Mapped[str] = mapped_column(String(TERM_LEN), primary_key=True)


class DeviceTerm(Base):
    """One term a device offers (its name, class, runtimes, attributes, info, ``local``)."""

    __tablename__ = "device_terms"

    device_id: Mapped[int] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(TERM_LEN), primary_key=True)
    value: Mapped[str] = mapped_column(String(TERM_LEN), primary_key=True)
