"""Waking long-polls across replicas: PostgreSQL ``LISTEN``/``NOTIFY``.

A transaction that made a job leasable (``lifecycle.QUEUED_FLAG``: a submit, a conversion
releasing its benchmarks, a requeue by the reaper or by a re-registering device) sends
``pg_notify(CHANNEL, origin)`` just before it commits; PostgreSQL delivers it at the commit
(and drops it on a rollback) to every connection listening on the channel. Each coordinator
process keeps one such connection (``QueueListener``, on a thread of its own, outside the
request pool) and turns every notification from another process into a wake-up of its own
``QueueSignal``: a long-poll on replica B returns within milliseconds of a job queued
through replica A. A process ignores its own notifications (its commit already woke it).

The listener reconnects with a growing delay after the database goes away and wakes its
long-polls once on every (re)connect, since jobs may have been queued while it was not
listening; until then ``lease_recheck_s`` is the fallback. SQLite (one process) has no
listener: the in-process signal is the whole story there.
"""

from __future__ import annotations

import logging
import threading

import psycopg
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from server.queue.signal import QueueSignal

log = logging.getLogger("latencylab.server")

CHANNEL = "latencylab_jobs_queued"
"""The channel every coordinator process listens on (one database, one queue)."""

_NOTIFY = text("SELECT pg_notify(:channel, :origin)")


def notifies(engine: Engine) -> bool:
    """Whether this engine's database carries cross-process notifications."""
    return engine.dialect.name == "postgresql"


def send(session: Session, origin: str) -> None:
    """Queue a notification in ``session``'s transaction: delivered when it commits."""
    session.execute(_NOTIFY, {"channel": CHANNEL, "origin": origin})


def conninfo(engine: Engine) -> str:
    """A libpq URL for ``engine``'s database (the SQLAlchemy driver name dropped)."""
    url = engine.url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class QueueListener:
    """``LISTEN CHANNEL`` on one connection of its own; ``run(stop)`` on a thread until
    ``stop`` is set. Never touches the request pool, so it can never block a request."""

    def __init__(
        self,
        dsn: str,
        signal: QueueSignal,
        *,
        poll_s: float = 1.0,
        retry_min_s: float = 0.2,
        retry_max_s: float = 5.0,
    ) -> None:
        self._dsn, self._signal = dsn, signal
        self._poll_s, self._retry_min_s, self._retry_max_s = poll_s, retry_min_s, retry_max_s
        self._delay = retry_min_s

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self._listen(stop)
            except (psycopg.Error, OSError) as exc:  # the server went away: retry later
                delay = self._delay
                log.warning(
                    "queue listener: %s (%s); reconnecting in %.1f s (long-polls re-check "
                    "every LATENCYLAB_LEASE_RECHECK_S meanwhile)",
                    type(exc).__name__,
                    str(exc).strip().splitlines()[0] if str(exc).strip() else "",
                    delay,
                )
                stop.wait(delay)
                self._delay = min(delay * 2, self._retry_max_s)

    def _listen(self, stop: threading.Event) -> None:
        with psycopg.connect(
            self._dsn,
            autocommit=True,
            connect_timeout=5,
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
            application_name="latencylab queue listener",
        ) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            self._delay = self._retry_min_s  # listening again: the next outage starts short
            self._signal.notify()  # jobs may have been queued while nobody listened
            origin = self._signal.origin
            while not stop.is_set():
                for note in conn.notifies(timeout=self._poll_s):
                    if note.payload != origin:
                        self._signal.notify()
