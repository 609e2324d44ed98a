"""Fault injection (issue 12, part 8): real coordinator, agent and PostgreSQL processes are
killed or restarted mid-run, and the database is audited afterwards: every job finished
exactly once (one result, never more attempts than ``max_attempts``).

Simulated agents (``bench/fleet_sim.py``: the real agent protocol over httpx, zero think time)
carry the many-job runs; the agent-kill test uses real ``latencylab agent`` processes. Each
test is bounded (a minute or so on a 2-core machine); ``-m faults`` selects them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bench.coordinator_env import SIM_ATTRIBUTES, audit, enqueue, seed
from bench.fleet_sim import Fleet, FleetOptions, SimAgent, drive_fleet, make_agents, register_all
from db.engine import make_engine
from db.models import Job, Model, Result
from db.nas import TableEntry
from tests.conftest import (
    REPO,
    _env,
    _spawn_worker,
    _stop,
    _wait_for,
    free_port,
    fresh_postgres_database,
)

pytestmark = pytest.mark.faults

# Short leases and a fast reaper, so a job lost with its holder is re-leased within seconds.
FAULT_ENV = {
    "LATENCYLAB_LEASE_S": "3",
    "LATENCYLAB_REAPER_INTERVAL_S": "0.2",
    "LATENCYLAB_OFFLINE_AFTER_S": "5",
    "LATENCYLAB_MAX_ATTEMPTS": "3",
    "LATENCYLAB_LEASE_RECHECK_S": "0.2",
}
SIM_OPTIONS = FleetOptions(heartbeat_s=1.0, poll_s=0.2, report_retries=30, request_timeout_s=10)
PG_BIN = Path("/usr/lib/postgresql/15/bin")
ACTIVE_TABLE = ("building", "validating")


class Coordinator:
    """One ``latencylab serve --no-local-agent`` process on a fixed port, restartable."""

    def __init__(self, data_dir: Path, database_url: str, name: str, env: dict[str, str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir, self.name = data_dir, name
        self.env = _env({**FAULT_ENV, **env, "LATENCYLAB_DATABASE_URL": database_url})
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log(self) -> Path:
        return self.data_dir / f"{self.name}-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "latencylab", "serve", "--no-local-agent",
               "--port", str(self.port), "--data-dir", str(self.data_dir)]  # fmt: skip
        with self.log.open("wb") as fh:
            self.proc = subprocess.Popen(
                cmd, cwd=REPO, env=self.env, stdout=fh, stderr=subprocess.STDOUT
            )
        _wait_for(self.url, self.proc, self.log, timeout=60)

    def kill(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, "coordinator not running"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)


@contextlib.contextmanager
def coordinators(
    data_dir: Path, database_url: str, n: int, env: dict[str, str] | None = None
) -> Iterator[list[Coordinator]]:
    """``n`` coordinators on one database and data directory, started one after the other
    (the first applies the migrations and writes ``admin.token``); stopped afterwards."""
    procs = [Coordinator(data_dir, database_url, f"serve-{i}", env or {}) for i in range(n)]
    try:
        for c in procs:
            c.start()
        yield procs
    finally:
        for c in procs:
            c.stop()


async def until(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


def run_fleet(
    urls: list[str],
    token: str,
    agents: int,
    queue: Callable[[], list[int]],
    chaos: Callable[[Fleet], Coroutine[Any, Any, None]],
    timeout_s: float,
) -> list[int]:
    """Simulated agents spread over ``urls`` register, ``queue`` queues the jobs (benchmarks
    need a matching device), then they work through them while ``chaos`` runs, until every
    job is reported or ``timeout_s`` passes; returns the job ids. A failure in ``chaos`` is
    raised."""

    async def main() -> list[int]:
        fleet = Fleet(SIM_OPTIONS)
        sims = make_agents(fleet, urls, [token], agents)
        assert await register_all(sims, SIM_ATTRIBUTES) == agents
        job_ids = await asyncio.to_thread(queue)
        fleet.expected = set(job_ids)
        task = asyncio.create_task(chaos(fleet))
        done = await drive_fleet(fleet, sims, SIM_ATTRIBUTES, timeout_s)
        if task.done():
            task.result()  # a failed fault step fails the test with its own message
        else:
            task.cancel()
        assert done, f"{len(fleet.completed)}/{len(job_ids)} jobs reported in {timeout_s} s"
        return job_ids

    return asyncio.run(main())


def queue_jobs(url: str, user_token: str, model_id: int, n: int) -> Callable[[], list[int]]:
    def queue() -> list[int]:
        queued = enqueue(url, user_token, model_id, n, timeout_s=60)
        assert len(queued["job_ids"]) == n, queued["answers"]
        return list(queued["job_ids"])

    return queue


def assert_exactly_once(database_url: str, job_ids: list[int]) -> dict[str, Any]:
    """The database's account of ``job_ids``: all succeeded, one result each, within limits."""
    a = audit(database_url, set(job_ids), {})
    assert a["jobs_in_db"] == len(job_ids) and a["jobs_missing"] == 0, a
    assert a["status"] == {"succeeded": len(job_ids)}, a
    assert a["results"] == len(job_ids) and a["results_failed"] == 0, a
    assert a["jobs_with_several_results"] == 0, a
    assert a["attempts_over_max"] == 0, a
    assert a["succeeded_without_result"] == 0, a
    assert a["results_not_from_job_holder"] == 0, a
    return a


