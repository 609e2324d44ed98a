"""The coordinator application: ``create_app()`` wires settings, store, routes and web."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import anyio.to_thread
from fastapi import APIRouter, FastAPI
from sqlalchemy.orm import Session, sessionmaker

from db.engine import make_engine
from db.migrate import advisory_xact_lock, upgrade
from latencylab import __version__
from server.artifacts import ArtifactStore
from server.config import Settings, get_settings
from server.errors import install_handlers
from server.openapi import install_openapi
from server.routes import (
    agents,
    artifacts,
    benchmarks,
    conversions,
    devices,
    gc,
    health,
    models,
    pareto,
    predictors,
    presets,
    tables,
    tokens,
    transfers,
)
from server.storage import open_store
from server.store.gc import collect_garbage
from server.store.tokens import create_token, find_token
from server.web import mount_web
from server.wiring import job_kinds, make_state, pool_options, queue_listener, reap

log = logging.getLogger("latencylab.server")
ADMIN_TOKEN_LOCK = "latencylab.admin-token"

DESCRIPTION = """LatencyLab coordinator: upload models, queue benchmarks on registered devices,
read latency and memory measurements back. Every route but `/api/v1/health` needs
`Authorization: Bearer <token>` (scopes: admin, user, agent)."""


def ensure_admin_token(sessions: sessionmaker[Session], path: Path) -> str:
    """Reuse the admin token in ``path`` if it is still valid, else create and write one.

    Processes starting at once (``--workers``, replicas sharing a data dir) take turns through
    a PostgreSQL advisory lock held until the commit: the next one finds the token written."""
    with sessions() as session:
        advisory_xact_lock(session.connection(), ADMIN_TOKEN_LOCK)
        if path.is_file():
            plain = path.read_text().strip()
            if plain and (tok := find_token(session, plain)) is not None and tok.scope == "admin":
                return plain
        _, plain = create_token(session, "admin", "admin (bootstrap)")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".admin-token-")
        with os.fdopen(fd, "w") as fh:  # mkstemp: mode 0600
            fh.write(plain + "\n")
        os.replace(tmp, path)  # a reader never sees half a token
        session.commit()
    return plain


def _collector(
    sessions: sessionmaker[Session], store: ArtifactStore, settings: Settings, stop: threading.Event
) -> None:
    while not stop.wait(settings.gc_interval_s):
        try:
            collect_garbage(sessions, store, settings.gc_grace_s)
        except Exception:  # keep collecting; a transient DB error must not kill the thread
            log.exception("artifact garbage collection failed")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.resolved_database_url, pool_options(settings))
        upgrade(engine)
        store = open_store(settings)
        store.clean_tmp()
        # The kinds of job, built here and passed in: no hook registers itself on import.
        state = make_state(settings, engine, store, job_kinds())
        sessions = state.sessions
        if settings.write_admin_token:
            ensure_admin_token(sessions, settings.data_dir / "admin.token")
        app.state.latencylab = state
        state.signal.bind(asyncio.get_running_loop())
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        stop = threading.Event()
        reaper = threading.Thread(target=reap, args=(state, stop), daemon=True, name="reaper")
        reaper.start()
        threads = [reaper]
        if (listener := queue_listener(state)) is not None:  # other replicas' jobs wake us
            listening = threading.Thread(
                target=listener.run, args=(stop,), daemon=True, name="queue-listener"
            )
            listening.start()
            threads.append(listening)
        if settings.gc_interval_s > 0:
            collector = threading.Thread(
                target=_collector, args=(sessions, store, settings, stop), daemon=True
            )
            collector.start()
            threads.append(collector)
        try:
            yield
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=5)
            engine.dispose()

    app = FastAPI(
        title="LatencyLab",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/api/v1/openapi.json",
    )

    install_handlers(app)
    install_openapi(app)

    api = APIRouter(prefix="/api/v1")
    for module in (
        health,
        models,
        benchmarks,
        devices,
        agents,
        transfers,
        artifacts,
        gc,
        tokens,
        pareto,
        presets,
        conversions,
        tables,
        predictors,
    ):
        api.include_router(module.router)
    app.include_router(api)
    mount_web(app)
    return app
