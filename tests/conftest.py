"""Shared fixtures: databases (SQLite and PostgreSQL), a real coordinator and a real agent.

Everything expensive is session-scoped: one coordinator + one agent subprocess per
database backend, models built once. Tests that take ``live`` run on both backends.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get(
    "LATENCYLAB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# Short timings so lease expiry and offline detection are observable in seconds.
SERVER_ENV = {
    "LATENCYLAB_LEASE_S": "4",
    "LATENCYLAB_REAPER_INTERVAL_S": "0.5",
    "LATENCYLAB_OFFLINE_AFTER_S": "3",
    "LATENCYLAB_MAX_ATTEMPTS": "2",
    "LATENCYLAB_MAX_UPLOAD_MB": "30",
}
AGENT_ENV = {
    "LATENCYLAB_AGENT_HEARTBEAT_INTERVAL_S": "0.5",
    "LATENCYLAB_AGENT_POLL_INTERVAL_S": "0.2",
}
# Quick but real measurement settings for tests: exactly the "quick" preset (test_repeats
# relies on that: a result measured with FAST reads back as mode "quick").
FAST = {
    "warmup_runs": 3,
    "min_runs": 20,
    "min_duration_s": 0.2,
    "max_duration_s": 2.0,
    "target_rel_ci": 0.02,
    "timeout_s": 120,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pytest_configure(config: pytest.Config) -> None:
    # Declared here, not in pyproject.toml: editing that file invalidates `make setup`'s stamp.
    config.addinivalue_line(
        "markers", "backends(*names): run only on these database_url backends (sqlite, postgres)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``@pytest.mark.backends("sqlite")`` on a test (or one of its params) runs it on those
    ``database_url`` backends only; its other backends' items are deselected (reported so)."""
    dropped = []
    for item in items:
        marker = item.get_closest_marker("backends")
        backend = getattr(getattr(item, "callspec", None), "params", {}).get("database_url")
        if marker is not None and backend is not None and backend not in marker.args:
            dropped.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped]


