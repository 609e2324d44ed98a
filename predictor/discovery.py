"""Fusion-rule discovery by measurement (nn-Meter's rule tests, on ONNX models).

For each candidate chain ``[*head, tail]`` three probe models are measured: the head
alone, the tail op alone, and the whole chain. Running the chain as separate kernels
costs about ``head + tail`` (plus an extra round trip of the intermediate tensor through
memory); a runtime that fuses the tail into the head's kernel saves the tail's pass over
memory. The chain fuses when

    saved = head_ms + tail_ms - block_ms  >  margin * min(head_ms, tail_ms)

where each time has the runtime's fixed cost per run subtracted first (the time of an
Identity model on a one-element tensor; without this every standalone op looks fusible,
since ``head + tail`` pays the fixed cost twice and ``block`` once), and
``margin = 0.5`` (nn-Meter's ``EMP_ALPHA``): the chain must save at least half of
its cheaper part. A longer candidate is tested only when its prefix fused
(``conv+add+relu`` after ``conv+add``). BatchNorm folds into the preceding conv's
weights, so when ``[h, "bn"]`` fuses every other fused ``[h, ...]`` is also recorded as
``[h, "bn", ...]``.

``measure(model) -> ms`` is any callable that runs one ONNX model (every graph input fed
random float32 data of its static shape) and returns its latency; on a device it goes
through the job queue, in tests through an in-process onnxruntime session.

Found here (onnxruntime 1.32, CPU, 1 thread, in-process measure of tests/
test_kernel_detection.py): see docs/predictor.md.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx

from predictor.fusion import FusionProbe, FusionRules
from predictor.probes import ProbeShape, chain_model

Measure = Callable[[onnx.ModelProto], float]

CANDIDATES: list[list[str]] = [
    ["conv", "bn"],
    ["conv", "relu"],
    ["conv", "relu6"],
    ["conv", "hswish"],
    ["conv", "sigmoid"],
    ["conv", "add"],
    ["conv", "add", "relu"],
    ["dwconv", "bn"],
    ["dwconv", "relu"],
    ["dwconv", "relu6"],
    ["dwconv", "hswish"],
    ["fc", "bias"],
    ["fc", "bias", "relu"],
    ["fc", "relu"],
    ["fc", "gelu"],
    ["bn", "relu"],
    ["add", "relu"],
]
"""Default candidates: the epilogues CPU runtimes are known to fuse into conv/FC kernels,
and two pairs (bn+relu, add+relu) that usually run apart."""

MARGIN = 0.5


def decide(
    pattern: list[str], head_ms: float, tail_ms: float, block_ms: float, margin: float = MARGIN
) -> FusionProbe:
    saved = head_ms + tail_ms - block_ms
    threshold = margin * min(head_ms, tail_ms)
    return FusionProbe(
        pattern=pattern,
        head_ms=head_ms,
        tail_ms=tail_ms,
        block_ms=block_ms,
        saved_ms=saved,
        threshold_ms=threshold,
        fuses=saved > threshold,
    )


def discover_fusion_rules(
    measure: Measure,
    candidates: list[list[str]] | None = None,
    shape: ProbeShape | None = None,
    margin: float = MARGIN,
    device: str | None = None,
    runtime: str | None = None,
) -> FusionRules:
    """Measure every candidate chain with ``measure`` and return the rules that hold."""
    shape = shape or ProbeShape()
    cache: dict[tuple[str, ...], float] = {}

    def raw(tokens: list[str], flat: bool | None = None) -> float:
        key = (*tokens, str(flat))
        if key not in cache:
            cache[key] = float(measure(chain_model(tokens, shape, flat)))
        return cache[key]

    def timed(tokens: list[str]) -> float:
        return max(raw(tokens) - overhead, 0.0)

    tiny = ProbeShape(hw=1, channels=1, rows=1, features=1)
    overhead = float(measure(chain_model(["identity"], tiny)))

    probes: list[FusionProbe] = []
    fused: list[list[str]] = []
    for pattern in sorted(candidates or CANDIDATES, key=len):
        if len(pattern) < 2:
            raise ValueError(f"a fusion candidate needs two ops or more, got {pattern}")
        if len(pattern) > 2 and pattern[:-1] not in fused:
            continue
        head, tail = pattern[:-1], pattern[-1:]
        probe = decide(pattern, timed(head), timed(tail), timed(pattern), margin)
        probes.append(probe)
        if probe.fuses:
            fused.append(list(pattern))
    patterns = [list(p) for p in fused]
    for p in fused:
        if [p[0], "bn"] in fused and p[1] != "bn":
            patterns.append([p[0], "bn", *p[1:]])
    return FusionRules(
        device=device, runtime=runtime, source="measured", patterns=patterns, probes=probes
    )
