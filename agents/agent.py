"""The device agent: register, heartbeat, lease one job at a time, measure it, report.

Every measurement runs in a fresh subprocess (``agents.measure.run_isolated``), so a
crash or hang of the runtime becomes a failed result and the agent lives on. Each job gets
its own locked work directory (``agents.workdirs``); those a killed agent left are removed
at start and after each job.

Refusals of the coordinator arrive typed (``agents.api``): a lost lease drops that job, an
unknown device registers again, an overloaded coordinator is retried after its Retry-After,
and a rejected token or a device name held by another token stops the agent (``Fatal``;
``run_agent`` exits with status ``EXIT_REFUSED``), whichever thread met it.
"""

from __future__ import annotations

import logging
import random
import shutil
import signal
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import httpx

from agents.api import (
    AgentAPI,
    DeviceNotRegistered,
    Fatal,
    LeaseLost,
    Overloaded,
    ProtocolError,
)
from agents.capabilities import capabilities
from agents.config import AgentSettings
from agents.measure import run_isolated
from agents.measure.batch import batch_job
from agents.measure.repeats import measure_repeated
from agents.workdirs import JobDir, sweep
from converters.archives import ArchiveRejected, extract
from latencylab.predictors import BATCH_KIND
from latencylab.schemas import LeasedJob, MeasureResult, MeasureSpec

log = logging.getLogger("latencylab.agent")

EXIT_REFUSED = 3
"""Exit status of an agent the coordinator refused for good (token, device name): restarting
it unchanged cannot help (systemd: ``RestartPreventExitStatus=3``)."""

