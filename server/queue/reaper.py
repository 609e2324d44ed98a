"""The lease reaper: expired leases swept periodically, by one replica at a time."""

from __future__ import annotations

from sqlalchemy import text

from server.queue import lifecycle
from server.queue.kinds import JobContext

REAPER_LOCK = 0x4C4C5250
"""PostgreSQL advisory lock key of the sweep ("LLRP"): held for the sweep's transaction."""


def sweep(ctx: JobContext) -> int | None:
    """Expire what has run out; None when another replica is sweeping at this moment.

    On PostgreSQL the sweep takes a transaction-level advisory lock first (released at commit
    or rollback), so N replicas never sweep the same rows at once; SQLite has one writer."""
    if ctx.session.get_bind().dialect.name == "postgresql":
        got = ctx.session.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": REAPER_LOCK})
        if not got:
            return None
    return lifecycle.expire(ctx)
