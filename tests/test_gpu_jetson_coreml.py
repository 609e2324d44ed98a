"""TensorRT runner, NVIDIA GPU host facts, Jetson tegrastats/nvpmodel, CoreML runner.

No GPU, TensorRT or macOS here: the TensorRT runner runs against in-process fakes of
``tensorrt``, ``cuda.bindings.runtime`` and ``pynvml`` that log every call (the real-API
tests are marked ``gpu``/``tensorrt``/``coreml`` and skip with the reason). The Jetson
measurer runs a REAL onnxruntime measurement in a subprocess while ``tests/fakes/tegrastats``
replays real tegrastats lines captured on Jetsons (../shared/fixtures), so the power,
RAM and temperature numbers below are those devices', not this machine's.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import json
import platform
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agents import gpu, nvml
from agents.jetson import JetsonMeasurer, JetsonSettings, describe_jetson, steady_window
from agents.measure.protocol import run_protocol
from agents.parsers.nvidia_smi import parse_query_gpu
from agents.parsers.tegrastats import parse_tegrastats
from agents.runners import REGISTRY, detect_runtimes
from agents.runners.coreml import CoreMLRunner
from agents.runners.tensorrt import TensorRTRunner
from latencylab.schemas import MeasureResult, MeasureSettings, MeasureSpec, TensorSpec
from tests.shared_fixtures import FIXTURES, read

REPO = Path(__file__).resolve().parents[1]
FAKES = REPO / "tests" / "fakes"
QUICK = MeasureSettings(
    warmup_runs=2, min_runs=5, max_runs=40, min_duration_s=0, max_duration_s=0.5, profile=True
)

# ----------------------------------------------------------------------------- fakes
IO = {  # name -> (mode, engine shape, dtype)
    "images": ("INPUT", [-1, 3, 8, 8], "float32"),
    "mask": ("INPUT", [1, 4], "int32"),
    "logits": ("OUTPUT", [-1, 10], "float32"),
}
LAYERS = {"conv1": 0.5, "relu1": 0.25, "{ForeignNode[fc]}": 1.0}


class FakeCuda:
    """``cuda.bindings.runtime`` look-alike: device memory is bytearrays, events read a clock."""

    def __init__(self, calls: list[tuple[Any, ...]]) -> None:
        self.calls = calls
        self.memory: dict[int, bytearray] = {}
        self.event_ns: dict[int, int] = {}
        self.cudaError_t = types.SimpleNamespace(cudaSuccess=0)
        self.cudaMemcpyKind = types.SimpleNamespace(
            cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2
        )
        self._next = 0x1000

    def module(self) -> types.ModuleType:
        mod = types.ModuleType("cuda.bindings.runtime")
        for name in dir(self):
            if name.startswith("cuda"):
                setattr(mod, name, getattr(self, name))
        return mod

    def _handle(self) -> int:
        self._next += 0x100
        return self._next

    def cudaSetDevice(self, i: int) -> tuple[int]:
        self.calls.append(("cudaSetDevice", i))
        return (0,)

    def cudaMalloc(self, n: int) -> tuple[int, int]:
        ptr = self._handle()
        self.memory[ptr] = bytearray(n)
        self.calls.append(("cudaMalloc", ptr, n))
        return (0, ptr)

    def cudaMemcpy(self, dst: int, src: int, n: int, kind: int, stream: Any = None) -> tuple[int]:
        if kind == 1:
            self.memory[dst][:] = ctypes.string_at(src, n)
        else:
            ctypes.memmove(dst, bytes(self.memory[src]), n)
        self.calls.append(("cudaMemcpy" if stream is None else "cudaMemcpyAsync", kind, n))
        return (0,)

    def cudaMemcpyAsync(self, dst: int, src: int, n: int, kind: int, stream: int) -> tuple[int]:
        return self.cudaMemcpy(dst, src, n, kind, stream)

    def cudaStreamCreate(self) -> tuple[int, int]:
        return (0, self._handle())

    def cudaEventCreate(self) -> tuple[int, int]:
        return (0, self._handle())

    def cudaEventRecord(self, event: int, stream: int) -> tuple[int]:
        self.event_ns[event] = time.perf_counter_ns()
        self.calls.append(("cudaEventRecord", event))
        return (0,)

    def cudaEventSynchronize(self, event: int) -> tuple[int]:
        self.calls.append(("cudaEventSynchronize", event))
        return (0,)

    def cudaEventElapsedTime(self, start: int, end: int) -> tuple[int, float]:
        self.calls.append(("cudaEventElapsedTime",))
        return (0, (self.event_ns[end] - self.event_ns[start]) / 1e6)

    def cudaStreamSynchronize(self, stream: int) -> tuple[int]:
        return (0,)

    def cudaFree(self, ptr: int) -> tuple[int]:
        self.calls.append(("cudaFree", ptr))
        return (0,)

    def cudaEventDestroy(self, event: int) -> tuple[int]:
        return (0,)

    def cudaStreamDestroy(self, stream: int) -> tuple[int]:
        return (0,)


class FakeContext:
    def __init__(self, calls: list[tuple[Any, ...]]) -> None:
        self.calls, self.profiler = calls, None
        self.shapes: dict[str, list[int]] = {}
        self.addresses: dict[str, int] = {}

    def set_input_shape(self, name: str, shape: list[int]) -> bool:
        if IO[name][1][0] == -1 and not 1 <= shape[0] <= 8:
            return False
        self.shapes[name] = list(shape)
        return True

    def get_tensor_shape(self, name: str) -> list[int]:
        if IO[name][0] == "INPUT":
            return self.shapes[name]
        return [self.shapes["images"][0], 10]

    def set_tensor_address(self, name: str, ptr: int) -> None:
        self.addresses[name] = ptr

    def execute_async_v3(self, stream: int) -> bool:
        self.calls.append(("execute_async_v3", id(self)))
        if self.profiler is not None:
            for layer, ms in LAYERS.items():
                self.profiler.report_layer_time(layer, ms)
        return True


class FakeEngine:
    num_io_tensors = len(IO)
    device_memory_size_v2 = 3 * 2**20
    num_layers = len(LAYERS)
    num_optimization_profiles = 1

    def __init__(self, calls: list[tuple[Any, ...]]) -> None:
        self.calls = calls
        self.contexts: list[FakeContext] = []

    def get_tensor_name(self, i: int) -> str:
        return list(IO)[i]

    def get_tensor_mode(self, name: str) -> str:
        return IO[name][0]

    def get_tensor_shape(self, name: str) -> list[int]:
        return IO[name][1]

    def get_tensor_dtype(self, name: str) -> str:
        return IO[name][2]

    def get_tensor_profile_shape(self, name: str, profile: int) -> list[list[int]]:
        return [[1, 3, 8, 8], [4, 3, 8, 8], [8, 3, 8, 8]]

    def create_execution_context(self) -> FakeContext:
        self.contexts.append(FakeContext(self.calls))
        return self.contexts[-1]

    def create_engine_inspector(self) -> Any:
        layers = [{"Name": "conv1", "LayerType": "CaskConvolution"}, {"Name": "relu1"}]
        info = json.dumps({"Layers": layers})
        return types.SimpleNamespace(get_engine_information=lambda fmt: info)


def fake_tensorrt(calls: list[tuple[Any, ...]], engines: list[FakeEngine]) -> types.ModuleType:
    trt: Any = types.ModuleType("tensorrt")
    trt.__version__ = "10.99.0-fake"
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)

    class Runtime:
        DLA_core = -1

        def __init__(self, logger: Any) -> None:
            pass

        def deserialize_cuda_engine(self, data: bytes) -> FakeEngine | None:
            if not data.startswith(b"FAKE-ENGINE"):
                return None
            engines.append(FakeEngine(calls))
            return engines[-1]

    class IProfiler:
        def __init__(self) -> None:
            pass

    trt.Runtime, trt.IProfiler = Runtime, IProfiler
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, s: None})
    trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    trt.LayerInformationFormat = types.SimpleNamespace(JSON="json")
    trt.nptype = lambda dtype: np.dtype(dtype).type
    return trt


def fake_pynvml(*, sm: int = 1980, app: int = 1410, reasons: int = 0x4) -> types.ModuleType:
    """NVML look-alike of an H100-like board: not locked (SM boosting above the app clock)."""
    nv = types.ModuleType("pynvml")
    clocks = {0: (sm, 1980, app), 1: (sm, 1980, app), 2: (2619, 2619, 2619)}  # cur, max, app
    mem = types.SimpleNamespace(total=80 * 2**30, used=2 * 2**30, free=78 * 2**30)
    for name, fn in {
        "nvmlInit": lambda: None,
        "nvmlShutdown": lambda: None,
        "nvmlDeviceGetHandleByIndex": lambda i: f"gpu{i}",
        "nvmlDeviceGetName": lambda h: b"NVIDIA H100 80GB HBM3",
        "nvmlDeviceGetMemoryInfo": lambda h: mem,
        "nvmlSystemGetDriverVersion": lambda: "550.54.15",
        "nvmlSystemGetCudaDriverVersion": lambda: 12040,
        "nvmlDeviceGetCudaComputeCapability": lambda h: (9, 0),
        "nvmlDeviceGetClockInfo": lambda h, c: clocks[c][0],
        "nvmlDeviceGetMaxClockInfo": lambda h, c: clocks[c][1],
        "nvmlDeviceGetApplicationsClock": lambda h, c: clocks[c][2],
        "nvmlDeviceGetCurrentClocksEventReasons": lambda h: reasons,
        "nvmlDeviceGetPowerManagementLimit": lambda h: 700_000,
        "nvmlDeviceGetPowerUsage": lambda h: 113_500,
        "nvmlDeviceGetTemperature": lambda h, sensor: 41,
    }.items():
        setattr(nv, name, fn)
    return nv


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    calls: list[tuple[Any, ...]] = []
    engines: list[FakeEngine] = []
    cuda = FakeCuda(calls)
    bindings: Any = types.ModuleType("cuda.bindings")
    bindings.runtime = cuda.module()
    monkeypatch.setitem(sys.modules, "cuda", types.ModuleType("cuda"))
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", bindings.runtime)
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(calls, engines))
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())
    return {"calls": calls, "engines": engines, "cuda": cuda}


def trt_spec(tmp_path: Path, batch: int = 2, **options: Any) -> MeasureSpec:
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"FAKE-ENGINE v10")
    inputs = [
        TensorSpec(name="images", shape=[None, 3, 8, 8], dtype="float32"),
        TensorSpec(name="mask", shape=[1, 4], dtype="int32"),
    ]
    return MeasureSpec(
        runtime="tensorrt", model_path=str(engine), model_format="tensorrt", inputs=inputs,
        batch_size=batch, settings=QUICK, options=options,
    )  # fmt: skip


def names(calls: list[tuple[Any, ...]]) -> list[str]:
    return [c[0] for c in calls]


# ----------------------------------------------------------------------------- TensorRT
def test_tensorrt_runner_buffers_copies_events_and_profile(
    fake_gpu: dict[str, Any], tmp_path: Path
) -> None:
    calls, cuda = fake_gpu["calls"], fake_gpu["cuda"]
    runner = TensorRTRunner(trt_spec(tmp_path, batch=2))
    seen: dict[str, Any] = {}
    real_prepare = runner.prepare_inputs

    def prepare(seed: int) -> Any:
        seen["feeds"] = real_prepare(seed)
        seen["memory"] = {p: bytes(b) for p, b in cuda.memory.items()}
        return seen["feeds"]

    runner.prepare_inputs = prepare  # type: ignore[method-assign]
    result = run_protocol(runner, QUICK)
    assert result.status == "succeeded", result.error

    # one device buffer per I/O tensor, sized from the (dynamic) shapes actually set
    mallocs = [c for c in calls if c[0] == "cudaMalloc"]
    assert [c[2] for c in mallocs] == [2 * 3 * 8 * 8 * 4, 1 * 4 * 4, 2 * 10 * 4]
    measured, profiled = fake_gpu["engines"][0].contexts
    assert measured.shapes == {"images": [2, 3, 8, 8], "mask": [1, 4]}
    assert measured.addresses == dict(zip(IO, [c[1] for c in mallocs], strict=True))
    # inputs copied to the device before the first timed region, byte for byte
    first_event = names(calls).index("cudaEventRecord")
    h2d = [i for i, c in enumerate(calls) if c[0] == "cudaMemcpy" and c[1] == 1]
    assert len(h2d) == 2 and max(h2d) < first_event
    feeds = seen["feeds"]
    assert seen["memory"][mallocs[0][1]] == feeds["images"].tobytes()
    assert seen["memory"][mallocs[1][1]] == feeds["mask"].tobytes()
    assert not any(c[0] == "cudaMemcpyAsync" for c in calls)  # nothing copied while timed
    # every measured execute_async_v3 sits between two recorded events, then a sync
    timed = [i for i, c in enumerate(calls) if c == ("execute_async_v3", id(measured))]
    assert len(timed) == 1 + QUICK.warmup_runs + result.runs
    for i in timed:
        assert names(calls[i - 1 : i + 4]) == [
            "cudaEventRecord", "execute_async_v3", "cudaEventRecord",
            "cudaEventSynchronize", "cudaEventElapsedTime",
        ]  # fmt: skip
    # the profile ran on its own context; per-layer mean of what the profiler reported
    assert any(c == ("execute_async_v3", id(profiled)) for c in calls)
    layers = {p.name: p for p in result.profile}
    assert {k: v.time_ms for k, v in layers.items()} == pytest.approx(LAYERS)
    assert layers["conv1"].type == "CaskConvolution"
    assert {p.compute_unit for p in result.profile} == {"GPU"}
    env = result.environment
    assert env["runtime"] == "tensorrt" and env["runtime_version"] == "10.99.0-fake"
    assert env["h2d_included"] is False and env["d2h_included"] is False
    assert "execute_async_v3" in env["timed_region"] and env["runner_timer"].startswith("cuda")
    assert env["gpu_memory"]["engine_device_memory_mb"] == 3.0
    assert env["gpu_memory"]["nvml_used_before_load_mb"] == 2048.0
    assert env["gpu_memory"]["nvml_load_delta_mb"] == 0.0  # the fake board's use never moves
    assert env["gpu"]["name"] == "NVIDIA H100 80GB HBM3" and env["gpu"]["clocks_locked"] is False
    assert any("not locked" in w and "1980" in w for w in env["warnings"])
    assert any("sw_power_cap" in w for w in env["warnings"])
    assert [c[0] for c in calls].count("cudaFree") == 3  # deactivate freed every buffer


def test_tensorrt_include_transfers_copies_inside_the_timed_region(
    fake_gpu: dict[str, Any], tmp_path: Path
) -> None:
    calls = fake_gpu["calls"]
    result = run_protocol(TensorRTRunner(trt_spec(tmp_path, include_transfers=True)), QUICK)
    assert result.status == "succeeded", result.error
    i = names(calls).index("execute_async_v3")
    assert names(calls[i - 3 : i + 3]) == [
        "cudaEventRecord", "cudaMemcpyAsync", "cudaMemcpyAsync", "execute_async_v3",
        "cudaMemcpyAsync", "cudaEventRecord",
    ]  # fmt: skip
    assert result.environment["h2d_included"] is True


def test_tensorrt_dla_layers_and_user_locked_clocks(
    fake_gpu: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # locked with nvidia-smi -lgc 1410: below the 1755 MHz application clock, reason 0x2 set
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(sm=1410, app=1755, reasons=0x2))
    result = run_protocol(TensorRTRunner(trt_spec(tmp_path, dla_core=0)), QUICK)
    units = {p.name: p.compute_unit for p in result.profile}
    assert units == {"conv1": "GPU", "relu1": "GPU", "{ForeignNode[fc]}": "DLA"}
    assert result.environment["warnings"] == []
    assert result.environment["gpu"]["clocks_locked"] is True


def test_tensorrt_errors_say_what_to_do(fake_gpu: dict[str, Any], tmp_path: Path) -> None:
    out = run_protocol(TensorRTRunner(trt_spec(tmp_path, batch=16)), QUICK)
    assert out.status == "failed" and "outside the engine's profile" in str(out.error)
    assert "[8, 3, 8, 8]" in str(out.error) and "input_shapes" in str(out.error)
    spec = trt_spec(tmp_path)
    Path(spec.model_path).write_bytes(b"an engine from another TensorRT")
    out = run_protocol(TensorRTRunner(spec), QUICK)
    assert out.status == "failed" and "rebuild it on this agent" in str(out.error)


def test_tensorrt_is_registered_and_missing_cuda_python_is_explained(
    fake_gpu: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "tensorrt" in detect_runtimes()  # the fake package is importable
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    monkeypatch.delitem(sys.modules, "cuda.cudart", raising=False)  # fake "cuda" has none
    out = run_protocol(TensorRTRunner(trt_spec(tmp_path)), QUICK)
    assert out.status == "failed" and "pip install 'cuda-python'" in str(out.error)


def _onnx_model(path: Path, inner: int = 64) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((inner, inner), dtype=np.float32), "w"
    )
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Relu", ["y"], ["z"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, inner])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, inner])],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_tensorrt_on_a_real_gpu(tmp_path: Path) -> None:
    try:
        import tensorrt as trt
    except Exception as exc:
        pytest.skip(f"import tensorrt failed ({type(exc).__name__}: {exc}): no TensorRT here")
    try:
        from agents.runners.tensorrt import import_cudart

        import_cudart()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    from agents.measure import run_isolated

    onnx_path = _onnx_model(tmp_path / "tiny.onnx")
    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, trt.Logger(trt.Logger.WARNING))
    assert parser.parse(onnx_path.read_bytes()), parser.get_error(0)
    config = builder.create_builder_config()
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    engine = tmp_path / "tiny.engine"
    engine.write_bytes(bytes(builder.build_serialized_network(network, config)))
    spec = MeasureSpec(
        runtime="tensorrt", model_path=str(engine), model_format="tensorrt",
        inputs=[TensorSpec(name="x", shape=[1, 64], dtype="float32")], settings=QUICK,
    )  # fmt: skip
    result = run_isolated(spec, workdir=tmp_path / "work")
    assert result.status == "succeeded", result.error
    assert result.latency_ms is not None and result.latency_ms.p50 is not None
    assert 0 < result.latency_ms.p50 < 100
    assert result.profile and all(p.compute_unit == "GPU" for p in result.profile)
    env = result.environment
    assert env["tensorrt_version"] == trt.__version__ and env["h2d_included"] is False
    assert env["gpu_memory"]["engine_device_memory_mb"] >= 0
    assert "gpu" in env and isinstance(env["warnings"], list)


# ----------------------------------------------------------------------------- GPU host facts
def test_nvml_device_info_and_registration(
    monkeypatch: pytest.MonkeyPatch, fake_gpu: dict[str, Any]
) -> None:
    info = nvml.device_info(0)
    assert info["source"] == "nvml" and info["name"] == "NVIDIA H100 80GB HBM3"
    assert (info["memory_total_mb"], info["memory_used_mb"]) == (81920, 2048.0)
    assert (info["driver"], info["cuda_version"], info["compute_capability"]) == (
        "550.54.15", "12.4", "9.0",
    )  # fmt: skip
    assert info["clocks"]["sm_mhz"] == 1980 and info["clocks"]["graphics_app_mhz"] == 1410
    assert info["clocks"]["mem_max_mhz"] == 2619
    assert (info["power_limit_w"], info["power_draw_w"]) == (700.0, 113.5)
    assert info["clocks_event_reasons"] == ["sw_power_cap"]
    body = gpu.describe_gpu_host(0, {"rack": "3"})
    assert body["class"] == "gpu" and body["info"]["gpu"]["name"] == info["name"]
    attrs = body["attributes"]
    assert (attrs["gpu"], attrs["compute_capability"], attrs["driver"]) == (
        "NVIDIA H100 80GB HBM3", "9.0", "550.54.15",
    )  # fmt: skip
    assert attrs["rack"] == "3" and attrs["cuda"] == "12.4"
    assert "tensorrt" in body["runtimes"] and "convert:tensorrt" in body["runtimes"]
    assert gpu.tensorrt_handlers(body["runtimes"])["convert"].__name__ == "convert_job"


def test_no_tensorrt_no_convert_target(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    body = gpu.describe_gpu_host(0)
    assert "convert:tensorrt" not in body["runtimes"] and "tensorrt" not in body["runtimes"]
    assert gpu.tensorrt_handlers(body["runtimes"]) == {}


def test_nvidia_smi_fallback_on_the_real_fixture(monkeypatch: pytest.MonkeyPatch) -> None:
    text = read("nvidia-smi", "query-gpu-csv-with-units-driver520-ksysguard-gpu-issue27.txt")
    argvs: list[list[str]] = []

    def run(argv: list[str]) -> str:
        argvs.append(argv)
        if len(argvs) == 1:  # an old driver refuses the full query
            raise RuntimeError('Field "compute_cap" is not a valid field to query.')
        return text

    monkeypatch.setitem(sys.modules, "pynvml", None)  # no nvidia-ml-py: fall back
    info = nvml.device_info(0, run=run)
    assert argvs[0][:3] == ["nvidia-smi", "-i", "0"] and "--format=csv" in argvs[0]
    assert f"--query-gpu={nvml.SMI_BASIC_FIELDS}" in argvs[1]
    last = parse_query_gpu(text)[-1]
    assert info["source"] == "nvidia-smi" and "pynvml" in info["nvml_error"]
    assert info["clocks"]["sm_mhz"] == last["clocks.current.sm"]
    assert info["clocks"]["mem_mhz"] == last["clocks.current.memory"]
    assert info["power_draw_w"] == last["power.draw"] and info["pstate"] == last["pstate"]
    assert info["temperature_c"] == last["temperature.gpu"]
    warnings = nvml.clock_warnings(info)
    assert warnings and "no application clock" in warnings[0]


def test_no_gpu_at_all_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)

    def run(argv: list[str]) -> str:
        raise FileNotFoundError("nvidia-smi")

    info = nvml.device_info(0, run=run)
    assert "pynvml missing" in info["error"] and "nvidia-smi" in info["error"]
    assert nvml.clock_warnings(info)[0].startswith("WARNING: GPU clocks unknown")


def test_gpu_and_jetson_launchers_wire_the_agent(
    fake_gpu: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agents.agent

    started: list[Any] = []
    monkeypatch.setattr(agents.agent, "run_agent", started.append)
    monkeypatch.setenv("LATENCYLAB_AGENT_TOKEN", "t0ken")
    monkeypatch.setenv("LATENCYLAB_GPU_INDEX", "0")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    gpu.main(["--server", "http://coordinator:8000", "--gpu-index", "1", "--name", "h100-a",
              "--data-dir", str(tmp_path)])  # fmt: skip
    agent = started.pop()
    assert (agent.settings.name, agent.settings.device_class) == ("h100-a", "gpu")
    assert agent.settings.cache_dir == tmp_path / "cache" and "convert" in agent.handlers
    assert agent.describe()["attributes"]["gpu_index"] == 1
    assert nvml.nvml_index() == 1  # what the measuring subprocesses will report
    js = _jetson(tmp_path, monkeypatch, "nano-jp4-effex-issue12.txt",
                 "nvpmodel-q-jetson-nano-5W-sudo-jetbot-issue49.txt")  # fmt: skip
    from agents.jetson import main as jetson_main

    jetson_main(["--tegrastats", js.tegrastats, "--nvpmodel", js.nvpmodel, "--interval-ms", "20"])
    agent = started.pop()
    assert agent.settings.device_class == "jetson" and agent.settings.name.endswith("-jetson")
    assert isinstance(agent.measure, JetsonMeasurer) and agent.measure.settings.interval_ms == 20
    assert agent.describe()["attributes"]["nvpmodel"] == "5W" and "convert" in agent.handlers
    monkeypatch.delenv("LATENCYLAB_AGENT_TOKEN")
    with pytest.raises(SystemExit, match="no agent token"):
        gpu.main([])


# ----------------------------------------------------------------------------- Jetson
def test_steady_window_from_phase_events() -> None:
    phases = [(1.0, "load"), (1.5, "first"), (1.6, "warmup"), (2.0, "steady"), (2.5, "steady"),
              (3.1, "steady"), (3.2, "profile")]  # fmt: skip
    assert steady_window(phases, 1.0) == (2.0, 3.0)
    assert steady_window(phases, None) == (2.0, 3.2)
    assert steady_window([(1.0, "load")], 1.0) is None


def _jetson(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lines: str, nvp: str
) -> JetsonSettings:
    monkeypatch.setenv("FAKE_TEGRASTATS_LINES", str(FIXTURES / "tegrastats" / lines))
    monkeypatch.setenv("FAKE_NVPMODEL_OUTPUT", str(FIXTURES / "nvpmodel" / nvp))
    if not (FIXTURES / "tegrastats" / lines).is_file():
        pytest.skip(f"shared fixtures not found at {FIXTURES}")
    return JetsonSettings(str(FAKES / "tegrastats"), 50, str(FAKES / "nvpmodel"), root=tmp_path)


def test_jetson_keeps_only_steady_state_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scripted measurement (no subprocess): 0.4 s setup, 0.6 s steady, 0.4 s profile."""
    js = _jetson(tmp_path, monkeypatch, "nano-jp4-effex-issue12.txt",
                 "nvpmodel-q-jetson-nano-5W-sudo-jetbot-issue49.txt")  # fmt: skip

    def measure(
        spec: MeasureSpec, *, workdir: Path, on_progress: Any, cancel: Any
    ) -> MeasureResult:
        for phase, seconds in (("load", 0.4), ("steady", 0.6), ("profile", 0.4)):
            on_progress({"phase": phase, "runs": 0})
            time.sleep(seconds)
        return MeasureResult(status="succeeded", runs=300, steady_duration_s=0.6)

    js.measure = measure
    r = JetsonMeasurer(js)(trt_spec(tmp_path), workdir=tmp_path)
    ts = r.environment["tegrastats"]
    assert 6 <= ts["steady_samples"] <= 14, ts  # 0.6 s at 50 ms: 12 (fewer on a busy host)
    assert ts["lines"] >= ts["steady_samples"] + 6  # 1.4 s of lines in all, 0.8 s outside
    assert ts["parse_errors"] == [] and ts["error"] is None
    power = r.environment["power"]
    assert power["source"] == "POM_5V_IN" and power["samples"] == ts["steady_samples"]
    assert power["peak_mw"] == 2980.0 and power["min_mw"] == 2746.0  # the two Nano lines
    assert 2746.0 <= power["mean_mw"] <= 2980.0
    assert r.environment["energy_per_inference_mj"] == pytest.approx(
        power["mean_mw"] * 0.6 / 300, rel=1e-4
    )
    assert r.memory["system_ram_used_peak_mb"] == 1464.0
    assert r.environment["nvpmodel"] == {
        "mode_name": "5W",
        "mode_id": 1,
        "errors": [],
        "warnings": [],
    }


