"""Simulated agents for the coordinator load benchmark (``bench/coordinator.py``).

Each simulated agent speaks the real agent protocol over its own ``httpx.AsyncClient`` (its own
connections, as a real agent has): register, heartbeat (every ``heartbeat_s`` in a task of its
own, carrying the job it holds), lease, report. There is no think time: a leased job is
reported at once with a small succeeded ``MeasureResult``, and the next lease follows. The
agent's reactions are the real agent's (``agents/agent.py``): after an empty lease or a failed
one it waits ``poll_s``; a 503 waits its Retry-After with the agent's own jitter
(``agents.agent.backoff``); a report is retried through transport errors and 503s with the
same doubling delay and retry count; errors are typed with ``agents.api.error_for`` (by
status and code, never by text).

Every call is timed with ``perf_counter_ns`` and counted per endpoint by HTTP status, and by
exception class for transport errors (timeouts included). Every 200 lease answer and every
report answer is logged, so ``double_leases`` can tell a job handed to a second device while
the first still held a live lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from agents.agent import backoff
from agents.api import DeviceNotRegistered, Fatal, LeaseLost, Overloaded, error_for
from latencylab.schemas import JobReport, LatencyStats, LeasedJob, MeasureResult

ENDPOINTS = ("register", "heartbeat", "lease", "report")
STOP_GRACE_S = 2.0  # in-flight calls get this long to finish once the run is over

SIM_TIMES_MS = [0.101, 0.099, 0.103, 0.100, 0.102]
SIM_REPORT: dict[str, Any] = JobReport(
    result=MeasureResult(
        status="succeeded",
        latency_ms=LatencyStats(
            min=0.099,
            mean=0.101,
            p50=0.101,
            p90=0.103,
            p95=0.103,
            p99=0.103,
            max=0.103,
            std=0.0016,
            cov=0.0157,
        ),
        runs=len(SIM_TIMES_MS),
        stop_reason="max_runs",
        steady_duration_s=0.0005,
        times_ms=SIM_TIMES_MS,
        environment={"simulated": True},
    )
).model_dump(mode="json")


@dataclass
class EndpointStats:
    """One endpoint's answered-call latencies, status codes, transport errors and 503s."""

    latencies_ns: list[int] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: Counter[str] = field(default_factory=Counter)
    unavailable_with_retry_after: int = 0
    unavailable_without_retry_after: int = 0


@dataclass(frozen=True)
class LeaseEvent:
    job_id: int
    device: str
    attempt: int
    at_ns: int
    received_at: datetime  # wall clock, compared with the lease's expiry only
    expires_at: datetime


@dataclass(frozen=True)
class ReportEvent:
    job_id: int
    device: str
    status: int
    sent_ns: int  # when this device first sent its report of the job
    at_ns: int


@dataclass(frozen=True)
class FleetOptions:
    heartbeat_s: float
    poll_s: float
    report_retries: int
    request_timeout_s: float


@dataclass
class Fleet:
    """What all simulated agents of one run share: the goal, the stop signal, the logs."""

    options: FleetOptions
    expected: set[int] = field(default_factory=set)  # the job ids the run queued
    stats: dict[str, EndpointStats] = field(
        default_factory=lambda: {e: EndpointStats() for e in ENDPOINTS}
    )
    leases: list[LeaseEvent] = field(default_factory=list)
    reports: list[ReportEvent] = field(default_factory=list)
    completed: set[int] = field(default_factory=set)
    fatal: Counter[str] = field(default_factory=Counter)
    dropped_reports: Counter[str] = field(default_factory=Counter)
    load_samples: list[float] = field(default_factory=list)  # 1-min load average, every 10 s
    first_lease_ns: int | None = None
    last_report_ns: int | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    settled: bool = False  # the database has no queued or running job of the run left

    def finished(self) -> bool:
        """Every job reported by this fleet, or ended otherwise (failed once its attempts
        ran out): nothing is left to lease."""
        return self.settled or self.completed >= self.expected


class Refused(Exception):
    """The coordinator refused this agent for good (401/403/``device_taken``)."""


