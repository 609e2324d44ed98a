"""``latencylab serve``: the coordinator under uvicorn (one process or ``--workers N``), plus a
local agent and converter worker started once by the supervising process."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import functools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import make_url
from uvicorn.supervisors import Multiprocess

from server.app import create_app
from server.config import Settings

log = logging.getLogger("latencylab.serve")
WORKER_STARTUP_S = 120
"""How long the supervisor waits for a worker to answer its health ping before killing it as
hung. A spawned worker answers only once it has imported the app (the factory's pickle names
``server.app``), which takes seconds, and far longer on a loaded host: uvicorn's 5 s default
would kill and respawn workers in a loop there."""
KEEP_ALIVE_S = 75
"""How long an idle HTTP keep-alive connection stays open (uvicorn's default is 5 s). Agents
heartbeat every 5 s on one connection: with a 5 s timeout the server closes it just as the
next heartbeat is sent, and the agent sees a transport error (ReadError) for a request that
never arrived. 75 s is nginx's own keep-alive default."""
GRACEFUL_SHUTDOWN_S = 10
"""On SIGTERM, requests in flight get this long; then their connections close (a long-poll
lease ends early: its agent retries, against another process when there is one)."""


def _wait_healthy(url: str, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    return False


def agent_token(url: str, admin_token: str, path: Path) -> str:
    """Reuse the local agent's token if still valid, else create one with the admin token."""
    if path.is_file():
        tok = path.read_text().strip()
        r = httpx.get(f"{url}/api/v1/tokens/me", headers={"Authorization": f"Bearer {tok}"})
        if r.status_code == 200:
            return tok
    r = httpx.post(
        f"{url}/api/v1/tokens",
        json={"scope": "agent", "name": "local agent"},
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    r.raise_for_status()
    tok = str(r.json()["token"])
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(tok + "\n")
    return tok


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the thread that started it ends (Linux prctl)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class LocalWorker:
    """Starts a local worker (``latencylab agent`` or ``latencylab converter``) once the
    coordinator answers; it goes down with the server.

    uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, so ``finally`` blocks of the
    server process may never run: the worker is tied to its (waiting) starter thread with
    PR_SET_PDEATHSIG instead, and restarted if it dies on its own.
    """

    def __init__(self, role: str, url: str, data_dir: Path) -> None:
        self.role, self.url, self.data_dir = role, url, data_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"local-{role}")

    def _run(self) -> None:
        if not _wait_healthy(self.url):
            log.error("coordinator did not come up; local %s not started", self.role)
            return
        admin = (self.data_dir / "admin.token").read_text().strip()
        token_file = self.data_dir / "agent.token"
        with _TOKEN_LOCK:
            agent_token(self.url, admin, token_file)
        cmd = [
            sys.executable,
            "-m",
            "latencylab",
            self.role,
            "--server",
            self.url,
            "--token-file",
            str(token_file),
            "--data-dir",
            str(self.data_dir),
        ]
        while not self.stopping.is_set():
            self.proc = subprocess.Popen(cmd, preexec_fn=_die_with_parent)
            print(f"LatencyLab local {self.role} started (pid {self.proc.pid})", flush=True)
            code = self.proc.wait()
            if self.stopping.is_set():
                return
            log.error("local %s exited with %s; restarting in 2 s", self.role, code)
            self.stopping.wait(2)

    def stop(self) -> None:
        self.stopping.set()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=15)
            if self.proc.poll() is None:
                self.proc.kill()


_TOKEN_LOCK = threading.Lock()


class WorkersRefused(SystemExit):
    """``--workers`` > 1 on SQLite: exit status 2 with the reason."""


def check_workers(settings: Settings) -> None:
    """Several processes need PostgreSQL: SQLite has one writer, and every process would wait
    on the others' write lock."""
    backend = make_url(settings.resolved_database_url).get_backend_name()
    if settings.workers > 1 and backend == "sqlite":
        print(
            f"latencylab serve: --workers {settings.workers} needs PostgreSQL; SQLite allows one "
            "writer at a time, so one coordinator process serves it. Set "
            "LATENCYLAB_DATABASE_URL=postgresql+psycopg://user@host/db, or run one worker.",
            file=sys.stderr,
        )
        raise WorkersRefused(2)


def run_uvicorn(settings: Settings) -> None:
    """One process, or ``settings.workers`` processes sharing the listening socket.

    The workers are spawned processes, each building its app from the same ``Settings``
    (``create_app`` through a picklable factory): migrations and the bootstrap admin token
    are serialized between them by PostgreSQL advisory locks (``db.migrate``,
    ``server.app.ensure_admin_token``)."""
    if settings.workers == 1:
        app = create_app(settings)
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level="info",
            access_log=False,
            timeout_keep_alive=KEEP_ALIVE_S,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
        return
    config = uvicorn.Config(
        functools.partial(create_app, settings),
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level="info",
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_worker_healthcheck=WORKER_STARTUP_S,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    sock = config.bind_socket()
    Multiprocess(config, sockets=[sock]).run()


def serve(
    host: str, port: int, data_dir: Path, local_agent: bool = True, workers: int | None = None
) -> None:
    """The coordinator (``workers`` processes; default ``LATENCYLAB_WORKERS``, 1) and, unless
    ``local_agent`` is False, one local agent and one converter worker, started here in the
    supervising process: once, however many workers serve."""
    given: dict[str, Any] = {"host": host, "port": port, "data_dir": data_dir}
    if workers is not None:
        given["workers"] = workers
    settings = Settings(**given)
    check_workers(settings)
    data_dir = settings.data_dir  # absolute: the workers get the same directory whatever their cwd
    url = f"http://{host}:{port}"
    local = (
        [LocalWorker("agent", url, data_dir), LocalWorker("converter", url, data_dir)]
        if local_agent
        else []
    )

    def banner() -> None:
        if not _wait_healthy(url):
            return
        token = (data_dir / "admin.token").read_text().strip()
        print(
            f"\nLatencyLab is running at {url}  (dashboard {url}/, API docs {url}/docs)\n"
            f"Admin token (also in {data_dir / 'admin.token'}):\n  {token}\n",
            flush=True,
        )

    threading.Thread(target=banner, daemon=True).start()
    for worker in local:
        worker.thread.start()
    try:
        run_uvicorn(settings)
    finally:
        for worker in local:
            worker.stop()


def main(argv: list[str] | None = None) -> None:
    """``python -m server.serve``: what ``latencylab serve`` runs."""
    parser = argparse.ArgumentParser(prog="latencylab serve", description=serve.__doc__)
    defaults = Settings()
    parser.add_argument("--host", default=defaults.host)
    parser.add_argument("--port", type=int, default=defaults.port)
    parser.add_argument("--data-dir", type=Path, default=defaults.data_dir)
    parser.add_argument("--workers", type=int, default=None, help="coordinator processes")
    parser.add_argument(
        "--no-local-agent", dest="local_agent", action="store_false", help="no local agent"
    )
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.data_dir, args.local_agent, args.workers)


if __name__ == "__main__":
    main()
