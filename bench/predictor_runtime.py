"""What `bench.predictor` does differently per runtime (``--runtime``), as data.

Runtimes come from their one declaration (`latencylab.runtimes.RUNTIMES`); a
`BenchRuntime` adds only what the kernel-predictor bench must know about one of them:

* ``nchwc`` (from the runtime's declaration, ``RuntimeDecl.blocked_layout``): whether
  onnxruntime's NCHWc pieces apply -- the layout-conversion kernel
  models (`predictor.conversions`: contrib ops of ``com.microsoft.nchwc``, which no other
  runtime runs) and the layout model fitted on the samples' per-layer profiles
  (`predictor.layout`: signatures of which convolutions onnxruntime runs blocked). OpenVINO's
  CPU plugin has blocked layouts of its own and other rules for them; nothing here measured
  that onnxruntime's hold for it, so they are off.
* ``kernel_statistic``: the kernel sample, the median or the median without the model
  boundary's layout conversions (``no-layout``: their share of the runner's per-layer
  profile, `predictor.kernel_models.kernel_latency`). OpenVINO's CPU plugin puts a
  ``Reorder`` to its blocked layout at each input and back at the output of a kernel model
  alone, while a network has one, at its input (MobileNetV2/V3, ResNet-18/50,
  EfficientNet-B0, DeiT at 160 px: one executed ``Reorder``, 0.1-2% of the time); measured
  with the median the dw-separable networks came out 30-90% high (docs/predictor.md).
* ``discover_fusion``: whether the fusion rules are measured (`predictor.discovery`, nn-Meter's
  probes, `discover_rules`) before sampling, or the defaults are assumed; ``--discover-fusion``
  / ``--no-discover-fusion`` override it. Both runtimes assume the defaults: onnxruntime as its
  published numbers were built; OpenVINO because its probes measured alone miss the fusions
  its networks do (``conv+add``: the residual, a graph input of the probe, pays a ``Reorder``
  of its own, so the chain saves nothing; in MobileNetV2 no ``Add`` executes, every residual
  is fused into a convolution), and the measured rules fitted the calibration networks worse
  (leave-one-out 10.0% vs 9.1%, docs/predictor.md).

The bench measures every runtime through its agent runner (`agents.runners`), the standard
protocol; ``--timer cpu`` needs a CPU-timed runner (`bench.predictor_batch.CPU_RUNNERS`).
Results of a runtime other than `DEFAULT` go to ``bench/results/predictor_<runtime>.json``
and their cache keys carry the runtime's name, so nothing of the onnxruntime run is
overwritten or reused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import onnx
from pydantic import BaseModel, ConfigDict

from bench.predictor_batch import CPU_RUNNERS
from latencylab.runtimes import RUNTIMES
from predictor.discovery import discover_fusion_rules
from predictor.fusion import FusionRules, default_rules
from predictor.probes import ProbeShape

DEFAULT = "onnxruntime"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
MAX_ROUNDS = 6
"""Discovery rounds: each measures the probes the candidates asked for so far (a longer
candidate is asked for once its prefix fused), so three rounds cover the default list."""
PROBE_SHAPE = ProbeShape(hw=56, channels=32, kernel=1)
"""The probes' size: a 1x1 convolution, so that an activation's cost stands out of the
convolution's run-to-run noise (with nn-Meter's 28x28x64 3x3 probe it does not; docs/
predictor.md, "Discovering the rules by measurement")."""
REPEATS = 3
"""Each probe is measured this many times, the probes interleaved (a, b, c, a, b, c, ...),
and its least median kept: on this shared host one probe's median moved by 40% between
two runs (a 1x1 conv: 0.124 and 0.174 ms), enough to flip a decision."""


class BenchRuntime(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    discover_fusion: bool
    kernel_statistic: Literal["median", "no-layout"] = "median"

    @property
    def nchwc(self) -> bool:
        """Its declaration's blocked layout is onnxruntime's NCHWc (`RuntimeDecl.blocked_layout`)."""
        return RUNTIMES[self.name].blocked_layout == "nchwc"

    def profiled(self, statistic: str) -> bool:
        """Whether kernel samples take the per-layer profile: for the NCHWc layout model, or
        to take the boundary's layout conversions out (``no-layout``)."""
        return self.nchwc or statistic == "no-layout"

    def kernel_key(self, timer: str, statistic: str, key: str) -> str:
        """A kernel sample's cache key: kernels measured with a profile only for
        ``no-layout`` are kept apart from those measured without (whose second value is
        the median itself)."""
        extra = "+profile" if self.profiled(statistic) and not self.nchwc else ""
        return self.cache_key(timer + extra, key)

    @property
    def timers(self) -> tuple[str, ...]:
        return ("cpu", "wall") if self.name in CPU_RUNNERS else ("wall",)

    @property
    def results(self) -> Path:
        suffix = "" if self.name == DEFAULT else f"_{self.name}"
        return RESULTS_DIR / f"predictor{suffix}.json"

    def cache_key(self, timer: str, key: str) -> str:
        """``timer:key`` for the default runtime (the caches built before), else
        ``runtime:timer:key``."""
        return f"{timer}:{key}" if self.name == DEFAULT else f"{self.name}:{timer}:{key}"


