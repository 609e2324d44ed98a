"""The OpenVINO per-layer profile against the runs it profiled.

OpenVINO's CPU plugin reports each node's ``real_time`` as a running average over every
inference since compile (``PerfCount::avg()``), the cold first run included. The runner turns
the counters into each node's mean over the profiled runs alone; these tests hold it to the
one thing that must be true of such means: together they fit inside the wall-clock time of the
runs they come from. Real OpenVINO, a real model built in code, a fresh measuring subprocess.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from agents.measure.isolation import run_isolated
from latencylab.schemas import MeasureSettings, MeasureSpec

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None,
    reason="OpenVINO is not installed in this environment (pip install 'latencylab[openvino]')",
)
SETTINGS = MeasureSettings(
    warmup_runs=3,
    min_runs=20,
    min_duration_s=0.2,
    max_duration_s=1.0,
    target_rel_ci=0.05,
    timeout_s=120,
)


def test_layers_add_up_to_the_profiled_runs(model_files: dict[str, Path], tmp_path: Path) -> None:
    spec = MeasureSpec(
        runtime="openvino",
        model_path=str(model_files["resnet"]),
        model_format="onnx",
        inputs=[],
        threads=1,
        settings=SETTINGS,
    )
    r = run_isolated(spec, workdir=tmp_path)
    assert r.status == "succeeded", r.error
    env = r.environment
    assert r.profile, env.get("profile_error")
    # The device in compute_unit; oneDNN's implementation name in its own field.
    assert {layer.compute_unit for layer in r.profile} == {"CPU"}
    convs = [layer for layer in r.profile if layer.type == "Convolution"]
    assert convs and all(layer.kernel and layer.kernel != "CPU" for layer in convs)
    assert env["profile_warmup_runs"] == SETTINGS.warmup_runs
    assert env["protocol"]["profile_iterations"] >= 3
    total = sum(layer.time_ms for layer in r.profile)
    wall = env["profile_wall_mean_ms"]
    # Node times lie inside infer(): their means cannot add up to more than the runs took
    # (2% for the counters' microsecond rounding); a ResNet's layers are most of each run.
    assert 0.5 * wall <= total <= 1.02 * wall, (total, wall, env["profile_wall_p50_ms"])
