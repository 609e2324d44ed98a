"""An agent meeting refusals and death, over real HTTP with real agent subprocesses.

Typed errors by status + ``code`` (a lease lost mid-download, an unknown or revoked token, a
device the coordinator forgot), measurement processes that die with their agent (SIGKILL
included) and the work directories a killed agent leaves. Each live test runs its own
``latencylab agent`` against the session's coordinator, so it can stall, kill or revoke it
without touching the shared agent.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from agents.workdirs import JobDir, sweep
from converters.spawn import Sandbox
from tests.conftest import FAST, Live, _spawn_worker, _stop

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc and relies on PR_SET_PDEATHSIG"
)

# Long enough to be killed in the middle: the steady state lasts at least a minute.
LONG = {**FAST, "min_duration_s": 60, "max_duration_s": 120, "max_runs": 10**6, "timeout_s": 300}


# ---------------------------------------------------------------------- helpers
def _processes() -> dict[int, tuple[int, str]]:
    """Every live process: pid -> (process group, command line); zombies left out."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] not in ("Z", "X"):
            out[int(entry.name)] = (int(fields[2]), cmdline)
    return out


def _gone(pids: set[int], timeout: float) -> set[int]:
    """The pids still alive (not zombies) after waiting up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        alive = pids & _processes().keys()
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def _wait_for(what: str, pred: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


class AgentProc:
    """``latencylab agent`` as a subprocess with its own token (unless given), name and data dir."""

    def __init__(
        self,
        live: Live,
        data_dir: Path,
        *,
        token: str | None = None,
        name: str | None = None,
        server: str | None = None,
    ) -> None:
        self.live = live
        self.name = name or f"errs-{uuid.uuid4().hex[:8]}"
        self.token_id: int | None = None
        if token is None:
            with live.http(live.admin_token) as c:
                r = c.post("/tokens", json={"scope": "agent", "name": self.name})
                assert r.status_code == 201, r.text
                self.token_id, token = r.json()["id"], r.json()["token"]
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = data_dir / f"{self.name}.log"
        self.proc = _spawn_worker("agent", server or live.url, token, self.name, data_dir, self.log)

    @property
    def work_dir(self) -> Path:
        return self.data_dir / "agent-work"

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def device(self) -> dict[str, Any] | None:
        with self.live.http(self.live.user_token) as c:
            devices = {d["name"]: d for d in c.get("/devices").json()}
        return devices.get(self.name)

    def wait_online(self, timeout: float = 60) -> int:
        def online() -> int | None:
            assert self.proc.poll() is None, f"agent exited:\n{self.text()[-3000:]}"
            d = self.device()
            return int(d["id"]) if d and d["status"] == "online" else None

        return int(_wait_for(f"agent {self.name} to come online", online, timeout))


@contextmanager
def agent_proc(live: Live, data_dir: Path, **kwargs: Any) -> Iterator[AgentProc]:
    agent = AgentProc(live, data_dir, **kwargs)
    try:
        yield agent
    finally:
        _stop(agent.proc)


def _queue(
    live: Live, model: Path, device: str, settings: dict[str, Any] = FAST
) -> tuple[int, int]:
    with live.http(live.user_token) as c:
        m = c.post("/models", files={"file": (model.name, model.read_bytes())})
        assert m.status_code in (200, 201), m.text
        r = c.post(
            "/benchmarks",
            json={
                "model_id": m.json()["id"],
                "settings": settings,
                "targets": [{"runtime": "onnxruntime", "device": device}],
            },
        )
        assert r.status_code == 202, r.text
        return r.json()["id"], r.json()["jobs"][0]["id"]


def _wait_job(
    live: Live, job_id: int, pred: Callable[[dict[str, Any]], bool], timeout: float = 60
) -> dict[str, Any]:
    with live.http(live.user_token) as c:

        def ready() -> dict[str, Any] | None:
            job: dict[str, Any] = c.get(f"/jobs/{job_id}").json()
            return job if pred(job) else None

        return dict(_wait_for(f"job {job_id}", ready, timeout))


def _measurement_of(work_dir: Path) -> int:
    """The pid of the measurement process running under ``work_dir``."""
    for pid, (_, cmdline) in _processes().items():
        if "agents.measure.worker" in cmdline and str(work_dir) in cmdline:
            return pid
    raise AssertionError(f"no measurement process under {work_dir}")


def _sandbox_of(leader: int) -> set[int]:
    """The measurement's process group and the watchdog watching it."""
    procs = _processes()
    return {
        pid
        for pid, (pgrp, cmd) in procs.items()
        if pgrp == leader or ("sandbox watchdog" in cmd and cmd.split()[-2] == str(leader))
    }


