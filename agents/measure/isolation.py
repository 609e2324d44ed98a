"""Run each measurement in a fresh subprocess and survive whatever happens to it.

A fresh process per measurement means no runtime state, allocator arenas, thread pools
or JIT caches leak between measurements, and a runtime that segfaults, hangs or leaks
only takes its own process down. The parent reads progress lines as they come, enforces
``settings.timeout_s`` by killing the child's process group, and turns every way the
child can end into a ``MeasureResult``; it never raises for runtime failures. The child is a
``converters.spawn.Sandbox``: its whole process group (benchmark tools included) goes on
every exit path of ``run_isolated`` and when the agent itself dies, SIGKILL included.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from converters.spawn import Sandbox
from latencylab.schemas import MeasureResult, MeasureSpec

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
STDERR_TAIL_LINES = 20
_POLL_S = 0.1


def _stderr_tail(path: Path, lines: int = STDERR_TAIL_LINES) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _with_stderr(message: str, stderr_path: Path) -> str:
    tail = _stderr_tail(stderr_path)
    return f"{message}\nlast stderr lines:\n{tail}" if tail else f"{message} (no stderr output)"


def _read_lines(stream: IO[bytes], sink: queue.Queue[bytes | None]) -> None:
    try:
        for line in iter(stream.readline, b""):
            sink.put(line)
    except (OSError, ValueError):
        pass
    finally:
        sink.put(None)


def _exit_description(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"crashed: killed by {name}"
    return f"exited with code {returncode}"


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"
    return env


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
    """Measure ``spec`` in a fresh ``python -m agents.measure.worker`` subprocess.

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
    spec_path, out_path = rundir / "spec.json", rundir / "result.json"
    stderr_path = rundir / "stderr.log"
    timeout_s = spec.settings.timeout_s
    interpreter = python or sys.executable
    cmd = [
        interpreter,
        "-m",
        "agents.measure.worker",
        "--spec",
        str(spec_path),
        "--out",
        str(out_path),
    ]
    box: Sandbox | None = None
    reader: threading.Thread | None = None
    phase = "startup"
    started = time.monotonic()
    try:
        spec_path.write_text(spec.model_dump_json())
        with stderr_path.open("wb") as err:
            try:
                box = Sandbox(
                    cmd, cwd=REPO_ROOT, env=_child_env(), stdout=subprocess.PIPE, stderr=err
                )
            except OSError as exc:
                return _failed(f"cannot start measurement process {interpreter!r}: {exc}")
        stdout = box.proc.stdout
        assert stdout is not None
        lines: queue.Queue[bytes | None] = queue.Queue()
        reader = threading.Thread(target=_read_lines, args=(stdout, lines), daemon=True)
        reader.start()
        deadline = started + timeout_s
        eof = False
        status: int | None = None
        while status is None:
            if cancel is not None and cancel.is_set():
                box.close()
                return _failed(f"measurement cancelled (phase {phase})", failed_phase=phase)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                box.close()
                return _failed(
                    _with_stderr(
                        f"measurement timed out after {timeout_s:g} s (phase {phase})", stderr_path
                    ),
                    failed_phase=phase,
                )
            if eof:
                status = box.wait(min(_POLL_S, remaining))
                continue
            try:
                line = lines.get(timeout=min(_POLL_S, remaining))
            except queue.Empty:
                continue
            if line is None:
                eof = True
                continue
            event = _parse_event(line)
            if event is None:
                continue
            phase = str(event.get("phase", phase))
            if on_progress is not None:
                try:
                    on_progress(event)
                except Exception:
                    log.exception("on_progress callback failed; progress events dropped")
                    on_progress = None
        wall_s = time.monotonic() - started
        box.close()  # leftovers of its group (a benchmark tool) go too
        return _collect(status, out_path, stderr_path, phase, wall_s)
    finally:
        if box is not None:
            box.close()
        if reader is not None:
            reader.join(timeout=5)
        # Close only once the reader is done: closing a pipe another thread is blocked on
        # would wait for that thread (an orphaned grandchild may still hold the pipe open).
        if box is not None and box.proc.stdout is not None:
            if reader is None or not reader.is_alive():
                box.proc.stdout.close()
            else:
                log.warning("measurement stdout still open after the process ended")
        if not keep_files:
            shutil.rmtree(rundir, ignore_errors=True)


def _parse_event(line: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except ValueError:
        log.debug("ignoring non-JSON worker output: %r", line[:200])
        return None
    return event if isinstance(event, dict) else None


def _collect(
    returncode: int, out_path: Path, stderr_path: Path, phase: str, wall_s: float
) -> MeasureResult:
    """The child's result, or a failed one naming how it ended."""
    how = _exit_description(returncode)
    if out_path.exists():
        try:
            result = MeasureResult.model_validate_json(out_path.read_text())
        except (ValidationError, ValueError, OSError) as exc:
            msg = f"measurement process {how} and wrote an invalid result ({type(exc).__name__}: {str(exc)[:300]})"
            return _failed(
                _with_stderr(msg, stderr_path), failed_phase=phase, worker_returncode=returncode
            )
        # A runtime may crash at interpreter teardown after the result was written: keep it.
        result.environment["worker_returncode"] = returncode
        result.environment["worker_wall_s"] = round(wall_s, 3)
        return result
    if returncode == 0:
        msg = f"measurement process exited without writing a result (phase {phase})"
    else:
        msg = f"measurement process {how} during phase {phase}"
    return _failed(_with_stderr(msg, stderr_path), failed_phase=phase, worker_returncode=returncode)
