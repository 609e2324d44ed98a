"""Engine and session factory for SQLite (WAL, embedded default) and PostgreSQL.

SQLite has one writer at a time. A transaction that reads first and writes later (a
"deferred" one) fails at once with ``database is locked`` when another writer committed in
between, whatever the busy timeout; so every transaction here begins ``IMMEDIATE`` (it waits
up to the lock timeout for the write lock, then holds it), except those of engines made with
``read_only(engine)``, which begin deferred and never block writers (WAL).

PostgreSQL gets a sized pool (a request that waits longer than ``pool_timeout`` for a
connection fails with ``sqlalchemy.exc.TimeoutError``: the coordinator answers 503) and
per-connection ``statement_timeout`` and ``lock_timeout``. A connection is not pinged before
each use (that would be one more round trip per request): a connection found dead -- the
server restarted -- fails its request (the coordinator answers 503 with ``Retry-After``) and
SQLAlchemy then discards every connection of the pool opened before it, so the next checkouts
connect afresh; ``recycle_s`` replaces connections before server- or network-side idle limits
close them.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

READ_ONLY = "latencylab_read_only"
"""Execution option: begin SQLite transactions deferred (reads that never block writers)."""


@dataclass(frozen=True)
class PoolOptions:
    """How many connections, how long to wait for one, for a lock, for a statement."""

    size: int = 10
    max_overflow: int = 20
    timeout_s: float = 5.0
    lock_timeout_s: float = 10.0
    statement_timeout_s: float = 60.0
    recycle_s: float = 1800.0


def _sqlite(url: str, pool: PoolOptions, kwargs: dict[str, Any]) -> Engine:
    path = make_url(url).database
    memory = not path or path == ":memory:" or path.startswith("file::memory:")
    if path and not memory:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    sizing: dict[str, Any] = (
        {"poolclass": StaticPool}  # one shared connection: the database lives in it
        if memory
        else {
            "pool_size": pool.size,
            "max_overflow": pool.max_overflow,
            "pool_timeout": pool.timeout_s,
        }
    )
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": pool.lock_timeout_s},
        **{**sizing, **kwargs},
    )
    busy_ms = int(pool.lock_timeout_s * 1000)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # the driver's own BEGIN is off: ours is below
        cur = dbapi_conn.cursor()
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={busy_ms}")
            cur.execute("PRAGMA synchronous=NORMAL")
        finally:
            cur.close()

    writer = None if memory else _WriterLock(pool.lock_timeout_s)

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        if conn.get_execution_options().get(READ_ONLY, False):
            conn.exec_driver_sql("BEGIN")
            return
        if writer is not None:
            writer.acquire(conn.connection.dbapi_connection)
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    if writer is not None:  # the write transaction ended: its connection goes back to the pool
        event.listen(engine.pool, "checkin", lambda dbapi, _rec: writer.release(dbapi))
        event.listen(engine.pool, "invalidate", lambda dbapi, _rec, _exc: writer.release(dbapi))

    return engine


class _WriterLock:
    """This engine's SQLite writers, one at a time, in this process.

    SQLite's busy handler polls with sleeps growing to 100 ms, so under many writers the lock
    sits free while they sleep and an unlucky one waits out the whole timeout. Here they queue
    on a lock handed over at once; it is taken before ``BEGIN IMMEDIATE`` and given back when
    the connection returns to the pool (after its commit or rollback). Other processes still
    meet SQLite's own lock and busy timeout."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._holder: Any = None

    def acquire(self, dbapi_conn: Any) -> None:
        if self._holder is dbapi_conn:  # a second transaction on the same checkout
            return
        if not self._lock.acquire(timeout=self.timeout_s):
            raise OperationalError(
                "BEGIN IMMEDIATE",
                None,
                sqlite3.OperationalError(
                    f"database is locked (no write turn within {self.timeout_s:g} s)"
                ),
            )
        self._holder = dbapi_conn

    def release(self, dbapi_conn: Any) -> None:
        if dbapi_conn is not None and self._holder is dbapi_conn:
            self._holder = None
            self._lock.release()


def make_engine(url: str, pool: PoolOptions | None = None, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys, a busy timeout and immediate write
    transactions; PostgreSQL a sized pool and statement/lock timeouts."""
    pool = pool or PoolOptions()
    if url.startswith("sqlite"):
        return _sqlite(url, pool, kwargs)
    options = (
        f"-c statement_timeout={int(pool.statement_timeout_s * 1000)} "
        f"-c lock_timeout={int(pool.lock_timeout_s * 1000)}"
    )
    args: dict[str, Any] = {
        "pool_recycle": pool.recycle_s,
        "pool_size": pool.size,
        "max_overflow": pool.max_overflow,
        "pool_timeout": pool.timeout_s,
        "connect_args": {"options": options},
    }
    return create_engine(url, **{**args, **kwargs})


def read_only(engine: Engine) -> Engine:
    """The same engine and pool, whose SQLite transactions begin deferred (for reads)."""
    return engine.execution_options(**{READ_ONLY: True})


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
