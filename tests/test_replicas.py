"""Replicas: ``latencylab serve --workers 2`` on one PostgreSQL database.

Both processes answer; they started at once on an empty database, so migrations and the
bootstrap admin token were taken in turn (one admin token); a benchmark submitted through
one process is leased by the single local agent and read back finished through the other.
With SQLite ``--workers`` > 1 is refused: one writer.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import FAST, REPO, SERVER_ENV, _env, _stop, _wait_for, cli, free_port
from tests.conftest import fresh_postgres_database as fresh_pg


def test_workers_refused_on_sqlite(tmp_path: Path) -> None:
    res = cli("serve", "--workers", "2", "--port", str(free_port()), "--data-dir", str(tmp_path),
              env=_env({}), timeout=60)  # fmt: skip
    assert res.returncode == 2, res.stdout + res.stderr
    assert "--workers 2 needs PostgreSQL" in res.stderr and "one writer" in res.stderr
    assert not (tmp_path / "latencylab.db").exists()  # refused before anything was started


class Pinned:
    """Requests through one chosen worker process: a fresh connection is opened until
    ``/health`` on it names that pid, and the request follows on the same (kept-alive)
    connection."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token

    def pids(self, want: int = 2, tries: int = 400) -> set[int]:
        seen: set[int] = set()
        for _ in range(tries):
            with httpx.Client(base_url=self.url) as c:
                seen.add(int(c.get("/api/v1/health").json()["pid"]))
            if len(seen) >= want:
                break
        return seen

    def call(self, pid: int, method: str, path: str, **kw: Any) -> httpx.Response:
        for _ in range(400):
            with httpx.Client(
                base_url=self.url + "/api/v1",
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=60,
            ) as c:
                if int(c.get("/health").json()["pid"]) == pid:
                    r = c.request(method, path, **kw)
                    assert int(c.get("/health").json()["pid"]) == pid  # the same connection
                    return r
        raise AssertionError(f"no connection reached worker {pid}")


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    with fresh_pg() as db:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = tmp_path / "serve.log"
        env = _env({**SERVER_ENV, "LATENCYLAB_DATABASE_URL": db})
        cmd = [sys.executable, "-m", "latencylab", "serve", "--workers", "2", "--port", str(port),
               "--data-dir", str(tmp_path / "data")]  # fmt: skip
        with log.open("wb") as fh:
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
        try:
            _wait_for(url, proc, log, timeout=120)
            yield url, tmp_path, proc
        finally:
            _stop(proc)


@pytest.mark.postgres
def test_two_workers_share_one_queue_and_one_local_agent(
    two_workers: tuple[str, Path, subprocess.Popen[bytes]], model_files: dict[str, Path]
) -> None:
    url, tmp, proc = two_workers
    admin = (tmp / "data" / "admin.token").read_text().strip()
    pinned = Pinned(url, admin)
    pids = pinned.pids()
    assert len(pids) == 2, f"only {pids} answered /health"
    children = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
    assert pids <= children and proc.pid not in pids  # uvicorn workers of this serve
    a, b = sorted(pids)

    tokens = pinned.call(b, "GET", "/tokens").json()
    assert [t["scope"] for t in tokens].count("admin") == 1, tokens  # one bootstrap token

    deadline = time.monotonic() + 120
    while True:  # the local agent and converter, started by the supervisor, register once
        devices = pinned.call(a, "GET", "/devices").json()
        if sum(d["status"] == "online" for d in devices) == 2:
            break
        assert time.monotonic() < deadline, devices
        time.sleep(0.5)
    assert sorted(d["class"] for d in devices) == ["converter", "cpu"], devices
    started = (tmp / "serve.log").read_text()
    for role in ("agent", "converter"):  # by the supervisor, not once per worker
        assert started.count(f"LatencyLab local {role} started") == 1, started[-3000:]

    up = pinned.call(
        a, "POST", "/models", files={"file": ("mlp.onnx", model_files["mlp"].read_bytes())}
    )
    assert up.status_code == 201, up.text
    body = {
        "model_id": up.json()["id"],
        "targets": [{"runtime": "onnxruntime", "device": "local", "threads": 1}],
        "settings": FAST,
    }
    r = pinned.call(a, "POST", "/benchmarks", json=body)
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 180
    while (bench := pinned.call(b, "GET", f"/benchmarks/{r.json()['id']}").json())[
        "status"
    ] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, bench
        time.sleep(0.5)
    assert bench["status"] == "succeeded", bench
    (result,) = bench["results"]
    assert result["latency_ms"]["p50"] > 0
    (job,) = bench["jobs"]
    assert job["attempts"] == 1  # leased once, by the one local agent
