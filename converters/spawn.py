"""Child processes that die with the process that started them, grandchildren included.

Measurements (``agents.measure.isolation``), conversions (``converters.run``) and the
coordinator's checks of uploaded models (``server.formats``) run in a ``Sandbox`` through
``converters.sandbox.run_sandboxed``; so do ``tegrastats`` (``agents.jetson``) and every
``adb`` call (``agents.android.adb``). A Sandbox runs its child:

* in their own session, so one process group holds the child and whatever it starts
  (onnx2tf's process, benchmark_model, trtexec) and one ``killpg`` ends them all;
* with ``PR_SET_PDEATHSIG = SIGKILL`` (Linux): the kernel kills the child when its parent
  dies, SIGKILL of the agent included, where no ``finally`` of ours runs;
* watched by a tiny watchdog process (``python -I -S -c ...``, a child of ours, outside the
  group) that polls its parent's pid and kills the child's whole group once we are gone:
  PDEATHSIG reaches only the direct child, not what it started, and a grandchild would
  otherwise go on under PID 1. The watchdog is our child rather than the sandboxed one's,
  so on the normal path we reap it ourselves and no orphan is left to PID 1;
* ``close()`` (also on leaving a ``with`` block, whatever the reason: a result, a timeout,
  a cancel, an exception, KeyboardInterrupt) kills the group and reaps the child and the
  watchdog. ``wait`` leaves the child unreaped (``WNOWAIT``) until ``close``, so its pid,
  which is the group id, cannot be reused by an unrelated process while we may still
  signal the group.

PDEATHSIG fires when the *thread* that forked the child ends, not the process. A Sandbox is
meant to be used synchronously: the thread that starts it waits for it and closes it (as
``run_sandboxed`` does), so that thread outlives the child on every
path but the death of the whole process, which is exactly when the child must go. Started
from a short-lived thread and left to another one, the child would die with the first.
The watchdog does not have this subtlety: ``getppid`` changes only when the process dies.

Where ``prctl`` is missing (macOS) the watchdog and the group kill still apply.

``memory_mb`` caps the child's address space (``RLIMIT_AS``, set between fork and exec, so it
covers the interpreter's start and is inherited by whatever the child starts; core dumps
off). RLIMIT_AS bounds *virtual* memory, which the kernel enforces without cgroups:
allocations beyond it fail (MemoryError, ``std::bad_alloc``, ENOMEM) instead of the host
OOM-killing a neighbour. ``watchdog=False`` leaves out the watchdog process for short calls
whose child starts nothing that must die with us (``adb``); PDEATHSIG and the group kill
still apply. ``converters.sandbox.run_sandboxed`` runs our own Python code in a Sandbox with
typed requests and results.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
WATCH_INTERVAL_S = 0.5
"""How often the watchdog looks for its parent: the longest a group outlives a killed agent."""

WATCHDOG_SOURCE = """\
# latencylab sandbox watchdog: argv = parent pid, process group, poll interval (s)
import os, signal, sys, time
parent, group, interval = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
while os.getppid() == parent:
    time.sleep(interval)
try:
    os.killpg(group, signal.SIGKILL)
except OSError:
    pass
"""

_Stream = int | IO[Any] | None


def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, looked up in the parent (the child must not dlopen after fork)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


def _child_setup(
    parent: int, prctl: Callable[..., int] | None, memory_mb: int | None
) -> Callable[[], None]:
    def setup() -> None:  # in the child, between fork and exec
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
            if os.getppid() != parent:  # the parent died before the request took effect
                os.kill(os.getpid(), signal.SIGKILL)
        if memory_mb is not None:
            cap = int(memory_mb) * 2**20
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return setup


def _exit_status(info: os.waitid_result) -> int:
    """Popen's convention: the exit code, or minus the signal that ended the process."""
    if info.si_code == os.CLD_EXITED:
        return int(info.si_status)
    return -int(info.si_status)


class Sandbox:
    """``cmd`` in its own session and process group, tied to this process' life.

    Use it as a context manager (or call ``close``): ``wait`` for the exit status, ``close``
    to kill whatever is left of the group and reap everything.
    """

    def __init__(
        self,
        cmd: Sequence[str],
        *,
        cwd: str | Path | None = None,
        env: dict[str, str] | None = None,
        stdin: _Stream = subprocess.DEVNULL,
        stdout: _Stream = None,
        stderr: _Stream = None,
        memory_mb: int | None = None,
        watchdog: bool = True,
        watch_interval_s: float = WATCH_INTERVAL_S,
    ) -> None:
        me = os.getpid()
        self.proc: subprocess.Popen[bytes] = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=env,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            preexec_fn=_child_setup(me, _prctl(), memory_mb),
        )
        self.pid = self.proc.pid
        self.watchdog: subprocess.Popen[bytes] | None = None
        if not watchdog:
            return
        watch = [str(me), str(self.pid), str(watch_interval_s)]
        try:
            self.watchdog = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", WATCHDOG_SOURCE, *watch],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C meant for us must not end it
            )
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _exited(self) -> int | None:
        """The exit status if the child has ended, without reaping it."""
        if self.proc.returncode is not None:
            return self.proc.returncode
        if not hasattr(os, "waitid"):  # pragma: no cover - platforms without waitid
            return self.proc.poll()
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # reaped behind our back
            return self.proc.poll()
        return None if info is None else _exit_status(info)

    def wait(self, timeout: float, cancel: threading.Event | None = None) -> int | None:
        """The child's exit status once it has ended, or None when ``timeout`` seconds pass
        or ``cancel`` is set first. The child stays unreaped until ``close``."""
        deadline = time.monotonic() + timeout
        pidfd = -1
        with contextlib.suppress(OSError, AttributeError):
            pidfd = os.pidfd_open(self.pid)
        try:
            while True:
                status = self._exited()
                remaining = deadline - time.monotonic()
                if status is not None or remaining <= 0 or (cancel is not None and cancel.is_set()):
                    return status
                if pidfd >= 0:  # readable the moment the child ends
                    select.select([pidfd], [], [], min(remaining, 0.1))
                else:
                    time.sleep(min(remaining, 0.05))
        finally:
            if pidfd >= 0:
                os.close(pidfd)

    def kill_group(self) -> None:
        """SIGKILL the child's process group now (``close`` reaps it)."""
        if self.proc.returncode is None:  # unreaped: the group id is still the child's
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)

    def close(self) -> int | None:
        """Kill what is left of the child's process group, reap the child and the watchdog;
        returns the child's exit status (idempotent)."""
        if self.proc.returncode is None:
            self.kill_group()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - unkillable (D state)
                log.error("process %s did not die after SIGKILL", self.pid)
        if self.watchdog is not None and self.watchdog.returncode is None:
            self.watchdog.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.watchdog.wait(timeout=10)
        return self.proc.returncode
