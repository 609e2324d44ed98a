"""Request dependencies: the database session, the artifact store, the caller's token."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Annotated

import anyio.to_thread
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from db.engine import READ_ONLY
from db.models import ApiToken
from latencylab.errors import ErrorCode
from server.artifacts import ArtifactStore
from server.config import Settings
from server.errors import ApiError
from server.queue.kinds import Clock, JobContext, JobKinds
from server.queue.signal import QueueSignal
from server.queue.statements import TOKEN_BY_HASH
from server.security import hash_token

log = logging.getLogger("latencylab.server")


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ArtifactStore
    kinds: JobKinds
    clock: Clock
    signal: QueueSignal
    read_sessions: sessionmaker[Session]
    """Sessions whose SQLite transactions begin deferred: for GET/HEAD requests."""
    ends: anyio.CapacityLimiter
    """Threads that end request transactions (commit, rollback), apart from request threads."""

    def context(self, session: Session) -> JobContext:
        """What the job lifecycle and its kinds' hooks get for ``session``'s transaction."""
        return JobContext(session, self.kinds, self.store, self.settings, self.clock)


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.latencylab
    return state


StateDep = Annotated[AppState, Depends(get_state)]


_SQLITE_FULL = 13  # sqlite3.SQLITE_FULL: the database file's disk is full
_PG_DISK_FULL = "53100"  # SQLSTATE disk_full


def database_error(exc: OperationalError | PoolTimeout, retry_after_s: int) -> ApiError:
    """A failing database is a response, never a reset connection or a bare 500: its disk
    full is a 507 (like a full artifact store), anything else (the server gone, a lock or a
    statement timing out, no free connection in the pool, a deadlock) a 503 to retry after
    ``retry_after_s``. Nothing was changed: the transaction is rolled back."""
    if isinstance(exc, PoolTimeout):
        return ApiError(
            503,
            ErrorCode.unavailable,
            "the coordinator is saturated (no free database connection); nothing was "
            f"changed, retry in {retry_after_s} s",
            headers={"Retry-After": str(retry_after_s)},
        )
    orig = exc.orig
    disk_full = (getattr(orig, "sqlite_errorcode", 0) or 0) & 0xFF == _SQLITE_FULL or (
        getattr(orig, "sqlstate", None) == _PG_DISK_FULL
    )
    if disk_full:
        return ApiError(
            507,
            ErrorCode.insufficient_storage,
            "the server is out of disk space (its database cannot be written); nothing was changed",
        )
    return ApiError(
        503,
        ErrorCode.unavailable,
        f"the database cannot be written or read ({type(orig).__name__}); nothing was "
        f"changed, retry in {retry_after_s} s",
        headers={"Retry-After": str(retry_after_s)},
    )


def commit(session: Session, state: AppState) -> None:
    """Commit ``session`` now, on the route's own thread: what the agent protocol's routes do
    once their answer is built, so SQLite's write lock is given back before the request
    returns to the event loop (under load a round trip there can take long); ``get_session``'s
    own commit then has nothing left to do. A database that fails is the 503/507 of
    ``database_error``."""
    try:
        session.commit()
    except (OperationalError, PoolTimeout) as exc:
        _rollback(session)
        raise database_error(exc, state.settings.retry_after_s) from exc


async def get_session(request: Request, state: StateDep) -> AsyncIterator[Session]:
    """One session per request, committed after the route returns and before the response
    (``scope="function"``), so a failing commit still becomes the request's error response,
    and so does a database error anywhere in the request (503 with ``Retry-After``). A GET or
    HEAD reads through ``read_sessions`` (on SQLite: not holding the write lock).

    The commit (or rollback) runs on threads of its own (``AppState.ends``), not the request
    threads: a transaction holding SQLite's write lock always gets a thread to end it, even
    while every request thread waits for that lock."""
    reading = request.method in ("GET", "HEAD")
    session = (state.read_sessions if reading else state.sessions)()

    async def end(fn: Callable[[], None]) -> None:
        await anyio.to_thread.run_sync(fn, limiter=state.ends)

    try:
        yield session
        if session.in_transaction():  # the agent routes commit themselves: no hop then
            await end(session.commit)
    except (OperationalError, PoolTimeout) as exc:
        await end(partial(_rollback, session))
        raise database_error(exc, state.settings.retry_after_s) from exc
    except BaseException:
        await end(partial(_rollback, session))
        raise
    finally:
        if session.in_transaction():
            await end(session.close)
        else:  # no transaction, no connection: closing is bookkeeping, not I/O
            session.close()


def _rollback(session: Session) -> None:
    try:
        session.rollback()
    except SQLAlchemyError:  # the connection is gone: closing the session discards it
        log.warning("rollback failed", exc_info=True)


SessionDep = Annotated[Session, Depends(get_session, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="An API token: Authorization: Bearer <token>")


_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _missing() -> ApiError:
    return ApiError(
        status.HTTP_401_UNAUTHORIZED,
        ErrorCode.token_missing,
        "missing bearer token: send 'Authorization: Bearer <token>'",
        headers=_CHALLENGE,
    )


async def bearer_secret(
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The bearer secret the caller sent (no database): 401 ``token_missing`` without one.
    For routes that look the token up themselves, in their own transaction (``authorize``)."""
    if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
        raise _missing()
    return creds.credentials


