"""Artifact rows: recording the files uploads and agents store, and claiming existing ones.

A writer *claims* an artifact (``used_at`` = now, ``purged_at`` cleared) in its transaction
before it relies on the file, and keeps the claim (a row lock on PostgreSQL, the write lock on
SQLite) until it commits. Garbage collection (``server.store.gc``) re-checks ``used_at`` in the
same statement that deletes or purges a row, so it can never take a file from under a writer:
either the writer's claim comes first and the collector skips the row, or the collector
finishes first and the writer, finding no row (or a purged one), puts its own file in place.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import Artifact, utcnow
from server.artifacts import Pending


def claim(session: Session, sha256: str, *, purged_ok: bool = True) -> bool:
    """Mark the artifact used now (and, where ``purged_ok``, no longer purged: the caller puts
    the file back). False when there is no row, or the file was purged and not ``purged_ok``."""
    q = update(Artifact).where(Artifact.sha256 == sha256)
    if not purged_ok:
        q = q.where(Artifact.purged_at.is_(None))
    res = session.execute(
        q.values(used_at=utcnow(), purged_at=None).execution_options(synchronize_session=False)
    )
    return res.rowcount == 1  # type: ignore[attr-defined]


def add_artifact(session: Session, pending: Pending, fmt: str) -> tuple[str, int, bool]:
    """File the streamed upload under its hash and record it (once).

    The row is claimed (or inserted) *before* the file moves into place, so a concurrent
    garbage collection either sees the claim or is done before the file is put back.
    Returns ``(sha256, size, created)``; ``created`` is False when the bytes were stored before.
    """
    size = pending.size
    pending.close()  # the last flush may fail (full disk): before anything is recorded
    sha = pending.sha256
    if not claim(session, sha):
        try:
            with session.begin_nested():
                session.add(Artifact(sha256=sha, size=size, format=fmt))
        except IntegrityError:  # a concurrent upload of the same bytes inserted it first
            claim(session, sha)
    sha, created = pending.commit()
    return sha, size, created
