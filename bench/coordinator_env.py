"""The coordinator side of ``bench/coordinator.py``: a private PostgreSQL database, real
``latencylab serve --no-local-agent`` processes, the jobs (a tiny ONNX model and benchmarks
created through the user API) and the audit of the database afterwards (SQLAlchemy, the
coordinator's own models)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from db.models import Device, Job, Result

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
MAX_TARGETS = 64  # BenchmarkCreate.targets max_length
SIM_SELECTOR = "sim:1"
SIM_ATTRIBUTES = {"sim": "1"}


class NotLoopback(ValueError):
    """A PostgreSQL URL whose host is not 127.0.0.1: the benchmark stays on this machine."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def private_postgres(admin_url: str) -> Iterator[str]:
    """A fresh database on the server of ``admin_url`` (which must be 127.0.0.1), created
    through that maintenance database and dropped afterwards; yields its SQLAlchemy URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(admin_url)
    if url.host != LOOPBACK:
        raise NotLoopback(f"the benchmark talks to {LOOPBACK} only, not {url.host!r}")
    plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"latencylab_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(plain, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


def serve_workers_flag(tree: Path = REPO) -> bool:
    """Whether ``latencylab serve`` (of the source tree ``tree``) has a ``--workers`` option."""
    out = subprocess.run(
        [sys.executable, "-m", "latencylab", "serve", "--help"],
        cwd=tree,
        env={**os.environ, "COLUMNS": "300", "NO_COLOR": "1", "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return "--workers" in out.stdout


@dataclass
class Coordinators:
    """The coordinator processes of one run and where they answer."""

    urls: list[str]
    procs: list[subprocess.Popen[bytes]]
    data_dir: Path
    database_url: str
    mode: str  # "single", "workers" (serve --workers N) or "processes" (N serve processes)
    logs: list[Path] = field(default_factory=list)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the coordinator processes and their children so far."""
        total = 0.0
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                p = psutil.Process(proc.pid)
                for q in [p, *p.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        t = q.cpu_times()
                        total += t.user + t.system
        return total

    def log_problems(self) -> dict[str, Any]:
        """Failures in the server logs: tracebacks, ERROR lines, and how many of each
        exception (the last line of a traceback), plus the first traceback in full."""
        out: dict[str, Any] = {"tracebacks": 0, "error_lines": 0, "exceptions": Counter()}
        for log in self.logs:
            lines = log.read_text(errors="replace").splitlines()
            for i, line in enumerate(lines):
                if line.startswith("Traceback"):
                    out["tracebacks"] += 1
                    end = next(
                        (j for j in range(i + 1, len(lines)) if not lines[j].startswith(" ")),
                        len(lines) - 1,
                    )
                    out["exceptions"][lines[end][:200]] += 1
                    out.setdefault("first_traceback", "\n".join(lines[i : end + 1])[-4000:])
                elif "ERROR" in line:
                    out["error_lines"] += 1
        out["exceptions"] = dict(out["exceptions"].most_common(10))
        return out


def tree_commit(tree: Path) -> dict[str, Any]:
    """Which code a source tree holds: its git commit and whether server/ or db/ differ from
    it, or, for an exported snapshot (``git archive``), the commit in its ``.bench-commit``."""
    marker = tree / ".bench-commit"
    if marker.is_file():
        return {"commit": marker.read_text().strip(), "snapshot": True}

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=tree, capture_output=True, text=True).stdout

    dirty = git("status", "--porcelain", "--", "server", "db").strip()
    return {"commit": git("rev-parse", "HEAD").strip(), "snapshot": False, "dirty": bool(dirty)}


