from __future__ import annotations

import os
import socket

from fastapi import APIRouter
from sqlalchemy import text

from latencylab import __version__
from latencylab.schemas import Health
from server.deps import SessionDep, StateDep

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
def health(session: SessionDep, state: StateDep) -> Health:
    """Liveness and database reachability; needs no token. ``pid`` and ``hostname`` name the
    process that answered (one of several behind a proxy or with ``--workers``)."""
    session.execute(text("SELECT 1"))
    return Health(
        status="ok",
        version=__version__,
        database=session.bind.dialect.name,  # type: ignore[union-attr]
        pid=os.getpid(),
        hostname=socket.gethostname(),
        artifact_store=state.store.kind,
    )
