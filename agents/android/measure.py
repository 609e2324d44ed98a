"""One phone's Measurer: a MeasureSpec -> ``benchmark_model`` over adb -> a MeasureResult.

Per job: push the ``.tflite`` (and, once per phone, the ``benchmark_model`` binary), cool
down, run ``taskset MASK benchmark_model --graph=... --enable_op_profiling=false ...``,
then a separate op-profiling pass, read the thermal state before and after, remove the
model; around the timed pass the battery is sampled for energy per inference
(``agents.android.energy``). ``spec.options``: ``delegate`` (``xnnpack`` default, ``gpu``,
``nnapi``, ``none``), ``cpu_mask`` (hex such as ``f0``, or ``all``; default: the big cores), ``cooldown_s``,
``max_temp_c``, ``cooldown_timeout_s``.

The tool prints no per-iteration times: see ``agents.android.result`` for how its
aggregates become a MeasureResult (``environment.raw_times`` says none are available).
Runtime ``executorch`` (a ``.pte`` through ``executor_runner``, raw per-run times) is
``agents.android.executorch``; ``_runtimes`` maps each runtime to its check and measurement.
"""

from __future__ import annotations

import logging
import shlex
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agents.android.adb import Adb, AdbError, AdbTimeout, Cancelled, PhoneGone, ShellResult
from agents.android.config import BENCHMARK_MODEL_HINT, AndroidSettings
from agents.android.energy import EnergyMeter
from agents.android.executorch import EXECUTOR_RUNNER_HINT, ExecuTorchOnPhone
from agents.android.phone import Phone
from agents.android.result import to_result
from agents.parsers.tflite_benchmark import TfliteBenchmarkResult, parse_tflite_benchmark
from latencylab.runtime_options import TFLiteOptions
from latencylab.schemas import MeasureResult, MeasureSpec

log = logging.getLogger("latencylab.android")

_DELEGATES = {
    "xnnpack": ["--use_xnnpack=true"],
    "gpu": ["--use_gpu=true"],
    "nnapi": ["--use_nnapi=true"],
    "none": ["--use_xnnpack=false"],
    "cpu": ["--use_xnnpack=false"],
}
Progress = Callable[[dict[str, Any]], None]
# what the operator sets up for a runtime a phone does not offer yet
_SETUP_HINTS = {"executorch": EXECUTOR_RUNNER_HINT}


class SetupError(RuntimeError):
    """The job cannot run on this phone as asked (the message says what to change)."""


def _failed(error: str, env: dict[str, Any]) -> MeasureResult:
    return MeasureResult(status="failed", error=error, environment=env)


