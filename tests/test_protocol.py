"""The agent protocol over real HTTP: auth scopes, leases, expiry, retries, idempotent reports.

A test plays a second agent ("ghost") through the public agent routes, so it can stop
heartbeating or report twice on purpose; the real agent of the fixture keeps running.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import FAST, Live

RESULT = {
    "status": "succeeded",
    "latency_ms": {
        "min": 1.0,
        "mean": 1.5,
        "p50": 1.4,
        "p90": 2.0,
        "p95": 2.1,
        "p99": 2.5,
        "max": 3.0,
        "std": 0.3,
        "cov": 0.2,
    },
    "runs": 3,
    "times_ms": [1.0, 1.4, 3.0],
    "stop_reason": "max_runs",
}


class Ghost:
    """A hand-driven agent with its own token and a device name nobody else matches."""

    def __init__(self, live: Live) -> None:
        self.live = live
        self.name = f"ghost-{uuid.uuid4().hex[:8]}"
        with live.http(live.admin_token) as c:
            self.token = c.post("/tokens", json={"scope": "agent", "name": self.name}).json()[
                "token"
            ]
        self.http = live.http(self.token)
        r = self.http.post(
            "/agents/register",
            json={
                "name": self.name,
                "class": "cpu",
                "runtimes": {"onnxruntime": "1.0"},
                "attributes": {"soc": "ghostchip"},
            },
        )
        assert r.status_code == 200, r.text
        self.id = r.json()["id"]

    def lease(self) -> dict[str, Any] | None:
        r = self.http.post(f"/agents/{self.id}/lease")
        assert r.status_code in (200, 204), r.text
        return r.json() if r.status_code == 200 else None

    def report(self, job_id: int, result: dict[str, Any] = RESULT) -> httpx.Response:
        return self.http.post(f"/agents/{self.id}/jobs/{job_id}/report", json={"result": result})


def _queue(live: Live, model_files: dict[str, Path], device: str) -> tuple[int, int]:
    with live.http(live.user_token) as c:
        model = c.post(
            "/models", files={"file": ("mlp.onnx", model_files["mlp"].read_bytes())}
        ).json()
        r = c.post(
            "/benchmarks",
            json={
                "model_id": model["id"],
                "settings": FAST,
                "targets": [{"runtime": "onnxruntime", "device": device}],
            },
        )
        assert r.status_code == 202, r.text
        return r.json()["id"], r.json()["jobs"][0]["id"]


def _wait_job(live: Live, job_id: int, pred, timeout: float = 30) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    with live.http(live.user_token) as c:
        while True:
            job = c.get(f"/jobs/{job_id}").json()
            if pred(job):
                return job
            assert time.monotonic() < deadline, job
            time.sleep(0.25)


def test_missing_bad_and_wrong_scope_tokens(live: Live) -> None:
    with live.http() as c:
        r = c.get("/models")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    with live.http("not-a-token") as c:
        assert c.get("/models").status_code == 401
    with live.http(live.agent_token) as c:
        r = c.get("/models")
        assert r.status_code == 403 and "scope" in r.json()["detail"]
    with live.http(live.user_token) as c:
        assert c.get("/models").status_code == 200
        assert c.post("/tokens", json={"scope": "admin"}).status_code == 403
        assert c.post("/agents/register", json={"name": "x"}).status_code == 403
    with live.http(live.admin_token) as c:
        assert c.get("/models").status_code == 200
        tokens = c.get("/tokens").json()
        assert all("token" not in t or t["token"] is None for t in tokens)


def test_tokens_are_stored_hashed(live: Live) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(live.database_url)
    with engine.connect() as conn:
        hashes = [row[0] for row in conn.execute(text("SELECT token_hash FROM api_tokens"))]
    engine.dispose()
    assert hashes and live.user_token not in hashes and all(len(h) == 64 for h in hashes)


def test_report_is_idempotent(live: Live, model_files: dict[str, Path]) -> None:
    ghost = Ghost(live)
    bench_id, job_id = _queue(live, model_files, ghost.name)
    job = ghost.lease()
    assert job is not None and job["id"] == job_id and job["attempt"] == 1
    first = ghost.report(job_id)
    assert first.status_code == 201, first.text
    again = ghost.report(job_id)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    with live.http(live.user_token) as c:
        bench = c.get(f"/benchmarks/{bench_id}").json()
        assert bench["status"] == "succeeded" and len(bench["results"]) == 1
        raw = c.get(f"/benchmarks/{bench_id}/results/{first.json()['id']}/raw").json()
        assert raw["times_ms"] == RESULT["times_ms"]


def test_one_job_at_a_time_per_device(live: Live, model_files: dict[str, Path]) -> None:
    ghost = Ghost(live)
    _queue(live, model_files, ghost.name)
    _queue(live, model_files, ghost.name)
    job = ghost.lease()
    assert job is not None
    r = ghost.http.post(f"/agents/{ghost.id}/lease")
    assert r.status_code == 409 and str(job["id"]) in r.json()["detail"]
    assert ghost.report(job["id"]).status_code == 201
    assert ghost.lease() is not None


def test_expired_lease_requeues_then_fails_after_the_retry_limit(
    live: Live, model_files: dict[str, Path]
) -> None:
    ghost = Ghost(live)
    _, job_id = _queue(live, model_files, ghost.name)
    assert ghost.lease()["id"] == job_id  # type: ignore[index]
    # No heartbeat: the 4 s lease runs out and the reaper puts the job back in the queue.
    job = _wait_job(live, job_id, lambda j: j["status"] == "queued" and j["attempts"] == 1)
    assert "lease expired" in job["error"] and ghost.name in job["candidates"]
    second = ghost.lease()
    assert second is not None and second["attempt"] == 2
    late = ghost.report(job_id)  # reporting while still holding it works; let it expire instead
    assert late.status_code == 201
    # A fresh job whose leases expire twice (max_attempts=2) fails with the reason.
    _, job2 = _queue(live, model_files, ghost.name)
    for attempt in (1, 2):
        leased = ghost.lease()
        assert leased is not None and leased["id"] == job2 and leased["attempt"] == attempt
        _wait_job(live, job2, lambda j: j["status"] != "running")
    job = _wait_job(live, job2, lambda j: j["status"] == "failed")
    assert "lease expired" in job["error"] and "gave up after 2" in job["error"]
    lost = ghost.report(job2)
    assert lost.status_code == 409 and "not held" in lost.json()["detail"]


def test_heartbeat_keeps_the_lease(live: Live, model_files: dict[str, Path]) -> None:
    ghost = Ghost(live)
    _, job_id = _queue(live, model_files, ghost.name)
    ghost.lease()
    for _ in range(12):  # 6 s > the 4 s lease
        r = ghost.http.post(
            f"/agents/{ghost.id}/heartbeat",
            json={"job_id": job_id, "progress": {"phase": "steady", "runs": 7}},
        )
        assert r.json() == {"keep": True}
        time.sleep(0.5)
    job = _wait_job(live, job_id, lambda j: True)
    assert job["status"] == "running" and job["progress"]["runs"] == 7
    assert ghost.report(job_id).status_code == 201


def test_agents_only_download_artifacts_of_jobs_they_hold(
    live: Live, model_files: dict[str, Path]
) -> None:
    ghost = Ghost(live)
    _, job_id = _queue(live, model_files, ghost.name)
    other = Ghost(live)
    job = ghost.lease()
    assert job is not None
    sha = job["artifact_sha256"]
    assert ghost.http.get(f"/artifacts/{sha}").content == model_files["mlp"].read_bytes()
    assert other.http.get(f"/artifacts/{sha}").status_code == 403
    with live.http(live.user_token) as c:
        assert c.get(f"/artifacts/{sha}").status_code == 200
    ghost.report(job_id)
    assert ghost.http.get(f"/artifacts/{sha}").status_code == 403


def test_device_goes_offline_when_silent_and_selectors_match_attributes(
    live: Live, model_files: dict[str, Path]
) -> None:
    ghost = Ghost(live)
    _queue(live, model_files, "soc:ghostchip")  # selects the ghost by attribute
    with live.http(live.user_token) as c:
        devs = {d["name"]: d for d in c.get("/devices").json()}
        assert devs[ghost.name]["status"] == "online"
        assert devs[ghost.name]["queue_depth"] >= 1
        time.sleep(3.5)  # offline_after_s = 3 on the test server
        devs = {d["name"]: d for d in c.get("/devices").json()}
        assert devs[ghost.name]["status"] == "offline"
        assert devs[live.agent_name]["status"] == "online"  # the real agent heartbeats
    assert ghost.lease() is not None


def test_a_device_registered_by_another_token_is_refused(live: Live) -> None:
    ghost, other = Ghost(live), Ghost(live)
    r = other.http.post(f"/agents/{ghost.id}/lease")
    assert r.status_code == 403


@pytest.mark.parametrize("selector", ["", "class:", "a:b,c"])
def test_malformed_selectors(live: Live, model_files: dict[str, Path], selector: str) -> None:
    with live.http(live.user_token) as c:
        model = c.post(
            "/models", files={"file": ("mlp.onnx", model_files["mlp"].read_bytes())}
        ).json()
        r = c.post(
            "/benchmarks",
            json={
                "model_id": model["id"],
                "targets": [{"runtime": "onnxruntime", "device": selector}],
            },
        )
    assert r.status_code == 422