PROFILES: dict[str, BenchRuntime] = {
    p.name: p
    for p in (
        BenchRuntime(name="onnxruntime", discover_fusion=False),
        BenchRuntime(name="openvino", discover_fusion=False, kernel_statistic="no-layout"),
    )
    if p.name in RUNTIMES
}


def bench_runtime(name: str) -> BenchRuntime:
    """The bench's profile of runtime ``name`` (an error naming those it has otherwise)."""
    if name not in RUNTIMES:
        raise ValueError(f"unknown runtime {name!r}: declared are {list(RUNTIMES.names)}")
    got = PROFILES.get(name)
    if got is None:
        raise ValueError(
            f"bench.predictor has no profile for runtime {name!r} (it has {sorted(PROFILES)}); "
            "add a BenchRuntime to bench.predictor_runtime.PROFILES once its runner reads ONNX"
        )
    return got


def probe_key(model: onnx.ModelProto) -> str:
    return "probe:" + hashlib.sha256(model.SerializeToString()).hexdigest()[:40]


def _lookup(
    measured: dict[str, float], missing: dict[str, onnx.ModelProto]
) -> Callable[[onnx.ModelProto], float]:
    """A probe's measured ms, or an unfused placeholder (0) with the probe put in ``missing``:
    nothing longer is asked for before its prefix is known."""

    def lookup(model: onnx.ModelProto) -> float:
        key = probe_key(model)
        if key in measured:
            return measured[key]
        missing[key] = model
        return 0.0

    return lookup


def least(values: Sequence[float | None], n: int) -> list[float | None]:
    """Per model of ``n``, the least of its repeats in ``values`` (laid out ``a, b, ..., a,
    b, ...``); None when any repeat failed."""
    if n == 0 or len(values) % n:
        raise ValueError(f"{len(values)} values are not whole repeats of {n} models")
    out: list[float | None] = []
    for i in range(n):
        got = values[i::n]
        out.append(None if any(v is None for v in got) else min(v for v in got if v is not None))
    return out


def discover_rules(
    measure: Callable[[Sequence[onnx.ModelProto]], Sequence[float | None]],
    measured: dict[str, float],
    runtime: str,
    device: str | None = None,
) -> FusionRules:
    """`discover_fusion_rules` over probes measured in batches: each round replays the
    discovery over ``measured`` (probe key -> ms, updated in place, so a cache can keep it),
    measures the probes it still asked for in one ``measure`` call (`REPEATS` times each,
    keeping the least), and stops once nothing is missing. A probe whose measurement fails is
    an error (the defaults are not assumed silently)."""
    for _ in range(MAX_ROUNDS):
        missing: dict[str, onnx.ModelProto] = {}
        rules = discover_fusion_rules(
            _lookup(measured, missing), shape=PROBE_SHAPE, device=device, runtime=runtime
        )
        if not missing:
            return rules
        values = least(measure(list(missing.values()) * REPEATS), len(missing))
        failed = [k for k, v in zip(missing, values, strict=True) if v is None]
        if failed:
            raise RuntimeError(
                f"{len(failed)} fusion probe(s) failed to measure on {runtime}; run the bench "
                "with --no-discover-fusion to assume the default rules"
            )
        measured.update(
            {k: float(v) for k, v in zip(missing, values, strict=True) if v is not None}
        )
    raise RuntimeError(f"fusion discovery did not complete in {MAX_ROUNDS} rounds")


def rules_for(
    profile: BenchRuntime,
    discover: bool | None,
    measure: Callable[[Sequence[onnx.ModelProto]], Sequence[float | None]],
    measured: dict[str, float],
) -> FusionRules:
    """The measured rules where ``discover`` (None: the profile's ``discover_fusion``) asks
    for them, else the defaults, labelled with the runtime."""
    if profile.discover_fusion if discover is None else discover:
        return discover_rules(measure, measured, profile.name)
    return default_rules().model_copy(update={"runtime": profile.name})
