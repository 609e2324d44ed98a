"""``latencylab serve``: the coordinator under uvicorn, plus a local agent subprocess."""

from __future__ import annotations

import contextlib
import logging
import os
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


class LocalAgent:
    """Starts the local agent once the coordinator answers; stops it with the server."""

    def __init__(self, url: str, data_dir: Path) -> None:
        self.url, self.data_dir = url, data_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.thread = threading.Thread(target=self._start, daemon=True)

    def _start(self) -> None:
        if not _wait_healthy(self.url):
            log.error("coordinator did not come up; local agent not started")
            return
        admin = (self.data_dir / "admin.token").read_text().strip()
        token_file = self.data_dir / "agent.token"
        agent_token(self.url, admin, token_file)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "latencylab",
                "agent",
                "--server",
                self.url,
                "--token-file",
                str(token_file),
                "--data-dir",
                str(self.data_dir),
            ]
        )
        print(f"LatencyLab local agent started (pid {self.proc.pid})", flush=True)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=15)
            if self.proc.poll() is None:
                self.proc.kill()


def serve(host: str, port: int, data_dir: Path, local_agent: bool = True) -> None:
    settings = Settings(host=host, port=port, data_dir=data_dir)
    app = create_app(settings)
    url = f"http://{host}:{port}"
    agent = LocalAgent(url, data_dir) if local_agent else None

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
    if agent:
        agent.thread.start()
    try:
        uvicorn.run(app, host=host, port=port, log_level="info")
    finally:
        if agent:
            agent.stop()