class SimAgent:
    """One simulated device: its own name, token and HTTP client."""

    def __init__(self, fleet: Fleet, url: str, token: str, name: str) -> None:
        self.fleet, self.name = fleet, name
        self.http = httpx.AsyncClient(
            base_url=url.rstrip("/") + "/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=fleet.options.request_timeout_s,
        )
        self.device_id: int | None = None
        self.job_id: int | None = None
        self.working = True

    async def close(self) -> None:
        await self.http.aclose()

    async def call(
        self, endpoint: str, path: str, body: dict[str, Any] | None = None
    ) -> httpx.Response | None:
        """POST, timed and counted; None on a transport error (counted by its class)."""
        stats = self.fleet.stats[endpoint]
        if endpoint == "lease" and self.fleet.first_lease_ns is None:
            self.fleet.first_lease_ns = time.perf_counter_ns()
        start = time.perf_counter_ns()
        try:
            r = await self.http.post(path, json=body)
        except httpx.TransportError as exc:
            stats.transport_errors[type(exc).__name__] += 1
            return None
        stats.latencies_ns.append(time.perf_counter_ns() - start)
        stats.statuses[r.status_code] += 1
        if r.status_code == 503:
            if r.headers.get("retry-after"):
                stats.unavailable_with_retry_after += 1
            else:
                stats.unavailable_without_retry_after += 1
        return r

    async def pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.fleet.stop.wait(), seconds)

    async def register(self, attributes: dict[str, Any]) -> bool:
        """Register (retrying through 503s and transport errors) and send one heartbeat."""
        body = {
            "name": self.name,
            "device_class": "cpu",
            "runtimes": {"onnxruntime": "sim"},
            "attributes": attributes,
            "info": {"simulated": True},
        }
        delay = self.fleet.options.poll_s
        while not self.fleet.stop.is_set():
            r = await self.call("register", "/agents/register", body)
            if r is not None and r.status_code == 200:
                self.device_id = int(r.json()["id"])
                await self.call("heartbeat", f"/agents/{self.device_id}/heartbeat", {})
                return True
            if r is not None:
                exc = error_for(r)
                if not isinstance(exc, Overloaded):
                    self.fleet.fatal[f"register {r.status_code} {exc.code}"] += 1
                    return False
                await self.pause(backoff(exc, delay))
            else:
                await self.pause(delay)
        return False

    async def heartbeats(self) -> None:
        """The agent's heartbeat thread: every ``heartbeat_s`` (first one at a random offset,
        as real agents start at different times), carrying the job held now."""
        interval = self.fleet.options.heartbeat_s
        await self.pause(random.uniform(0, interval))
        while self.working and not self.fleet.stop.is_set():
            job = self.job_id
            body = {"job_id": job, "progress": {"phase": "steady"} if job else {}}
            r = await self.call("heartbeat", f"/agents/{self.device_id}/heartbeat", body)
            wait = interval
            if r is not None and r.status_code == 503:
                wait = backoff(error_for(r), interval)
            await self.pause(wait)

    async def work(self, attributes: dict[str, Any]) -> None:
        """Lease and report until every job of the run is done, the run stops or the
        coordinator refuses this agent for good."""
        try:
            while not self.fleet.stop.is_set():
                try:
                    job = await self.lease()
                except Refused:
                    return
                if job is not None:
                    await self.report(job)
                    continue
                if self.fleet.finished():
                    return
                if self.device_id is None and not await self.register(attributes):
                    return
                await self.pause(self.fleet.options.poll_s)
        finally:
            self.working = False

    async def lease(self) -> LeasedJob | None:
        poll = self.fleet.options.poll_s
        r = await self.call("lease", f"/agents/{self.device_id}/lease")
        if r is None or r.status_code == 204:
            return None
        if r.status_code == 200:
            job = LeasedJob.model_validate(r.json())
            self.fleet.leases.append(
                LeaseEvent(
                    job.id,
                    self.name,
                    job.attempt,
                    time.perf_counter_ns(),
                    datetime.now(UTC),
                    job.lease_expires_at,
                )
            )
            self.job_id = job.id
            return job
        exc = error_for(r)
        if isinstance(exc, Overloaded):
            await self.pause(backoff(exc, poll))
        elif isinstance(exc, DeviceNotRegistered):
            self.device_id = None
        elif isinstance(exc, Fatal):
            self.fleet.fatal[f"lease {r.status_code} {exc.code}"] += 1
            raise Refused(str(exc)) from exc
        return None

    async def report(self, job: LeasedJob) -> None:
        """The agent's ``send``: retried through transport errors and 503s, dropped when the
        lease is lost or the report is refused."""
        delay = 0.5
        path = f"/agents/{self.device_id}/jobs/{job.id}/report"
        sent = time.perf_counter_ns()
        try:
            for attempt in range(self.fleet.options.report_retries + 1):
                if attempt and self.fleet.stop.is_set():
                    return
                r = await self.call("report", path, SIM_REPORT)
                if r is not None:
                    self.fleet.reports.append(
                        ReportEvent(job.id, self.name, r.status_code, sent, time.perf_counter_ns())
                    )
                    if r.status_code in (200, 201):
                        self.fleet.last_report_ns = time.perf_counter_ns()
                        self.fleet.completed.add(job.id)
                        return
                    exc = error_for(r)
                    if not isinstance(exc, Overloaded):
                        kind = "lease_lost" if isinstance(exc, LeaseLost) else str(exc.code)
                        self.fleet.dropped_reports[kind] += 1
                        return
                    wait = backoff(exc, delay)
                else:
                    wait = backoff(RuntimeError(), delay)
                await self.pause(wait)
                delay = min(delay * 2, 15)
            self.fleet.dropped_reports["gave_up"] += 1
        finally:
            self.job_id = None