# ---------------------------------------------------------------------- replicas


@pytest.mark.postgres
def test_sigkill_one_of_two_coordinators_every_job_once(tmp_path: Path) -> None:
    """500 jobs over two coordinators on one PostgreSQL: one is SIGKILLed mid-run, the other
    carries on alone, the killed one restarts on its port; every job is done exactly once."""
    with (
        fresh_postgres_database() as db,
        coordinators(tmp_path / "data", db, 2) as (first, second),
    ):
        s = seed(first.url, first.data_dir, 1)
        queue = queue_jobs(first.url, s.user_token, s.model_id, 500)
        alone: dict[str, int] = {}

        async def chaos(fleet: Fleet) -> None:
            await until(lambda: len(fleet.completed) >= 100, 60, "100 jobs before the kill")
            second.kill()
            at_kill = len(fleet.completed)
            with contextlib.suppress(AssertionError):  # the survivor may finish them all
                await until(lambda: len(fleet.completed) >= at_kill + 100, 30, "progress")
            alone["jobs"] = len(fleet.completed) - at_kill
            await asyncio.to_thread(second.start)

        job_ids = run_fleet([first.url, second.url], s.agent_tokens[0], 16, queue, chaos, 120)
        assert alone["jobs"] >= 100, f"the surviving coordinator did {alone['jobs']} jobs alone"
        assert second.starts == 2 and second.proc is not None and second.proc.poll() is None
        assert_exactly_once(db, job_ids)


# ---------------------------------------------------------------------- agents


