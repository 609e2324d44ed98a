"""Coordinator load benchmark: N simulated agents against a real coordinator.

    python -m bench.coordinator --backend sqlite|postgres [--processes 1] [--agents 8,32,64]
                                [--jobs 2000] [--timeout-s 300] [--quick]

For each ``--agents`` value, a fresh coordinator (``latencylab serve --no-local-agent``, one
or more processes: ``serve --workers N`` when the flag exists, else N processes on their
own ports sharing the database, agents spread over them round-robin) on a fresh database
(a SQLite file, or a private PostgreSQL database on 127.0.0.1 created through ``test`` and
dropped afterwards). The benchmark creates the tokens, uploads a one-node ONNX model,
registers the simulated agents (``bench/fleet_sim.py``), queues ``--jobs`` benchmark jobs
through ``POST /api/v1/benchmarks`` (64 targets a request, selector ``sim:1``), then lets
the agents lease and report with zero think time until every job is reported or
``--timeout-s`` passes (then the run is marked collapsed, with what it did).

Reported per run: jobs/s (jobs reported / wall time from the first lease call to the last
accepted report), lease and report latency p50/p99, HTTP status counts per endpoint,
transport errors and timeouts by kind, 503s with and without Retry-After, double leases
(from the client's log of every 200 lease answer), and from the database afterwards
(SQLAlchemy on ``db.models``): jobs not finished, attempts over ``max_attempts``, jobs with
several results or a result from a device other than the last lessee. Also the host's load
average, CPU model, and the CPU seconds the client and the coordinator used. Writes
``bench/results/coordinator-<backend>-<processes>p.json``. All traffic is to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agents.config import AgentSettings
from bench import coordinator_env as env
from bench.coordinator_report import lease_overlaps, quantiles_ms, table
from bench.fleet_sim import (
    EndpointStats,
    Fleet,
    FleetOptions,
    drive_fleet,
    make_agents,
    register_all,
)
from server.config import Settings

RESULTS = Path(__file__).resolve().parent / "results"
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
_AGENT = AgentSettings.model_fields


class RunConfig(BaseModel):
    """One run: the coordinator set-up, the fleet and the bounds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["sqlite", "postgres"] = "sqlite"
    processes: int = Field(1, ge=1, le=32)
    agents: int = Field(8, ge=1, le=4096)
    jobs: int = Field(2000, ge=1, le=1_000_000)
    timeout_s: float = Field(
        300.0, gt=0, le=3600, description="Bound on register + enqueue + lease/report"
    )
    request_timeout_s: float = Field(30.0, gt=0, description="httpx timeout of each call")
    heartbeat_s: float = Field(_AGENT["heartbeat_interval_s"].default, gt=0)
    poll_s: float = Field(_AGENT["poll_interval_s"].default, gt=0)
    report_retries: int = Field(_AGENT["report_retries"].default, ge=0)
    tokens: Literal["shared", "per-agent"] = "shared"
    postgres_url: str = Field(PG_DEFAULT, description="Server and maintenance database (test)")
    server_env: dict[str, str] = Field(default_factory=dict, description="LATENCYLAB_* for serve")
    coordinator_tree: Path = Field(
        env.REPO, description="Source tree the coordinator runs from (e.g. a git archive)"
    )


def _endpoint_summary(stats: dict[str, EndpointStats]) -> dict[str, Any]:
    return {
        "latency_ms": {e: quantiles_ms(s.latencies_ns) for e, s in stats.items()},
        "status_codes": {
            e: {str(k): v for k, v in sorted(s.statuses.items())} for e, s in stats.items()
        },
        "transport_errors": {e: dict(s.transport_errors) for e, s in stats.items()},
        "unavailable_503": {
            e: {
                "with_retry_after": s.unavailable_with_retry_after,
                "without_retry_after": s.unavailable_without_retry_after,
            }
            for e, s in stats.items()
        },
    }


def _rate(n: int, ns: int) -> float:
    return round(n / (ns / 1e9), 1) if ns > 0 else 0.0


