"""The lease route through the real app (Starlette's TestClient, in process): a long-poll
wakes as soon as a job is queued on this process, finds one queued elsewhere (another
replica) at its re-check, answers 204 after ``wait_s``, an old agent without ``wait_s`` is
answered at once; a saturated coordinator answers 503 with ``Retry-After``."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from db.engine import make_engine, make_session_factory
from db.models import Artifact, Job, Model
from server.app import create_app
from server.config import Settings
from server.deps import AppState
from server.queue import lifecycle


@dataclass
class App:
    client: TestClient
    state: AppState
    agent: dict[str, str]
    device_id: int
    model_id: int


def _start(tmp_path: Path, **settings: Any) -> Iterator[App]:
    url = f"sqlite:///{tmp_path / 'coord.db'}"
    app = create_app(Settings(data_dir=tmp_path, database_url=url, **settings))
    with TestClient(app, base_url="http://t/api/v1") as client:
        admin = {"Authorization": f"Bearer {(tmp_path / 'admin.token').read_text().strip()}"}
        r = client.post("/tokens", json={"scope": "agent", "name": "poller"}, headers=admin)
        agent = {"Authorization": f"Bearer {r.json()['token']}"}
        body = {"name": "poller", "class": "cpu", "runtimes": {"onnxruntime": "1.20"}}
        r = client.post("/agents/register", json=body, headers=agent)
        assert r.status_code == 200, r.text
        state: AppState = app.state.latencylab
        with state.sessions() as s:
            s.add(Artifact(sha256="b" * 64, size=1, format="onnx"))
            s.flush()
            model = Model(name="m", format="onnx", sha256="b" * 64, size=1, inputs=[])
            s.add(model)
            s.commit()
        yield App(client, state, agent, r.json()["id"], model.id)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    yield from _start(tmp_path, lease_recheck_s=0.3)


def _enqueue(sessions: Any, model_id: int, selector: str = "poller") -> int:
    with sessions() as s:
        job = Job(
            kind="benchmark",
            model_id=model_id,
            artifact_sha256="b" * 64,
            runtime="onnxruntime",
            device_selector=selector,
            precision="fp32",
            batch_size=1,
            threads=1,
            settings={},
        )
        lifecycle.enqueue(s, job)
        s.commit()
        return job.id


def _poll_in_background(app: App, wait_s: float) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def poll() -> None:
        r = app.client.post(
            f"/agents/{app.device_id}/lease", params={"wait_s": wait_s}, headers=app.agent
        )
        out["at"], out["status"], out["body"] = time.perf_counter(), r.status_code, r.text

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.5)  # the long-poll is waiting now
    assert "status" not in out, out
    return thread, out


def test_a_long_poll_gets_a_job_queued_on_this_process_at_once(app: App) -> None:
    thread, out = _poll_in_background(app, wait_s=10)
    queued_at = time.perf_counter()
    job_id = _enqueue(app.state.sessions, app.model_id)  # commits: wakes this process's polls
    thread.join(15)
    assert out["status"] == 200, out
    assert f'"id":{job_id}' in out["body"].replace(" ", "")
    assert out["at"] - queued_at < 1.0  # ~100 ms on an idle machine: no polling interval


def test_a_long_poll_finds_a_job_queued_through_another_replica(app: App, tmp_path: Path) -> None:
    other: Engine = make_engine(f"sqlite:///{tmp_path / 'coord.db'}")  # no signal reaches us
    try:
        thread, out = _poll_in_background(app, wait_s=10)
        queued_at = time.perf_counter()
        _enqueue(make_session_factory(other), app.model_id)
        thread.join(15)
        assert out["status"] == 200, out
        assert out["at"] - queued_at < 0.3 + 1.5  # the re-check interval, plus slack
    finally:
        other.dispose()


def test_a_long_poll_ends_with_204_and_old_agents_are_answered_at_once(app: App) -> None:
    _enqueue(app.state.sessions, app.model_id, selector="someone-else")
    t0 = time.perf_counter()
    r = app.client.post(f"/agents/{app.device_id}/lease", params={"wait_s": 1}, headers=app.agent)
    assert r.status_code == 204 and 0.9 < time.perf_counter() - t0 < 5
    t0 = time.perf_counter()
    r = app.client.post(f"/agents/{app.device_id}/lease", headers=app.agent)
    assert r.status_code == 204 and time.perf_counter() - t0 < 1.0


def test_a_second_lease_is_409_conflict(app: App) -> None:
    _enqueue(app.state.sessions, app.model_id)
    _enqueue(app.state.sessions, app.model_id)
    assert app.client.post(f"/agents/{app.device_id}/lease", headers=app.agent).status_code == 200
    r = app.client.post(f"/agents/{app.device_id}/lease", headers=app.agent)
    assert r.status_code == 409 and r.json()["code"] == "conflict", r.text


def test_no_free_connection_is_a_503_with_retry_after(tmp_path: Path) -> None:
    settings = {"db_pool_size": 1, "db_max_overflow": 0, "db_pool_timeout_s": 0.3}
    for app in _start(tmp_path, **settings):
        with app.state.engine.connect():  # the pool's only connection, held
            r = app.client.post(f"/agents/{app.device_id}/lease", headers=app.agent)
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "unavailable"
        assert r.headers["retry-after"] == str(app.state.settings.retry_after_s)
        r = app.client.post(f"/agents/{app.device_id}/lease", headers=app.agent)
        assert r.status_code == 204, r.text  # nothing was broken


def test_a_locked_sqlite_database_is_a_503_not_a_hang(tmp_path: Path) -> None:
    for app in _start(tmp_path, db_lock_timeout_s=0.3):
        other = make_engine(f"sqlite:///{tmp_path / 'coord.db'}")
        try:
            with other.begin() as conn:  # BEGIN IMMEDIATE: the write lock, held
                conn.exec_driver_sql("SELECT 1")
                t0 = time.perf_counter()
                body = {"job_id": None, "progress": {}}
                r = app.client.post(
                    f"/agents/{app.device_id}/heartbeat", json=body, headers=app.agent
                )
                assert time.perf_counter() - t0 < 5
            assert r.status_code == 503, r.text
            assert "retry-after" in r.headers
        finally:
            other.dispose()
