"""ExecuTorch on a phone: a ``.pte`` run by an ``executor_runner`` binary over adb.

The binary is the operator's (``LATENCYLAB_ANDROID_EXECUTOR_RUNNER``, an Android arm64 build of
ExecuTorch's ``examples/portable/executor_runner`` -- or ``backends/xnnpack``'s
``xnn_executor_runner`` -- with the XNNPACK backend linked in); it is pushed once per phone.
Per job: push the ``.pte``, cool down, run::

    taskset MASK executor_runner --model_path=M.pte --num_executions=W+N [--cpu_threads=T]

and read its log. The runner (pytorch/executorch ``examples/portable/executor_runner/
executor_runner.cpp``) logs through ``ET_LOG``, whose default platform layer
(``runtime/platform/default/posix.cpp``, ``et_pal_emit_log_message``) writes each line to
stderr as ``"%c %02u:%02u:%02u.%06lu executorch:%s:%zu] %s"`` -- level, time since start,
file and line, message. The lines read here are::

    I 00:00:00.021345 executorch:executor_runner.cpp:530] Model loaded in 4.211000 ms.
    I 00:00:00.034567 executorch:executor_runner.cpp:676] Iteration 1 of 30: 2.113000 ms
    I 00:00:00.098765 executorch:executor_runner.cpp:686] Model executed successfully 30 time(s) in 61.2 ms.

so each execution's time comes back: the first ``W`` (``settings.warmup_runs``) are the
warm-up, the rest the steady state (raw per-run times, ``times_ms``). The tool runs a fixed
count: when the first pass is shorter than ``settings.min_duration_s``, one more pass runs
with as many executions as the first pass's mean says the minimum needs (at most
``max_runs``, and about ``max_duration_s``); that pass is the steady state. Every input is
all ones (the tool's own choice).

**Op profile.** ``executor_runner`` writes an ETDump only when built with
``EXECUTORCH_ENABLE_EVENT_TRACER=ON``, and then traces every execution (and aborts when it
cannot write ``--etdump_path``), so the timed passes use the plain build and a second build,
``LATENCYLAB_ANDROID_EXECUTOR_RUNNER_PROFILER``, runs one more pass after them, outside the
energy window::

    taskset MASK executor_runner_profiler --model_path=M.pte --num_executions=W'+P \
        --etdump_path=M.etdump [--cpu_threads=T]

(``W'`` = ``min(warmup_runs, 5)``, ``P`` = ``profile_runs``). The dump is pulled back and read
by ``executorch.devtools.Inspector`` on the host (``agents.runners.etdump``, as on Linux
hosts), the first ``W'`` executions left out: one row per operator, XNNPACK or portable. Without
the profiler build, with a build that has no tracer (it refuses ``--etdump_path``) or without
executorch on the host, the profile is empty and ``environment.profile_note`` says why.
"""

from __future__ import annotations

import math
import re
import shlex
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from agents.android.adb import Adb, AdbError, Cancelled, PhoneGone, ShellResult
from agents.android.config import AndroidSettings
from agents.android.energy import EnergyMeter
from agents.android.phone import Phone
from agents.measure.stats import summarize
from agents.runners.etdump import read_etdump
from latencylab.runtime_options import ExecuTorchOptions
from latencylab.schemas import LayerProfile, MeasureResult, MeasureSpec

Progress = Callable[[dict[str, Any]], None]


class PhoneSetupError(ValueError):
    """The job cannot run on this phone as asked (the message says what to change)."""


class Measurer(Protocol):
    """What this pass uses of its phone's ``agents.android.measure.PhoneMeasurer``."""

    adb: Adb
    serial: str
    settings: AndroidSettings
    phone: Phone
    energy: EnergyMeter

    def _run_pass(
        self, command: str, remote_model: str, deadline: float, cancel: threading.Event,
        tool: str = ...,
    ) -> ShellResult: ...  # fmt: skip

    def _best_effort(self, command: str) -> None: ...


