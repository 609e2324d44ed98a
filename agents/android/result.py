"""benchmark_model output (parsed by ``agents.parsers.tflite_benchmark``) -> MeasureResult.

Pure functions, so they are tested on the verbatim device outputs of the shared fixtures.
benchmark_model prints aggregates only (count/avg/min/max/std; the pip ``litert-benchmark``
adds median/p5/p95) and no per-iteration times: ``times_ms`` and ``warmup_ms`` stay empty
and ``environment.raw_times`` says so. Percentiles it does not print are filled with a
bound (the next printed percentile above, else max) or, for p50, the mean, and
``environment.latency_stats_source`` names the source of every field.

Checked for per-run times: the C++ tool's ``--report_peak_memory_footprint`` (used, in the
profile pass, as it runs a monitor thread) gives memory only, ``--output_filepath`` writes
output tensors, and the Python ``litert-benchmark``'s ``--result_json`` holds the same
aggregates (its ``--verbose`` logs only every 10th run), so none is used for times.
"""

from __future__ import annotations

from typing import Any

from agents.parsers.tflite_benchmark import RunStats, TfliteBenchmarkResult
from latencylab.schemas import LatencyStats, LayerProfile, MeasureResult, MeasureSpec

RAW_TIMES_NOTE = "not available from benchmark_model"
_UNITS = (("gpu", "gpu"), ("nnapi", "nnapi"), ("xnnpack", "cpu (xnnpack)"), ("hexagon", "dsp"))


def latency_stats(s: RunStats) -> tuple[LatencyStats, dict[str, str]]:
    """LatencyStats from the tool's aggregates; what it did not print stays null (no estimates).

    The second value names each field's source.
    """
    if s.avg_ms is None:
        raise ValueError("benchmark_model printed no average inference time")
    printed = {
        "min": s.min_ms,
        "max": s.max_ms,
        "std": s.std_ms,
        "p50": s.extra_ms.get("median"),
        "p90": s.extra_ms.get("p90"),
        "p95": s.extra_ms.get("p95"),
        "p99": s.extra_ms.get("p99"),
    }
    src = {"mean": "tool avg"}
    src.update(
        {k: "tool" if v is not None else "not printed by the tool" for k, v in printed.items()}
    )
    std = printed["std"]
    stats = LatencyStats(
        mean=s.avg_ms,
        cov=std / s.avg_ms if std is not None and s.avg_ms else None,
        **{k: (float(v) if v is not None else None) for k, v in printed.items()},
    )
    return stats, src


def _unit(op_type: str) -> str:
    low = op_type.lower()
    return next((unit for key, unit in _UNITS if key in low), "cpu")


def to_result(
    main: TfliteBenchmarkResult, profile: TfliteBenchmarkResult | None, spec: MeasureSpec
) -> MeasureResult:
    """A succeeded MeasureResult from parsed benchmark_model output (main + profile pass)."""
    inf = main.inference
    if inf is None or not inf.count:
        raise ValueError("benchmark_model printed no timed runs (no 'count=' / Inference lines)")
    latency, sources = latency_stats(inf)
    steady_s = inf.count * latency.mean / 1000.0
    reached_max = steady_s >= spec.settings.max_duration_s * 0.98
    memory: dict[str, float] = {}
    kind = main.memory_kind or "footprint"
    if main.memory_init_mb is not None:
        memory[f"init_{kind}_mb"] = main.memory_init_mb
    if main.memory_overall_mb is not None:
        memory[f"overall_{kind}_mb"] = main.memory_overall_mb
    peak = main.peak_memory_mb or (profile.peak_memory_mb if profile else None)
    if peak is not None:
        memory["peak_footprint_mb"] = peak  # periodic monitoring; usually in the profile pass
    rows = (profile.op_profile or profile.top_ops) if profile else []
    env: dict[str, Any] = {
        "raw_times": RAW_TIMES_NOTE,
        "latency_stats_source": sources,
        "tool_output_format": main.format,
        "warmup": {
            "runs": main.warmup.count if main.warmup else None,
            "first_ms": main.warmup_first_ms,
            "avg_ms": main.warmup_avg_ms,
        },
        "stopping_rule": "benchmark_model: at least num_runs and min_secs, at most max_secs; "
        "no max_runs cap and no confidence-interval rule",
    }
    if main.flags:
        env["tool_flags"] = main.flags
    if main.model_size_mb is not None:
        env["model_size_mb"] = main.model_size_mb
    return MeasureResult(
        status="succeeded",
        latency_ms=latency,
        runs=inf.count,
        stop_reason="max_duration" if reached_max else "min_runs_and_duration",
        steady_duration_s=round(steady_s, 6),
        load_ms=main.init_ms,
        first_inference_ms=main.warmup_first_ms,
        memory=memory,
        environment=env,
        profile=[LayerProfile(name=r.name, type=r.type, time_ms=r.time_ms, compute_unit=_unit(r.type)) for r in rows],
    )  # fmt: skip
