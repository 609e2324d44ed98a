"""Request dependencies: the database session, the artifact store, the caller's token."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from db.models import ApiToken
from server.artifacts import ArtifactStore
from server.config import Settings
from server.store.tokens import find_token


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ArtifactStore


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.latencylab
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
    """One session per request, committed after the route returns and before the response."""
    session = state.sessions()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="An API token: Authorization: Bearer <token>")


def get_token(
    session: SessionDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiToken:
    if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing bearer token: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    token = find_token(session, creds.credentials)
    if token is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "invalid or revoked token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token


def require(*scopes: str) -> Callable[[ApiToken], ApiToken]:
    """A dependency that admits tokens of the given scopes (admin is always admitted)."""

    def check(token: Annotated[ApiToken, Depends(get_token)]) -> ApiToken:
        if token.scope != "admin" and token.scope not in scopes:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"this route needs a token with scope {' or '.join(scopes) or 'admin'}; "
                f"yours has scope '{token.scope}'",
            )
        return token

    return check


AnyToken = Annotated[ApiToken, Depends(get_token)]
CurrentUser = Annotated[ApiToken, Depends(require("user"))]
CurrentAgent = Annotated[ApiToken, Depends(require("agent"))]
CurrentAdmin = Annotated[ApiToken, Depends(require())]