@pytest.mark.parametrize(
    ("lines", "source", "ram_mb", "gpu_pct", "temp"),
    [
        ("orin-nano-or-nx-8gb-jetson_stats-issue624.txt", "VDD_IN", 6982.0, 84.0, ("tj", 65.562)),
        ("nano-jp4-effex-issue12.txt", "POM_5V_IN", 1464.0, None, ("PMIC", 50.0)),
    ],
)
def test_jetson_measurer_end_to_end_with_onnxruntime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lines: str, source: str,
    ram_mb: float, gpu_pct: float | None, temp: tuple[str, float],
) -> None:  # fmt: skip
    """A REAL run_isolated onnxruntime measurement on this CPU; tegrastats numbers replayed."""
    pytest.importorskip("onnxruntime", reason="the Jetson end-to-end test measures with ORT")
    js = _jetson(tmp_path, monkeypatch, lines,
                 "nvpmodel-q-jetson-nano-5W-nosudo-errors-jetbot-issue49.txt")  # fmt: skip
    settings = MeasureSettings(warmup_runs=3, min_runs=20, min_duration_s=0.6,
                               max_duration_s=1.5, target_rel_ci=0.001, timeout_s=120)  # fmt: skip
    spec = MeasureSpec(
        runtime="onnxruntime", model_path=str(_onnx_model(tmp_path / "m.onnx")),
        model_format="onnx", inputs=[TensorSpec(name="x", shape=[1, 64], dtype="float32")],
        settings=settings,
    )  # fmt: skip
    events: list[dict[str, Any]] = []
    r = JetsonMeasurer(js)(spec, workdir=tmp_path / "work", on_progress=events.append)
    assert r.status == "succeeded", r.error
    assert {e["phase"] for e in events} >= {"load", "steady", "profile"}  # forwarded
    env, ts = r.environment, r.environment["tegrastats"]
    assert r.steady_duration_s is not None and r.runs > 0
    expected = r.steady_duration_s / 0.05
    assert expected * 0.5 <= ts["steady_samples"] <= expected + 3, ts
    assert ts["lines"] > ts["steady_samples"]  # load/warmup/profile samples were dropped
    assert env["power"]["source"] == source and env["power"]["samples"] == ts["steady_samples"]
    replayed = parse_tegrastats(read("tegrastats", lines))
    values = [s.total_power_mw or 0.0 for s in replayed]
    assert min(values) <= env["power"]["mean_mw"] <= max(values)
    assert env["energy_per_inference_mj"] == pytest.approx(
        env["power"]["mean_mw"] * r.steady_duration_s / r.runs, rel=1e-3
    )
    assert r.memory["system_ram_used_peak_mb"] == ram_mb and "peak_rss_mb" in r.memory
    assert (env["gpu_load_pct"] or {}).get("mean") == gpu_pct or gpu_pct is None
    assert env["temperatures_c"][temp[0]]["peak"] == temp[1]
    nvp = env["nvpmodel"]
    assert (nvp["mode_name"], nvp["mode_id"]) == ("5W", 1) and len(nvp["errors"]) == 2


