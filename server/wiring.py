"""Putting the coordinator's parts together at start: the database pool sized from the
settings, the registry of job kinds, the application state, the lease reaper's loop."""

from __future__ import annotations

import logging
import threading

import anyio
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from db.engine import PoolOptions, make_session_factory, read_only
from server.artifacts import ArtifactStore
from server.config import Settings
from server.deps import AppState
from server.queue import notify
from server.queue.kinds import Clock, JobKinds, SystemClock
from server.queue.lifecycle import QUEUED_FLAG
from server.queue.reaper import sweep
from server.queue.signal import QueueSignal
from server.store.conversions import BenchmarkKind, ConvertKind
from server.store.predictor_hooks import BatchKind, SingleKind, ValidationKind
from server.store.table_hooks import BlockKind, NetworkKind

log = logging.getLogger("latencylab.server")


def pool_options(settings: Settings) -> PoolOptions:
    return PoolOptions(
        size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        timeout_s=settings.db_pool_timeout_s,
        lock_timeout_s=settings.db_lock_timeout_s,
        statement_timeout_s=settings.db_statement_timeout_s,
    )


def job_kinds() -> JobKinds:
    """Every kind of job and what it adds to the lifecycle (``server.queue.kinds``)."""
    return JobKinds(
        {
            "benchmark": BenchmarkKind(),
            "convert": ConvertKind(),
            "table_block": BlockKind(),
            "table_network": NetworkKind(),
            "predictor_batch": BatchKind(),
            "predictor_single": SingleKind(),
            "predictor_network": ValidationKind(),
        }
    )


def make_state(
    settings: Settings,
    engine: Engine,
    store: ArtifactStore,
    kinds: JobKinds,
    clock: Clock | None = None,
) -> AppState:
    """The state every request reads; a commit that queued a job wakes this process's
    long-polling leases (``QueueSignal``) and, on PostgreSQL, those of the other processes
    (a ``NOTIFY`` sent in the transaction, delivered at its commit: ``server.queue.notify``)."""
    signal = QueueSignal()
    sessions = make_session_factory(engine)
    read_sessions = make_session_factory(read_only(engine))
    if notify.notifies(engine):

        @event.listens_for(sessions, "before_commit")
        def _tell_replicas(session: Session) -> None:
            if session.info.get(QUEUED_FLAG, False):
                notify.send(session, signal.origin)

    for factory in (sessions, read_sessions):

        @event.listens_for(factory, "after_commit")
        def _woken(session: Session) -> None:
            if session.info.pop(QUEUED_FLAG, False):
                signal.notify()

        @event.listens_for(factory, "after_rollback")
        def _undone(session: Session) -> None:
            session.info.pop(QUEUED_FLAG, None)

    ends = anyio.CapacityLimiter(max(4, settings.threads // 4))
    return AppState(
        settings,
        engine,
        sessions,
        store,
        kinds,
        clock or SystemClock(),
        signal,
        read_sessions,
        ends,
    )


def queue_listener(state: AppState) -> notify.QueueListener | None:
    """The listener that wakes this process's long-polls for jobs queued through other
    processes (PostgreSQL only; run it with ``listener.run(stop)`` on a thread of its own)."""
    if not notify.notifies(state.engine):
        return None
    return notify.QueueListener(notify.conninfo(state.engine), state.signal)


def reap(state: AppState, stop: threading.Event) -> None:
    """Sweep expired leases every ``reaper_interval_s`` until ``stop`` (one replica at a time
    on PostgreSQL); a failing sweep is logged and retried at the next interval."""
    while not stop.wait(state.settings.reaper_interval_s):
        try:
            with state.sessions() as session:
                if sweep(state.context(session)):
                    session.commit()
        except Exception:  # keep sweeping; a transient DB error must not kill the thread
            log.exception("lease reaper failed")
