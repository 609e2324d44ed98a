from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from latencylab import __version__
from latencylab.schemas import Health
from server.deps import SessionDep

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
def health(session: SessionDep) -> Health:
    """Liveness and database reachability; needs no token."""
    session.execute(text("SELECT 1"))
    return Health(status="ok", version=__version__, database=session.bind.dialect.name)  # type: ignore[union-attr]