MAX_UNPACKED = 256 << 30
"""Largest unpacked archive an agent accepts (the coordinator's upload check is stricter)."""


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
        self.handlers: dict[str, JobHandler] = {BATCH_KIND: batch_job, **(handlers or {})}
        self.describe = describe or (
            lambda: capabilities(settings.device_class, settings.attributes)
        )
        self.api = AgentAPI(settings.server, settings.resolved_token())
        self.stop = threading.Event()
        self.polling = False  # in a long-poll lease (a signal may interrupt it)
        self.device_id: int | None = None
        self._job_id: int | None = None
        self._attempt: int | None = None
        self._progress: dict[str, Any] = {}
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self.fatal: Fatal | None = None

    # ------------------------------------------------------------------ lifecycle
    def register(self) -> None:
        """Register (again); retries through network errors and overload, raises ``Fatal``."""
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
                wait = backoff(exc, delay)
                log.warning("registration failed (%s); retrying in %.1fs", exc, wait)
                self.stop.wait(wait)
                delay = min(delay * 2, 10)

    def _stop_for_good(self, exc: Fatal) -> None:
        """Stop the agent (and its job) for a refusal no retry can fix; ``run`` re-raises it."""
        if self.fatal is None:
            self.fatal = exc
            log.error("the coordinator refused this agent: %s. The agent stops.", exc)
        self.stop.set()
        self._cancel.set()

    def _drop(self, job: tuple[int | None, int | None], why: object) -> None:
        """Cancel the running job if it is still ``job`` (id, attempt): not a later lease,
        which may be of the same job."""
        with self._lock:
            current = (self._job_id, self._attempt)
        if job[0] is not None and current == job:
            log.warning("job %s: lease lost (%s); cancelling it", job[0], why)
            self._cancel.set()

    def _heartbeat_loop(self) -> None:
        wait = self.settings.heartbeat_interval_s
        while not self.stop.wait(wait):
            wait = self.settings.heartbeat_interval_s
            with self._lock:
                job, progress = (self._job_id, self._attempt), dict(self._progress)
            try:
                assert self.device_id is not None
                if not self.api.heartbeat(self.device_id, job[0], progress):
                    self._drop(job, "the coordinator answered keep: false")
            except LeaseLost as exc:
                self._drop(job, exc)
            except DeviceNotRegistered as exc:  # the main loop registers again
                log.warning("heartbeat: %s", exc)
                self._drop(job, "the coordinator no longer knows this device")
            except Fatal as exc:
                self._stop_for_good(exc)
                return
            except (httpx.TransportError, ProtocolError) as exc:
                if isinstance(exc, Overloaded):  # honour Retry-After, but keep the lease
                    wait = min(backoff(exc, wait), 3 * self.settings.heartbeat_interval_s)
                log.warning("heartbeat failed: %s", exc)
            except Exception:  # never let the thread die: the lease would run out unseen
                log.exception("heartbeat failed")

    def run(self) -> None:
        """Serve jobs until ``stop``; raises ``Fatal`` once the coordinator refused this agent
        for good (the reason is logged; the job it was running is cancelled)."""
        for path in sweep(self.settings.work_dir):
            log.info("removed %s, left by an agent that was stopped", path)
        hb: threading.Thread | None = None
        try:
            self.register()
            hb = threading.Thread(target=self._heartbeat_loop, daemon=True, name="heartbeat")
            hb.start()
            while not self.stop.is_set():
                asked = time.monotonic()
                job = self._lease()
                if job is None:
                    # A long-poll waited on the coordinator; one answered at once (an older
                    # coordinator, or an error) waits here before the next attempt.
                    if time.monotonic() - asked < min(self.settings.lease_wait_s, 1.0) or (
                        self.settings.lease_wait_s == 0
                    ):
                        self.stop.wait(self.settings.poll_interval_s)
                    continue
                self._handle(job)
                if self.settings.once:
                    break
        except Fatal as exc:
            self._stop_for_good(exc)
        finally:
            self.stop.set()
            if hb is not None:
                hb.join(timeout=self.settings.heartbeat_interval_s + 5)
            self.api.close()
        if self.fatal is not None:
            raise self.fatal

    def _lease(self) -> LeasedJob | None:
        assert self.device_id is not None
        try:
            self.polling = True
            try:
                return self.api.lease(self.device_id, self.settings.lease_wait_s)
            finally:
                self.polling = False
        except DeviceNotRegistered as exc:
            log.warning("lease: %s; registering again", exc)
            self.register()
        except Overloaded as exc:
            wait = backoff(exc, self.settings.poll_interval_s)
            log.warning("lease: %s; retrying in %.1fs", exc, wait)
            self.stop.wait(wait)
        except (httpx.TransportError, ProtocolError) as exc:
            log.warning("lease failed: %s", exc)
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
        self._cancel.clear()
        if self.stop.is_set():  # a signal that came between the lease and here
            self._cancel.set()
        with self._lock:
            self._job_id, self._attempt = job.id, job.attempt
            self._progress = {"phase": "download"}
        try:
            with JobDir(self.settings.work_dir, job.id, job.attempt) as workdir:
                self.handlers.get(job.kind, type(self).measure_job)(self, job, workdir)
        except LeaseLost as exc:
            log.warning("job %s: lease lost (%s); dropped", job.id, exc)
        finally:
            with self._lock:
                self._job_id, self._attempt, self._progress = None, None, {}
        for path in sweep(self.settings.work_dir):  # of an agent killed beside us
            log.info("removed %s, left by an agent that was stopped", path)

    def measure_job(self, job: LeasedJob, workdir: Path) -> None:
        """The default handler: measure the artifact with the protocol and report it."""
        result = self._measure(job, workdir)
        if self._cancel.is_set():
            log.warning("job %s was cancelled; not reporting", job.id)
            return
        assert self.device_id is not None
        device_id = self.device_id
        self.send(f"report of job {job.id}", lambda: self.api.report(device_id, job.id, result))

    def local_artifact(self, job: LeasedJob, workdir: Path) -> Path:
        """The job's artifact: a file in the local cache (by sha256), or, for an archived
        directory (OpenVINO IR, an .mlpackage, ONNX with external data), the path of its entry
        unpacked inside this job's own work directory. A user's archive is never unpacked
        where a later job could reach it by path; the work directory goes with the job."""
        path = self.api.download(job.artifact_sha256, self.settings.cache_dir)
        meta = job.artifact_metadata
        if meta.get("archive") != "zip":
            return path
        target = workdir / "artifact"
        shutil.rmtree(target, ignore_errors=True)
        extract(path, target, max_total=MAX_UNPACKED)  # checked again: links, paths, bombs
        return target / str(meta.get("entry", ""))

    def _measure(self, job: LeasedJob, workdir: Path) -> MeasureResult:
        try:
            path = self.local_artifact(job, workdir)
        except (
            httpx.HTTPError,
            ProtocolError,
            OSError,
            zipfile.BadZipFile,
            ArchiveRejected,
        ) as exc:
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
            options=job.options,
            artifact_metadata=job.artifact_metadata,
            host=self.settings.host_tools(),
        )
        return measure_repeated(  # settings.repeats fresh processes, pooled
            self.measure, spec, workdir=workdir, on_progress=self._on_progress, cancel=self._cancel
        )

    def send(self, what: str, call: Callable[[], Any]) -> bool:
        """Retry an idempotent call to the coordinator through network errors and overload;
        False once it is refused (a lost lease: the result is dropped). ``Fatal`` propagates."""
        delay = 0.5
        for attempt in range(self.settings.report_retries + 1):
            try:
                call()
                log.info("%s: done", what)
                return True
            except (httpx.TransportError, Overloaded) as exc:
                wait = backoff(exc, delay)
                log.warning("%s failed (%s); retry %d in %.1fs", what, exc, attempt + 1, wait)
                time.sleep(wait)
                delay = min(delay * 2, 15)
            except LeaseLost as exc:
                log.warning("%s: lease lost (%s); the result is dropped", what, exc)
                return False
            except (ProtocolError, DeviceNotRegistered) as exc:
                log.error("%s refused: %s", what, exc)
                return False
        log.error("giving up on %s; the job's lease will expire and it will be retried", what)
        return False


def backoff(exc: BaseException, delay: float) -> float:
    """Seconds to wait before a retry: the coordinator's Retry-After when it sent one, else
    ``delay``; plus up to 25 % jitter so that a fleet does not come back in step."""
    if isinstance(exc, Overloaded) and exc.retry_after is not None:
        delay = exc.retry_after
    return delay * random.uniform(1.0, 1.25)


def run_agent(agent: Agent) -> None:
    """Run an agent in the foreground until SIGTERM/SIGINT; exit with ``EXIT_REFUSED`` when
    the coordinator refuses it for good (the reason is in the log)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s agent %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    def _stop(signum: int, _frame: Any) -> None:
        log.info("signal %s: stopping", signum)
        agent.stop.set()
        agent._cancel.set()
        if agent.polling:  # waiting for a job on the coordinator: stop waiting now
            raise _Interrupted

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        agent.run()
    except _Interrupted:
        pass
    except Fatal:
        raise SystemExit(EXIT_REFUSED) from None


class _Interrupted(BaseException):
    """A stop signal during a long-poll lease: the agent holds no job, nothing to clean up."""


def main(settings: AgentSettings) -> None:
    run_agent(Agent(settings))
