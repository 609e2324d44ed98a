"""One sandbox for our code that runs on untrusted or crash-prone input: measurements
(``agents.measure.isolation``), conversions (``converters.run``) and the coordinator's check of
an uploaded model (``server.formats``) all run through ``run_sandboxed``.

    outcome = run_sandboxed(request, "pkg.module:function", ResultModel,
                            rundir=..., timeout_s=..., memory_mb=...)

The parent writes ``request`` (a pydantic model) to ``rundir/request.json`` and starts

    python -P -m converters.sandbox_child --entry pkg.module:function --request-type pkg.module:Model \\
        --request rundir/request.json --out rundir/result.json

(``-P``: the working directory is not on ``sys.path``, so files there -- an unpacked upload --
can never shadow a module) in a ``converters.spawn.Sandbox`` (own session and process group, gone with its starter, an
address-space limit of ``memory_mb``). The child enables faulthandler, keeps its real stdout
for progress events (one JSON object per line; file descriptor 1 is pointed at stderr, so a
library printing to stdout cannot corrupt the stream), validates the request as its model,
calls ``function(request, emit)`` and writes what it returned -- a pydantic model -- or the
exception that ended it to ``--out`` atomically, as an ``Envelope``. stderr goes to
``stderr_path`` (default ``rundir/stderr.log``).

The parent streams the events to ``on_event`` in its own thread, enforces ``timeout_s``
(from the start) and ``cancel`` by killing the child's process group, and turns every way the
child can end into a ``SandboxOutcome``: ``end`` says how (a ``SandboxEnd``), ``result`` is the
entry's result validated as ``result_type``, with the exit status and the stderr tail. It
never raises for what the child does; each caller words its own messages from the outcome.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, Generic, TextIO, TypeVar

from pydantic import BaseModel, ValidationError

from converters.spawn import Sandbox

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
STDERR_TAIL_LINES = 20
_POLL_S = 0.1

R = TypeVar("R", bound=BaseModel)
Emit = Callable[[dict[str, Any]], None]


class SandboxEnd(StrEnum):
    """How a sandboxed run ended."""

    finished = "finished"  # the entry returned: ``result`` holds what it returned
    raised = "raised"  # the entry (or loading it) raised: ``error`` says what
    out_of_memory = "out_of_memory"  # the entry raised MemoryError (the address-space limit)
    timed_out = "timed_out"  # killed after ``timeout_s``
    cancelled = "cancelled"  # killed because ``cancel`` was set
    crashed = "crashed"  # ended without writing a result (a signal, an exit code)
    invalid_result = "invalid_result"  # wrote a result that is not JSON or not a result_type
    not_started = "not_started"  # the process could not be started: ``error`` says why


class ChildError(BaseModel):
    type: str
    message: str


class Envelope(BaseModel):
    """What the child writes to ``--out``: the entry's result or the exception that ended it."""

    result: dict[str, Any] | None = None
    error: ChildError | None = None
    out_of_memory: bool = False


@dataclass
class SandboxOutcome(Generic[R]):
    end: SandboxEnd
    result: R | None = None
    returncode: int | None = None
    error: str | None = None
    stderr_tail: str = ""
    wall_s: float = 0.0

    @property
    def how(self) -> str:
        """How the process ended, in words ("exited with code 3", "crashed: killed by ...")."""
        return describe_exit(self.returncode) if self.returncode is not None else "was killed"


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"crashed: killed by {name}"
    return f"exited with code {returncode}"


