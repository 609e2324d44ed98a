"""Apply the Alembic migrations (the coordinator does this on start).

Several coordinator processes may start at once on one PostgreSQL database (``latencylab serve
--workers N``, replicas on several hosts): ``upgrade`` holds a PostgreSQL advisory lock for
its transaction, so one process migrates while the others wait and then find the schema at
head. SQLite has one writer (and ``--workers`` > 1 is refused on it).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, text

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK = "latencylab.migrate"


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def advisory_xact_lock(conn: Connection, name: str) -> None:
    """Take the PostgreSQL advisory lock ``name`` until the current transaction ends (other
    processes taking it wait); nothing on SQLite, whose writers are serialized anyway."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(name)})


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema of ``engine``'s database to ``revision`` (one process at a time)."""
    cfg = alembic_config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # waiting for another process's migration, or
            # a long backfill, is not a stuck request: no lock or statement timeout here
            conn.execute(text("SET LOCAL lock_timeout = 0"))
            conn.execute(text("SET LOCAL statement_timeout = 0"))
        advisory_xact_lock(conn, MIGRATION_LOCK)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