EXECUTOR_RUNNER_HINT = (
    "build ExecuTorch's executor_runner for Android arm64 with the XNNPACK backend (see "
    "docs/devices.md) and set LATENCYLAB_ANDROID_EXECUTOR_RUNNER (or --executor-runner) to it"
)
RAW_TIMES_NOTE = "per-iteration times printed by executor_runner"
PROFILER_HINT = (
    "build a second executor_runner with -DEXECUTORCH_ENABLE_EVENT_TRACER=ON (see "
    "docs/devices.md) and set LATENCYLAB_ANDROID_EXECUTOR_RUNNER_PROFILER to it"
)
PROFILE_NOTE = (
    "no per-operator profile on phones: executor_runner writes an ETDump only when built with "
    f"the event tracer; {PROFILER_HINT}"
)
NO_TRACER_NOTE = (
    "no per-operator profile: the profiler binary was built without the event tracer (it "
    f"refused --etdump_path); {PROFILER_HINT}"
)
_LOG = re.compile(r"^[DIEF] \d+:\d\d:\d\d\.\d+ executorch:[^\]]*\] (?P<msg>.*)$")
_ITERATION = re.compile(r"^Iteration (?P<i>\d+) of (?P<n>\d+): (?P<ms>[0-9.eE+-]+) ms$")
_LOADED = re.compile(r"^Model loaded in (?P<ms>[0-9.eE+-]+) ms\.?$")
_DONE = re.compile(
    r"^Model executed successfully (?P<n>\d+) time\(s\) in (?P<ms>[0-9.eE+-]+) ms\.?$"
)


@dataclass
class RunnerOutput:
    """What one executor_runner pass printed."""

    times_ms: list[float] = field(default_factory=list)
    announced: int | None = None  # "of N" in the iteration lines
    load_ms: float | None = None
    total_ms: float | None = None
    executions: int | None = None
    errors: list[str] = field(default_factory=list)


def parse_executor_runner(text: str) -> RunnerOutput:
    """The timing lines of an executor_runner log (any other line is ignored)."""
    out = RunnerOutput()
    for line in text.splitlines():
        m = _LOG.match(line.strip())
        if not m:
            continue
        msg = m["msg"].strip()
        if line.lstrip().startswith(("E", "F")):
            out.errors.append(msg)
        if it := _ITERATION.match(msg):
            if int(it["i"]) != len(out.times_ms) + 1:
                raise ValueError(f"iteration lines out of order at {msg!r}")
            out.times_ms.append(float(it["ms"]))
            out.announced = int(it["n"])
        elif loaded := _LOADED.match(msg):
            out.load_ms = float(loaded["ms"])
        elif done := _DONE.match(msg):
            out.executions, out.total_ms = int(done["n"]), float(done["ms"])
    return out


def steady_runs(first_mean_ms: float, spec: MeasureSpec) -> int:
    """Executions for the steady-state pass: enough for ``min_duration_s`` at the first pass's
    mean, at least ``min_runs``, at most ``max_runs`` and about ``max_duration_s``."""
    s = spec.settings
    mean_s = max(first_mean_ms, 1e-3) / 1000.0
    want = max(s.min_runs, math.ceil(s.min_duration_s / mean_s * 1.05))
    cap = max(s.min_runs, int(s.max_duration_s / mean_s))
    return int(min(want, cap, s.max_runs))


