"""The device agent: register, heartbeat, lease one job at a time, measure it, report.

Every measurement runs in a fresh subprocess (``agents.measure.run_isolated``), so a
crash or hang of the runtime becomes a failed result and the agent lives on.
"""

from __future__ import annotations

import logging
import shutil
import signal
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import httpx

from agents.api import AgentAPI, ProtocolError
from agents.capabilities import capabilities
from agents.config import AgentSettings
from agents.measure import run_isolated
from latencylab.schemas import LeasedJob, MeasureResult, MeasureSpec

log = logging.getLogger("latencylab.agent")


class Measurer(Protocol):
    """How a device measures one spec: locally in a fresh subprocess by default; a phone
    host plugs in its adb path, a Jetson its TensorRT + tegrastats path."""

    def __call__(
        self,
        spec: MeasureSpec,
        *,
        workdir: Path,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> MeasureResult: ...


JobHandler = Callable[["Agent", LeasedJob, Path], None]
"""Handles one leased job of a kind (default: measure it); must report it itself."""


class Agent:
    """Serves ONE device. ``describe`` returns its registration body (class, runtimes,
    attributes, info); ``measure`` runs one measurement. A host with several devices (an
    Android host with phones attached) runs one Agent per device."""

    def __init__(
        self,
        settings: AgentSettings,
        *,
        measure: Measurer = run_isolated,
        describe: Callable[[], dict[str, Any]] | None = None,
        handlers: dict[str, JobHandler] | None = None,
    ) -> None:
        self.settings = settings
        self.measure = measure
        self.handlers: dict[str, JobHandler] = dict(handlers or {})
        self.describe = describe or (
            lambda: capabilities(settings.device_class, settings.attributes)
        )
        self.api = AgentAPI(settings.server, settings.resolved_token())
        self.stop = threading.Event()
        self.device_id: int | None = None
        self._job_id: int | None = None
        self._progress: dict[str, Any] = {}
        self._cancel = threading.Event()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    def register(self) -> None:
        body = {"name": self.settings.name, **self.describe()}
        delay = 0.5
        while not self.stop.is_set():
            try:
                device = self.api.register(body)
                self.device_id = int(device["id"])
                log.info(
                    "registered as device %s (%s) with runtimes %s",
                    device["name"],
                    self.device_id,
                    device["runtimes"],
                )
                return
            except (httpx.TransportError, ProtocolError) as exc:
                log.warning("coordinator not reachable (%s); retrying in %.1fs", exc, delay)
                self.stop.wait(delay)
                delay = min(delay * 2, 10)

    def _heartbeat_loop(self) -> None:
        while not self.stop.wait(self.settings.heartbeat_interval_s):
            with self._lock:
                job_id, progress = self._job_id, dict(self._progress)
            try:
                assert self.device_id is not None
                keep = self.api.heartbeat(self.device_id, job_id, progress)
                if job_id is not None and not keep:
                    log.warning("job %s is no longer ours (lease lost): cancelling", job_id)
                    self._cancel.set()
            except (httpx.TransportError, ProtocolError) as exc:
                log.warning("heartbeat failed: %s", exc)

    def run(self) -> None:
        self.register()
        hb = threading.Thread(target=self._heartbeat_loop, daemon=True, name="heartbeat")
        hb.start()
        try:
            while not self.stop.is_set():
                job = self._lease()
                if job is None:
                    self.stop.wait(self.settings.poll_interval_s)
                    continue
                self._handle(job)
                if self.settings.once:
                    break
        finally:
            self.stop.set()
            self.api.close()

    def _lease(self) -> LeasedJob | None:
        assert self.device_id is not None
        try:
            return self.api.lease(self.device_id)
        except (httpx.TransportError, ProtocolError) as exc:
            log.warning("lease failed: %s", exc)
            if "is not registered" in str(exc):
                self.register()
            return None

    # ------------------------------------------------------------------ one job
    def _on_progress(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._progress = event

    def _handle(self, job: LeasedJob) -> None:
        log.info(
            "job %s: %s %s on %s (attempt %s)",
            job.id,
            job.kind,
            job.runtime,
            job.model.name,
            job.attempt,
        )
        with self._lock:
            self._job_id, self._progress = job.id, {"phase": "download"}
        self._cancel.clear()
        workdir = self.settings.work_dir / f"job-{job.id}-{job.attempt}"
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.handlers.get(job.kind, type(self).measure_job)(self, job, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            with self._lock:
                self._job_id, self._progress = None, {}

    def measure_job(self, job: LeasedJob, workdir: Path) -> None:
        """The default handler: measure the artifact with the protocol and report it."""
        result = self._measure(job, workdir)
        if self._cancel.is_set():
            log.warning("job %s was cancelled; not reporting", job.id)
            return
        assert self.device_id is not None
        device_id = self.device_id
        self.send(f"report of job {job.id}", lambda: self.api.report(device_id, job.id, result))

    def local_artifact(self, job: LeasedJob) -> Path:
        """The job's artifact in the local cache; an archived directory (OpenVINO IR, an
        .mlpackage) is unpacked once, and the path of its entry returned."""
        path = self.api.download(job.artifact_sha256, self.settings.cache_dir)
        meta = job.artifact_metadata
        if meta.get("archive") != "zip":
            return path
        return unpack_once(path) / str(meta.get("entry", ""))

    def _measure(self, job: LeasedJob, workdir: Path) -> MeasureResult:
        try:
            path = self.local_artifact(job)
        except (httpx.HTTPError, ProtocolError, OSError, zipfile.BadZipFile) as exc:
            return MeasureResult(status="failed", error=f"artifact download failed: {exc}")
        spec = MeasureSpec(
            runtime=job.runtime,
            model_path=str(path.resolve()),
            model_format=job.artifact_format or job.model.format,
            inputs=job.model.inputs,
            precision=job.precision,
            batch_size=job.batch_size,
            threads=job.threads,
            settings=job.settings,
            options={**job.options, "artifact_metadata": job.artifact_metadata},
        )
        return self.measure(
            spec, workdir=workdir, on_progress=self._on_progress, cancel=self._cancel
        )

    def send(self, what: str, call: Callable[[], Any]) -> bool:
        """Retry an idempotent call to the coordinator through transient network errors."""
        delay = 0.5
        for attempt in range(self.settings.report_retries + 1):
            try:
                call()
                log.info("%s: done", what)
                return True
            except httpx.TransportError as exc:
                log.warning("%s failed (%s); retry %d", what, exc, attempt + 1)
                time.sleep(delay)
                delay = min(delay * 2, 15)
            except ProtocolError as exc:
                log.error("%s refused: %s", what, exc)
                return False
        log.error("giving up on %s; the job's lease will expire and it will be retried", what)
        return False


def unpack_once(path: Path) -> Path:
    """Unpack a cached zip next to it (``<sha>.d``) once, safely when agents share a cache.

    Each caller unpacks into a private directory and renames it into place; whoever renames
    first wins and the others drop their copy.
    """
    target = path.with_name(path.name + ".d")
    if target.is_dir():
        return target
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.unpacking-"))
    try:
        with zipfile.ZipFile(path) as zf:
            zf.extractall(tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def run_agent(agent: Agent) -> None:
    """Run an agent in the foreground until SIGTERM/SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s agent %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    def _stop(signum: int, _frame: Any) -> None:
        log.info("signal %s: stopping", signum)
        agent.stop.set()
        agent._cancel.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    agent.run()


def main(settings: AgentSettings) -> None:
    run_agent(Agent(settings))