async def _progress(fleet: Fleet, started_ns: int, every_s: float = 10.0) -> None:
    while not fleet.stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(fleet.stop.wait(), every_s)
        elapsed = (time.perf_counter_ns() - started_ns) / 1e9
        fleet.load_samples.append(round(os.getloadavg()[0], 2))
        print(
            f"  ... {elapsed:5.0f} s: {len(fleet.completed)}/{len(fleet.expected)} jobs reported",
            file=sys.stderr,
            flush=True,
        )


def make_agents(fleet: Fleet, urls: list[str], tokens: list[str], n: int) -> list[SimAgent]:
    """N agents named ``sim-0000``..., spread round-robin over ``urls`` and ``tokens``."""
    return [
        SimAgent(fleet, urls[i % len(urls)], tokens[i % len(tokens)], f"sim-{i:04d}")
        for i in range(n)
    ]


async def register_all(agents: list[SimAgent], attributes: dict[str, Any]) -> int:
    """Register every agent at once; returns how many succeeded."""
    done = await asyncio.gather(*(a.register(attributes) for a in agents))
    return sum(done)


async def _watch(fleet: Fleet, settled: Callable[[], bool], every_s: float = 2.0) -> None:
    """Ask ``settled`` (a read of the database, in a thread) every ``every_s`` whether any
    job is left; once none is, the agents stop at their next empty lease."""
    while not fleet.stop.is_set() and not fleet.settled:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(fleet.stop.wait(), every_s)
        fleet.settled = await asyncio.to_thread(settled)


async def drive_fleet(
    fleet: Fleet,
    agents: list[SimAgent],
    attributes: dict[str, Any],
    timeout_s: float,
    settled: Callable[[], bool] | None = None,
) -> bool:
    """Run every agent's job loop and heartbeats until all jobs are reported or otherwise
    ended (``settled``, when given: a read of the database) or ``timeout_s`` passes; False
    when the run timed out (collapsed)."""
    started = time.perf_counter_ns()
    live = [a for a in agents if a.device_id is not None]
    tasks = [asyncio.create_task(a.work(attributes)) for a in live]
    tasks += [asyncio.create_task(a.heartbeats()) for a in live]
    if settled is not None:
        tasks.append(asyncio.create_task(_watch(fleet, settled)))
    progress = asyncio.create_task(_progress(fleet, started))
    workers = asyncio.gather(*tasks[: len(live)], return_exceptions=True)
    done_in_time = True
    try:
        await asyncio.wait_for(asyncio.shield(workers), timeout_s)
    except TimeoutError:
        done_in_time = False
    fleet.stop.set()
    _, pending = await asyncio.wait([*tasks, progress], timeout=STOP_GRACE_S)
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    with contextlib.suppress(asyncio.CancelledError):
        await workers
    await asyncio.gather(*(a.close() for a in agents), return_exceptions=True)
    return done_in_time and fleet.finished()
