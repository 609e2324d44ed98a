"""The LiteRT C API op profiler (``agents.runners.litert_profiler``) on a real ``.tflite``.

No mocks: a small conv net is converted once with litert-torch (as ``test_runners`` does) and
profiled through ``libLiteRt.so``, directly and through a whole isolated measurement."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agents.measure import run_isolated
from tests.test_runners import REPO, _need, _spec, nhwc_tflite

SHAPE = [1, 64, 64, 3]  # NHWC


@pytest.fixture(scope="module")
def conv_tflite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~32M MACs: long enough (~0.5 ms on one thread) for the op times to mean something."""

    def layers() -> Any:
        from torch import nn

        return nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1, groups=64),
            nn.ReLU(),
            nn.Conv2d(64, 128, 1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(128, 10),
        )

    path = tmp_path_factory.mktemp("litert-profiler") / "convnet64.tflite"
    return nhwc_tflite(layers, SHAPE, path)


def _interpreter_mean_ms(model: Path, x: np.ndarray, runs: int = 100) -> tuple[float, int]:
    from ai_edge_litert import interpreter

    interp = interpreter.Interpreter(model_path=str(model), num_threads=1)
    interp.allocate_tensors()
    index = int(interp.get_input_details()[0]["index"])
    interp.set_tensor(index, x)
    for _ in range(10):
        interp.invoke()
    start = time.perf_counter_ns()
    for _ in range(runs):
        interp.invoke()
    return (time.perf_counter_ns() - start) / 1e6 / runs, index


def test_tflite_op_times_add_up_to_the_interpreter_latency(conv_tflite: Path) -> None:
    from agents.runners.litert_profiler import LiteRtOpProfiler

    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    interp_ms, interp_index = _interpreter_mean_ms(conv_tflite, x)
    with LiteRtOpProfiler(conv_tflite, num_threads=1) as profiler:
        [(index, name, shape)] = profiler.inputs
        assert (index, shape) == (interp_index, SHAPE) and name
        run = profiler.profile({index: x}, iterations=30, warmup=3)
    assert run.iterations == 30 and run.input_shapes == [SHAPE] and run.events > 30
    layers = run.layers
    assert len(layers) >= 4 and len({p.name for p in layers}) == len(layers)
    assert all(p.compute_unit == "XNNPACK" for p in layers)
    # XNNPACK's own operator names, e.g. "Convolution (NHWC, F32) IGEMM" / "... DWConv"
    assert sum("Convolution" in (p.type or "") for p in layers) >= 3, layers
    assert all(p.name.startswith("Delegate/") and p.time_ms >= 0 for p in layers)
    assert sum(p.time_ms > 0 for p in layers) >= 3
    # The operator events lie inside LiteRtRunCompiledModel, so they cannot add up to more
    # than its wall time (+ their 1 us rounding); a wrong struct layout would read garbage.
    assert 0 < run.op_ms <= run.wall_ms * 1.1 + 0.01, (run.op_ms, run.wall_ms)
    # Same kernels (XNNPACK), same thread count, same input: the per-op means should sum to
    # about the interpreter's own latency (1.0x here, give or take a few %). They leave out
    # only the per-run overhead (invoke dispatch, LiteRT's buffer bookkeeping: tens of us),
    # so the band is wide only to stay robust on a busy machine; a unit mix-up (us vs ms)
    # or counting each operator twice would still fall outside it.
    ratio = run.op_ms / interp_ms
    assert 0.3 <= ratio <= 3.0, (run.op_ms, interp_ms, layers)


def test_tflite_builtin_kernels_and_a_resized_batch(conv_tflite: Path) -> None:
    from agents.runners.litert_profiler import LiteRtOpProfiler

    x = np.random.default_rng(1).standard_normal([2, *SHAPE[1:]]).astype(np.float32)
    with LiteRtOpProfiler(conv_tflite, num_threads=1, kernel_mode="builtin") as profiler:
        run = profiler.profile([x], iterations=5)
    assert run.input_shapes == [[2, *SHAPE[1:]]]  # resized from the stored batch of 1
    types = [p.type for p in run.layers]
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} <= set(types), types
    assert all(p.compute_unit == "CPU" and p.time_ms >= 0 for p in run.layers)
    assert run.layers[-1].name == "serving_default_output_0_output"  # output tensor names
    assert 0 < run.op_ms <= run.wall_ms * 1.1 + 0.01


def test_tflite_measurement_profile_comes_from_the_c_api(conv_tflite: Path, tmp_path: Path) -> None:
    spec = _spec("tflite", conv_tflite, "tflite", batch_size=2, settings={"profile": True})
    r = run_isolated(spec, workdir=tmp_path)
    assert r.status == "succeeded", r.error
    assert "profile_error" not in r.environment, r.environment["profile_error"]
    assert r.profile and all(p.compute_unit == "XNNPACK" and p.type for p in r.profile)
    note = r.environment["profile_note"]
    assert "LiteRT C API profiler" in note and "XNNPACK" in note and "1 thread" in note
    assert f"[[2, {SHAPE[1]}, {SHAPE[2]}, {SHAPE[3]}]]" in note  # the runner's batch size
    assert r.latency_ms is not None
    assert 0.3 <= sum(p.time_ms for p in r.profile) / r.latency_ms.mean <= 3.0


def test_tflite_missing_or_corrupt_model_is_a_clear_error(tmp_path: Path) -> None:
    _need("ai_edge_litert")
    from agents.runners.litert_profiler import LiteRtError, LiteRtOpProfiler, LiteRtUnavailable

    missing = tmp_path / "missing.tflite"
    pattern = r"could not load the model .*missing\.tflite.*: LiteRtCreateModelFromFile returned k"
    with pytest.raises(LiteRtError, match=pattern), LiteRtOpProfiler(missing):
        pass
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"\x18\x00\x00\x00TFL3" + bytes(range(256)) * 8)
    with pytest.raises(LiteRtError, match=r"corrupt\.tflite.* returned kLiteRtStatusError"):
        LiteRtOpProfiler(corrupt).open()
    with pytest.raises(LiteRtUnavailable, match="cannot load"):
        LiteRtOpProfiler(corrupt, library=tmp_path / "libLiteRt.so")


def test_tflite_profiler_import_loads_no_library() -> None:
    code = (
        "import agents.runners.litert_profiler, sys; "
        "print(any('libLiteRt' in line for line in open('/proc/self/maps')), "
        "'ai_edge_litert' in sys.modules)"
    )
    if not Path("/proc/self/maps").exists():
        pytest.skip("needs /proc")
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False"]
