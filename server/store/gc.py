"""Garbage collection of the artifact store: files and rows nothing needs any more.

An artifact's *file* is needed while something live names it:

* a user model that is not deleted (``models.sha256``),
* a conversion's output or log whose source is such a model's file (conversions belong to the
  source bytes: duplicates of a model reuse them),
* a job that is not finished (``jobs.artifact_sha256``: an agent may still download it).

Models generated for latency tables (kind ``block``/``network``) need their files only while
their jobs run: the measurements live on in the table's rows, so a 100-network validation no
longer keeps its networks on disk. An artifact's *row* stays while any row still names it
(models, jobs, conversions: foreign keys); a row whose file went is marked ``purged_at``.

Each artifact is collected in its own short transaction whose first statement is the
conditional DELETE or UPDATE itself, re-checking age and references while it holds the row
(see ``server.store.artifacts`` for the writers' side), and the file is removed before that
transaction commits. Artifacts used within the grace period are never touched: an agent uploads
a converted file and reports the conversion that names it in a second request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, aliased, sessionmaker

from db.conversions import Conversion
from db.models import Artifact, Job, Model, utcnow
from latencylab.schemas import GcReport
from latencylab.status import UNFINISHED
from server.artifacts import ArtifactStore

log = logging.getLogger("latencylab.gc")


def named_by_any_row(sha: Any) -> ColumnElement[bool]:
    """Some row refers to the artifact (the foreign keys that keep its row)."""
    return or_(
        exists().where(Model.sha256 == sha),
        exists().where(Job.artifact_sha256 == sha),
        exists().where(
            or_(
                Conversion.source_sha256 == sha,
                Conversion.artifact_sha256 == sha,
                Conversion.log_sha256 == sha,
            )
        ),
    )


def needed(sha: Any) -> ColumnElement[bool]:
    """Something live needs the artifact's file (see the module docstring)."""
    source = aliased(Model)
    live_source = exists().where(
        source.sha256 == Conversion.source_sha256,
        source.kind == "user",
        source.deleted_at.is_(None),
    )
    return or_(
        exists().where(Model.sha256 == sha, Model.kind == "user", Model.deleted_at.is_(None)),
        exists().where(Job.artifact_sha256 == sha, Job.status.in_(sorted(UNFINISHED))),
        exists().where(
            or_(Conversion.artifact_sha256 == sha, Conversion.log_sha256 == sha), live_source
        ),
    )


def _unused_since(cutoff: Any) -> ColumnElement[bool]:
    return func.coalesce(Artifact.used_at, Artifact.created_at) < cutoff


def _collect_one(session: Session, store: ArtifactStore, sha: str, cutoff: Any) -> tuple[int, int]:
    """``(rows deleted, bytes freed or -1)`` for one artifact; the caller commits."""
    old = _unused_since(cutoff)
    gone = session.execute(
        delete(Artifact)
        .where(Artifact.sha256 == sha, old, ~named_by_any_row(Artifact.sha256))
        .execution_options(synchronize_session=False)
    )
    if gone.rowcount == 1:  # type: ignore[attr-defined]
        return 1, store.delete(sha)
    purged = session.execute(
        update(Artifact)
        .where(
            Artifact.sha256 == sha,
            Artifact.purged_at.is_(None),
            old,
            ~needed(Artifact.sha256),
        )
        .values(purged_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if purged.rowcount == 1:  # type: ignore[attr-defined]
        return 0, store.delete(sha)
    return 0, -1


def _candidates(session: Session, cutoff: Any, only: list[str] | None) -> list[str]:
    q = select(Artifact.sha256).where(
        _unused_since(cutoff),
        or_(
            ~named_by_any_row(Artifact.sha256),
            and_(Artifact.purged_at.is_(None), ~needed(Artifact.sha256)),
        ),
    )
    if only is not None:
        q = q.where(Artifact.sha256.in_(only))
    return list(session.scalars(q.order_by(Artifact.sha256)))


def _orphans(session: Session, store: ArtifactStore, cutoff_ts: float) -> list[str]:
    """Stored hashes no row knows (left by a crash), last written before the cutoff."""
    found = list(store.stored_before(cutoff_ts))
    known: set[str] = set()
    for i in range(0, len(found), 500):
        batch = found[i : i + 500]
        known.update(session.scalars(select(Artifact.sha256).where(Artifact.sha256.in_(batch))))
    return [sha for sha in found if sha not in known]


def _collect_orphan(session: Session, store: ArtifactStore, sha: str) -> int:
    """Remove an orphan file while holding its hash with a placeholder row: an upload of the
    same bytes in flight has inserted its row (the insert here fails, the file stays) or waits
    for this transaction (and then puts its own file in place)."""
    size = store.size(sha)
    if size is None:
        return -1
    session.add(Artifact(sha256=sha, size=size, format="orphan", purged_at=utcnow()))
    session.flush()
    freed = store.delete(sha)
    session.execute(delete(Artifact).where(Artifact.sha256 == sha))
    return freed


def collect_garbage(
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    grace_s: float,
    only: Iterable[str] | None = None,
) -> GcReport:
    """Collect what nothing needs and nobody used within ``grace_s`` seconds; ``only``
    restricts it to those hashes (after a model delete) and skips the scan for orphan files."""
    now = utcnow()
    cutoff = now - timedelta(seconds=grace_s)
    wanted = sorted(set(only)) if only is not None else None
    rows = files = freed = 0
    with sessions() as session:
        shas = _candidates(session, cutoff, wanted) if wanted != [] else []
        orphans = [] if wanted is not None else _orphans(session, store, time.time() - grace_s)
    work = [(sha, False) for sha in shas] + [(sha, True) for sha in orphans]
    for sha, orphan in work:
        with sessions() as session:
            try:
                if orphan:
                    deleted, size = 0, _collect_orphan(session, store, sha)
                else:
                    deleted, size = _collect_one(session, store, sha, cutoff)
                session.commit()
            except (IntegrityError, OperationalError) as exc:  # a reference or upload came
                session.rollback()
                log.info("artifact %s not collected: %s", sha, type(exc).__name__)
                continue
        rows += deleted
        if size >= 0:
            files += 1
            freed += size
    if files:
        log.info("collected %d artifact file(s), %d row(s), %d bytes", files, rows, freed)
    return GcReport(artifacts_deleted=rows, files_deleted=files, bytes_freed=freed)
