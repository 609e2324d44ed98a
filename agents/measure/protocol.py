"""The measurement protocol: load -> first inference -> warmup -> steady state -> profile.

Runtime-agnostic: it only talks to a ``Runner``. Phases (cf. trtexec's warm-up/duration/
iterations, TFLite ``benchmark_model``'s init/first/warmup/steady, MLPerf LoadGen's
min-count AND min-duration rule):

1. baseline RSS; ``runner.import_runtime()`` (importing the runtime's library, starting a
   CUDA context) timed apart as ``environment.protocol.runtime_import_ms``;
2. ``runner.activate()`` timed with ``perf_counter_ns`` -> ``load_ms`` (+ peak RSS);
3. one inference -> ``first_inference_ms``;
4. ``warmup_runs`` iterations -> ``warmup_ms`` (not in the statistics);
5. steady state: at least ``min_runs`` AND ``min_duration_s``, then until the 95% CI of the
   median is within ``±target_rel_ci`` (``ci_converged``); ``max_runs`` and
   ``max_duration_s`` are hard caps that also win over the minimums (``max_runs`` /
   ``max_duration``; ``environment.protocol.min_reached`` says whether both minimums were met,
   and the result's ``warnings`` say which minimum was missed and which cap stopped it);
6. optional per-layer profile in a separate runner pass AFTER the steady state, so it
   cannot touch the steady-state numbers or memory peaks.

Inputs are built once before any timing. The garbage collector is collected and disabled
from the first inference to the end of the steady state (as ``timeit`` does).
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from agents.runners.base import Runner
from latencylab.schemas import MeasureResult, MeasureSettings

from .environment import collect_environment, host_load
from .memory import MemoryProbe, make_probe, memory_summary
from .stats import median_ci_ranks, median_ci_rel_halfwidth, summarize

ProgressFn = Callable[[dict[str, Any]], None]
PROGRESS_INTERVAL_NS = 250_000_000  # at most ~4 events per second
CI_CHECK_EVERY = 10  # iterations between stop-rule checks (grows to n/100 for long runs)
PROFILE_BUDGET_MS = 1000.0
STOP_REASONS = ("ci_converged", "max_duration", "max_runs")


class _Progress:
    """Rate-limited progress events: a phase start always, ticks at most every 250 ms."""

    def __init__(self, callback: ProgressFn | None) -> None:
        self._cb = callback
        self._phase = "setup"
        self._phase_start = time.perf_counter_ns()
        self._last = 0

    def _emit(self, runs: int, now: int) -> None:
        self._last = now
        if self._cb is None:
            return
        elapsed = round((now - self._phase_start) / 1e9, 3)
        try:
            self._cb({"phase": self._phase, "runs": runs, "elapsed_s": elapsed})
        except Exception:  # a broken listener must not break the measurement
            self._cb = None

    def phase(self, name: str) -> None:
        self._phase = name
        self._phase_start = time.perf_counter_ns()
        self._emit(0, self._phase_start)

    def tick(self, runs: int, now: int, *, force: bool = False) -> None:
        if force or now - self._last >= PROGRESS_INTERVAL_NS:
            self._emit(runs, now)


class _TimeBuffer:
    """Growable int64 nanosecond buffer with a cheap stop-rule check (O(n) partition)."""

    def __init__(self, capacity: int = 1024) -> None:
        self._a = np.empty(capacity, dtype=np.int64)
        self.n = 0

    def append(self, ns: int) -> None:
        if self.n == len(self._a):
            self._a = np.concatenate([self._a, np.empty(len(self._a), dtype=np.int64)])
        self._a[self.n] = ns
        self.n += 1

    def rel_ci_halfwidth(self) -> float:
        ranks = median_ci_ranks(self.n)
        if ranks is None:
            return math.inf
        mid = (self.n - 1) // 2  # percentile(50) reads positions mid and mid + 1
        kth = sorted({ranks[0], ranks[1], mid, min(mid + 1, self.n - 1)})
        part = np.partition(self._a[: self.n], kth)
        return median_ci_rel_halfwidth(part)  # type: ignore[arg-type]

    def times_ms(self) -> list[float]:
        return [int(v) / 1e6 for v in self._a[: self.n]]


def _steady_state(
    runner: Runner, feeds: Any, s: MeasureSettings, progress: _Progress
) -> tuple[_TimeBuffer, str, int, bool]:
    """Run the steady state; returns (times, stop_reason, duration_ns, minimums_met)."""
    buf = _TimeBuffer()
    min_ns, max_ns = int(s.min_duration_s * 1e9), int(s.max_duration_s * 1e9)
    next_check = 0
    start = time.perf_counter_ns()
    while True:
        buf.append(runner.timed_infer(feeds))
        n = buf.n
        now = time.perf_counter_ns()
        elapsed = now - start
        if n >= s.max_runs:
            reason = "max_runs"
            break
        if elapsed >= max_ns:
            reason = "max_duration"
            break
        if n >= s.min_runs and elapsed >= min_ns and n >= next_check:
            if buf.rel_ci_halfwidth() <= s.target_rel_ci:
                reason = "ci_converged"
                break
            next_check = n + max(CI_CHECK_EVERY, n // 100)
        progress.tick(n, now)
    duration = time.perf_counter_ns() - start
    progress.tick(buf.n, time.perf_counter_ns(), force=True)  # final count
    return buf, reason, duration, buf.n >= s.min_runs and duration >= min_ns


def _short_run_warnings(runs: int, duration_s: float, reason: str, s: MeasureSettings) -> list[str]:
    """What the result must say when a hard cap ended the steady state before a minimum."""
    cap = {
        "max_duration": f"max_duration_s={s.max_duration_s:g}",
        "max_runs": f"max_runs={s.max_runs}",
    }.get(reason, reason)
    out = []
    if runs < s.min_runs:
        out.append(
            f"only {runs} of the {s.min_runs} required steady-state runs (min_runs): "
            f"{cap} stopped the run first, so the statistics rest on fewer samples than asked"
        )
    if duration_s < s.min_duration_s:
        out.append(
            f"the steady state lasted {duration_s:.3g} s of the required {s.min_duration_s:g} s "
            f"(min_duration_s): {cap} stopped it first"
        )
    return out


def _profile_iterations(runner: Runner, p50_ms: float) -> int:
    requested = runner.spec.options.get("profile_iterations")
    if requested is not None:
        return max(1, int(requested))
    return int(min(50, max(3, PROFILE_BUDGET_MS / max(p50_ms, 1e-3))))


def _runner_environment(runner: Runner) -> dict[str, Any]:
    try:
        return dict(runner.environment())
    except Exception as exc:  # the runner's own report must never fail a measurement
        return {"runner_environment_error": f"{type(exc).__name__}: {exc}"}


def run_protocol(
    runner: Runner,
    settings: MeasureSettings,
    *,
    on_progress: ProgressFn | None = None,
    probe: MemoryProbe | None = None,
) -> MeasureResult:
    """Measure ``runner`` (not yet activated) with ``settings``; never raises for runner errors.

    A failing phase yields ``status="failed"`` with ``error="<phase> failed: <Type>: <msg>"``
    and whatever was measured before it (load time, memory, environment).
    """
    probe = probe or make_probe()
    progress = _Progress(on_progress)
    out: dict[str, Any] = {}
    peaks: dict[str, float | None] = {}
    env = collect_environment()
    env["memory_method"] = probe.method
    protocol_env: dict[str, Any] = {
        "timer": getattr(runner, "timer_name", "perf_counter_ns"),
        "timer_resolution_s": time.get_clock_info("perf_counter").resolution,
        "gc_disabled_during_timing": True,
        "settings": settings.model_dump(),
    }
    env["protocol"] = protocol_env
    baseline: float | None = None
    after_import: float | None = None
    phase = "setup"
    gc_was_enabled = gc.isenabled()
    try:
        gc.collect()
        baseline = probe.current_mb()

        phase = "import"
        progress.phase(phase)  # importing torch and starting CUDA can take seconds
        t0 = time.perf_counter_ns()
        runner.import_runtime()
        protocol_env["runtime_import_ms"] = (time.perf_counter_ns() - t0) / 1e6
        after_import = probe.current_mb()

        phase = "load"
        progress.phase(phase)
        probe.start_phase()
        t0 = time.perf_counter_ns()
        runner.activate()
        out["load_ms"] = (time.perf_counter_ns() - t0) / 1e6
        peaks["load"] = probe.end_phase()

        phase = "inputs"
        feeds = runner.prepare_inputs(settings.seed)

        phase = "first"
        progress.phase(phase)
        gc.collect()
        gc.disable()
        probe.start_phase()
        out["first_inference_ms"] = runner.timed_infer(feeds) / 1e6

        phase = "warmup"
        progress.phase(phase)
        warmup: list[float] = []
        for i in range(settings.warmup_runs):
            warmup.append(runner.timed_infer(feeds) / 1e6)
            progress.tick(i + 1, time.perf_counter_ns())
        out["warmup_ms"] = warmup
        peaks["warmup"] = probe.end_phase()  # first inference + warmup

        env["host_load"] = host_load()  # who else used the CPUs just before the steady state

        phase = "steady"
        progress.phase(phase)
        probe.start_phase()
        buf, reason, duration_ns, min_reached = _steady_state(runner, feeds, settings, progress)
        peaks["steady"] = probe.end_phase()
        if gc_was_enabled:
            gc.enable()
        times = buf.times_ms()
        stats = summarize(times)
        out.update(
            latency_ms=stats,
            runs=len(times),
            times_ms=times,
            stop_reason=reason,
            steady_duration_s=duration_ns / 1e9,
        )
        protocol_env["min_reached"] = min_reached
        warnings = _short_run_warnings(len(times), duration_ns / 1e9, reason, settings)
        p50 = stats.p50 if stats.p50 is not None else stats.mean  # always set from raw times
        if stats.ci95_low is not None and stats.ci95_high is not None and p50 > 0:
            protocol_env["ci_rel_halfwidth"] = (
                max(p50 - stats.ci95_low, stats.ci95_high - p50) / p50
            )

        if settings.profile:
            phase = "profile"
            progress.phase(phase)
            try:
                iterations = _profile_iterations(runner, p50)
                out["profile"] = runner.profile(feeds, iterations)
                protocol_env["profile_iterations"] = iterations
            except Exception as exc:  # a profiling failure does not void the latency numbers
                env["profile_error"] = f"{type(exc).__name__}: {exc}"
        env.update(_runner_environment(runner))
        return MeasureResult(
            status="succeeded",
            memory=memory_summary(baseline, peaks, after_import),
            environment=env,
            warnings=warnings,
            **out,
        )
    except Exception as exc:
        if phase != "setup":
            env.update(_runner_environment(runner))
        env["failed_phase"] = phase
        return MeasureResult(
            status="failed",
            error=f"{phase} failed: {type(exc).__name__}: {exc}",
            memory=memory_summary(baseline, peaks, after_import),
            environment=env,
            **out,
        )
    finally:
        if gc_was_enabled:
            gc.enable()
        try:
            runner.deactivate()
        finally:
            probe.close()
