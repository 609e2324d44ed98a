"""Job kinds and the context their hooks run in.

The lifecycle (``server.queue.lifecycle``) owns every state transition; a job *kind*
(benchmark, convert, table_block, table_network, ...) adds what is particular to it through a
``JobKind``: what the lease answer carries, what happens when one of its jobs is leased and
when it ends. Hooks run inside the transition's transaction, with everything they need in an
explicit ``JobContext`` (session, artifact store, settings, clock): no process-global state,
so an orchestration step (a conversion releasing its waiting benchmarks, a table build
queueing its next block) is driven by database state in whichever process handles the
request, and survives a restart. The registry (``JobKinds``) is built once at app start
(``server.app.create_app``) and passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from db.models import Job, Result, utcnow
from server.artifacts import ArtifactStore
from server.config import Settings


class Clock(Protocol):
    """Where the lifecycle reads the time: naive UTC, like every stored timestamp."""

    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return utcnow()


class JobKind(Protocol):
    """What one kind of job adds to the lifecycle (every method may do nothing)."""

    def on_leased(self, ctx: JobContext, job: Job) -> None:
        """The job was just leased (same transaction)."""

    def lease_extra(self, ctx: JobContext, job: Job) -> dict[str, Any]:
        """Fields of the lease answer (``LeasedJob``) particular to this kind."""
        return {}

    def on_finished(self, ctx: JobContext, job: Job, result: Result | None) -> None:
        """The job ended (succeeded, failed or cancelled; ``result`` None when it ended
        without a report, e.g. its leases ran out)."""


class PlainKind:
    """A kind with nothing to add (benchmark jobs)."""

    def on_leased(self, ctx: JobContext, job: Job) -> None:
        return None

    def lease_extra(self, ctx: JobContext, job: Job) -> dict[str, Any]:
        return {}

    def on_finished(self, ctx: JobContext, job: Job, result: Result | None) -> None:
        return None


class JobKinds:
    """The registry of kinds: built explicitly, looked up by ``Job.kind``."""

    def __init__(self, kinds: Mapping[str, JobKind]) -> None:
        self._kinds = dict(kinds)
        self._plain = PlainKind()

    def __getitem__(self, kind: str) -> JobKind:
        return self._kinds.get(kind, self._plain)

    def __contains__(self, kind: object) -> bool:
        return kind in self._kinds


@dataclass
class JobContext:
    """Everything a transition and its hooks may use; one per transaction."""

    session: Session
    kinds: JobKinds
    store: ArtifactStore
    settings: Settings
    clock: Clock

    def now(self) -> datetime:
        return self.clock.now()