def _jobs(database_url: str, ids: list[int]) -> dict[int, tuple[str, int]]:
    engine = make_engine(database_url)
    try:
        with Session(engine) as s:
            rows = s.execute(select(Job.id, Job.status, Job.attempts).where(Job.id.in_(ids)))
            return {r.id: (str(r.status), r.attempts) for r in rows}
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_sigkill_agent_mid_job_ten_times(backend: str, tmp_path: Path) -> None:
    """Real agents are SIGKILLed in the middle of a measurement, ten times (two agents, five
    kills each, side by side to bound the time) and restarted with the same token and name:
    each killed job is re-leased once its lease expires and is finished exactly once."""
    per_agent, names = 5, ["fault-agent-0", "fault-agent-1"]
    with contextlib.ExitStack() as stack:
        if backend == "sqlite":
            db = f"sqlite:///{tmp_path / 'latencylab.db'}"
        else:
            db = stack.enter_context(fresh_postgres_database())
        (coordinator,) = stack.enter_context(
            coordinators(tmp_path / "data", db, 1, {"LATENCYLAB_LEASE_S": "2"})
        )
        s = seed(coordinator.url, coordinator.data_dir, 1)
        headers = {"Authorization": f"Bearer {s.user_token}"}
        h = stack.enter_context(
            httpx.Client(base_url=coordinator.url + "/api/v1", headers=headers, timeout=30)
        )
        logs: list[Path] = []
        procs: dict[str, subprocess.Popen[bytes]] = {}

        def spawn(name: str) -> None:
            logs.append(tmp_path / f"{name}-{len(logs)}.log")
            procs[name] = _spawn_worker(
                "agent", coordinator.url, s.agent_tokens[0], name, tmp_path / name, logs[-1]
            )

        started: list[subprocess.Popen[bytes]] = []

        def stop_all() -> None:
            for p in started:
                _stop(p)

        stack.callback(stop_all)
        for name in names:
            spawn(name)
            started.append(procs[name])
        deadline = time.monotonic() + 60
        while not set(names) <= {d["name"] for d in h.get("/devices").json()}:
            assert all(p.poll() is None for p in procs.values()), logs
            assert time.monotonic() < deadline, "the agents did not register within 60 s"
            time.sleep(0.2)
        # 0.6 s steady state at least: a kill 0.3 s after the lease lands mid-job (a job
        # that finished first would show 1 attempt below, not 2)
        settings = {"warmup_runs": 1, "min_runs": 5, "min_duration_s": 0.6,
                    "max_duration_s": 1.0, "target_rel_ci": 0.5, "timeout_s": 60}  # fmt: skip
        mine: dict[str, list[int]] = {}
        for name in names:
            target = {"runtime": "onnxruntime", "device": name, "threads": 1}
            body = {"model_id": s.model_id, "targets": [target] * per_agent, "settings": settings}
            r = h.post("/benchmarks", json=body)
            assert r.status_code == 202, r.text
            mine[name] = [int(j["id"]) for j in r.json()["jobs"]]
        job_ids = [j for ids in mine.values() for j in ids]
        killed: dict[str, list[int]] = {name: [] for name in names}
        seen: dict[str, tuple[int, float]] = {}
        deadline = time.monotonic() + 120
        while any(len(k) < per_agent for k in killed.values()):
            assert time.monotonic() < deadline, f"killed only {killed} in time"
            jobs = _jobs(db, job_ids)
            for name in names:
                assert procs[name].poll() is None, logs[-1].read_text()[-2000:]
                fresh = [
                    j for j in mine[name] if jobs[j] == ("running", 1) and j not in killed[name]
                ]
                if not fresh:
                    seen.pop(name, None)
                elif name not in seen or seen[name][0] != fresh[0]:
                    seen[name] = (fresh[0], time.monotonic())
                elif time.monotonic() - seen[name][1] >= 0.3:
                    procs[name].send_signal(signal.SIGKILL)
                    procs[name].wait(timeout=10)
                    killed[name].append(fresh[0])
                    del seen[name]
                    spawn(name)
                    started.append(procs[name])
            time.sleep(0.05)
        while any(st != "succeeded" for st, _ in _jobs(db, job_ids).values()):
            assert time.monotonic() < deadline, _jobs(db, job_ids)
            time.sleep(0.2)
        assert {n: sorted(k) for n, k in killed.items()} == {n: sorted(mine[n]) for n in names}
        # each job: leased, lost with its killed agent, re-leased after expiry, done once
        assert {j: n for j, (_, n) in _jobs(db, job_ids).items()} == dict.fromkeys(job_ids, 2)
        assert_exactly_once(db, job_ids)
        assert len(started) == len(names) * (per_agent + 1)


# ---------------------------------------------------------------------- PostgreSQL restart


