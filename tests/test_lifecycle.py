"""The job lifecycle in process (``server.queue``): leasing in one SQL statement, expiry on a
fake clock, retries, idempotent and concurrent reports, concurrent leases, a selector-starved
queue, the reaper's lock -- on SQLite (in memory and a file) and PostgreSQL (a private
database). The same store code the coordinator runs, no HTTP in between (the long-poll and
the 503 are checked through the real app with Starlette's TestClient)."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from db.engine import PoolOptions, make_engine, make_session_factory
from db.migrate import upgrade
from db.models import Artifact, Base, Device, Job, Model, Result, utcnow
from latencylab.schemas import DeviceRegister, LatencyStats, MeasureResult
from latencylab.status import JobStatus
from server.config import Settings
from server.queue import lifecycle, reaper, terms
from server.queue.kinds import JobContext
from server.storage import open_store
from server.store import bindings, tokens
from server.store import jobs as job_store
from server.wiring import job_kinds
from tests.conftest import PG_URL, _pg_admin_url

THREADED = "threads need a connection each: an in-memory SQLite database is one connection"


@dataclass
class FakeClock:
    t: datetime = field(default_factory=utcnow)

    def now(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


@dataclass
class World:
    """A migrated database, the kinds registry, a fake clock: what the coordinator wires."""

    engine: Engine
    sessions: sessionmaker[Session]
    settings: Settings
    clock: FakeClock
    backend: str
    token_id: int = 0
    model_id: int = 0

    def ctx(self, session: Session) -> JobContext:
        return JobContext(
            session, job_kinds(), open_store(self.settings), self.settings, self.clock
        )

    @contextmanager
    def tx(self) -> Iterator[JobContext]:
        with self.sessions() as session:
            yield self.ctx(session)
            session.commit()

    def device(self, name: str, cls: str = "cpu", **attributes: Any) -> int:
        body = DeviceRegister(
            name=name, device_class=cls, runtimes={"onnxruntime": "1.20"}, attributes=attributes
        )
        with self.tx() as ctx:
            token = ctx.session.get(tokens.ApiToken, self.token_id)
            assert token is not None
            return bindings.register_device(ctx, body, token).id

    def job(self, selector: str, runtime: str = "onnxruntime", max_attempts: int = 3) -> int:
        with self.tx() as ctx:
            job = Job(
                kind="benchmark",
                model_id=self.model_id,
                artifact_sha256="a" * 64,
                runtime=runtime,
                device_selector=selector,
                precision="fp32",
                batch_size=1,
                threads=1,
                settings={},
                max_attempts=max_attempts,
            )
            return lifecycle.enqueue(ctx.session, job).id

    def lease(self, device_id: int) -> int | None:
        with self.tx() as ctx:
            device = ctx.session.get(Device, device_id)
            assert device is not None
            job = lifecycle.lease(ctx, device)
            return job.id if job is not None else None

    def report(self, device_id: int, job_id: int, ok: bool = True) -> tuple[int, bool]:
        with self.tx() as ctx:
            device = ctx.session.get(Device, device_id)
            assert device is not None
            row, created = job_store.report_result(ctx, device, job_id, _result(ok))
            return row.id, created

    def sweep(self) -> int | None:
        with self.tx() as ctx:
            return reaper.sweep(ctx)

    def row(self, job_id: int) -> Job:
        with self.sessions() as session:
            job = session.get(Job, job_id)
            assert job is not None
            return job

    def count(self, model: type[Base], *where: Any) -> int:
        with self.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _result(ok: bool = True) -> MeasureResult:
    stats = LatencyStats(
        min=1.0, mean=1.1, p50=1.1, p90=1.2, p95=1.2, p99=1.3, max=1.4, std=0.1, cov=0.09
    )
    if not ok:
        return MeasureResult(status="failed", error="the runtime crashed")
    return MeasureResult(status="succeeded", latency_ms=stats, runs=3, times_ms=[1.0, 1.1, 1.2])


def _seed(world: World) -> World:
    with world.sessions() as session:
        _, _plain = tokens.create_token(session, "agent", "lifecycle tests")
        session.add(Artifact(sha256="a" * 64, size=1, format="onnx"))
        session.flush()
        model = Model(name="m", format="onnx", sha256="a" * 64, size=1, inputs=[], outputs=[])
        session.add(model)
        session.flush()
        world.token_id = session.scalar(select(tokens.ApiToken.id)) or 0
        world.model_id = model.id
        session.commit()
    return world


@pytest.fixture(scope="module")
def pg_engine() -> Iterator[Engine]:
    """A private PostgreSQL database for this module (the live server's one is shared)."""
    import psycopg

    try:
        admin = psycopg.connect(_pg_admin_url(), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI but unreachable at {PG_URL}: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {exc}")
    name = f"latencylab_lifecycle_{uuid.uuid4().hex[:10]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        engine = make_engine(PG_URL.rsplit("/", 1)[0] + f"/{name}", PoolOptions(size=12))
        try:
            upgrade(engine)
            yield engine
        finally:
            engine.dispose()
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )
            admin.execute(f'DROP DATABASE "{name}"')


def _truncate(engine: Engine) -> None:
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(
    params=["sqlite-memory", "sqlite-file", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    settings = Settings(data_dir=tmp_path, lease_s=60, max_attempts=3, write_admin_token=False)
    if request.param == "postgres":
        engine = request.getfixturevalue("pg_engine")
        _truncate(engine)
        yield _seed(World(engine, make_session_factory(engine), settings, FakeClock(), "pg"))
        return
    url = "sqlite://" if request.param == "sqlite-memory" else f"sqlite:///{tmp_path / 'q.db'}"
    engine = make_engine(url, PoolOptions(size=12, lock_timeout_s=30))
    upgrade(engine)
    try:
        yield _seed(World(engine, make_session_factory(engine), settings, FakeClock(), url))
    finally:
        engine.dispose()


def _threaded(world: World) -> None:
    if world.backend == "sqlite://":
        pytest.skip(THREADED)


def _race(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run ``fn(i)`` in ``n`` threads released at once; their results (or exceptions)."""
    gate = threading.Barrier(n)
    out: list[Any] = [None] * n

    def run(i: int) -> None:
        gate.wait()
        try:
            out[i] = fn(i)
        except Exception as exc:  # the outcome under test
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


# --------------------------------------------------------------------------- leasing
def test_lease_hands_out_the_oldest_job_the_device_may_take(world: World) -> None:
    cpu = world.device("cpu-1", "cpu", rack="3")
    world.device("gpu-1", "gpu")
    for_gpu = world.job("class:gpu")
    wrong_runtime = world.job("cpu-1", runtime="tflite")
    first = world.job("class:cpu,rack:3")
    second = world.job("cpu-1")
    assert world.lease(cpu) == first
    assert world.report(cpu, first)[1] is True
    assert world.lease(cpu) == second
    job = world.row(second)
    assert (job.status, job.device_id, job.attempts) == (JobStatus.running, cpu, 1)
    assert world.row(for_gpu).status == world.row(wrong_runtime).status == JobStatus.queued


def test_sql_matching_agrees_with_python_matching(world: World) -> None:
    """The lease statement and ``can_take`` are one definition (``server.queue.terms``)."""
    host = terms.COORDINATOR_HOST
    ids = {
        "phone": world.device("Pixel-8", "phone", soc="SM8550", host="lab-1"),
        "here": world.device("box", "cpu", host=host),
        "flagged": world.device("far", "cpu", local="true"),
    }
    selectors = ["local", "Pixel-8", "pixel-8", "name:pixel-8", "class:PHONE", "soc:sm8550",
                 "soc:sm8550,class:cpu", "runtime:onnxruntime", "runtime:tflite", "host:lab-1",
                 "box", "local:true"]  # fmt: skip
    for selector in selectors:
        job_id = world.job(selector)
        with world.sessions() as session:
            for device_id in ids.values():
                device = session.get(Device, device_id)
                assert device is not None
                in_sql = session.scalar(
                    select(Job.id).where(
                        Job.id == job_id, terms.takeable(device_id, Job.queue_key_id)
                    )
                )
                in_python = terms.can_take(device, selector, "onnxruntime")
                assert (in_sql is not None) is in_python, (selector, device.name)


def test_a_second_lease_while_holding_a_job_is_a_conflict(world: World) -> None:
    dev = world.device("one")
    world.job("one")
    world.job("one")
    assert world.lease(dev) is not None
    with pytest.raises(lifecycle.LeaseConflict):
        world.lease(dev)
    assert world.count(Job, Job.status == JobStatus.running) == 1


def test_concurrent_leases_by_one_device_get_one_job(world: World) -> None:
    _threaded(world)
    dev = world.device("eager")
    for _ in range(8):
        world.job("eager")
    out = _race(8, lambda _: world.lease(dev))
    leased = [o for o in out if isinstance(o, int)]
    conflicts = [o for o in out if isinstance(o, lifecycle.LeaseConflict)]
    assert len(leased) == 1 and len(conflicts) == 7, out
    assert world.count(Job, Job.status == JobStatus.running, Job.device_id == dev) == 1


def test_concurrent_leases_by_many_devices_never_share_a_job(world: World) -> None:
    _threaded(world)
    devices = [world.device(f"fleet-{i}", "fleet") for i in range(8)]
    jobs = {world.job("class:fleet") for _ in range(6)}
    out = _race(8, lambda i: world.lease(devices[i]))
    leased = [o for o in out if isinstance(o, int)]
    assert sorted(leased) == sorted(jobs) and out.count(None) == 2, out


def test_a_selector_starved_queue_does_not_block_a_local_job(world: World) -> None:
    """2000 jobs for a device class nobody serves, then one `local` job: the local device
    leases it at once (no scan limit: the database matches selectors)."""
    local = world.device("here", "cpu", local="true")
    first = world.job("class:phone")
    with world.sessions() as session:
        row = session.get(Job, first)
        assert row is not None
        template = {c: getattr(row, c) for c in ("kind", "model_id", "artifact_sha256",
                    "runtime", "device_selector", "precision", "batch_size", "threads",
                    "queue_key_id", "max_attempts")}  # fmt: skip
        session.execute(insert(Job), [{**template, "settings": {}} for _ in range(1999)])
        session.commit()
    mine = world.job("local")
    t0 = time.perf_counter()
    assert world.lease(local) == mine
    assert time.perf_counter() - t0 < 2.0
    assert world.count(Job, Job.status == JobStatus.queued) == 2000


# --------------------------------------------------------------------------- expiry and retries
def test_expired_leases_are_requeued_then_fail_after_max_attempts(world: World) -> None:
    dev = world.device("flaky")
    job_id = world.job("flaky", max_attempts=3)
    for attempt in (1, 2, 3):
        assert world.lease(dev) == job_id
        assert world.row(job_id).attempts == attempt
        world.clock.advance(30)
        assert world.sweep() == 0  # not yet
        world.clock.advance(31)
        assert world.sweep() == 1
    job = world.row(job_id)
    assert job.status == JobStatus.failed and job.attempts == 3
    assert job.error is not None and "gave up after 3 attempt(s)" in job.error
    assert "lease expired on device 'flaky'" in job.error
    assert world.lease(dev) is None


def test_heartbeats_keep_the_lease_and_a_lost_lease_is_lost(world: World) -> None:
    dev = world.device("steady")
    job_id = world.job("steady")
    assert world.lease(dev) == job_id
    for _ in range(3):
        world.clock.advance(50)
        with world.tx() as ctx:
            device = ctx.session.get(Device, dev)
            assert device is not None
            lifecycle.heartbeat(ctx, device, job_id, {"phase": "steady"})
        assert world.sweep() == 0
    world.clock.advance(61)
    assert world.sweep() == 1
    with pytest.raises(lifecycle.LeaseLost), world.tx() as ctx:
        device = ctx.session.get(Device, dev)
        assert device is not None
        lifecycle.heartbeat(ctx, device, job_id, {})
    with pytest.raises(lifecycle.LeaseLost):
        world.report(dev, job_id)
    assert world.row(job_id).status == JobStatus.queued


def test_a_reregistering_agent_gives_its_job_back(world: World) -> None:
    dev = world.device("restarts")
    job_id = world.job("restarts")
    assert world.lease(dev) == job_id
    assert world.device("restarts") == dev  # the agent restarted
    job = world.row(job_id)
    assert job.status == JobStatus.queued and job.device_id is None
    assert job.error is not None and "restarted while holding the job" in job.error


# --------------------------------------------------------------------------- reports
def test_reports_are_idempotent(world: World) -> None:
    dev, other = world.device("reporter"), world.device("bystander")
    job_id = world.job("reporter")
    assert world.lease(dev) == job_id
    first, created = world.report(dev, job_id)
    assert created is True
    assert world.report(dev, job_id) == (first, False)
    with pytest.raises(lifecycle.LeaseLost):
        world.report(other, job_id)
    job = world.row(job_id)
    assert (job.status, job.device_id) == (JobStatus.succeeded, dev)
    assert world.count(Result, Result.job_id == job_id) == 1


def test_a_failed_measurement_fails_the_job_with_its_result(world: World) -> None:
    dev = world.device("crashy")
    job_id = world.job("crashy")
    assert world.lease(dev) == job_id
    world.report(dev, job_id, ok=False)
    job = world.row(job_id)
    assert job.status == JobStatus.failed and job.error == "the runtime crashed"


def test_concurrent_duplicate_reports_store_one_result(world: World) -> None:
    _threaded(world)
    dev = world.device("dup")
    job_id = world.job("dup")
    assert world.lease(dev) == job_id
    out = _race(6, lambda _: world.report(dev, job_id))
    assert all(isinstance(o, tuple) for o in out), out
    assert len({row_id for row_id, _ in out}) == 1
    assert sum(created for _, created in out) == 1
    assert world.count(Result, Result.job_id == job_id) == 1
    assert world.row(job_id).status == JobStatus.succeeded


def test_a_report_racing_a_requeue_never_corrupts_the_job(world: World) -> None:
    """The lease runs out just as the agent reports: the report or the requeue wins, never
    both -- no failed job with a succeeded result, no attempts above the limit, no job
    succeeded under another device's id."""
    _threaded(world)
    devs = [world.device(f"racer-{i}", "racer") for i in range(2)]
    ids = [world.job("class:racer", max_attempts=2) for _ in range(6)]
    for _round in range(8):
        held = [(d, world.lease(d)) for d in devs]
        world.clock.advance(61)  # every lease is overdue: the reaper may take them back

        def step(i: int, held: list[tuple[int, int | None]] = held) -> Any:
            if i == len(held):
                return world.sweep()
            dev, job_id = held[i]
            return world.report(dev, job_id) if job_id is not None else None

        _race(len(held) + 1, step)
    with world.sessions() as session:
        for job in session.scalars(select(Job).where(Job.id.in_(ids))):
            assert job.attempts <= job.max_attempts, (job.id, job.attempts)
            result = session.scalar(select(Result).where(Result.job_id == job.id))
            if job.status == JobStatus.succeeded:
                assert result is not None and result.device_id == job.device_id
            else:
                assert result is None, (job.id, job.status, job.error)
            if job.status == JobStatus.failed:
                assert job.attempts == job.max_attempts


# --------------------------------------------------------------------------- the reaper
@pytest.mark.postgres
def test_only_one_reaper_sweeps_at_a_time(pg_engine: Engine, tmp_path: Path) -> None:
    _truncate(pg_engine)
    settings = Settings(data_dir=tmp_path, lease_s=60, write_admin_token=False)
    world = _seed(World(pg_engine, make_session_factory(pg_engine), settings, FakeClock(), "pg"))
    dev = world.device("reaped")
    world.job("reaped")
    assert world.lease(dev) is not None
    world.clock.advance(61)
    with world.sessions() as first, world.sessions() as second:
        assert reaper.sweep(world.ctx(first)) == 1  # holds the advisory lock until it ends
        assert reaper.sweep(world.ctx(second)) is None  # another replica is sweeping
        first.commit()
        second.rollback()
    assert world.sweep() == 0
    assert world.count(Job, Job.status == JobStatus.queued) == 1
