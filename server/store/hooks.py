"""What happens after a job of a given kind finishes: one registry, filled by the feature
that owns the kind (benchmarks need nothing; a latency table advances its build)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from db.models import Job, Result

JobHook = Callable[[Session, Job, Result | None], None]
_HOOKS: dict[str, JobHook] = {}


def on_job_finished(kind: str) -> Callable[[JobHook], JobHook]:
    """Decorator: call ``fn(session, job, result)`` in the same transaction when a job of
    ``kind`` ends (result is None when it failed without a report, e.g. leases ran out)."""

    def register(fn: JobHook) -> JobHook:
        _HOOKS[kind] = fn
        return fn

    return register


def job_finished(session: Session, job: Job, result: Result | None) -> None:
    hook = _HOOKS.get(job.kind)
    if hook is not None:
        hook(session, job, result)