def _child_env(tree: Path, database_url: str | None, server_env: dict[str, str]) -> dict[str, str]:
    """The parent's environment without any LATENCYLAB_ setting (the coordinator runs on
    its defaults unless ``server_env`` says otherwise), importing from ``tree``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATENCYLAB_")}
    env["PYTHONPATH"] = str(tree)
    if database_url:
        env["LATENCYLAB_DATABASE_URL"] = database_url
    env.update(server_env)
    return env


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"coordinator exited with {proc.returncode}:\n{tail}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"coordinator at {url} did not answer within {timeout:.0f} s: see {log}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def coordinators(
    data_dir: Path,
    database_url: str | None,
    processes: int,
    server_env: dict[str, str],
    use_workers_flag: bool,
    tree: Path = REPO,
) -> Iterator[Coordinators]:
    """``processes`` coordinators on one database and one data directory: one
    ``serve --workers N`` when the flag exists, else N ``serve`` processes on their own
    ports, started one after the other (the first applies the migrations and writes
    ``admin.token``, the others reuse it). ``tree`` is the source tree they run from."""
    env = _child_env(tree, database_url, server_env)
    plans: list[list[str]] = []
    mode = "single" if processes == 1 else ("workers" if use_workers_flag else "processes")
    count = 1 if mode != "processes" else processes
    for _ in range(count):
        cmd = [sys.executable, "-m", "latencylab", "serve", "--no-local-agent"]
        cmd += ["--host", LOOPBACK, "--port", str(free_port()), "--data-dir", str(data_dir)]
        if mode == "workers":
            cmd += ["--workers", str(processes)]
        plans.append(cmd)
    running = Coordinators(
        [], [], data_dir, database_url or f"sqlite:///{data_dir / 'latencylab.db'}", mode
    )
    try:
        for i, cmd in enumerate(plans):
            log = data_dir / f"serve-{i}.log"
            url = f"http://{LOOPBACK}:{cmd[cmd.index('--port') + 1]}"
            with log.open("wb") as fh:
                proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=fh, stderr=subprocess.STDOUT)
            running.procs.append(proc)
            running.logs.append(log)
            _wait_healthy(url, proc, log, timeout=120)
            running.urls.append(url)
        yield running
    finally:
        for proc in running.procs:
            _stop(proc)


def tiny_onnx() -> bytes:
    """A one-node ONNX graph (Relu on a float[1, 4])."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "bench_tiny", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


@dataclass
class Seed:
    """The tokens and the model the run uses."""

    admin_token: str
    user_token: str
    agent_tokens: list[str]
    model_id: int


def _api(url: str, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=120
    )


def _create_token(admin: httpx.Client, scope: str, name: str) -> str:
    r = admin.post("/tokens", json={"scope": scope, "name": name})
    r.raise_for_status()
    return str(r.json()["token"])


def seed(url: str, data_dir: Path, agent_tokens: int) -> Seed:
    """A user token, ``agent_tokens`` agent tokens and the tiny model, uploaded."""
    admin_token = (data_dir / "admin.token").read_text().strip()
    with _api(url, admin_token) as admin:
        user = _create_token(admin, "user", "bench user")
        agents = [_create_token(admin, "agent", f"bench agent {i}") for i in range(agent_tokens)]
    with _api(url, user) as c:
        r = c.post(
            "/models", files={"file": ("bench-tiny.onnx", tiny_onnx())}, data={"name": "tiny"}
        )
        r.raise_for_status()
        model_id = int(r.json()["id"])
    return Seed(admin_token, user, agents, model_id)


def enqueue(
    url: str, user_token: str, model_id: int, jobs: int, timeout_s: float
) -> dict[str, Any]:
    """``jobs`` benchmark jobs through ``POST /benchmarks`` (64 targets a request) for the
    simulated devices, within ``timeout_s``: a 503 or a request that never reached the
    server is retried (nothing was created); a request that may have reached it (a read
    timeout) is counted and not repeated. Returns the benchmark and job ids, the answers by
    status or error and the time it took."""
    target = {"runtime": "onnxruntime", "device": SIM_SELECTOR, "threads": 1}
    bench_ids: list[int] = []
    job_ids: list[int] = []
    latencies: list[int] = []
    answers: Counter[str] = Counter()
    start = time.perf_counter_ns()
    deadline = time.monotonic() + timeout_s
    batches = [min(MAX_TARGETS, jobs - i) for i in range(0, jobs, MAX_TARGETS)]
    with _api(url, user_token) as c:
        for n in batches:
            while time.monotonic() < deadline:
                body = {"model_id": model_id, "targets": [target] * n}
                t = time.perf_counter_ns()
                try:
                    r = c.post("/benchmarks", json=body, timeout=deadline - time.monotonic())
                except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                    answers[type(exc).__name__] += 1
                    time.sleep(1)
                    continue
                except httpx.TransportError as exc:
                    answers[type(exc).__name__] += 1
                    break
                latencies.append(time.perf_counter_ns() - t)
                answers[str(r.status_code)] += 1
                if r.status_code == 503:
                    time.sleep(float(r.headers.get("retry-after") or 1))
                    continue
                if r.status_code == 202:
                    bench_ids.append(int(r.json()["id"]))
                    job_ids += [int(j["id"]) for j in r.json()["jobs"]]
                break
    return {
        "benchmark_ids": bench_ids,
        "job_ids": job_ids,
        "ns": time.perf_counter_ns() - start,
        "latencies": latencies,
        "answers": dict(answers),
    }


