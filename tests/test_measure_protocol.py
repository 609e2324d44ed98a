"""The measurement protocol end to end: phases, stop rules, isolation, failures.

Tiny ONNX models are built here with ``onnx.helper``; crashing and hanging workers are
simulated with a fake interpreter (a shell script passed as ``python=``), so the product
code needs no hidden test hooks.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import agents.runners as runners
from agents.measure import run_isolated, worker
from agents.measure.memory import make_probe
from agents.measure.protocol import STOP_REASONS, run_protocol
from agents.runners.base import Runner, concrete_shape, numpy_dtype
from agents.runners.onnxruntime import OnnxRuntimeRunner
from latencylab.schemas import LayerProfile, MeasureResult, MeasureSettings, MeasureSpec, TensorSpec

SMALL = {"warmup_runs": 5, "min_runs": 20, "min_duration_s": 0.1, "max_duration_s": 2.0}
MEMORY_KEYS = {
    "baseline_rss_mb",
    "runtime_rss_mb",
    "load_peak_rss_mb",
    "steady_peak_rss_mb",
    "peak_rss_mb",
    "load_delta_mb",
    "steady_delta_mb",
}


# --------------------------------------------------------------------------- models
def _mlp(path: Path) -> Path:
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((64, 128)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal(128).astype(np.float32), "b1"),
        numpy_helper.from_array(rng.standard_normal((128, 10)).astype(np.float32), "w2"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
        helper.make_node("Add", ["h", "b1"], ["hb"], name="bias1"),
        helper.make_node("Relu", ["hb"], ["a"], name="relu1"),
        helper.make_node("MatMul", ["a", "w2"], ["y"], name="fc2"),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, path)
    return path


def _convnet(path: Path) -> Path:
    rng = np.random.default_rng(1)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "k1"),
        numpy_helper.from_array(rng.standard_normal((16, 8, 3, 3)).astype(np.float32), "k2"),
    ]
    nodes = [
        helper.make_node("Conv", ["img", "k1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "k2"], ["c2"], name="conv2", strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["c2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["out"], name="flatten"),
    ]
    graph = helper.make_graph(
        nodes,
        "convnet",
        [helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 16])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, path)
    return path


def _spec(model: Path, inputs: list[TensorSpec], **settings: Any) -> MeasureSpec:
    return MeasureSpec(
        runtime="onnxruntime",
        model_path=str(model),
        model_format="onnx",
        inputs=inputs,
        batch_size=4,
        threads=1,
        settings=MeasureSettings(**{**SMALL, **settings}),
    )


MLP_INPUTS = [TensorSpec(name="x", shape=["batch", 64], dtype="float32")]
CONV_INPUTS = [TensorSpec(name="img", shape=[1, 3, 32, 32], dtype="float32")]


def _check_success(r: MeasureResult, min_runs: int) -> None:
    assert r.status == "succeeded", r.error
    assert r.latency_ms is not None
    lat = r.latency_ms
    assert 0 < lat.min <= lat.p50 <= lat.p90 <= lat.p95 <= lat.p99 <= lat.max
    assert r.runs >= min_runs
    assert len(r.times_ms) == r.runs
    assert r.stop_reason in STOP_REASONS
    assert r.load_ms is not None and r.load_ms > 0
    assert r.environment["protocol"]["runtime_import_ms"] > 0  # a fresh process imports it
    assert r.first_inference_ms is not None and r.first_inference_ms > 0
    assert len(r.warmup_ms) == SMALL["warmup_runs"]
    assert set(r.memory) >= MEMORY_KEYS, r.memory
    assert r.memory["peak_rss_mb"] >= r.memory["steady_peak_rss_mb"] > 0
    assert r.environment["cpu_model"]
    assert r.environment["onnxruntime_version"]
    assert r.environment["runtime_version"]
    assert r.environment["memory_method"] in ("proc_hwm", "psutil_sampling", "none")
    assert r.environment["intra_op_num_threads"] == 1
    assert r.steady_duration_s is not None and r.steady_duration_s >= 0.1


# --------------------------------------------------------------------------- end to end
def test_mlp_end_to_end(tmp_path: Path) -> None:
    events: list[dict[str, Any]] = []
    spec = _spec(_mlp(tmp_path / "mlp.onnx"), MLP_INPUTS)
    r = run_isolated(spec, workdir=tmp_path / "work", on_progress=events.append)
    _check_success(r, 20)
    assert {p.type for p in r.profile} >= {"MatMul"}
    assert all(p.time_ms >= 0 and p.compute_unit == "CPUExecutionProvider" for p in r.profile)
    phases = [e["phase"] for e in events]
    assert phases[:5] == ["import", "load", "first", "warmup", "steady"] and phases[-1] == "profile"
    assert all(set(e) == {"phase", "runs", "elapsed_s"} for e in events)
    assert not list((tmp_path / "work").iterdir())  # per-run files cleaned up


def test_convnet_end_to_end(tmp_path: Path) -> None:
    spec = _spec(_convnet(tmp_path / "conv.onnx"), CONV_INPUTS)
    r = run_isolated(spec, workdir=tmp_path / "work")
    _check_success(r, 20)
    types = {p.type for p in r.profile}
    assert types & {"Conv", "FusedConv"}, types


def test_profile_disabled_gives_no_layers(tmp_path: Path) -> None:
    spec = _spec(_mlp(tmp_path / "mlp.onnx"), MLP_INPUTS, profile=False, max_runs=25)
    r = run_isolated(spec, workdir=tmp_path)
    assert r.status == "succeeded", r.error
    assert r.profile == []
    assert r.stop_reason in ("max_runs", "ci_converged") and 20 <= r.runs <= 25


# --------------------------------------------------------------------------- stop rules (in-process)
class FakeRunner(Runner):
    """A runner whose 'latency' is scripted; records its lifecycle."""

    runtime_name = "fake"

    def __init__(self, times_ns: Any, fail_at: int | None = None, sleep_s: float = 0.0) -> None:
        super().__init__(MeasureSpec(runtime="fake", model_path="-", model_format="-", inputs=[]))
        self._times = times_ns
        self._fail_at = fail_at
        self._sleep = sleep_s
        self.calls = 0
        self.deactivated = 0

    def activate(self) -> None:
        self.is_active = True

    def deactivate(self) -> None:
        self.deactivated += 1
        super().deactivate()

    def timed_infer(self, feeds: Any) -> int:
        self.calls += 1
        if self._fail_at is not None and self.calls >= self._fail_at:
            raise RuntimeError("boom")
        if self._sleep:
            time.sleep(self._sleep)
        return int(self._times())

    def profile(self, feeds: Any, iterations: int) -> list[LayerProfile]:
        raise RuntimeError("profiling unsupported here")


def test_constant_times_converge_at_min_runs() -> None:
    runner = FakeRunner(lambda: 1_000_000)
    s = MeasureSettings(warmup_runs=2, min_runs=30, min_duration_s=0, max_duration_s=5)
    r = run_protocol(runner, s)
    assert r.status == "succeeded", r.error
    assert (r.stop_reason, r.runs) == ("ci_converged", 30)
    assert r.latency_ms is not None and r.latency_ms.p50 == pytest.approx(1.0)
    assert "profile_error" in r.environment  # profiling failure is reported, not fatal
    assert runner.deactivated >= 1 and runner.calls == 1 + 2 + 30


def test_noisy_times_hit_max_runs() -> None:
    rng = np.random.default_rng(0)
    runner = FakeRunner(lambda: rng.integers(1_000, 10_000_000))
    s = MeasureSettings(
        warmup_runs=0, min_runs=10, max_runs=500, min_duration_s=0, target_rel_ci=1e-6
    )
    r = run_protocol(runner, s, probe=None)
    assert (r.stop_reason, r.runs, len(r.times_ms)) == ("max_runs", 500, 500)


def test_max_duration_caps_steady_state_and_progress_is_rate_limited() -> None:
    rng = np.random.default_rng(1)
    events: list[dict[str, Any]] = []
    runner = FakeRunner(lambda: rng.integers(1_000, 10_000_000), sleep_s=0.0005)
    s = MeasureSettings(
        warmup_runs=0, min_runs=10, min_duration_s=0, max_duration_s=1.0, target_rel_ci=1e-6
    )
    r = run_protocol(runner, s, on_progress=events.append)
    assert r.stop_reason == "max_duration"
    assert r.steady_duration_s is not None and 1.0 <= r.steady_duration_s < 1.5
    steady = [e for e in events if e["phase"] == "steady"]
    assert 3 <= len(steady) <= 8  # 1 s at <= 4 events/s, plus the phase start and final count
    assert steady[-1]["runs"] == r.runs


def test_min_duration_is_respected() -> None:
    runner = FakeRunner(lambda: 1_000_000, sleep_s=0.001)
    s = MeasureSettings(warmup_runs=0, min_runs=5, min_duration_s=0.3, max_duration_s=5)
    r = run_protocol(runner, s)
    assert r.stop_reason == "ci_converged"
    assert r.steady_duration_s is not None and r.steady_duration_s >= 0.3
    assert r.environment["protocol"]["min_reached"] is True


def test_runner_error_mid_run_gives_failed_result_with_partial_data() -> None:
    runner = FakeRunner(lambda: 1_000_000, fail_at=3)
    r = run_protocol(runner, MeasureSettings(warmup_runs=5))
    assert r.status == "failed"
    assert r.error == "warmup failed: RuntimeError: boom"
    assert r.load_ms is not None and r.first_inference_ms is not None
    assert "baseline_rss_mb" in r.memory and r.environment["failed_phase"] == "warmup"
    assert runner.deactivated >= 1


class SlowImportRunner(FakeRunner):
    """Importing its 'runtime' takes 0.2 s, loading a model 0.02 s."""

    def __init__(self, fail_import: bool = False) -> None:
        super().__init__(lambda: 1_000_000)
        self._fail_import = fail_import

    def import_runtime(self) -> None:
        time.sleep(0.2)
        if self._fail_import:
            raise ImportError("libfake.so: cannot open shared object file")

    def activate(self) -> None:
        time.sleep(0.02)
        super().activate()


def test_runtime_import_is_timed_apart_from_the_model_load() -> None:
    r = run_protocol(SlowImportRunner(), MeasureSettings(warmup_runs=0, min_duration_s=0))
    assert r.status == "succeeded", r.error
    assert r.environment["protocol"]["runtime_import_ms"] >= 200
    assert r.load_ms is not None and 20 <= r.load_ms < 200
    assert r.memory["runtime_rss_mb"] >= r.memory["baseline_rss_mb"] * 0.9


def test_failed_runtime_import_is_a_failed_phase() -> None:
    runner = SlowImportRunner(fail_import=True)
    r = run_protocol(runner, MeasureSettings())
    assert r.status == "failed" and r.environment["failed_phase"] == "import"
    assert r.error == "import failed: ImportError: libfake.so: cannot open shared object file"
    assert r.load_ms is None and runner.deactivated >= 1


class AllocatingRunner(FakeRunner):
    """Touches 64 MiB during activate() and frees it again before returning."""

    def activate(self) -> None:
        block = np.ones(64 * 1024 * 1024 // 8)
        time.sleep(0.05)  # long enough for the 1 ms sampling fallback to see it
        del block
        super().activate()


@pytest.mark.parametrize("method", ["proc_hwm", "psutil_sampling"])
def test_load_peak_catches_transient_allocation(method: str) -> None:
    probe = make_probe(method)
    if probe.method != method:
        pytest.skip(f"memory method {method!r} is not available on this machine")
    runner = AllocatingRunner(lambda: 1_000_000)
    s = MeasureSettings(warmup_runs=1, min_runs=10, min_duration_s=0, max_duration_s=1)
    r = run_protocol(runner, s, probe=probe)
    assert r.status == "succeeded", r.error
    assert r.environment["memory_method"] == method
    assert set(r.memory) >= MEMORY_KEYS
    assert r.memory["load_delta_mb"] >= 60  # freed before load ended, still the peak
    assert r.memory["steady_delta_mb"] < 30
    assert r.memory["peak_rss_mb"] >= r.memory["load_peak_rss_mb"]


# --------------------------------------------------------------------------- failures (isolated)
def test_corrupt_model_gives_failed_result(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not an onnx model\x00\xff" * 10)
    r = run_isolated(_spec(bad, MLP_INPUTS), workdir=tmp_path)
    assert r.status == "failed"
    assert r.error is not None and r.error.startswith("load failed: ")
    assert "Invalid" in r.error or "Fail" in r.error, r.error
    assert r.environment.get("failed_phase") == "load"


def _fake_python(tmp_path: Path, body: str) -> str:
    """A shell script used as the worker interpreter; ``$out`` is the --out path."""
    script = tmp_path / "fake-python.sh"
    script.write_text(
        "#!/bin/sh\n"
        'out=""\n'
        'while [ $# -gt 0 ]; do [ "$1" = "--out" ] && out="$2"; shift; done\n' + body
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_worker_killed_by_signal(tmp_path: Path) -> None:
    py = _fake_python(
        tmp_path,
        'echo \'{"phase": "load", "runs": 0, "elapsed_s": 0.0}\'\n'
        'echo "Fatal Python error: Segmentation fault (simulated)" >&2\n'
        "kill -SEGV $$\n",
    )
    r = run_isolated(_spec(tmp_path / "m.onnx", MLP_INPUTS), workdir=tmp_path, python=py)
    assert r.status == "failed"
    assert r.error is not None
    assert "SIGSEGV" in r.error and "phase load" in r.error
    assert "Segmentation fault (simulated)" in r.error


def test_worker_nonzero_exit(tmp_path: Path) -> None:
    py = _fake_python(tmp_path, 'echo "ImportError: something broke" >&2\nexit 3\n')
    r = run_isolated(_spec(tmp_path / "m.onnx", MLP_INPUTS), workdir=tmp_path, python=py)
    assert r.status == "failed" and r.error is not None
    assert "exited with code 3" in r.error and "something broke" in r.error


def test_worker_invalid_result_file(tmp_path: Path) -> None:
    py = _fake_python(tmp_path, 'echo "{not json" > "$out"\n')
    r = run_isolated(_spec(tmp_path / "m.onnx", MLP_INPUTS), workdir=tmp_path, python=py)
    assert r.status == "failed" and r.error is not None and "invalid result" in r.error


def test_worker_without_result_file(tmp_path: Path) -> None:
    py = _fake_python(tmp_path, "exit 0\n")
    r = run_isolated(_spec(tmp_path / "m.onnx", MLP_INPUTS), workdir=tmp_path, python=py)
    assert r.status == "failed" and r.error is not None and "without writing a result" in r.error


def test_hang_is_killed_after_timeout(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    py = _fake_python(
        tmp_path,
        f'echo $$ > "{pidfile}"\n'
        'echo \'{"phase": "steady", "runs": 5, "elapsed_s": 0.1}\'\n'
        "exec sleep 60\n",
    )
    t0 = time.monotonic()
    r = run_isolated(
        _spec(tmp_path / "m.onnx", MLP_INPUTS, timeout_s=1.0), workdir=tmp_path, python=py
    )
    assert time.monotonic() - t0 < 10
    assert r.status == "failed" and r.error is not None
    assert r.error.startswith("measurement timed out after 1 s (phase steady)")
    with pytest.raises(ProcessLookupError):
        os.kill(int(pidfile.read_text()), 0)


def test_cancel_kills_the_worker(tmp_path: Path) -> None:
    py = _fake_python(tmp_path, "exec sleep 60\n")
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    t0 = time.monotonic()
    r = run_isolated(
        _spec(tmp_path / "m.onnx", MLP_INPUTS), workdir=tmp_path, python=py, cancel=cancel
    )
    assert time.monotonic() - t0 < 10
    assert r.status == "failed" and r.error is not None and "cancelled" in r.error


# --------------------------------------------------------------------------- runners
def test_missing_runtime_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    entry = runners.RunnerEntry("agents.runners.nope:Nope", ("latencylab_no_such_rt",), "openvino")
    monkeypatch.setitem(runners.REGISTRY, "openvino", entry)
    with pytest.raises(runners.RuntimeNotInstalledError) as info:
        runners.get_runner("openvino")
    expected = (
        "runtime 'openvino' is not installed on this agent: pip install 'latencylab[openvino]'"
    )
    assert str(info.value) == expected
    assert "openvino" not in runners.detect_runtimes()
    # The worker turns it into a failed result file.
    spec = _spec(tmp_path / "m.onnx", MLP_INPUTS).model_copy(update={"runtime": "openvino"})
    (tmp_path / "spec.json").write_text(spec.model_dump_json())
    out = tmp_path / "out.json"
    assert worker.main(["--spec", str(tmp_path / "spec.json"), "--out", str(out)]) == 0
    r = MeasureResult.model_validate(json.loads(out.read_text()))
    assert r.status == "failed" and r.error is not None and expected in r.error


def test_unregistered_runtime_fails_cleanly(tmp_path: Path) -> None:
    spec = _spec(tmp_path / "m.onnx", MLP_INPUTS).model_copy(update={"runtime": "nosuchruntime"})
    r = run_isolated(spec, workdir=tmp_path)
    assert (
        r.status == "failed"
        and r.error is not None
        and "no runner for runtime 'nosuchruntime'" in r.error
    )


def test_detect_runtimes_reports_onnxruntime_version() -> None:
    import onnxruntime

    assert runners.detect_runtimes()["onnxruntime"] == onnxruntime.__version__
    assert runners.get_runner("onnxruntime") is OnnxRuntimeRunner


def test_input_shapes_and_dtypes() -> None:
    assert concrete_shape(TensorSpec(name="x", shape=[None, 3], dtype="float32"), 8) == [8, 3]
    assert concrete_shape(TensorSpec(name="x", shape=[-1, 3], dtype="float32"), 2) == [2, 3]
    with pytest.raises(ValueError, match=r"metadata\.input_shapes"):
        concrete_shape(TensorSpec(name="ids", shape=["batch", "seq"], dtype="int64"), 1)
    assert numpy_dtype("tensor(int64)") == np.int64
    assert numpy_dtype("float16") == np.float16
    assert numpy_dtype("bool") == np.bool_
    assert numpy_dtype("uint8") == np.uint8
    with pytest.raises(ValueError):
        numpy_dtype("complex128")


def test_prepare_inputs_is_seeded_and_honours_shape_overrides(tmp_path: Path) -> None:
    spec = MeasureSpec(
        runtime="onnxruntime",
        model_path=str(_mlp(tmp_path / "mlp.onnx")),
        model_format="onnx",
        inputs=[TensorSpec(name="x", shape=["batch", "features"], dtype="float32")],
        batch_size=3,
        options={"input_shapes": {"x": [3, 64]}},
    )
    a = OnnxRuntimeRunner(spec).prepare_inputs(seed=5)
    b = OnnxRuntimeRunner(spec).prepare_inputs(seed=5)
    assert a["x"].shape == (3, 64) and a["x"].dtype == np.float32
    np.testing.assert_array_equal(a["x"], b["x"])
    with OnnxRuntimeRunner(spec) as runner:
        assert runner.timed_infer(a) > 0
        assert runner.environment()["providers"] == ["CPUExecutionProvider"]