class StallingProxy:
    """A TCP proxy between an agent and the coordinator that stops carrying anything from the
    moment the agent asks for an artifact until ``released`` is set: a network that stalls while
    the agent downloads (its heartbeats stall too, so its lease runs out meanwhile)."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.stalled = threading.Event()
        self.released = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            for src, dst, out in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(src, dst, out), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, outbound: bool) -> None:
        try:
            while data := src.recv(65536):
                if outbound and b"GET /api/v1/artifacts/" in data:
                    self.stalled.set()
                if outbound and self.stalled.is_set():
                    self.released.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            src.close()

    def close(self) -> None:
        self.released.set()
        self.server.close()


# ---------------------------------------------------------------------- sandbox, work dirs
STARTER = """
import sys, time
from converters.spawn import Sandbox
box = Sandbox(["sh", "-c", "sleep 60 & sleep 60 & wait"])
print(box.pid, box.watchdog.pid, flush=True)
time.sleep(60)
"""


def test_a_sandbox_and_what_it_started_die_with_its_starter() -> None:
    repo = Path(__file__).resolve().parents[1]
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER], cwd=repo, stdout=subprocess.PIPE, text=True
    )
    try:
        assert starter.stdout is not None
        leader, watchdog = map(int, starter.stdout.readline().split())
        members = _wait_for(
            "the shell to start its two sleeps",
            lambda: (
                (g := {p for p, (pg, _) in _processes().items() if pg == leader})
                and len(g) == 3
                and g
            ),
            timeout=10,
        )
        assert watchdog in _processes()
        starter.send_signal(signal.SIGKILL)  # no finally of the starter runs
        starter.wait()
        assert _gone(members | {watchdog}, timeout=3) == set()
    finally:
        starter.kill()
        starter.wait()


def test_closing_a_sandbox_kills_what_its_child_left_behind() -> None:
    with Sandbox(["sh", "-c", "sleep 60 & echo $!"], stdout=subprocess.PIPE) as box:
        assert box.proc.stdout is not None
        orphan = int(box.proc.stdout.readline())
        assert box.wait(10) == 0  # the shell is done; its sleep is not
        assert orphan in _processes()
        assert box.close() == 0
        assert _gone({orphan}, timeout=2) == set()
        assert box.watchdog is not None and box.watchdog.returncode is not None
        box.proc.stdout.close()
    cancel = threading.Event()
    cancel.set()
    with Sandbox(["sleep", "60"]) as box:
        assert box.wait(30, cancel) is None  # cancelled at once, not after 30 s
        assert box.close() == -signal.SIGKILL


def test_sweep_removes_only_job_directories_nobody_holds(tmp_path: Path) -> None:
    work = tmp_path / "work"
    for stale in ("job-1-1", "job-2-3"):
        (work / stale / "measure-x").mkdir(parents=True)
        (work / stale / "measure-x" / "spec.json").write_text("{}")
    (work / "job-2-3.lock").write_text("")  # a lock file nobody holds any more
    (work / "notes.txt").write_text("not a job directory")
    with JobDir(work, 7, 1) as live_dir:  # an agent sharing the work dir, mid-job
        (live_dir / "model.onnx").write_text("x")
        removed = sweep(work)
        assert sorted(p.name for p in removed) == ["job-1-1", "job-2-3"]
        assert sorted(p.name for p in work.iterdir()) == ["job-7-1", "job-7-1.lock", "notes.txt"]
        with JobDir(work, 7, 1) as second:  # the same name is held: a private one instead
            assert second.name == "job-7-1-2"
        assert (live_dir / "model.onnx").exists()
    assert sorted(p.name for p in work.iterdir()) == ["notes.txt"]


def test_a_cancelled_conversion_is_killed_at_once(tmp_path: Path) -> None:
    from converters.run import ConversionRequest, convert_isolated

    cancel = threading.Event()
    cancel.set()  # what the agent does on a lost lease or SIGTERM
    started = time.monotonic()
    res = convert_isolated(
        ConversionRequest(source=str(tmp_path / "m.onnx"), target="openvino"),
        tmp_path / "w",
        cancel=cancel,
    )
    assert res.status == "failed" and res.error is not None
    assert res.error.message == "conversion cancelled"
    assert time.monotonic() - started < 10


# ---------------------------------------------------------------------- live agents
def test_a_lease_lost_mid_download_drops_the_job_and_the_agent_goes_on(
    live: Live, model_files: dict[str, Path], tmp_path: Path
) -> None:
    proxy = StallingProxy(live.url)
    try:
        with agent_proc(live, tmp_path, server=proxy.url) as agent:
            agent.wait_online()
            bench_id, job_id = _queue(live, model_files["mlp"], agent.name)
            assert proxy.stalled.wait(30), agent.text()[-2000:]
            # Nothing reaches the coordinator now: the 4 s lease runs out and the job is requeued.
            lost = _wait_job(live, job_id, lambda j: j["status"] == "queued", timeout=30)
            assert lost["attempts"] == 1 and "lease expired" in lost["error"]
            proxy.released.set()  # the download now gets 403 lease_lost, the heartbeat 409 lease_lost
            done = _wait_job(live, job_id, lambda j: j["status"] in ("succeeded", "failed"))
            assert done["status"] == "succeeded", done
            assert done["attempts"] == 2 and done["device_name"] == agent.name
            assert agent.proc.poll() is None
            log = agent.text()
            assert f"job {job_id}: lease lost" in log and "lease_lost" in log
            with live.http(live.user_token) as c:
                assert len(c.get(f"/benchmarks/{bench_id}").json()["results"]) == 1
    finally:
        proxy.close()


def test_an_unknown_token_stops_the_agent_with_what_to_do(live: Live, tmp_path: Path) -> None:
    agent = AgentProc(live, tmp_path, token="ll_agent_" + uuid.uuid4().hex)
    try:
        assert agent.proc.wait(timeout=30) == 3
    finally:
        _stop(agent.proc)
    log = agent.text()
    assert "401 token_invalid" in log and "The agent stops" in log
    assert "latencylab token create --scope agent" in log
    assert agent.device() is None


def test_a_token_revoked_mid_measurement_stops_the_agent_and_its_measurement(
    live: Live, model_files: dict[str, Path], tmp_path: Path
) -> None:
    with agent_proc(live, tmp_path) as agent:
        agent.wait_online()
        _, job_id = _queue(live, model_files["mbv2"], agent.name, LONG)
        _wait_job(live, job_id, lambda j: j["progress"].get("phase") == "steady")
        sandbox = _sandbox_of(_measurement_of(agent.work_dir))
        with live.http(live.admin_token) as c:
            r = c.post(f"/tokens/{agent.token_id}/revoke")
        assert r.status_code == 200, r.text
        # The heartbeat thread meets 401 token_revoked: it stops the agent, cancelling the job.
        assert agent.proc.wait(timeout=20) == 3
        assert _gone(sandbox, timeout=3) == set()
        log = agent.text()
        assert "401 token_revoked" in log and "restart the agent with a new agent token" in log
        assert "The agent stops" in log


def test_an_agent_whose_device_was_forgotten_registers_again(
    live: Live, model_files: dict[str, Path], tmp_path: Path
) -> None:
    from sqlalchemy import create_engine, text

    with agent_proc(live, tmp_path) as agent:
        device_id = agent.wait_online()
        # The coordinator's database lost the device (say, restored from an older backup).
        engine = create_engine(live.database_url)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM devices WHERE id = :id"), {"id": device_id})
        engine.dispose()
        _wait_for(
            "the agent to register again",
            lambda: agent.text().count("registered as device") >= 2,
        )
        assert "404 device_not_registered" in agent.text()
        _, job_id = _queue(live, model_files["mlp"], agent.name)
        done = _wait_job(live, job_id, lambda j: j["status"] in ("succeeded", "failed"))
        assert done["status"] == "succeeded" and done["device_name"] == agent.name
        assert agent.proc.poll() is None


def test_sigkill_of_an_agent_ends_its_measurement_and_a_new_agent_removes_its_work_dir(
    live: Live, model_files: dict[str, Path], tmp_path: Path
) -> None:
    with agent_proc(live, tmp_path) as agent:
        agent.wait_online()
        _, job_id = _queue(live, model_files["mbv2"], agent.name, LONG)
        _wait_job(live, job_id, lambda j: j["progress"].get("phase") == "steady")
        leader = _measurement_of(agent.work_dir)
        sandbox = _sandbox_of(leader)
        assert leader in sandbox and len(sandbox) >= 2  # the measurement and its watchdog
        agent.proc.send_signal(signal.SIGKILL)
        agent.proc.wait()
        assert _gone(sandbox, timeout=3) == set()
    stale = sorted(p.name for p in agent.work_dir.iterdir() if p.is_dir())
    assert stale == [f"job-{job_id}-1"]
    # Another agent on the same data dir: it removes what the dead one left, and nothing that
    # a live agent holds there (a job directory locked by this test stands in for one).
    (agent.work_dir / "keep.txt").write_text("not a job directory")
    with JobDir(agent.work_dir, 424242, 1) as held, agent_proc(live, tmp_path) as other:
        other.wait_online()
        _wait_for("the stale work dir to go", lambda: not (agent.work_dir / stale[0]).exists())
        assert held.is_dir() and (agent.work_dir / "keep.txt").exists()
        assert f"removed {agent.work_dir / stale[0]}" in other.text()
