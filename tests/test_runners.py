"""TFLite, OpenVINO and PyTorch runners end to end through ``run_isolated``; models built once:
a conv net -> NHWC ``.tflite`` (litert-torch), ``bench.models`` ONNX, a dynamic-batch ``.pt2``."""

from __future__ import annotations

import importlib.util
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import agents.runners as runners
from agents.measure import run_isolated
from agents.measure.protocol import STOP_REASONS
from bench import models
from latencylab.runtime_options import DelegateLibrary, HostTools
from latencylab.schemas import MeasureResult, MeasureSettings, MeasureSpec, TensorSpec

REPO = Path(__file__).resolve().parents[1]
SMALL = {
    "warmup_runs": 3,
    "min_runs": 20,
    "min_duration_s": 0.2,
    "max_duration_s": 2.0,
    "target_rel_ci": 0.02,
    "timeout_s": 120,
}
NEW_RUNTIMES = {"tflite": "ai_edge_litert", "openvino": "openvino", "pytorch": "torch"}


def _need(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed in this environment")


# --------------------------------------------------------------------------- models
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runner-models")


def nhwc_tflite(layers: Any, nhwc_shape: list[int], path: Path) -> Path:
    """A seeded NCHW torch net (a callable returning its layers) as an NHWC ``.tflite``,
    converted with litert-torch."""
    _need("ai_edge_litert")
    _need("litert_torch")
    import litert_torch
    import torch

    torch.manual_seed(0)
    net = layers().eval()
    nhwc = litert_torch.to_channel_last_io(net, args=[0])
    litert_torch.convert(nhwc, (torch.randn(*nhwc_shape),)).export(str(path))
    return path


@pytest.fixture(scope="module")
def tflite_model(model_dir: Path) -> Path:
    def layers() -> Any:
        from torch import nn

        return nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(16, 10),
        )

    return nhwc_tflite(layers, [1, 32, 32, 3], model_dir / "convnet.tflite")


@pytest.fixture(scope="module")
def onnx_convnet(model_dir: Path) -> Path:
    return models.save(
        models.mobilenet_v2_like(resolution=64, width=0.5, classes=10), model_dir / "mbv2.onnx"
    )


@pytest.fixture(scope="module")
def onnx_mlp(model_dir: Path) -> Path:
    return models.save(models.mlp(features=64, hidden=128), model_dir / "mlp.onnx")


@pytest.fixture(scope="module")
def pt2_model(model_dir: Path) -> Path:
    _need("torch")
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)).eval()
    batch = torch.export.Dim("batch")
    program = torch.export.export(net, (torch.randn(2, 64),), dynamic_shapes=({0: batch},))
    path = model_dir / "mlp.pt2"
    torch.export.save(program, str(path))
    return path


def _spec(runtime: str, model: Path, fmt: str, **kw: Any) -> MeasureSpec:
    settings = MeasureSettings(**{**SMALL, **kw.pop("settings", {})})
    return MeasureSpec(
        runtime=runtime,
        model_path=str(model),
        model_format=fmt,
        inputs=kw.pop("inputs", []),
        settings=settings,
        **kw,
    )


def _check(r: MeasureResult, runtime: str) -> None:
    assert r.status == "succeeded", r.error
    lat = r.latency_ms
    assert lat is not None
    assert 0 < lat.min <= lat.p50 <= lat.p90 <= lat.p99 <= lat.max
    assert r.runs >= SMALL["min_runs"] and len(r.times_ms) == r.runs
    assert r.stop_reason in STOP_REASONS
    assert r.load_ms is not None and r.first_inference_ms is not None
    assert r.environment["runtime"] == runtime and r.environment["runtime_version"]
    assert r.environment["threads_requested"] == 1
    assert "runner_environment_error" not in r.environment


