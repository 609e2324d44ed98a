"""Artifact rows for files that agents produce (converted models, logs)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import Artifact
from server.artifacts import PendingFile


def add_artifact(session: Session, pending: PendingFile, fmt: str) -> tuple[str, int, bool]:
    """File the streamed upload under its hash and record it (once).

    Returns ``(sha256, size, created)``; ``created`` is False when the bytes were stored before.
    """
    size = pending.size
    sha, created = pending.commit()
    if session.get(Artifact, sha) is None:
        try:
            with session.begin_nested():
                session.add(Artifact(sha256=sha, size=size, format=fmt))
        except IntegrityError:  # a concurrent upload of the same bytes inserted it first
            pass
    return sha, size, created
