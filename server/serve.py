"""``latencylab serve``: the coordinator under uvicorn, plus a local agent subprocess."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from server.app import create_app
from server.config import Settings

log = logging.getLogger("latencylab.serve")


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


def serve(host: str, port: int, data_dir: Path, local_agent: bool = True) -> None:
    settings = Settings(host=host, port=port, data_dir=data_dir)
    data_dir = settings.data_dir  # absolute: the workers get the same directory whatever their cwd
    app = create_app(settings)
    url = f"http://{host}:{port}"
    workers = (
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
    for worker in workers:
        worker.thread.start()
    try:
        uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
    finally:
        for worker in workers:
            worker.stop()
