"""bench.predictor_runtime: per-runtime bench profiles and fusion discovery over batches."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import onnx
import pytest
from sqlalchemy.orm import Session

from bench.predictor_batch import CPU_RUNNERS
from bench.predictor_runtime import (
    DEFAULT,
    PROBE_SHAPE,
    REPEATS,
    BenchRuntime,
    bench_runtime,
    discover_rules,
    least,
    rules_for,
)
from db.predictors import Predictor
from latencylab.runtimes import RUNTIMES
from predictor.discovery import discover_fusion_rules
from predictor.fusion import default_rules
from server.store import predictor_conversions

# A runtime whose kernels cost one unit per node plus a fixed cost per run, except chains the
# latency table below says run as one kernel (then the tail op is free): a deterministic
# stand-in for a device's clock, so the batched replay can be compared with the direct call.
FREE_TAILS = {("Conv", "Relu"), ("Conv", "BatchNormalization"), ("MatMul", "Add")}


def latency(model: onnx.ModelProto) -> float:
    ops = [n.op_type for n in model.graph.node]
    cost = 0.01 + 0.1 * sum(op != "Identity" for op in ops)
    for a, b in itertools.pairwise(ops):
        if (a, b) in FREE_TAILS:
            cost -= 0.1
    return cost


def test_profiles_derive_from_the_runtime_declarations() -> None:
    ort, ov = bench_runtime("onnxruntime"), bench_runtime("openvino")
    assert ort.name == DEFAULT and ort.nchwc and not ov.nchwc and ov.kernel_statistic == "no-layout"
    assert ort.results.name == "predictor.json" and ov.results.name == "predictor_openvino.json"
    assert ort.cache_key("cpu", "k") == "cpu:k" and ov.cache_key("cpu", "k") == "openvino:cpu:k"
    assert ov.timers == (("cpu", "wall") if "openvino" in CPU_RUNNERS else ("wall",))
    # a profile only for "no-layout" keeps its kernel samples apart; onnxruntime always profiles
    assert not ov.profiled("median") and ov.profiled("no-layout") and ort.profiled("median")
    assert ov.kernel_key("cpu", "median", "k") == "openvino:cpu:k"
    assert ov.kernel_key("cpu", "no-layout", "k") == "openvino:cpu+profile:k"
    assert ort.kernel_key("cpu", "no-layout", "k") == ort.kernel_key("cpu", "median", "k")
    undeclared = "no_such_runtime"
    assert undeclared not in RUNTIMES
    with pytest.raises(ValueError, match="declared are"):
        bench_runtime(undeclared)
    with pytest.raises(ValueError, match="PROFILES"):
        bench_runtime("coreml")  # declared, but the bench has no profile for it


def test_least_takes_the_smallest_repeat_per_model() -> None:
    assert least([3.0, 5.0, 2.0, 6.0, 4.0, 1.0], 2) == [2.0, 1.0]
    assert least([1.0, None, 2.0, 3.0], 2) == [1.0, None]
    with pytest.raises(ValueError, match="whole repeats"):
        least([1.0, 2.0, 3.0], 2)


def test_batched_discovery_finds_what_the_direct_call_finds() -> None:
    calls: list[int] = []

    def measure(models: Sequence[onnx.ModelProto]) -> list[float | None]:
        calls.append(len(models))
        return [latency(m) for m in models]

    measured: dict[str, float] = {}
    rules = discover_rules(measure, measured, "openvino")
    direct = discover_fusion_rules(latency, shape=PROBE_SHAPE, runtime="openvino")
    assert rules.patterns == direct.patterns and rules.source == "measured"
    assert ["conv", "relu"] in rules.patterns and ["conv", "add"] not in rules.patterns
    assert ["fc", "bias", "relu"] not in rules.patterns  # asked for in a second round
    assert len(calls) >= 2 and all(n % REPEATS == 0 for n in calls)  # longer ones come later
    before = len(calls)
    again = discover_rules(measure, measured, "openvino")  # all probes known: nothing measured
    assert again.patterns == rules.patterns and len(calls) == before


def test_a_failed_probe_is_an_error_and_defaults_are_labelled() -> None:
    def measure(models: Sequence[onnx.ModelProto]) -> list[float | None]:
        return [None for _ in models]

    with pytest.raises(RuntimeError, match="--no-discover-fusion"):
        discover_rules(measure, {}, "openvino")
    rules = rules_for(bench_runtime("openvino"), False, measure, {})
    assumed = BenchRuntime(name="openvino", discover_fusion=False)
    assert rules_for(assumed, None, measure, {}).patterns == rules.patterns  # None: the profile's
    with pytest.raises(RuntimeError):  # measured where the profile (or the flag) says so
        rules_for(assumed.model_copy(update={"discover_fusion": True}), None, measure, {})
    assert rules.source == "default" and rules.runtime == "openvino"
    assert rules.patterns == default_rules().patterns


def test_nchwc_pieces_follow_the_runtime_declaration() -> None:
    """onnxruntime's NCHWc conversion models and layout signatures apply where the runtime's
    one declaration says so (`RuntimeDecl.blocked_layout`), in the bench and in service
    builds alike: an OpenVINO build never plans conversion models it cannot load."""
    assert RUNTIMES["onnxruntime"].blocked_layout == "nchwc"
    assert RUNTIMES["openvino"].blocked_layout is None
    assert bench_runtime("onnxruntime").nchwc and not bench_runtime("openvino").nchwc
    build = Predictor(runtime="openvino", settings={"options": {"conversions": 3, "seed": 0}})
    with Session() as session:  # decided from the declaration, before any sample is read
        assert (
            predictor_conversions.plan(session, build, default_rules().model_dump_json()) is False
        )