OPEN_STATUSES = ("waiting", "queued", "running")


def _engine(database_url: str) -> Engine:
    """A plain engine of our own for reading the coordinator's database (not the
    coordinator's engine set-up, which is what is being measured)."""
    return create_engine(database_url, poolclass=NullPool)


class Settled:
    """``settled()``: True once no job of the run is waiting, queued or running any more (a
    read-only query of the coordinator's database; it ends a run whose last jobs failed)."""

    def __init__(self, database_url: str) -> None:
        self.engine = _engine(database_url)

    def __call__(self) -> bool:
        with Session(self.engine) as s:
            left = s.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.kind == "benchmark", Job.status.in_(OPEN_STATUSES))
            )
        return not left

    def close(self) -> None:
        self.engine.dispose()


def audit(database_url: str, job_ids: set[int], last_lessee: dict[int, str]) -> dict[str, Any]:
    """What the (private) database says after the run about every benchmark job in it:
    statuses, attempts, results (more than one per job, or one from a device other than the
    last lessee); ``jobs_unknown_to_client`` were created by a request whose answer was lost."""
    engine = _engine(database_url)
    try:
        with Session(engine) as s:
            s.execute(select(1))  # connect: the dialect learns the server's version
            version = ".".join(map(str, engine.dialect.server_version_info or ()))
            names = {i: name for i, name in s.execute(select(Device.id, Device.name))}
            jobs = s.execute(
                select(Job.id, Job.status, Job.attempts, Job.max_attempts, Job.device_id).where(
                    Job.kind == "benchmark"
                )
            ).all()
            per_job = {
                j: n
                for j, n in s.execute(select(Result.job_id, func.count()).group_by(Result.job_id))
            }
            results = s.execute(select(Result.job_id, Result.device_name, Result.status)).all()
    finally:
        engine.dispose()
    unknown = {j.id for j in jobs} - job_ids  # created by a request whose answer was lost
    job_ids = job_ids | unknown
    ours = [j for j in jobs if j.id in job_ids]
    holder = {j.id: names.get(j.device_id) if j.device_id else None for j in ours}
    result_of = {r.job_id: r for r in results if r.job_id in job_ids}
    not_last_lessee = [
        r.job_id for r in result_of.values() if r.device_name != last_lessee.get(r.job_id)
    ]
    not_holder = [r.job_id for r in result_of.values() if r.device_name != holder.get(r.job_id)]
    return {
        "database": f"{engine.dialect.name} {version}",
        "jobs_in_db": len(ours),
        "jobs_missing": len(job_ids - {j.id for j in ours}),
        "jobs_unknown_to_client": len(unknown),
        "status": dict(Counter(j.status for j in ours)),
        "not_finished": sum(j.status in OPEN_STATUSES for j in ours),
        "attempts_over_max": sum(j.attempts > j.max_attempts for j in ours),
        "attempts": {str(k): v for k, v in sorted(Counter(j.attempts for j in ours).items())},
        "results": len(result_of),
        "results_failed": sum(r.status != "succeeded" for r in result_of.values()),
        "jobs_with_several_results": sum(per_job.get(j, 0) > 1 for j in job_ids),
        # a result stored for a device other than the last one the client saw lease the job
        # (a lease answer lost to a timeout can also cause this), or than the job's holder
        "results_not_from_last_lessee": len(not_last_lessee),
        "results_not_from_job_holder": len(not_holder),
        "jobs_with_suspect_results": len(
            {*not_last_lessee, *not_holder, *(j for j in job_ids if per_job.get(j, 0) > 1)}
        ),
        "succeeded_without_result": sum(
            j.status == "succeeded" and j.id not in result_of for j in ours
        ),
    }