# --------------------------------------------------------------------------- registry
def test_detect_runtimes_advertises_the_new_runtimes() -> None:
    found = runners.detect_runtimes()
    for name, module in NEW_RUNTIMES.items():
        if importlib.util.find_spec(module) is not None:
            assert found.get(name, "unknown") != "unknown", found
            assert runners.get_runner(name).runtime_name == name
    code = (
        "import sys, agents.runners as r; r.detect_runtimes(); "
        "print([m for m in ('torch', 'openvino', 'ai_edge_litert') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", "detect_runtimes must not import the runtimes"


# --------------------------------------------------------------------------- TFLite
def test_tflite_end_to_end_xnnpack_with_batch_resize(tflite_model: Path, tmp_path: Path) -> None:
    r = run_isolated(_spec("tflite", tflite_model, "tflite", batch_size=2), workdir=tmp_path)
    _check(r, "tflite")
    env = r.environment
    assert env["delegate"] == "xnnpack" and env["xnnpack_applied"] is True
    assert env["num_threads"] == 1
    assert env["inputs"][0]["shape"] == [2, 32, 32, 3]  # NHWC, from the interpreter, resized
    assert env["resized_inputs"] == [env["inputs"][0]["name"]]
    if env.get("profile_note", "").startswith("no per-layer profile"):
        assert r.profile == []


def test_tflite_without_default_delegate(tflite_model: Path, tmp_path: Path) -> None:
    spec = _spec(
        "tflite", tflite_model, "tflite", options={"delegate": "none"}, settings={"profile": False}
    )
    r = run_isolated(spec, workdir=tmp_path)
    _check(r, "tflite")
    assert r.environment["xnnpack_applied"] is False
    assert r.environment["delegate_partitions"] == 0


def test_tflite_missing_gpu_delegate_is_clear(tflite_model: Path, tmp_path: Path) -> None:
    spec = _spec("tflite", tflite_model, "tflite", options={"delegate": "gpu"})
    r = run_isolated(spec, workdir=tmp_path)
    assert r.status == "failed" and r.error is not None
    assert r.error.startswith("load failed: RuntimeError: TFLite delegate 'gpu' is not available")
    assert "LATENCYLAB_AGENT_DELEGATES" in r.error and "'xnnpack'" in r.error


def test_tflite_delegate_names_only_what_the_operator_configured(
    tflite_model: Path, tmp_path: Path
) -> None:
    """A delegate is a name; the library behind it comes from the agent's own settings."""
    spec = _spec("tflite", tflite_model, "tflite", options={"delegate": "hexagon"})
    r = run_isolated(spec, workdir=tmp_path)
    assert r.status == "failed" and r.error is not None
    assert "'hexagon' is not configured on this agent" in r.error
    # configured by the operator: the library is dlopen'ed (and here fails to load, clearly)
    lib = tmp_path / "libnot_a_delegate.so"
    lib.write_bytes(b"not an ELF file")
    host = HostTools(delegates={"hexagon": DelegateLibrary(library=str(lib))})
    spec = _spec("tflite", tflite_model, "tflite", options={"delegate": "hexagon"}, host=host)
    r = run_isolated(spec, workdir=tmp_path)
    assert r.status == "failed" and r.error is not None
    assert "'hexagon' is not available on this device" in r.error and str(tmp_path) not in r.error


def test_tflite_rejects_a_non_tflite_file(onnx_mlp: Path) -> None:
    _need("ai_edge_litert")
    from agents.runners.tflite import TFLiteRunner

    with pytest.raises(ValueError, match=r"not a TFLite flatbuffer.*needs a \.tflite model"):
        TFLiteRunner(_spec("tflite", onnx_mlp, "onnx")).__enter__()


FAKE_PROFILE = """\
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
Operator-wise Profiling Info for Regular Benchmark Runs:
============================== Run Order ==============================
\t             [node type]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]
\t     Convolution (NHWC, F32) IGEMM\t    0.050\t    0.040\t 40.000%\t 40.000%\t     0.000\t        1\t[conv1]:0
\t     Convolution (NHWC, F32) IGEMM\t    0.070\t    0.060\t 60.000%\t100.000%\t     0.000\t        1\t[conv2]:1
"""


def test_tflite_profile_uses_benchmark_model_tool(tflite_model: Path, tmp_path: Path) -> None:
    from agents.runners.tflite import TFLiteRunner

    args = tmp_path / "args.txt"
    (tmp_path / "out.txt").write_text(FAKE_PROFILE)
    tool = tmp_path / "benchmark_model"
    tool.write_text(f'#!/bin/sh\necho "$@" > "{args}"\ncat "{tmp_path / "out.txt"}"\n')
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    spec = _spec(
        "tflite",
        tflite_model,
        "tflite",
        batch_size=2,
        host=HostTools(tflite_benchmark_model=str(tool)),
    )
    with TFLiteRunner(spec) as runner:
        feeds = runner.prepare_inputs(0)
        assert runner.timed_infer(feeds) > 0
        layers = runner.profile(feeds, 7)
        env = runner.environment()
    assert [(p.name, p.time_ms, p.compute_unit) for p in layers] == [
        ("conv1", 0.04, "XNNPACK"),
        ("conv2", 0.06, "XNNPACK"),
    ]
    called = args.read_text().split()
    assert f"--graph={tflite_model}" in called and "--enable_op_profiling=true" in called
    assert "--num_runs=7" in called and "--num_threads=1" in called
    assert "--input_layer_shape=2,32,32,3" in called
    assert "benchmark_model" in env["profile_note"]


# --------------------------------------------------------------------------- OpenVINO
def test_openvino_end_to_end_records_precision_and_profile(
    onnx_convnet: Path, tmp_path: Path
) -> None:
    _need("openvino")
    r = run_isolated(_spec("openvino", onnx_convnet, "onnx"), workdir=tmp_path)
    _check(r, "openvino")
    env = r.environment
    assert env["requested_properties"]["INFERENCE_PRECISION_HINT"] == "f32"
    assert env["inference_precision_hint"] == "f32"  # read back from the compiled model
    assert env["inference_num_threads"] == 1 and env["performance_hint"] == "LATENCY"
    assert env["full_device_name"] and env["device"] == "CPU"
    assert r.profile, env.get("profile_error")
    assert {"Convolution", "GroupConvolution"} & {p.type for p in r.profile}
    assert all(p.time_ms >= 0 and p.compute_unit for p in r.profile)


def test_openvino_dynamic_batch_and_fp16_hint(onnx_mlp: Path) -> None:
    _need("openvino")
    from agents.runners.openvino import OpenVinoRunner

    spec = _spec("openvino", onnx_mlp, "onnx", batch_size=3, precision="fp16")
    with OpenVinoRunner(spec) as runner:
        assert runner.timed_infer(runner.prepare_inputs(0)) > 0
        env = runner.environment()
    assert env["inputs"] == [{"name": "x", "shape": [3, 64]}]
    assert env["requested_properties"]["INFERENCE_PRECISION_HINT"] == "f16"
    granted = env["inference_precision_hint"]  # what the device granted (bf16 on some CPUs)
    assert granted in ("f16", "f32", "bf16")
    assert ("precision_note" in env) == (granted != "f16")


def test_openvino_missing_device_is_clear(onnx_mlp: Path, tmp_path: Path) -> None:
    _need("openvino")
    import openvino as ov

    if "GPU" in ov.Core().available_devices:
        pytest.skip("this machine has an OpenVINO GPU device")
    spec = _spec("openvino", onnx_mlp, "onnx", options={"device": "GPU"})
    r = run_isolated(spec, workdir=tmp_path)
    assert r.status == "failed" and r.error is not None
    assert "OpenVINO device 'GPU' is not available on this machine" in r.error
    assert "options.device" in r.error


# --------------------------------------------------------------------------- PyTorch
def test_pytorch_end_to_end_pt2(pt2_model: Path, tmp_path: Path) -> None:
    r = run_isolated(_spec("pytorch", pt2_model, "pt2", batch_size=4), workdir=tmp_path)
    _check(r, "pytorch")
    env = r.environment
    assert env["num_threads"] == 1 and env["device"] == "cpu" and env["model_format"] == "pt2"
    assert r.profile, env.get("profile_error")
    assert {"linear.default", "relu.default"} <= {p.type for p in r.profile}


def test_pytorch_missing_cuda_is_clear(pt2_model: Path) -> None:
    import torch

    from agents.runners.pytorch import PyTorchRunner

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here; the CUDA path is measured instead")
    spec = _spec("pytorch", pt2_model, "pt2", options={"device": "cuda"})
    with pytest.raises(RuntimeError, match=r"sees no CUDA GPU.*options\.device='cpu'"):
        PyTorchRunner(spec).__enter__()


def test_pytorch_onnx_through_onnx2torch(onnx_mlp: Path) -> None:
    from agents.runners.pytorch import PyTorchRunner

    inputs = [TensorSpec(name="x", shape=["N", 64], dtype="float32")]
    spec = _spec("pytorch", onnx_mlp, "onnx", inputs=inputs, batch_size=2)
    if importlib.util.find_spec("onnx2torch") is None:
        with pytest.raises(RuntimeError, match=r"needs onnx2torch.*upload a torch\.export \.pt2"):
            PyTorchRunner(spec).__enter__()
        return
    with PyTorchRunner(spec) as runner:
        assert runner.timed_infer(runner.prepare_inputs(0)) > 0
    r = run_isolated(spec, workdir=onnx_mlp.parent / "pt-onnx")  # end to end, like an agent
    assert r.status == "succeeded", r.error
    assert r.latency_ms is not None and r.runs >= spec.settings.min_runs


def test_pytorch_rejects_unknown_format(tmp_path: Path) -> None:
    from agents.runners.pytorch import PyTorchRunner

    model = tmp_path / "m.tflite"
    model.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"torch\.export programs \(\.pt2"):
        PyTorchRunner(_spec("pytorch", model, "tflite")).__enter__()