class ExecuTorchOnPhone:
    """The ``executorch`` runtime of one phone (used by its :class:`PhoneMeasurer`)."""

    def __init__(self, measurer: Measurer) -> None:
        self.m = measurer
        remote_dir = measurer.settings.remote_dir.rstrip("/")
        self.remote_binary = f"{remote_dir}/executor_runner"
        self.remote_profiler = f"{remote_dir}/executor_runner_profiler"
        self._pushed: set[str] = set()

    def check(self, spec: MeasureSpec) -> None:
        path = Path(spec.model_path)
        with path.open("rb") as fh:
            head = fh.read(8)
        if head[4:6] != b"ET":
            raise PhoneSetupError(
                f"phone {self.m.serial} runs ExecuTorch programs (.pte), got format "
                f"{spec.model_format!r} ({path.name}); benchmark the ONNX or .pt2 upload with "
                "runtime 'executorch' to have it converted"
            )
        if spec.batch_size != 1:
            raise PhoneSetupError(
                f"batch_size {spec.batch_size} is not supported on phones yet: executor_runner "
                "runs the .pte's own input shapes; convert the model at that batch instead"
            )
        try:
            ExecuTorchOptions.model_validate(spec.options)
        except ValidationError as exc:
            raise PhoneSetupError(f"invalid executorch options: {exc.errors()[0]['msg']}") from None

    def _ensure_binary(self, local: Path | None, remote: str, cancel: threading.Event, hint: str) -> None:  # fmt: skip
        """Push the operator's binary to ``remote`` once per phone."""
        if remote in self._pushed:
            return
        name = remote.rsplit("/", 1)[-1]
        if local is None or not Path(local).is_file():
            raise PhoneSetupError(f"{name} is not available ({local}); {hint}")
        adb, serial = self.m.adb, self.m.serial
        adb.push(serial, local, remote, timeout_s=self.m.settings.push_timeout_s, cancel=cancel)
        adb.shell(serial, f"chmod 755 {shlex.quote(remote)}")
        self._pushed.add(remote)

    def _command(self, spec: MeasureSpec, remote_model: str, executions: int, binary: str | None = None, extra: tuple[str, ...] = ()) -> tuple[str, dict[str, Any]]:  # fmt: skip
        mask, mask_note = self.m.phone.cpu_mask(spec.options.get("cpu_mask"), spec.threads)
        args = [
            binary or self.remote_binary,
            f"--model_path={remote_model}",
            f"--num_executions={executions}",
            *extra,
        ]
        if spec.threads > 0:
            args.append(f"--cpu_threads={spec.threads}")
        command = shlex.join((["taskset", mask] if mask else []) + args)
        return command, {"cpu_mask": mask or "all", "cpu_mask_source": mask_note}

    def _pass(self, command: str, remote: str, deadline: float, cancel: threading.Event, workdir: Path, name: str) -> RunnerOutput:  # fmt: skip
        res = self.m._run_pass(command, remote, deadline, cancel, tool="executor_runner")
        (workdir / f"{name}.txt").write_text(res.output)
        parsed = parse_executor_runner(res.output)
        if not parsed.times_ms:
            tail = " | ".join(res.output.strip().splitlines()[-5:])
            raise ValueError(f"executor_runner printed no 'Iteration i of n' lines: {tail}")
        return parsed

    def measure(
        self, spec: MeasureSpec, workdir: Path, progress: Progress, cancel: threading.Event,
        env: dict[str, Any],
    ) -> MeasureResult:  # fmt: skip
        s = spec.settings
        deadline = time.monotonic() + s.timeout_s
        progress({"phase": "push"})
        self._ensure_binary(self.m.settings.executor_runner, self.remote_binary, cancel, EXECUTOR_RUNNER_HINT)  # fmt: skip
        remote = f"{self.m.settings.remote_dir.rstrip('/')}/latencylab-{uuid.uuid4().hex[:12]}.pte"
        self.m.adb.push(self.m.serial, spec.model_path, remote, timeout_s=self.m.settings.push_timeout_s, cancel=cancel)  # fmt: skip
        env.update(
            runtime_version=self.m.settings.executor_runner_version, tool="executor_runner",
            threads=spec.threads, precision=spec.precision,
        )  # fmt: skip
        try:
            warm = s.warmup_runs
            command, how = self._command(spec, remote, warm + s.min_runs)
            env.update(how, command=command)
            env["thermal_before"] = self.m.phone.thermal()
            env["cooldown"] = self.m.phone.cool_down(spec.options, cancel, progress)
            if cancel.is_set():
                raise Cancelled("cancelled during the cool-down", self.m.serial)
            progress({"phase": "steady"})
            # the battery is sampled around the passes; the energy is that of the last
            # steady_duration_s of them, which is the steady-state pass's executions
            with (
                self.m.energy.session(cancel, deadline, how["cpu_mask"]) as energy,
                energy.steady(),
            ):
                first = self._pass(command, remote, deadline, cancel, workdir, "executor_runner")
                steady, passes = first, [command]
                if sum(first.times_ms[warm:]) / 1000.0 < s.min_duration_s:
                    timed = first.times_ms[warm:] or first.times_ms
                    command, _ = self._command(spec, remote, warm + steady_runs(sum(timed) / len(timed), spec))  # fmt: skip
                    steady = self._pass(command, remote, deadline, cancel, workdir, "executor_runner_steady")  # fmt: skip
                    passes.append(command)
            profile = self._profile(spec, remote, deadline, cancel, progress, workdir, env)
            env["thermal_after"] = self.m.phone.thermal()
        finally:
            self.m._best_effort(f"rm -f {shlex.quote(remote)}")
        result = self._result(steady, first, passes, spec, env)
        result.profile = profile
        result.environment.update(energy.report(result.runs, result.steady_duration_s))
        return result

    def _profile(self, spec: MeasureSpec, remote: str, deadline: float, cancel: threading.Event, progress: Progress, workdir: Path, env: dict[str, Any]) -> list[LayerProfile]:  # fmt: skip
        """The op-profiling pass of the event-tracer build (see the module doc); never fails
        the job: an empty profile and ``environment.profile_note`` say why."""
        if not spec.settings.profile:
            env["profile_note"] = "no per-operator profile: settings.profile is off"
            return []
        local = self.m.settings.executor_runner_profiler
        if local is None:
            env["profile_note"] = PROFILE_NOTE
            return []
        try:
            self._ensure_binary(local, self.remote_profiler, cancel, PROFILER_HINT)
        except PhoneSetupError as exc:  # a profiler path that is not there: the timed runs stand
            env["profile_note"] = f"no per-operator profile: {exc}"
            return []
        warm = min(spec.settings.warmup_runs, 5)
        etdump = remote.removesuffix(".pte") + ".etdump"
        runs = warm + self.m.settings.profile_runs
        command, _ = self._command(spec, remote, runs, self.remote_profiler, (f"--etdump_path={etdump}",))  # fmt: skip
        env["profile_command"] = command
        env["profile_cooldown"] = self.m.phone.cool_down(spec.options, cancel, progress)
        progress({"phase": "profile"})
        pulled = workdir / "executor_runner_profile.etdump"
        try:
            res = self.m._run_pass(command, remote, deadline, cancel, tool="executor_runner (profiler)")  # fmt: skip
            (workdir / "executor_runner_profile.txt").write_text(res.output)
            self.m.adb.pull(self.m.serial, etdump, pulled, timeout_s=self.m.settings.push_timeout_s, cancel=cancel)  # fmt: skip
        except AdbError as exc:
            if isinstance(exc, PhoneGone | Cancelled):
                raise
            unknown = "unknown command line flag 'etdump_path'" in str(exc)
            env["profile_note"] = NO_TRACER_NOTE if unknown else f"no per-operator profile: {exc}"
            return []
        finally:
            self.m._best_effort(f"rm -f {shlex.quote(etdump)}")
        try:
            rows, env["profile_note"] = read_etdump(pulled, "executor_runner --etdump_path on the phone", skip=warm)  # fmt: skip
        except ImportError as exc:
            env["profile_note"] = (
                f"no per-operator profile: reading the phone's ETDump needs executorch on this "
                f"host (pip install 'latencylab[executorch]', see the Makefile) ({exc})"
            )
            return []
        except Exception as exc:  # a dump the Inspector cannot read
            env["profile_note"] = f"no per-operator profile: the ETDump could not be read ({type(exc).__name__}: {str(exc)[:300]})"  # fmt: skip
            return []
        return rows

    def _result(self, steady: RunnerOutput, first: RunnerOutput, passes: list[str], spec: MeasureSpec, env: dict[str, Any]) -> MeasureResult:  # fmt: skip
        s = spec.settings
        warm = min(s.warmup_runs, max(0, len(steady.times_ms) - 1))
        times = steady.times_ms[warm:]
        duration_s = sum(times) / 1000.0
        reason = "max_runs" if len(times) >= s.max_runs else (
            "min_runs_and_duration" if duration_s >= s.min_duration_s else "max_duration"
        )  # fmt: skip
        warnings = []
        if duration_s < s.min_duration_s:
            warnings.append(
                f"the steady state lasted {duration_s:.3g} s of the required "
                f"{s.min_duration_s:g} s (min_duration_s): max_runs/max_duration_s capped the "
                "executions of executor_runner's fixed-count pass"
            )
        env.update(
            raw_times=RAW_TIMES_NOTE, passes=passes, tool_errors=steady.errors or None,
            tool_total_ms=steady.total_ms, tool_executions=steady.executions,
            stopping_rule="executor_runner runs a fixed count: warmup_runs + min_runs, then one "
            "longer pass if that was shorter than min_duration_s (at most max_runs)",
        )  # fmt: skip
        if steady is not first:
            env["first_pass_ms"] = first.times_ms
        return MeasureResult(
            status="succeeded", latency_ms=summarize(times), runs=len(times), times_ms=times,
            warmup_ms=steady.times_ms[:warm], first_inference_ms=first.times_ms[0],
            load_ms=first.load_ms, stop_reason=reason, steady_duration_s=round(duration_s, 6),
            environment=env, warnings=warnings,
        )  # fmt: skip
