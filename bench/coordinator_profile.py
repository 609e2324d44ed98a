"""Where the coordinator's CPU goes on the agent hot path (lease, report, heartbeat).

    python -m bench.coordinator_profile [--backend postgres|sqlite] [--agents 16]
                                        [--jobs 400] [--profile] [--top 40]

The real app (``server.app.create_app``, its lifespan included) in this process, driven
through ``httpx.ASGITransport`` (no sockets, no uvicorn) by N concurrent simulated agents
that lease a job and report it at once, as ``bench/fleet_sim.py`` does, on a fresh database
(a private PostgreSQL database on 127.0.0.1, or a SQLite file). It prints the process CPU
time per job and per request (``time.process_time``: every thread, the client's share
included, which is small here: no HTTP parsing or sockets), and with ``--profile`` the top
functions by own and cumulative CPU time over every thread (``cProfile`` timed by
``time.thread_time``, one profiler per thread: the route threads and the event loop), which shows what a
request costs inside the coordinator and what to cut.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import pstats
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench import coordinator_env as env
from bench.coordinator import PG_DEFAULT
from bench.fleet_sim import SIM_REPORT
from server.app import create_app
from server.config import Settings


class ThreadProfiles:
    """One ``cProfile.Profile`` per thread started while active, plus the caller's."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def _start_in_thread(self, *_: Any) -> None:
        sys.setprofile(None)
        p = cProfile.Profile(time.thread_time)
        with self._lock:
            self.profiles.append(p)
        p.enable()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        main = cProfile.Profile(time.thread_time)
        self.profiles.append(main)
        threading.setprofile(self._start_in_thread)
        main.enable()
        try:
            yield
        finally:
            main.disable()
            threading.setprofile(None)

    def stats(self) -> pstats.Stats:
        out = io.StringIO()
        stats = pstats.Stats(self.profiles[0], stream=out)
        for p in self.profiles[1:]:
            with contextlib.suppress(TypeError):  # a thread that never ran anything
                stats.add(p)
        return stats


async def _seed(c: httpx.AsyncClient, admin: str, agents: int) -> tuple[str, list[str], int]:
    h = {"Authorization": f"Bearer {admin}"}
    r = await c.post("/tokens", json={"scope": "user", "name": "u"}, headers=h)
    user = r.json()["token"]
    r = await c.post("/tokens", json={"scope": "agent", "name": "a"}, headers=h)
    agent = r.json()["token"]
    r = await c.post(
        "/models",
        files={"file": ("t.onnx", env.tiny_onnx())},
        data={"name": "tiny"},
        headers={"Authorization": f"Bearer {user}"},
    )
    r.raise_for_status()
    model_id = int(r.json()["id"])
    ah = {"Authorization": f"Bearer {agent}"}
    ids = []
    for i in range(agents):
        body = {
            "name": f"sim-{i:04d}",
            "device_class": "cpu",
            "runtimes": {"onnxruntime": "sim"},
            "attributes": env.SIM_ATTRIBUTES,
            "info": {"simulated": True},
        }
        r = await c.post("/agents/register", json=body, headers=ah)
        r.raise_for_status()
        ids.append(str(r.json()["id"]))
    return user, [agent, *ids], model_id


async def _enqueue(c: httpx.AsyncClient, user: str, model_id: int, jobs: int) -> None:
    target = {"runtime": "onnxruntime", "device": env.SIM_SELECTOR, "threads": 1}
    h = {"Authorization": f"Bearer {user}"}
    for i in range(0, jobs, env.MAX_TARGETS):
        n = min(env.MAX_TARGETS, jobs - i)
        r = await c.post("/benchmarks", json={"model_id": model_id, "targets": [target] * n}, headers=h)  # fmt: skip
        r.raise_for_status()


async def _agent(
    c: httpx.AsyncClient, token: str, device: str, left: list[int], codes: Counter[str]
) -> None:
    h = {"Authorization": f"Bearer {token}"}
    while left[0] > 0:
        r = await c.post(f"/agents/{device}/lease", headers=h)
        codes[f"lease {r.status_code}"] += 1
        if r.status_code != 200:
            if r.status_code == 204:
                return
            await asyncio.sleep(0.05)
            continue
        job = r.json()["id"]
        r = await c.post(f"/agents/{device}/heartbeat", json={"job_id": job}, headers=h)
        codes[f"heartbeat {r.status_code}"] += 1
        r = await c.post(f"/agents/{device}/jobs/{job}/report", json=SIM_REPORT, headers=h)
        codes[f"report {r.status_code}"] += 1
        if r.status_code in (200, 201):
            left[0] -= 1


async def _run(settings: Settings, agents: int, jobs: int, prof: ThreadProfiles | None) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t/api/v1") as c:
            admin = (settings.data_dir / "admin.token").read_text().strip()
            user, (agent, *devices), model_id = await _seed(c, admin, agents)
            await _enqueue(c, user, model_id, jobs)
            codes: Counter[str] = Counter()
            left = [jobs]
            cpu, wall = time.process_time(), time.perf_counter_ns()
            with prof.active() if prof else contextlib.nullcontext():
                await asyncio.gather(*(_agent(c, agent, d, left, codes) for d in devices))
            cpu, wall = time.process_time() - cpu, time.perf_counter_ns() - wall
    requests = sum(codes.values())
    print(f"{jobs} jobs, {agents} agents, {settings.resolved_database_url.split(':')[0]}")
    print(f"  answers: {dict(sorted(codes.items()))}")
    print(f"  wall {wall / 1e9:.2f} s: {jobs / (wall / 1e9):.1f} jobs/s")
    print(f"  CPU {cpu:.2f} s: {cpu / jobs * 1e3:.2f} ms per job, "
          f"{cpu / requests * 1e3:.2f} ms per request ({requests} requests)")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backend", choices=["sqlite", "postgres"], default="postgres")
    p.add_argument("--agents", type=int, default=16)
    p.add_argument("--jobs", type=int, default=400)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--sort", default="tottime,cumulative")
    p.add_argument("--postgres-url", default=PG_DEFAULT)
    p.add_argument("--dump", type=Path, help="also write the merged stats (pstats) here")
    args = p.parse_args(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="latencylab-profile-"))
    prof = ThreadProfiles() if args.profile else None
    try:
        db = env.private_postgres(args.postgres_url) if args.backend == "postgres" else None
        with db or contextlib.nullcontext(None) as url:
            given: dict[str, Any] = {"data_dir": data_dir, "gc_interval_s": 0}
            if url:
                given["database_url"] = url
            asyncio.run(_run(Settings(**given), args.agents, args.jobs, prof))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    if prof:
        stats = prof.stats()
        if args.dump:
            stats.dump_stats(args.dump)
        for key in args.sort.split(","):
            stats.stream = sys.stdout  # type: ignore[attr-defined]
            stats.sort_stats(key).print_stats(args.top)


if __name__ == "__main__":
    main()
