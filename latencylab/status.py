"""The job statuses: one typed enum for the coordinator, its store and the wire schemas.

The values are the wire contract (``queued``, ``running``, ``succeeded``, ``failed``, plus
``waiting`` and ``cancelled``); a ``StrEnum`` compares and serializes as its value.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    waiting = "waiting"
    """A benchmark job whose artifact is still being converted (released when it is)."""
    queued = "queued"
    """Waiting for a device that may take it."""
    running = "running"
    """Leased by one device, whose lease expires without heartbeats."""
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    """Stopped before it ran, e.g. its model was deleted."""

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled})
UNFINISHED = frozenset({JobStatus.waiting, JobStatus.queued, JobStatus.running})
