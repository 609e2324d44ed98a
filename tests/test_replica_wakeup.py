"""Cross-replica wake-ups (issue 12): a long-polling lease on one coordinator process is
woken by a job queued through another process on the same PostgreSQL (``LISTEN``/``NOTIFY``,
``server.queue.notify``), not by its periodic re-check -- set to 30 s here, longer than the
long-poll itself, so only the notification can hand the job over within seconds. After a
restart of PostgreSQL the listeners reconnect and wake-ups work again.
"""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from bench.coordinator_env import SIM_ATTRIBUTES, Seed, enqueue, seed
from tests.conftest import fresh_postgres_database
from tests.test_faults import PG_BIN, coordinators, private_postgres_server

pytestmark = pytest.mark.postgres

SLOW_RECHECK = {"LATENCYLAB_LEASE_RECHECK_S": "30", "LATENCYLAB_LEASE_WAIT_MAX_S": "60"}
WAIT_S = 25.0
"""The long-poll: shorter than the re-check, so a 200 before its end is a wake-up."""
WOKEN_WITHIN_S = 10.0


def _call(url: str, token: str, path: str, **kw: object) -> httpx.Response:
    """POST through 503s (a coordinator whose pool meets a restarted database answers 503
    with Retry-After once; the agent protocol retries), as the real agent does."""
    deadline = time.monotonic() + 60
    while True:
        try:
            r = httpx.post(
                f"{url}/api/v1{path}",
                headers={"Authorization": f"Bearer {token}"},
                timeout=WAIT_S + 30,
                **kw,  # type: ignore[arg-type]
            )
        except httpx.TransportError:
            r = None
        if r is not None and r.status_code != 503:
            return r
        assert time.monotonic() < deadline, f"{path}: still unavailable after 60 s"
        time.sleep(float(r.headers.get("retry-after", 1)) if r is not None else 1)


def _register(url: str, token: str, name: str) -> int:
    body = {"name": name, "device_class": "cpu", "runtimes": {"onnxruntime": "sim"},
            "attributes": SIM_ATTRIBUTES, "info": {"simulated": True}}  # fmt: skip
    r = _call(url, token, "/agents/register", json=body)
    assert r.status_code == 200, r.text
    return int(r.json()["id"])


def _woken_across(a: str, b: str, s: Seed, device_id: int) -> float:
    """Long-poll on ``b``; once it waits, queue one job through ``a``; the seconds from the
    submit to the lease answer (asserted to be a 200 for that job, well before the re-check)."""
    agent = s.agent_tokens[0]
    assert _call(b, agent, f"/agents/{device_id}/lease").status_code == 204  # nothing yet
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        poll = pool.submit(_call, b, agent, f"/agents/{device_id}/lease", params={"wait_s": WAIT_S})
        time.sleep(1.5)  # the long-poll's first attempt found nothing: it waits now
        assert not poll.done(), poll.result().text
        t = time.perf_counter_ns()
        queued = enqueue(a, s.user_token, s.model_id, 1, timeout_s=30)
        (job_id,) = queued["job_ids"]
        r = poll.result(timeout=WAIT_S + 30)
        took = (time.perf_counter_ns() - t) / 1e9
    assert r.status_code == 200, f"{r.status_code} after {took:.1f} s: {r.text}"
    assert r.json()["id"] == job_id
    assert took < WOKEN_WITHIN_S, f"leased {took:.1f} s after the submit: not woken"
    return took  # the device keeps the job: each check uses a device of its own


def test_job_queued_on_one_replica_wakes_a_long_poll_on_another(tmp_path: Path) -> None:
    with (
        fresh_postgres_database() as db,
        coordinators(tmp_path / "data", db, 2, SLOW_RECHECK) as (first, second),
    ):
        s = seed(first.url, first.data_dir, 1)
        device = _register(second.url, s.agent_tokens[0], "wake-b")
        _woken_across(first.url, second.url, s, device)
        # and the other way round: a device long-polling on the first replica
        other = _register(first.url, s.agent_tokens[0], "wake-a")
        _woken_across(second.url, first.url, s, other)


def test_wakeups_survive_a_postgres_restart(tmp_path: Path) -> None:
    with (
        private_postgres_server() as (db, pgdata),
        coordinators(tmp_path / "data", db, 2, SLOW_RECHECK) as (first, second),
    ):
        s = seed(first.url, first.data_dir, 1)
        devices = [_register(second.url, s.agent_tokens[0], f"wake-{i}") for i in range(2)]
        _woken_across(first.url, second.url, s, devices[0])
        as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        cmd = [*as_user, str(PG_BIN / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w",
               "-l", str(pgdata.parent / "pg-restarted.log"), "restart"]  # fmt: skip
        out = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        assert out.returncode == 0, out.stderr
        _woken_across(first.url, second.url, s, devices[1])
        for c in (first, second):
            assert c.proc is not None and c.proc.poll() is None, c.log.read_text()[-2000:]
        assert "queue listener" in second.log.read_text()  # it saw the restart, and came back