def authorize(session: Session, plain: str, scopes: tuple[str, ...]) -> ApiToken:
    """The active token of ``plain`` admitted to ``scopes`` (admin always is): one indexed
    read in the caller's transaction, then ``admit``."""
    return admit(session.scalar(TOKEN_BY_HASH, {"p_hash": hash_token(plain)}), scopes)


def admit(token: ApiToken | None, scopes: tuple[str, ...]) -> ApiToken:
    """``token`` (the row of the secret sent, or None) if it may call a route of ``scopes``:
    401 ``token_invalid`` for a token never issued, ``token_revoked`` for a revoked one
    (checked on every request), 403 for another scope."""
    if token is None:
        raise ApiError(
            status.HTTP_401_UNAUTHORIZED,
            ErrorCode.token_invalid,
            "unknown token: it was never issued by this coordinator (check for a typo or a "
            "token of another server)",
            headers=_CHALLENGE,
        )
    if token.revoked_at is not None:
        raise ApiError(
            status.HTTP_401_UNAUTHORIZED,
            ErrorCode.token_revoked,
            f"token {token.id} ('{token.name}') was revoked at "
            f"{token.revoked_at.isoformat(timespec='seconds')}Z; ask an admin for a new one",
            headers=_CHALLENGE,
        )
    return in_scope(token, scopes)


def in_scope(token: ApiToken, scopes: tuple[str, ...]) -> ApiToken:
    """``token`` if its scope may call a route of ``scopes`` (admin always may), else 403."""
    if token.scope != "admin" and token.scope not in scopes:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"this route needs a token with scope {' or '.join(scopes) or 'admin'}; "
            f"yours has scope '{token.scope}'",
        )
    return token


def get_token(
    session: SessionDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiToken:
    """The caller's active token: 401 ``token_missing`` without one, ``token_invalid`` for a
    token never issued, ``token_revoked`` for a revoked one (checked on every request)."""
    if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
        raise _missing()
    session.connection(execution_options={READ_ONLY: True})  # a read: no SQLite write lock
    token = authorize(session, creds.credentials, ("admin", "user", "agent"))
    # The lookup is a transaction of its own: a route that streams an upload or long-polls
    # next holds no connection (and, on SQLite, no write lock) meanwhile.
    session.commit()
    return token


def require(*scopes: str) -> Callable[[ApiToken], Awaitable[ApiToken]]:
    """A dependency that admits tokens of the given scopes (admin is always admitted)."""

    async def check(token: Annotated[ApiToken, Depends(get_token)]) -> ApiToken:
        return in_scope(token, scopes)

    return check


AnyToken = Annotated[ApiToken, Depends(get_token)]
CurrentUser = Annotated[ApiToken, Depends(require("user"))]
CurrentAgent = Annotated[ApiToken, Depends(require("agent"))]
CurrentAdmin = Annotated[ApiToken, Depends(require())]
AgentSecret = Annotated[str, Depends(bearer_secret)]
"""An agent route's bearer secret, checked by the route (``authorize`` / ``admit``) in the
transaction of its own work: one database transaction and one thread per request on the
agent hot path (lease, heartbeat, report)."""
AGENT = ("agent",)
