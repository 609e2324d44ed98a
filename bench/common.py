"""What the side-by-side benchmarks share."""

from __future__ import annotations

from pathlib import Path

from latencylab.schemas import MeasureSettings, TensorSpec


def fixed_duration(duration_s: float, warmup_runs: int = 10, min_runs: int = 20) -> MeasureSettings:
    """LatencyLab's side of an A/B round: a steady state of exactly ``duration_s`` (the other
    side runs as long), a tight CI target so the duration, not the stopping rule, ends it, and
    no profile pass."""
    return MeasureSettings(
        warmup_runs=warmup_runs,
        min_runs=min_runs,
        min_duration_s=duration_s,
        max_duration_s=duration_s,
        target_rel_ci=0.005,
        profile=False,
    )


def onnx_inputs(path: Path) -> list[TensorSpec]:
    """An ONNX file's graph inputs as wire specs, read by the converters' own inspector."""
    from converters.inspect import inspect_onnx

    return [
        TensorSpec(name=t.name, shape=t.shape, dtype=t.dtype) for t in inspect_onnx(path).inputs
    ]