def stderr_tail(path: Path, lines: int = STDERR_TAIL_LINES) -> str:
    """The last ``lines`` lines of the file (read from its last 64 KiB)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def child_env(extra: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """This process's environment (the child inherits what its runtime needs) without the
    variables whose names start with one of ``drop`` (credentials the child must not see), with
    the repository importable and Python unbuffered, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not (drop and k.startswith(drop))}
    paths = [str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"
    return {**env, **(extra or {})}


def _reference(obj: Any) -> str:
    """``module:qualname`` of a class, by the module's import name even when that module runs
    as ``__main__`` (``python -m converters.run``)."""
    module = obj.__module__
    if module == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        module = spec.name if spec is not None else module
    return f"{module}:{obj.__qualname__}"


def _read_lines(stream: IO[bytes], sink: queue.Queue[bytes | None]) -> None:
    try:
        for line in iter(stream.readline, b""):
            sink.put(line)
    except (OSError, ValueError):
        pass
    finally:
        sink.put(None)


def _parse_event(line: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except ValueError:
        log.debug("ignoring non-JSON sandbox output: %r", line[:200])
        return None
    return event if isinstance(event, dict) else None


def run_sandboxed(
    request: BaseModel,
    entry: str,
    result_type: type[R],
    *,
    rundir: Path,
    timeout_s: float,
    memory_mb: int | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    env_drop: tuple[str, ...] = (),
    python: str | None = None,
    stderr_path: Path | None = None,
    on_event: Emit | None = None,
    cancel: threading.Event | None = None,
) -> SandboxOutcome[R]:
    """Run ``entry(request, emit)`` in a fresh sandboxed interpreter (``python``, default this
    one) with cwd ``cwd`` (default ``rundir``) and the environment ``child_env(env, env_drop)``;
    see the module docstring. Raises ``OSError`` only when this process cannot write the
    request or open the stderr file (a full disk); a child that cannot start is an outcome."""
    started = time.monotonic()
    req_path, out_path = rundir / "request.json", rundir / "result.json"
    err_path = stderr_path or rundir / "stderr.log"
    interpreter = python or sys.executable
    rundir.mkdir(parents=True, exist_ok=True)  # our own files: an OSError here is ours
    out_path.unlink(missing_ok=True)
    req_path.write_text(request.model_dump_json())
    cmd = [
        interpreter, "-P", "-m", "converters.sandbox_child", "--entry", entry,
        "--request-type", _reference(type(request)),
        "--request", str(req_path), "--out", str(out_path),
    ]  # fmt: skip
    box: Sandbox | None = None
    reader: threading.Thread | None = None

    def ended(end: SandboxEnd, **kw: Any) -> SandboxOutcome[R]:
        return SandboxOutcome(
            end, stderr_tail=stderr_tail(err_path), wall_s=time.monotonic() - started, **kw
        )

    try:
        with err_path.open("wb") as err:
            try:
                box = Sandbox(
                    cmd, cwd=cwd or rundir, env=child_env(env, env_drop), stdout=subprocess.PIPE,
                    stderr=err, memory_mb=memory_mb,
                )  # fmt: skip
            except OSError as exc:
                return ended(SandboxEnd.not_started, error=f"cannot start {interpreter!r}: {exc}")
        assert box.proc.stdout is not None
        lines: queue.Queue[bytes | None] = queue.Queue()
        reader = threading.Thread(target=_read_lines, args=(box.proc.stdout, lines), daemon=True)
        reader.start()
        deadline = started + timeout_s
        eof = False
        status: int | None = None
        while status is None:
            if cancel is not None and cancel.is_set():
                box.close()
                return ended(SandboxEnd.cancelled, returncode=box.proc.returncode)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                box.close()
                return ended(SandboxEnd.timed_out, returncode=box.proc.returncode)
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
            if event is not None and on_event is not None:
                try:
                    on_event(event)
                except Exception:
                    log.exception("on_event callback failed; events dropped")
                    on_event = None
        box.close()  # leftovers of its group (a benchmark tool, onnx2tf) go too
        return _collect(status, out_path, result_type, ended)
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
                log.warning("sandbox stdout still open after the process ended")


def _collect(
    returncode: int,
    out_path: Path,
    result_type: type[R],
    ended: Callable[..., SandboxOutcome[R]],
) -> SandboxOutcome[R]:
    try:
        raw = out_path.read_bytes()
    except FileNotFoundError:
        return ended(SandboxEnd.crashed, returncode=returncode)
    except OSError as exc:
        return ended(SandboxEnd.invalid_result, returncode=returncode, error=str(exc))
    try:
        envelope = Envelope.model_validate_json(raw)
        if envelope.out_of_memory:
            return ended(SandboxEnd.out_of_memory, returncode=returncode)
        if envelope.error is not None:
            error = f"{envelope.error.type}: {envelope.error.message}"
            return ended(SandboxEnd.raised, returncode=returncode, error=error)
        result = result_type.model_validate(envelope.result)
    except (ValidationError, ValueError) as exc:
        problem = f"{type(exc).__name__}: {str(exc)[:300]}"
        return ended(SandboxEnd.invalid_result, returncode=returncode, error=problem)
    # A runtime may crash at interpreter teardown after the result was written: keep it.
    return ended(SandboxEnd.finished, returncode=returncode, result=result)


# ------------------------------------ the child side (converters.sandbox_child, agents.measure.worker)


def private_stdout() -> TextIO:
    """A line-buffered stream on the original stdout; fd 1 is redirected to stderr."""
    sys.stdout.flush()
    fd = os.dup(1)  # not inheritable: what the child starts does not hold the event pipe
    os.dup2(2, 1)
    return os.fdopen(fd, "w", buffering=1, encoding="utf-8")


def emitter(stream: TextIO) -> Emit:
    def emit(event: dict[str, Any]) -> None:
        try:
            stream.write(json.dumps(event, separators=(",", ":")) + "\n")
            stream.flush()
        except (OSError, ValueError):  # the parent went away: go on, the result file matters
            pass

    return emit


def write_atomically(out: Path, text: str) -> None:
    """``text`` to ``out`` through a temporary file and a rename."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
