"""The coordinator application: ``create_app()`` wires settings, store, routes and web."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter, FastAPI
from sqlalchemy.orm import Session, sessionmaker

from db.engine import make_engine, make_session_factory
from db.migrate import upgrade
from latencylab import __version__
from server.artifacts import ArtifactStore
from server.config import Settings, get_settings
from server.deps import AppState
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
    presets,
    tables,
    tokens,
)
from server.store.gc import collect_garbage
from server.store.jobs import expire_leases
from server.store.tokens import create_token, find_token
from server.web import mount_web

log = logging.getLogger("latencylab.server")

DESCRIPTION = """LatencyLab coordinator: upload models, queue benchmarks on registered devices,
read latency and memory measurements back. Every route but `/api/v1/health` needs
`Authorization: Bearer <token>` (scopes: admin, user, agent)."""


def ensure_admin_token(sessions: sessionmaker[Session], path: Path) -> str:
    """Reuse the admin token in ``path`` if it is still valid, else create and write one."""
    with sessions() as session:
        if path.is_file():
            plain = path.read_text().strip()
            if plain and (tok := find_token(session, plain)) is not None and tok.scope == "admin":
                return plain
        _, plain = create_token(session, "admin", "admin (bootstrap)")
        session.commit()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(plain + "\n")
    return plain


def _reaper(sessions: sessionmaker[Session], interval: float, stop: threading.Event) -> None:
    while not stop.wait(interval):
        try:
            with sessions() as session:
                if expire_leases(session):
                    session.commit()
        except Exception:  # keep sweeping; a transient DB error must not kill the thread
            log.exception("lease reaper failed")


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
        engine = make_engine(settings.resolved_database_url)
        upgrade(engine)
        sessions = make_session_factory(engine)
        store = ArtifactStore(settings.artifacts_dir)
        store.clean_tmp()
        if settings.write_admin_token:
            ensure_admin_token(sessions, settings.data_dir / "admin.token")
        app.state.latencylab = AppState(settings, engine, sessions, store)
        stop = threading.Event()
        reaper = threading.Thread(
            target=_reaper, args=(sessions, settings.reaper_interval_s, stop), daemon=True
        )
        reaper.start()
        threads = [reaper]
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
        artifacts,
        gc,
        tokens,
        pareto,
        presets,
        conversions,
        tables,
    ):
        api.include_router(module.router)
    app.include_router(api)
    mount_web(app)
    return app