def _completions_per_s(fleet: Fleet) -> list[int]:
    if fleet.first_lease_ns is None:
        return []
    buckets: Counter[int] = Counter()
    for r in fleet.reports:
        if r.status in (200, 201):
            buckets[(r.at_ns - fleet.first_lease_ns) // 1_000_000_000] += 1
    return [buckets.get(i, 0) for i in range(max(buckets, default=-1) + 1)]


def _host() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    return {"cpu_model": model, "cpus": os.cpu_count(), "bench_code": env.tree_commit(env.REPO)}


async def _fleet_phase(cfg: RunConfig, coords: env.Coordinators, seed: env.Seed) -> dict[str, Any]:
    """Register the fleet, queue the jobs, lease and report: all within ``timeout_s``."""
    deadline = time.monotonic() + cfg.timeout_s
    options = FleetOptions(cfg.heartbeat_s, cfg.poll_s, cfg.report_retries, cfg.request_timeout_s)
    fleet = Fleet(options=options)
    agents = make_agents(fleet, coords.urls, seed.agent_tokens, cfg.agents)
    t = time.perf_counter_ns()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(register_all(agents, env.SIM_ATTRIBUTES), cfg.timeout_s)
    registered = sum(a.device_id is not None for a in agents)
    register_ns = time.perf_counter_ns() - t
    queued: dict[str, Any] = {"benchmark_ids": [], "job_ids": [], "ns": 0, "latencies": []}
    if registered:
        queued = await asyncio.to_thread(
            env.enqueue, coords.urls[0], seed.user_token, seed.model_id, cfg.jobs,
            max(0.0, deadline - time.monotonic()),
        )  # fmt: skip
    fleet.expected = set(queued["job_ids"])
    phase = "enqueue" if registered else "register"
    finished = False
    cpu_client, cpu_server = time.process_time(), coords.cpu_seconds()
    drive_ns = time.perf_counter_ns()
    if registered and len(fleet.expected) == cfg.jobs:
        phase = "run"
        left = max(1.0, deadline - time.monotonic())
        settled = env.Settled(coords.database_url)
        try:
            finished = await drive_fleet(fleet, agents, env.SIM_ATTRIBUTES, left, settled)
        finally:
            settled.close()
    else:
        await asyncio.gather(*(a.close() for a in agents))
    drive_ns = time.perf_counter_ns() - drive_ns
    cpu_client, cpu_server = time.process_time() - cpu_client, coords.cpu_seconds() - cpu_server
    wall_ns = 0
    if fleet.first_lease_ns is not None and fleet.last_report_ns is not None:
        wall_ns = fleet.last_report_ns - fleet.first_lease_ns
    last_lessee = {e.job_id: e.device for e in sorted(fleet.leases, key=lambda e: e.at_ns)}
    return {
        "fleet": fleet,
        "job_ids": set(queued["job_ids"]),
        "last_lessee": last_lessee,
        "summary": {
            "register": {"agents": cfg.agents, "registered": registered, "s": register_ns / 1e9},
            "enqueue": {
                "jobs": len(queued["job_ids"]),
                "answers": queued.get("answers", {}),
                "benchmarks": len(queued["benchmark_ids"]),
                "s": round(queued["ns"] / 1e9, 3),
                "request_ms": quantiles_ms(queued["latencies"]),
            },
            "run": {
                "collapsed": not finished,
                "phase_reached": phase,  # register | enqueue | run: where a collapse stopped it
                "jobs_reported": len(fleet.completed),
                "wall_s": round(wall_ns / 1e9, 3),  # first lease call to last accepted report
                "jobs_per_s": _rate(len(fleet.completed), wall_ns),
                "phase_s": round(drive_ns / 1e9, 3),  # the whole lease/report phase
                "jobs_per_s_over_phase": _rate(len(fleet.completed), drive_ns),
                "lease_200": len(fleet.leases),
                "dropped_reports": dict(fleet.dropped_reports),
                "refused_agents": dict(fleet.fatal),
            },
            **_endpoint_summary(fleet.stats),
            "leases": lease_overlaps(fleet.leases, fleet.reports),
            "reports_201_twice": sum(
                n > 1 for n in Counter(r.job_id for r in fleet.reports if r.status == 201).values()
            ),
            "cpu_s": {"client": round(cpu_client, 2), "coordinator": round(cpu_server, 2)},
            "completions_per_s": _completions_per_s(fleet),
            "loadavg_during": fleet.load_samples,
        },
    }


def _server_settings(cfg: RunConfig) -> dict[str, Any]:
    """The queue settings the coordinators run with: their defaults, unless ``server_env``
    sets them (the benchmark passes no other LATENCYLAB_ variable to them)."""
    keys = ("lease_s", "max_attempts", "reaper_interval_s", "offline_after_s")
    fields = Settings.model_fields
    out: dict[str, Any] = {k: fields[k].default for k in keys}
    for k in keys:
        if (value := cfg.server_env.get(f"LATENCYLAB_{k.upper()}")) is not None:
            out[k] = value
    return out


def _database(cfg: RunConfig) -> contextlib.AbstractContextManager[str | None]:
    """The run's database URL: a private PostgreSQL database, or None (SQLite in the data
    directory, the coordinator's default)."""
    if cfg.backend == "postgres":
        return env.private_postgres(cfg.postgres_url)
    return contextlib.nullcontext(None)


def run_one(cfg: RunConfig, use_workers_flag: bool | None = None) -> dict[str, Any]:
    """One run on a fresh coordinator and database; the JSON-ready report."""
    if use_workers_flag is None:
        use_workers_flag = env.serve_workers_flag(cfg.coordinator_tree)
    report: dict[str, Any] = {
        "config": cfg.model_dump(mode="json", exclude={"postgres_url"}),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "loadavg_start": list(os.getloadavg()),
        **_host(),
        "server_settings": _server_settings(cfg),
        "coordinator_code": env.tree_commit(cfg.coordinator_tree),
    }
    data_dir = Path(tempfile.mkdtemp(prefix="latencylab-bench-coord-"))
    try:
        with _database(cfg) as database_url:
            with env.coordinators(
                data_dir,
                database_url,
                cfg.processes,
                cfg.server_env,
                use_workers_flag,
                cfg.coordinator_tree,
            ) as coords:
                report["coordinator_mode"] = coords.mode
                report["coordinator_urls"] = len(coords.urls)
                tokens = cfg.agents if cfg.tokens == "per-agent" else 1
                seed = env.seed(coords.urls[0], data_dir, tokens)
                phase = asyncio.run(_fleet_phase(cfg, coords, seed))
                report["server_log"] = coords.log_problems()
            report.update(phase["summary"])
            report["audit"] = env.audit(coords.database_url, phase["job_ids"], phase["last_lessee"])
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    report["loadavg_end"] = list(os.getloadavg())
    return report


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--agents", default="8,32,64,256", help="comma list: one run per value")
    p.add_argument("--jobs", type=int, default=2000)
    p.add_argument("--timeout-s", type=float, default=300.0)
    p.add_argument("--request-timeout-s", type=float, default=30.0)
    p.add_argument("--tokens", choices=["shared", "per-agent"], default="shared")
    p.add_argument("--postgres-url", default=PG_DEFAULT)
    p.add_argument("--server-env", action="append", default=[], metavar="LATENCYLAB_X=V")
    p.add_argument(
        "--coordinator-tree",
        type=Path,
        default=env.REPO,
        help="run the coordinator from this source tree (default: this repository), e.g.\n"
        "git archive HEAD | tar -x -C /tmp/base && git rev-parse HEAD > /tmp/base/.bench-commit",
    )
    p.add_argument(
        "--quick", action="store_true", help="smoke run: 8 agents, 200 jobs, -quick.json"
    )
    p.add_argument("--out", type=Path, help="default bench/results/coordinator-<b>-<p>p.json")
    args = p.parse_args(argv)
    agents = [8] if args.quick else [int(a) for a in args.agents.split(",") if a.strip()]
    server_env = dict(kv.split("=", 1) for kv in args.server_env)
    base = {
        "backend": args.backend, "processes": args.processes,
        "jobs": 200 if args.quick else args.jobs, "timeout_s": args.timeout_s,
        "request_timeout_s": args.request_timeout_s, "tokens": args.tokens,
        "postgres_url": args.postgres_url, "server_env": server_env,
        "coordinator_tree": args.coordinator_tree.resolve(),
    }  # fmt: skip
    configs = [RunConfig(**base, agents=n) for n in agents]
    workers_flag = env.serve_workers_flag(args.coordinator_tree.resolve())
    suffix = "-quick" if args.quick else ""
    out = args.out or RESULTS / f"coordinator-{args.backend}-{args.processes}p{suffix}.json"
    reports = []
    for cfg in configs:
        print(f"run: {cfg.backend}, {cfg.processes} process(es), {cfg.agents} agents, "
              f"{cfg.jobs} jobs (load {os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)  # fmt: skip
        reports.append(run_one(cfg, workers_flag))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"runs": reports}, indent=2) + "\n")
    print(table(reports))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
