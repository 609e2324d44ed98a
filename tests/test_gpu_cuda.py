"""NVIDIA GPU host, for real: CUDA timing of the PyTorch runner, NVML and nvidia-smi facts.

Skipped (with the reason) where torch sees no CUDA GPU or NVML cannot start; run them on a
GPU host with ``pytest -m gpu``. The parsing and plumbing behind them is tested without a
GPU in ``test_gpu_jetson_coreml.py`` and ``test_parsers_nvidia_smi.py``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agents import gpu, nvml
from latencylab.schemas import MeasureResult, MeasureSettings, MeasureSpec

pytestmark = pytest.mark.gpu

QUICK = MeasureSettings(
    warmup_runs=10, min_runs=50, min_duration_s=0.5, max_duration_s=3.0, timeout_s=300
)


@pytest.fixture(scope="module")
def cuda_torch() -> Any:
    torch = pytest.importorskip("torch", reason="needs PyTorch")
    if not torch.cuda.is_available():
        pytest.skip(f"no CUDA GPU: torch {torch.__version__} (cuda={torch.version.cuda}) sees none")
    return torch


@pytest.fixture(scope="module")
def nvml_info() -> dict[str, Any]:
    try:
        return nvml.nvml_device_info(0)
    except RuntimeError as exc:
        pytest.skip(f"NVML unusable here: {exc}")


@pytest.fixture(scope="module")
def pt2_model(tmp_path_factory: pytest.TempPathFactory, cuda_torch: Any) -> Path:
    from converters.zoo import write_pt2

    return write_pt2("mobilenet_v2", tmp_path_factory.mktemp("gpu") / "mbv2.pt2")


def _measure(path: Path, tmp: Path, **options: Any) -> MeasureResult:
    from agents.measure import run_isolated

    precision = options.pop("precision", "fp32")
    spec = MeasureSpec(
        runtime="pytorch",
        model_path=str(path),
        model_format="pt2",
        precision=precision,
        inputs=[],  # the runner reads them from the exported program
        settings=QUICK.model_copy(update={"profile": True}),
        options={"device": "cuda", **options},
    )
    return run_isolated(spec, workdir=tmp)


@pytest.mark.parametrize(
    ("timer", "recorded"),
    [("cuda_events", "cuda_events"), ("sync", "cuda_synchronize+perf_counter_ns")],
)
def test_pytorch_runner_times_on_cuda(
    pt2_model: Path, tmp_path: Path, cuda_torch: Any, timer: str, recorded: str
) -> None:
    result = _measure(pt2_model, tmp_path, timer=timer)
    assert result.status == "succeeded", result.error
    env = result.environment
    assert env["cuda_timer"] == timer and env["protocol"]["timer"] == recorded
    assert env["device"] == "cuda" and env["cuda_version"] == cuda_torch.version.cuda
    assert env["gpu_name"] == cuda_torch.cuda.get_device_name(0)
    stats = result.latency_ms
    assert stats is not None and stats.p50 is not None and 0 < stats.min <= stats.p50
    assert result.runs == len(result.times_ms) >= QUICK.min_runs
    assert result.load_ms is not None and result.first_inference_ms is not None
    # the first CUDA forward pays for kernel selection and lazy module loading
    assert result.first_inference_ms > stats.p50
    mem = env["gpu_memory"]
    # weights now live on the GPU, and running needs activations on top of them
    assert mem["torch_allocated_after_load_mb"] > mem["torch_allocated_before_load_mb"]
    assert mem["torch_peak_allocated_mb"] >= mem["torch_allocated_after_load_mb"]
    assert mem["torch_peak_reserved_mb"] >= mem["torch_peak_allocated_mb"]
    if mem["nvml_used_before_load_mb"] is not None:  # NVML readable: the weights show there too
        assert mem["nvml_load_delta_mb"] >= 0
    assert result.profile and {p.compute_unit for p in result.profile} == {"CUDA"}
    assert isinstance(env["warnings"], list) and "clocks" in env["gpu"]


def test_pytorch_runner_fp16_on_cuda(pt2_model: Path, tmp_path: Path, cuda_torch: Any) -> None:
    result = _measure(pt2_model, tmp_path, precision="fp16")
    assert result.status == "succeeded", result.error
    assert result.environment["dtype"] == "torch.float16"
    assert result.latency_ms is not None and result.latency_ms.p50 is not None


def test_unknown_cuda_timer_is_refused(pt2_model: Path, tmp_path: Path, cuda_torch: Any) -> None:
    result = _measure(pt2_model, tmp_path, timer="stopwatch")
    assert result.status == "failed" and "invalid pytorch options: timer" in str(result.error)
    assert "'cuda_events' or 'sync'" in str(result.error)


def test_nvml_reads_this_gpu(nvml_info: dict[str, Any], cuda_torch: Any) -> None:
    props = cuda_torch.cuda.get_device_properties(0)
    assert nvml_info["source"] == "nvml"
    assert nvml_info["name"] == cuda_torch.cuda.get_device_name(0)
    assert nvml_info["compute_capability"] == f"{props.major}.{props.minor}"
    # NVML counts MiB of the whole board; torch reports what CUDA can allocate (a bit less)
    assert nvml_info["memory_total_mb"] >= props.total_memory / 2**20 * 0.95
    clocks = nvml_info["clocks"]
    assert clocks["sm_max_mhz"] and 0 < clocks["sm_mhz"] <= clocks["sm_max_mhz"]
    assert isinstance(nvml_info["clocks_event_reasons"], list)
    env = nvml.gpu_environment(0)
    assert env["gpu"]["clocks_locked"] is (not env["warnings"])


def test_nvidia_smi_agrees_with_nvml(nvml_info: dict[str, Any]) -> None:
    if shutil.which("nvidia-smi") is None:
        pytest.skip("nvidia-smi is not on PATH")
    smi = nvml.smi_device_info(0)
    assert smi["source"] == "nvidia-smi" and smi["name"] == nvml_info["name"]
    assert smi["driver"] == nvml_info["driver"]
    assert smi["memory_total_mb"] == pytest.approx(nvml_info["memory_total_mb"], abs=1)


def test_gpu_host_registration_describes_this_gpu(nvml_info: dict[str, Any]) -> None:
    body = gpu.describe_gpu_host(0, {"rack": "lab"})
    attrs = body["attributes"]
    assert body["class"] == "gpu" and attrs["gpu"] == nvml_info["name"]
    assert attrs["compute_capability"] == nvml_info["compute_capability"]
    assert attrs["gpu_memory_mb"] == nvml_info["memory_total_mb"] and attrs["rack"] == "lab"
    assert "pytorch" in body["runtimes"]


def _real_cudart() -> Any:
    from agents.runners.tensorrt import import_cudart

    try:
        cudart = import_cudart()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess or count < 1:
        pytest.skip(f"cuda-python sees no CUDA device ({err})")
    return cudart


def test_tensorrt_runner_cuda_plumbing_on_a_real_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nvml_info: dict[str, Any]
) -> None:
    """TensorRT cannot be installed where this was written, so only the engine object is
    faked; device buffers, copies, the stream and the CUDA events are real cuda-python calls
    on the GPU, and NVML is real."""
    from agents.measure.protocol import run_protocol
    from agents.runners.tensorrt import TensorRTRunner
    from tests.test_gpu_jetson_coreml import QUICK as TRT_QUICK
    from tests.test_gpu_jetson_coreml import fake_tensorrt, trt_spec

    cudart = _real_cudart()
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt([], []))
    spec = trt_spec(tmp_path, batch=2, include_transfers=True)
    with TensorRTRunner(spec) as runner:
        feeds = runner.prepare_inputs(0)
        for name, host in feeds.items():  # the inputs really are on the device
            ptr, nbytes = runner._buffers[name]
            back = np.empty_like(host)
            (err,) = cudart.cudaMemcpy(
                back.ctypes.data, ptr, nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
            )
            assert err == cudart.cudaError_t.cudaSuccess
            np.testing.assert_array_equal(back, host)
        # the timed region holds real H2D + D2H copies here: positive CUDA-event times
        times_ns = [runner.timed_infer(feeds) for _ in range(20)]
        assert all(0 < t < 1e9 for t in times_ns)
    result = run_protocol(TensorRTRunner(spec), TRT_QUICK)
    assert result.status == "succeeded", result.error
    env = result.environment
    assert env["gpu"]["name"] == nvml_info["name"] and env["protocol"]["timer"] == "cuda_events"
    assert env["gpu_memory"]["nvml_used_before_load_mb"] is not None
    assert env["h2d_included"] is True and result.latency_ms is not None