@contextlib.contextmanager
def private_postgres_server() -> Iterator[tuple[str, Path]]:
    """A PostgreSQL cluster of its own (initdb, trust auth) on a free loopback port, run as
    the ``postgres`` user when the tests run as root; yields its URL and data directory."""
    if not (PG_BIN / "initdb").is_file() or not (PG_BIN / "pg_ctl").is_file():
        pytest.skip(f"initdb/pg_ctl not found in {PG_BIN}: cannot start a private PostgreSQL")
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="latencylab-pg-"))
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL as postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
        root.chmod(0o755)
        shutil.chown(root, "postgres")
    data, port = root / "data", free_port()

    def pg(*args: str) -> None:  # output to a file: a started server inherits it
        with (root / "pg_ctl.out").open("ab") as out:
            subprocess.run(
                [*as_user, *args], check=True, stdin=subprocess.DEVNULL, stdout=out,
                stderr=out, timeout=120,
            )  # fmt: skip

    try:
        pg(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-N")
        opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        pg(str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "pg.log"),
           "-w", "start")  # fmt: skip
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", data
        finally:
            pg(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.postgres
def test_postgres_restart_mid_run(tmp_path: Path) -> None:
    """``pg_ctl restart -m fast`` of the coordinators' own PostgreSQL mid-run: the two
    coordinators and the agents reconnect and carry on; every job is done exactly once."""
    with (
        private_postgres_server() as (db, pgdata),
        coordinators(tmp_path / "data", db, 2) as (first, second),
    ):
        s = seed(first.url, first.data_dir, 1)
        queue = queue_jobs(first.url, s.user_token, s.model_id, 200)
        after: dict[str, int] = {}
        as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

        async def chaos(fleet: Fleet) -> None:
            await until(lambda: len(fleet.completed) >= 60, 60, "60 jobs before the restart")
            # -l again: a restart forgets it, and the server would hold pg_ctl's output open
            cmd = [*as_user, str(PG_BIN / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w",
                   "-l", str(pgdata.parent / "pg-restarted.log"), "restart"]  # fmt: skip
            out = await asyncio.to_thread(
                subprocess.run, cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, timeout=60,
            )  # fmt: skip
            assert out.returncode == 0, f"pg_ctl restart exited with {out.returncode}"
            after["at"] = len(fleet.completed)

        job_ids = run_fleet([first.url, second.url], s.agent_tokens[0], 8, queue, chaos, 120)
        assert "at" in after, "the run ended before PostgreSQL had restarted"
        assert after["at"] < len(job_ids), "every job was done before PostgreSQL restarted"
        assert first.proc is not None and first.proc.poll() is None
        assert second.proc is not None and second.proc.poll() is None
        assert_exactly_once(db, job_ids)


# ---------------------------------------------------------------------- table builds


class PacedAgent(SimAgent):
    """A simulated agent that takes a moment per job, so a build can be interrupted."""

    async def report(self, job: Any) -> None:
        await asyncio.sleep(0.02)
        await super().report(job)


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_table_build_continues_across_coordinator_restart(backend: str, tmp_path: Path) -> None:
    """A table build whose coordinator is SIGKILLed after some blocks are done completes once
    it restarts (same database and data directory), measuring no block twice."""
    with contextlib.ExitStack() as stack:
        if backend == "sqlite":
            db = f"sqlite:///{tmp_path / 'latencylab.db'}"
        else:
            db = stack.enter_context(fresh_postgres_database())
        (coordinator,) = stack.enter_context(coordinators(tmp_path / "data", db, 1))
        s = seed(coordinator.url, coordinator.data_dir, 1)
        api = httpx.Client(
            base_url=coordinator.url + "/api/v1",
            headers={"Authorization": f"Bearer {s.user_token}"},
            timeout=30,
        )
        stack.enter_context(api)
        asyncio.run(_register_one(coordinator.url, s.agent_tokens[0]))
        quick = {"warmup_runs": 2, "min_runs": 10, "min_duration_s": 0.05,
                 "max_duration_s": 0.5, "target_rel_ci": 0.05, "timeout_s": 60}  # fmt: skip
        body = {"space": "ofa-proxyless", "resolution": 128, "device": "sim-0000",
                "threads": 1, "validate_n": 3, "settings": quick}  # fmt: skip
        r = api.post("/tables", json=body)
        assert r.status_code == 202, r.text
        table_id = int(r.json()["id"])
        total = int(r.json()["progress"]["total"])
        seen: dict[str, int] = {}

        def progress() -> dict[str, Any]:
            for _ in range(100):  # the coordinator may be down or starting: wait it out
                with contextlib.suppress(httpx.TransportError):
                    got = api.get(f"/tables/{table_id}")
                    if got.status_code == 200:
                        return dict(got.json())
                time.sleep(0.2)
            raise AssertionError("the table could not be read for 20 s")

        async def chaos(fleet: Fleet) -> None:
            def blocks_done() -> int:
                return int(progress()["progress"]["blocks_done"])

            while (n := await asyncio.to_thread(blocks_done)) < 20:
                await asyncio.sleep(0.1)
            coordinator.kill()
            seen["at_kill"] = n
            await asyncio.sleep(1)
            await asyncio.to_thread(coordinator.start)
            while await asyncio.to_thread(lambda: progress()["status"]) in ACTIVE_TABLE:
                await asyncio.sleep(0.2)
            fleet.stop.set()

        _table_fleet(coordinator.url, s.agent_tokens[0], chaos)
        t = progress()
        assert t["status"] == "succeeded", (t.get("error"), t.get("failed_blocks", [])[:3])
        assert 20 <= seen["at_kill"] < t["progress"]["blocks_total"]
        assert t["progress"]["done"] == total
        engine = make_engine(db)
        try:
            with Session(engine) as sess:
                entries = sess.execute(select(TableEntry.block_key, TableEntry.job_id)).all()
                rows = sess.execute(
                    select(Job.id, Job.status, Job.attempts, Job.max_attempts, Model.meta)
                    .join(Model, Model.id == Job.model_id)
                    .where(Job.kind == "table_block")
                ).all()
                results = Counter(
                    sess.scalars(
                        select(Result.job_id).where(Result.job_id.in_([r.id for r in rows]))
                    )
                )
        finally:
            engine.dispose()
        per_block = Counter(r.meta["block_key"] for r in rows)
        assert len(entries) == 103 and len(per_block) == 103
        assert set(per_block.values()) == {1}, per_block.most_common(3)
        assert {r.status for r in rows} == {"succeeded"}
        assert all(r.attempts <= r.max_attempts for r in rows)
        assert set(results.values()) == {1} and len(results) == 103


async def _register_one(url: str, token: str) -> None:
    """Register ``sim-0000`` once so the table can name it as its device."""
    fleet = Fleet(SIM_OPTIONS)
    (agent,) = make_agents(fleet, [url], [token], 1)
    try:
        assert await agent.register(SIM_ATTRIBUTES)
    finally:
        await agent.close()


def _table_fleet(url: str, token: str, chaos: Callable[[Fleet], Coroutine[Any, Any, None]]) -> None:
    """One paced simulated agent (``sim-0000``) working the table's jobs until ``chaos``
    stops it; the table's jobs are not known up front, so the fleet never counts as done."""

    async def main() -> None:
        fleet = Fleet(SIM_OPTIONS, expected={-1})
        sims: list[SimAgent] = [PacedAgent(fleet, url, token, "sim-0000")]
        assert await register_all(sims, SIM_ATTRIBUTES) == 1
        task = asyncio.create_task(chaos(fleet))
        await drive_fleet(fleet, sims, SIM_ATTRIBUTES, 90)
        assert task.done(), "the table build did not end within 90 s"
        task.result()

    asyncio.run(main())