def _pg_admin_url() -> str:
    return PG_URL.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test session (dropped afterwards)."""
    import psycopg

    try:
        admin = psycopg.connect(_pg_admin_url(), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI but unreachable at {PG_URL}: {exc}")
        pytest.skip(
            f"PostgreSQL not reachable at {PG_URL} (set LATENCYLAB_TEST_POSTGRES_URL): {exc}"
        )
    name = f"latencylab_test_{uuid.uuid4().hex[:10]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
        finally:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'latencylab.db'}"
    return str(request.getfixturevalue("postgres_database"))


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATENCYLAB_")}
    env.update(extra)
    env["PYTHONPATH"] = str(REPO)
    return env


# A quick steady state for CLI `submit` calls (the CLI's own flags for MeasureSettings).
QUICK_CLI = ["--min-runs", "20", "--min-duration-s", "0.2", "--max-duration-s", "1"]


def cli(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m latencylab ARGS`` from the repository root; the caller checks the result."""
    return subprocess.run(
        [sys.executable, "-m", "latencylab", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _wait_for(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"coordinator exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"coordinator did not answer within {timeout}s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _spawn_worker(
    role: str, url: str, token: str, name: str, data_dir: Path, log: Path
) -> subprocess.Popen[bytes]:
    """``latencylab agent`` or ``latencylab converter`` as a subprocess logging to ``log``."""
    cmd = [sys.executable, "-m", "latencylab", role, "--server", url, "--token", token,
           "--name", name, "--data-dir", str(data_dir)]  # fmt: skip
    with log.open("wb") as fh:
        return subprocess.Popen(
            cmd, cwd=REPO, env=_env(AGENT_ENV), stdout=fh, stderr=subprocess.STDOUT
        )


@dataclass
class Live:
    """A running coordinator (+ its agent): URL, tokens, data dir, backend."""

    url: str
    data_dir: Path
    admin_token: str
    user_token: str
    agent_token: str
    database_url: str
    agent_name: str = ""

    @property
    def backend(self) -> str:
        return "postgresql" if self.database_url.startswith("postgresql") else "sqlite"

    def client(self, token: str | None = None):  # type: ignore[no-untyped-def]
        from latencylab import Client

        return Client(server=self.url, token=token or self.user_token)

    def http(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=60)


@contextlib.contextmanager
def running_coordinator(
    database_url: str, data_dir: Path, *, converter: bool = True
) -> Iterator[Live]:
    """A real coordinator subprocess (``latencylab serve``) on ``database_url`` with a real
    agent (and, with ``converter``, a converter worker), all online; stopped afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = data_dir / "server.log"
    env = _env({**SERVER_ENV, "LATENCYLAB_DATABASE_URL": database_url})
    with log.open("wb") as fh:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "latencylab",
                "serve",
                "--no-local-agent",
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
            ],
            cwd=REPO,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    workers: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        _wait_for(url, server, log)
        admin = (data_dir / "admin.token").read_text().strip()
        with httpx.Client(
            base_url=url + "/api/v1", headers={"Authorization": f"Bearer {admin}"}
        ) as c:
            user = c.post("/tokens", json={"scope": "user", "name": "tests"}).json()["token"]
            agent_tok = c.post("/tokens", json={"scope": "agent", "name": "test agent"}).json()[
                "token"
            ]
        name = f"test-cpu-{uuid.uuid4().hex[:6]}"
        wanted = {name}
        alog = data_dir / "agent.log"
        workers.append(
            (_spawn_worker("agent", url, agent_tok, name, data_dir / "agent", alog), alog)
        )
        if converter:
            clog = data_dir / "converter.log"
            wanted.add(f"{name}-converter")
            workers.append(
                (
                    _spawn_worker(
                        "converter", url, agent_tok, f"{name}-converter", data_dir / "agent", clog
                    ),
                    clog,
                )
            )
        live = Live(url, data_dir, admin, user, agent_tok, database_url, name)
        with live.http(user) as c:
            deadline = time.monotonic() + 60
            while not wanted <= {
                d["name"] for d in c.get("/devices").json() if d["status"] == "online"
            }:
                if any(proc.poll() is not None for proc, _ in workers):
                    logs = "\n".join(wlog.read_text()[-3000:] for _, wlog in workers)
                    raise RuntimeError(f"a worker exited:\n{logs}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{sorted(wanted)} did not register within 60 s")
                time.sleep(0.2)
        yield live
    finally:
        for proc, _ in workers:
            _stop(proc)
        _stop(server)


@pytest.fixture(scope="session")
def live(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A real coordinator subprocess (``latencylab serve``), a real agent and a converter worker."""
    with running_coordinator(database_url, tmp_path_factory.mktemp("data")) as live:
        yield live


@pytest.fixture(scope="session")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Models built once per session with random weights."""
    from bench import models

    root = tmp_path_factory.mktemp("models")
    return {
        "mlp": models.save(models.mlp(), root / "mlp.onnx"),
        "mbv2": models.save(models.mobilenet_v2_like(96, 0.35, 100), root / "mbv2.onnx"),
        "resnet": models.save(models.resnet_like(64, (1, 1, 1, 1), 100), root / "resnet.onnx"),
    }


@contextlib.contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A private, empty PostgreSQL database (dropped afterwards), for a test that runs its own
    coordinators and must not share a queue with ``live``; skipped like ``postgres_database``."""
    import psycopg

    try:
        admin = psycopg.connect(_pg_admin_url(), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI but unreachable at {PG_URL}: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {exc}")
    name = f"latencylab_test_{uuid.uuid4().hex[:10]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
        finally:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


@dataclass
class S3Server:
    """moto's standalone S3-compatible server, a real HTTP server on loopback."""

    endpoint: str
    port: int
    log: Path
    key_id: str = "latencylab-test"
    secret: str = "latencylab-test-secret"

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.key_id,
            aws_secret_access_key=self.secret,
        )

    def new_bucket(self) -> str:
        name = f"latencylab-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def env(self, bucket: str, prefix: str = "artifacts") -> dict[str, str]:
        """The coordinator's settings for artifacts in ``bucket`` under ``prefix``."""
        return {
            "LATENCYLAB_ARTIFACTS_URL": f"s3://{bucket}/{prefix}",
            "LATENCYLAB_S3_ENDPOINT_URL": self.endpoint,
            "LATENCYLAB_S3_REGION": "us-east-1",
            "LATENCYLAB_S3_ACCESS_KEY_ID": self.key_id,
            "LATENCYLAB_S3_SECRET_ACCESS_KEY": self.secret,
        }


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """``python -m moto.server`` (``moto[server]``, the dev extra) on a free loopback port."""
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("boto3") is None:
        pytest.fail("moto[server] and boto3 are not installed: they are in the dev and s3 extras")
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            cwd=REPO,
            env=_env({}),
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto server exited:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/moto-api/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto server did not answer in 60 s:\n{log.read_text()}")
            time.sleep(0.2)
        yield S3Server(f"http://127.0.0.1:{port}", port, log)
    finally:
        _stop(proc)
