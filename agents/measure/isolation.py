"""Run each measurement in a fresh subprocess and survive whatever happens to it.

A fresh process per measurement means no runtime state, allocator arenas, thread pools
or JIT caches leak between measurements, and a runtime that segfaults, hangs or leaks
only takes its own process down. The process is the shared sandbox
(``converters.sandbox.run_sandboxed``) running ``agents.measure.worker:measure`` on the
``MeasureSpec``: its progress events come back as they happen, ``settings.timeout_s`` is
enforced by killing its process group (benchmark tools included, also when the agent itself
dies, SIGKILL included), and every way it can end becomes a ``MeasureResult`` here;
``run_isolated`` never raises for runtime failures. No address-space limit is set: GPU
runtimes map far more virtual memory than they use.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from converters.sandbox import SandboxEnd, SandboxOutcome, run_sandboxed
from latencylab.schemas import MeasureResult, MeasureSpec

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
ENTRY = "agents.measure.worker:measure"


def _with_stderr(message: str, tail: str) -> str:
    return f"{message}\nlast stderr lines:\n{tail}" if tail else f"{message} (no stderr output)"


def _failed(error: str, **env: Any) -> MeasureResult:
    return MeasureResult(status="failed", error=error, environment=env)


def run_isolated(
    spec: MeasureSpec,
    *,
    workdir: Path,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    python: str | None = None,
    cancel: threading.Event | None = None,
    keep_files: bool = False,
) -> MeasureResult:
    """Measure ``spec`` in a fresh sandboxed subprocess (``agents.measure.worker:measure``).

    ``python`` picks the interpreter (default: this one), ``cancel`` aborts the run,
    ``on_progress`` receives the worker's progress events in this thread. Spec, result
    and stderr files live in a private folder under ``workdir``, removed afterwards
    unless ``keep_files``. Timeouts, crashes and bad result files become failed results.
    """
    try:
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        rundir = Path(tempfile.mkdtemp(prefix="measure-", dir=workdir))
    except OSError as exc:
        return _failed(f"cannot create a measurement folder under {workdir}: {exc}")
    phase = "startup"

    def on_event(event: dict[str, Any]) -> None:
        nonlocal phase, on_progress
        phase = str(event.get("phase", phase))
        if on_progress is not None:
            try:
                on_progress(event)
            except Exception:
                log.exception("on_progress callback failed; progress events dropped")
                on_progress = None

    try:
        outcome = run_sandboxed(
            spec, ENTRY, MeasureResult, rundir=rundir, timeout_s=spec.settings.timeout_s,
            cwd=REPO_ROOT, python=python, on_event=on_event, cancel=cancel,
        )  # fmt: skip
    finally:
        if not keep_files:
            shutil.rmtree(rundir, ignore_errors=True)
    return _measure_result(outcome, spec, phase)


def _measure_result(
    out: SandboxOutcome[MeasureResult], spec: MeasureSpec, phase: str
) -> MeasureResult:
    """The child's result, or a failed one naming how it ended."""
    env: dict[str, Any] = {"failed_phase": phase}
    if out.returncode is not None:
        env["worker_returncode"] = out.returncode
    if out.result is not None:
        out.result.environment["worker_returncode"] = out.returncode
        out.result.environment["worker_wall_s"] = round(out.wall_s, 3)
        return out.result
    if out.end is SandboxEnd.cancelled:
        return _failed(f"measurement cancelled (phase {phase})", failed_phase=phase)
    if out.end is SandboxEnd.timed_out:
        timeout_s = spec.settings.timeout_s
        msg = f"measurement timed out after {timeout_s:g} s (phase {phase})"
        return _failed(_with_stderr(msg, out.stderr_tail), failed_phase=phase)
    if out.end is SandboxEnd.not_started:
        return _failed(f"measurement process not started: {out.error}")
    if out.end is SandboxEnd.invalid_result:
        msg = f"measurement process {out.how} and wrote an invalid result ({out.error})"
    elif out.end is SandboxEnd.out_of_memory:
        msg = f"measurement process ran out of memory during phase {phase}"
    elif out.end is SandboxEnd.raised:
        msg = f"measurement process failed during phase {phase}: {out.error}"
    elif out.returncode == 0:
        msg = f"measurement process exited without writing a result (phase {phase})"
    else:
        msg = f"measurement process {out.how} during phase {phase}"
    return _failed(_with_stderr(msg, out.stderr_tail), **env)
