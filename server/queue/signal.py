"""Waking long-polling leases: a per-process signal, set when a commit queued a job.

Long-polls wait on it without a database connection. On PostgreSQL, jobs queued through
another replica (or requeued by the reaper there) set it too, through ``LISTEN``/``NOTIFY``
(``server.queue.notify``); the long-poll's periodic re-check is the fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid


class QueueSignal:
    """``notify()`` from any thread; ``await wait(seen, timeout)`` in the event loop.

    ``generation`` counts notifications: a waiter that read it before its lease attempt
    returns at once if a job was queued meanwhile, so no wake-up falls between the two."""

    def __init__(self) -> None:
        self.origin = uuid.uuid4().hex
        """This process's name in cross-process notifications (it skips its own)."""
        self._lock = threading.Lock()
        self._generation = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    @property
    def generation(self) -> int:
        return self._generation

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop of the waiters (the app's, at start)."""
        self._loop = loop

    def notify(self) -> None:
        with self._lock:
            self._generation += 1
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop is shutting down
                loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        event, self._event = self._event, None
        if event is not None:
            event.set()

    async def wait(self, seen: int, timeout: float) -> None:
        """Until a notification after generation ``seen``, or ``timeout`` seconds."""
        if self._generation != seen or timeout <= 0:
            return
        if self._event is None:
            self._event = asyncio.Event()
        event = self._event
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
