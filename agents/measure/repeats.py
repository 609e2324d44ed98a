"""Repeated measurement: the steady state in ``settings.repeats`` independent fresh processes.

A process's own 95% CI of the median covers the variation inside that process; medians of
fresh processes differ by more (allocation, thread placement, frequency, other load).
``measure_repeated`` runs the device's measurer (``run_isolated`` by default: one fresh
subprocess each) ``repeats`` times, one after another, and pools what they measured:

* ``times_ms`` / ``warmup_ms``: every repeat's raw times concatenated, in repeat order
  (``repeats.runs[k].runs`` say which belong to repeat k); ``latency_ms`` from the pooled times;
* ``repeats``: per repeat p50 / mean / runs / stop reason / own CI, and the between-run
  spread with a t-interval of the median over the repeat medians (``latencylab.quality``);
* ``load_ms``, ``first_inference_ms``: medians over the repeats; ``memory``: the largest
  figure of any repeat; ``stop_reason``: a cap if any repeat was capped; the per-layer
  profile from the first repeat only (the others skip the profiling pass).

A repeat that fails fails the whole measurement, naming the repeat.
"""

from __future__ import annotations

import statistics
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from latencylab.quality import CAPS, RepeatRun, between_runs
from latencylab.schemas import MeasureResult, MeasureSpec

from .stats import median_ci_rel_halfwidth, summarize

Measure = Callable[..., MeasureResult]
"""An agent's measurer: ``measure(spec, *, workdir, on_progress, cancel) -> MeasureResult``."""
ProgressFn = Callable[[dict[str, Any]], None]


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _ci_of(r: MeasureResult) -> float | None:
    hw = (r.environment.get("protocol") or {}).get("ci_rel_halfwidth")
    if hw is None and r.times_ms:
        hw = median_ci_rel_halfwidth(sorted(r.times_ms))
    return None if hw is None or hw == float("inf") else float(hw)


def _repeat_run(i: int, r: MeasureResult) -> RepeatRun:
    lat = r.latency_ms
    return RepeatRun(
        index=i,
        runs=r.runs,
        p50_ms=lat.p50 if lat else None,
        mean_ms=lat.mean if lat else 0.0,
        cov=lat.cov if lat else None,
        stop_reason=r.stop_reason,
        ci_rel_halfwidth=_ci_of(r),
        steady_duration_s=r.steady_duration_s,
        load_ms=r.load_ms,
        host_load=dict(r.environment.get("host_load") or {}),
        pid=r.environment.get("pid"),
    )


def pool(results: list[MeasureResult]) -> MeasureResult:
    """One result from the succeeded results of several repeats (see the module doc)."""
    times = [t for r in results for t in r.times_ms]
    reasons = [r.stop_reason for r in results]
    memory: dict[str, float] = {}
    for r in results:
        for key, value in r.memory.items():
            memory[key] = max(memory.get(key, value), value)
    first = results[0]
    env = dict(first.environment)
    protocol = dict(env.get("protocol") or {})
    protocol["min_reached"] = all((r.environment.get("protocol") or {}).get("min_reached", True)
                                  for r in results)  # fmt: skip
    pooled = median_ci_rel_halfwidth(sorted(times)) if times else float("inf")
    protocol["ci_rel_halfwidth"] = None if pooled == float("inf") else pooled
    env["protocol"] = protocol
    env["worker_wall_s"] = [r.environment.get("worker_wall_s") for r in results]
    durations = [r.steady_duration_s for r in results if r.steady_duration_s is not None]
    return MeasureResult(
        status="succeeded",
        latency_ms=summarize(times) if times else first.latency_ms,
        runs=sum(r.runs for r in results),
        stop_reason=next((s for s in reasons if s in CAPS), first.stop_reason),
        steady_duration_s=sum(durations) if durations else None,
        load_ms=_median([r.load_ms for r in results]),
        first_inference_ms=_median([r.first_inference_ms for r in results]),
        warmup_ms=[t for r in results for t in r.warmup_ms],
        times_ms=times,
        memory=memory,
        environment=env,
        profile=first.profile,
        warnings=[f"repeat {i + 1}: {w}" for i, r in enumerate(results) for w in r.warnings],
        repeats=between_runs([_repeat_run(i, r) for i, r in enumerate(results)]),
    )


def measure_repeated(
    measure: Measure,
    spec: MeasureSpec,
    *,
    workdir: Path,
    on_progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> MeasureResult:
    """Measure ``spec`` ``spec.settings.repeats`` times with ``measure`` and pool the results.

    Progress events carry ``repeat`` (1-based) and ``repeats``. With one repeat this is just
    ``measure(spec, ...)``."""
    n = spec.settings.repeats
    if n <= 1:
        return measure(spec, workdir=workdir, on_progress=on_progress, cancel=cancel)
    results: list[MeasureResult] = []
    for i in range(n):
        if cancel is not None and cancel.is_set():
            return MeasureResult(
                status="failed", error=f"measurement cancelled before repeat {i + 1} of {n}"
            )
        settings = spec.settings.model_copy(update={"profile": spec.settings.profile and i == 0})

        def forward(event: dict[str, Any], i: int = i) -> None:
            if on_progress is not None:
                on_progress({**event, "repeat": i + 1, "repeats": n})

        r = measure(
            spec.model_copy(update={"settings": settings}),
            workdir=workdir,
            on_progress=forward,
            cancel=cancel,
        )
        if r.status != "succeeded":
            r.error = f"repeat {i + 1} of {n} failed: {r.error}"
            r.environment["failed_repeat"] = i + 1
            return r
        results.append(r)
    return pool(results)