def _is_tflite(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(8)[4:8] == b"TFL3"


class PhoneMeasurer:
    """Measures specs on the phone ``serial`` (one job at a time; the Agent serialises)."""

    def __init__(self, adb: Adb, serial: str, settings: AndroidSettings) -> None:
        self.adb, self.serial, self.settings = adb, serial, settings
        self.phone = Phone(adb, serial, settings)
        self.remote_binary = f"{settings.remote_dir.rstrip('/')}/benchmark_model"
        self._binary_ready = False
        self.executorch = ExecuTorchOnPhone(self)
        self.energy = EnergyMeter(adb, serial, self.phone, settings)  # battery around the pass
        # runtime -> (check, measure): what this phone runs and how (one entry per runtime)
        self._runtimes = {
            "tflite": (self._check, self._measure),
            "executorch": (self.executorch.check, self.executorch.measure),
        }

    def __call__(
        self,
        spec: MeasureSpec,
        *,
        workdir: Path,
        on_progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> MeasureResult:
        cancel = cancel or threading.Event()
        progress = on_progress or (lambda _event: None)
        env: dict[str, Any] = {"runtime": spec.runtime, "serial": self.serial}
        try:
            check, measure = self._pick(spec)
            check(spec)
            env.update(self.phone.describe_env())
            return measure(spec, workdir, progress, cancel, env)
        except (SetupError, ValueError) as exc:
            return _failed(str(exc), env)
        except PhoneGone as exc:
            return _failed(f"phone {self.serial} disconnected during the run ({exc})", env)
        except Cancelled:
            return _failed(f"measurement on phone {self.serial} was cancelled", env)
        except AdbTimeout as exc:
            return _failed(f"{exc} (settings.timeout_s={spec.settings.timeout_s:g})", env)
        except AdbError as exc:
            if self.adb.is_gone(self.serial):
                return _failed(f"phone {self.serial} disconnected during the run ({exc})", env)
            return _failed(str(exc), env)

    def _pick(self, spec: MeasureSpec) -> tuple[Any, Any]:
        offered = self.phone.runtimes()
        if spec.runtime not in offered or spec.runtime not in self._runtimes:
            raise SetupError(
                f"phone {self.serial} measures runtime{'s' if len(offered) > 1 else ''} "
                f"{', '.join(repr(r) for r in sorted(offered))} only, not {spec.runtime!r}"
                + (f"; {_SETUP_HINTS[spec.runtime]}" if spec.runtime in _SETUP_HINTS else "")
            )
        return self._runtimes[spec.runtime]

    def _check(self, spec: MeasureSpec) -> None:
        path = Path(spec.model_path)
        if not path.is_file() or not _is_tflite(path):
            raise SetupError(
                f"phone {self.serial} needs a .tflite artifact, got format "
                f"{spec.model_format!r} ({path.name}); benchmark a TFLite conversion of the model"
            )
        if spec.batch_size != 1:
            raise SetupError(
                f"batch_size {spec.batch_size} is not supported on phones yet: benchmark_model "
                "runs the .tflite's own input shapes; export the model with that batch instead"
            )
        try:
            delegate = TFLiteOptions.model_validate(spec.options).delegate or "xnnpack"
        except ValidationError as exc:
            raise SetupError(f"invalid tflite options: {exc.errors()[0]['msg']}") from None
        if delegate not in _DELEGATES:
            raise SetupError(f"unknown delegate {delegate!r}; use one of {sorted(_DELEGATES)}")

    def _ensure_binary(self, cancel: threading.Event) -> None:
        if self._binary_ready:
            return
        local = self.settings.benchmark_model
        if local is not None:
            if not Path(local).is_file():
                raise SetupError(
                    f"benchmark_model binary {local} does not exist; {BENCHMARK_MODEL_HINT}"
                )
            self.adb.push(
                self.serial,
                local,
                self.remote_binary,
                timeout_s=self.settings.push_timeout_s,
                cancel=cancel,
            )
            self.adb.shell(self.serial, f"chmod 755 {shlex.quote(self.remote_binary)}")
        elif self.adb.shell(
            self.serial, f"ls {shlex.quote(self.remote_binary)}", check=False
        ).returncode:
            if self.adb.is_gone(self.serial):
                raise PhoneGone(f"phone {self.serial} is not connected", self.serial)
            where = f"phone {self.serial} at {self.remote_binary}"
            raise SetupError(f"benchmark_model is not on {where}; {BENCHMARK_MODEL_HINT}")
        self._binary_ready = True

    def _command(
        self, spec: MeasureSpec, remote_model: str, profile: bool
    ) -> tuple[str, dict[str, Any]]:
        s = spec.settings
        mask, mask_note = self.phone.cpu_mask(spec.options.get("cpu_mask"), spec.threads)
        delegate = str(spec.options.get("delegate") or "xnnpack").lower()
        args = [self.remote_binary, f"--graph={remote_model}"]
        if spec.threads > 0:
            args.append(f"--num_threads={spec.threads}")
        if profile:
            args += [
                f"--warmup_runs={min(s.warmup_runs, 5)}",
                f"--num_runs={self.settings.profile_runs}",
                "--min_secs=0",
                "--enable_op_profiling=true",
                "--report_peak_memory_footprint=true",
            ]
        else:
            args += [
                f"--warmup_runs={s.warmup_runs}",
                f"--num_runs={s.min_runs}",
                f"--min_secs={s.min_duration_s:g}",
                f"--max_secs={s.max_duration_s:g}",
                "--enable_op_profiling=false",
            ]
        args += _DELEGATES[delegate]
        if delegate == "gpu" and spec.precision == "fp16":
            args.append("--gpu_precision_loss_allowed=true")
        command = shlex.join((["taskset", mask] if mask else []) + args)
        return command, {"cpu_mask": mask or "all", "cpu_mask_source": mask_note, "delegate": delegate}  # fmt: skip

    def _best_effort(self, command: str) -> None:
        """Clean-up on the phone; a phone that is gone has nothing left to clean."""
        try:
            self.adb.run(["shell", command], serial=self.serial, timeout_s=10)
        except AdbError as exc:
            log.warning("phone %s: %r failed: %s", self.serial, command, exc)

    def _run_pass(
        self,
        command: str,
        remote_model: str,
        deadline: float,
        cancel: threading.Event,
        tool: str = "benchmark_model",
    ) -> ShellResult:
        timeout = max(1.0, deadline - time.monotonic())
        try:
            res = self.adb.shell(
                self.serial, command, timeout_s=timeout, cancel=cancel, check=False
            )
        except (AdbTimeout, Cancelled):
            # the adb client is dead; make sure the tool does not keep running on the phone
            self._best_effort(f"pkill -f {shlex.quote(remote_model)}")
            raise
        if res.returncode != 0:
            if self.adb.is_gone(self.serial, res):
                raise PhoneGone(res.stderr.strip() or f"exit status {res.returncode}", self.serial)
            tail = " | ".join(res.output.strip().splitlines()[-5:])
            raise AdbError(
                f"{tool} failed on phone {self.serial} (exit {res.returncode}): {tail}",
                self.serial,
            )
        return res

    def _measure(
        self,
        spec: MeasureSpec,
        workdir: Path,
        progress: Progress,
        cancel: threading.Event,
        env: dict[str, Any],
    ) -> MeasureResult:
        deadline = time.monotonic() + spec.settings.timeout_s
        progress({"phase": "push"})
        self._ensure_binary(cancel)
        remote_model = (
            f"{self.settings.remote_dir.rstrip('/')}/latencylab-{uuid.uuid4().hex[:12]}.tflite"
        )
        self.adb.push(self.serial, spec.model_path, remote_model, timeout_s=self.settings.push_timeout_s, cancel=cancel)  # fmt: skip
        try:
            command, how = self._command(spec, remote_model, profile=False)
            env.update(how, threads=spec.threads, precision=spec.precision, command=command)
            env["thermal_before"] = self.phone.thermal()
            env["cooldown"] = self.phone.cool_down(spec.options, cancel, progress)
            if cancel.is_set():
                raise Cancelled("cancelled during the cool-down", self.serial)
            progress({"phase": "steady"})
            with self.energy.session(cancel, deadline, how["cpu_mask"]) as energy, energy.steady():
                out = self._run_pass(command, remote_model, deadline, cancel).output
            (workdir / "benchmark_model.txt").write_text(out)
            try:
                main = parse_tflite_benchmark(out)
            except ValueError as exc:
                return _failed(f"could not read benchmark_model's output: {exc}", env)
            profile = self._profile(spec, remote_model, deadline, cancel, progress, workdir, env)
            env["thermal_after"] = self.phone.thermal()
        finally:
            self._best_effort(f"rm -f {shlex.quote(remote_model)}")
        try:
            result = to_result(main, profile, spec)
        except ValueError as exc:
            return _failed(f"could not read benchmark_model's output: {exc}", env)
        result.environment = {**env, **result.environment}
        result.environment.update(energy.report(result.runs, result.steady_duration_s))
        return result

    def _profile(
        self,
        spec: MeasureSpec,
        remote_model: str,
        deadline: float,
        cancel: threading.Event,
        progress: Progress,
        workdir: Path,
        env: dict[str, Any],
    ) -> TfliteBenchmarkResult | None:
        if not spec.settings.profile:
            return None
        command, _ = self._command(spec, remote_model, profile=True)
        env["profile_command"] = command
        env["profile_cooldown"] = self.phone.cool_down(spec.options, cancel, progress)
        progress({"phase": "profile"})
        try:
            out = self._run_pass(command, remote_model, deadline, cancel).output
        except AdbError as exc:
            if isinstance(exc, PhoneGone | Cancelled):
                raise
            env["profile_error"] = str(exc)  # the timed runs stand without their profile
            return None
        (workdir / "benchmark_model_profile.txt").write_text(out)
        try:
            parsed = parse_tflite_benchmark(out)
        except ValueError as exc:
            env["profile_error"] = f"could not read the op-profiling output: {exc}"
            return None
        if not parsed.op_profile and not parsed.top_ops:
            env["profile_error"] = "the tool printed no op-profiling table"
        return parsed