def test_jetson_missing_tegrastats_still_measures(tmp_path: Path) -> None:
    js = JetsonSettings(str(tmp_path / "no-tegrastats"), 50, str(tmp_path / "no-nvpmodel"))
    js.measure = lambda spec, **kw: MeasureResult(status="succeeded", runs=1, steady_duration_s=1)
    r = JetsonMeasurer(js)(trt_spec(tmp_path), workdir=tmp_path)
    assert r.status == "succeeded" and "cannot start" in r.environment["tegrastats"]["error"]
    assert "nvpmodel -q" in r.environment["nvpmodel"]["error"] and "power" not in r.environment


def test_describe_jetson(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    js = _jetson(tmp_path, monkeypatch, "nano-jp4-effex-issue12.txt",
                 "nvpmodel-q-jetson-thor-MAXN-jetpack-nixos-pr460.txt")  # fmt: skip
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/model").write_bytes(b"NVIDIA Jetson AGX Thor Developer Kit\0")
    (tmp_path / "etc").mkdir()
    # the L4T release file's layout (values made up for this test, not a fixture)
    (tmp_path / "etc/nv_tegra_release").write_text(
        "# R38 (release), REVISION: 2.0, GCID: 1, BOARD: generic, EABI: aarch64, DATE: x\n"
    )
    body = describe_jetson(js, {"lab": "b"})
    assert body["class"] == "jetson" and body["info"]["nvpmodel"]["mode_id"] == 0
    attrs = body["attributes"]
    assert attrs["nvpmodel"] == "MAXN" and attrs["l4t"] == "38.2.0" and attrs["lab"] == "b"
    assert attrs["soc"] == "NVIDIA Jetson AGX Thor Developer Kit"


# ----------------------------------------------------------------------------- CoreML
def _coreml_spec(path: Path, units: str = "ALL") -> MeasureSpec:
    return MeasureSpec(
        runtime="coreml", model_path=str(path), model_format="mlpackage",
        inputs=[TensorSpec(name="x", shape=[1, 8], dtype="float32")], settings=QUICK,
        options={"compute_units": units},
    )  # fmt: skip


@pytest.mark.skipif(platform.system() == "Darwin", reason="checks the error off macOS")
def test_coreml_off_macos_fails_clearly(tmp_path: Path) -> None:
    out = run_protocol(CoreMLRunner(_coreml_spec(tmp_path / "m.mlpackage")), QUICK)
    assert out.status == "failed"
    assert f"CoreML predictions need macOS; this agent runs {platform.system()}" in str(out.error)
    assert out.environment["compute_units"] == "ALL" and out.environment["macos_version"] is None
    with pytest.raises(ValueError, match="CPU_AND_NE"):
        CoreMLRunner(_coreml_spec(tmp_path / "m.mlpackage", units="NPU"))


def test_coreml_registered_but_advertised_only_on_macos() -> None:
    assert "coreml" in REGISTRY
    assert ("coreml" in detect_runtimes()) == (platform.system() == "Darwin")


@pytest.mark.coreml
@pytest.mark.skipif(platform.system() != "Darwin", reason="CoreML predictions need macOS")
@pytest.mark.parametrize("units", ["CPU_ONLY", "ALL"])
def test_coreml_on_a_mac(tmp_path: Path, units: str) -> None:
    ct = pytest.importorskip("coremltools", reason="pip install 'latencylab[coreml]'")
    torch = pytest.importorskip("torch", reason="the test model is converted from torch")
    traced = torch.jit.trace(torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU()).eval(),
                             torch.zeros(1, 8))  # fmt: skip
    model = ct.convert(traced, inputs=[ct.TensorType(name="x", shape=(1, 8))],
                       convert_to="mlprogram")  # fmt: skip
    model.save(str(tmp_path / "m.mlpackage"))
    r = run_protocol(CoreMLRunner(_coreml_spec(tmp_path / "m.mlpackage", units)), QUICK)
    assert r.status == "succeeded", r.error
    assert r.latency_ms is not None and r.latency_ms.mean > 0 and r.runs >= QUICK.min_runs
    assert r.environment["compute_units"] == units and r.environment["macos_version"]
    assert r.environment["chip"] and r.load_ms and r.first_inference_ms
