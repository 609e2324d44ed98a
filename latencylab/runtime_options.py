"""Typed, closed runtime options: what a caller may put in ``targets[].options``.

One model per runtime, ``extra="forbid"``: an unknown key is a 422 naming it. Nothing here is
a path, a library or a program: a delegate or a tool is chosen by the agent's operator (agent
settings map names to paths, see ``agents.config.AgentSettings.delegates``); a caller only
names it. The coordinator validates targets with these models, and every runner parses its
options with the same model again before it uses them. Which model is a runtime's is declared
with the runtime (``latencylab.runtimes``: ``parse_options``, ``normalized_options``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Name = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00]+$")]
Dim = Annotated[int, Field(ge=1, le=1 << 31)]
DelegateName = Annotated[
    str,
    StringConstraints(to_lower=True, pattern=r"^(?i:[a-z0-9][a-z0-9_-]{0,31})$"),
    Field(description="A delegate name: 'xnnpack', 'none', 'gpu', or one the agent configures"),
]
Scalar = str | int | float | bool


class RuntimeOptions(BaseModel):
    """Options every runtime understands."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    input_shapes: dict[Name, list[Dim]] | None = Field(
        None, description="{input name: shape} overriding the model's (dynamic) input shapes"
    )
    profile_iterations: int | None = Field(
        None, ge=0, le=10_000, description="Iterations of the per-layer profile (0 = none)"
    )
    cooldown_s: float | None = Field(
        None, ge=0, le=3600, description="Phones: fixed cool-down before the run"
    )
    max_temp_c: float | None = Field(
        None, ge=0, le=150, description="Phones: wait until the SoC is this cool"
    )
    cooldown_timeout_s: float | None = Field(
        None, ge=0, le=7200, description="Phones: longest cool-down wait"
    )
    gpu_index: int | None = Field(None, ge=0, le=255, description="GPU hosts: NVML index")


ORT_PROVIDERS = Literal[
    "CPUExecutionProvider",
    "CUDAExecutionProvider",
    "TensorrtExecutionProvider",
    "OpenVINOExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
    "XnnpackExecutionProvider",
    "QNNExecutionProvider",
    "ROCMExecutionProvider",
]
ORT_PROVIDER_KEYS = Literal[
    "device_id",
    "gpu_mem_limit",
    "arena_extend_strategy",
    "cudnn_conv_algo_search",
    "do_copy_in_default_stream",
    "enable_cuda_graph",
    "use_tf32",
    "trt_fp16_enable",
    "trt_int8_enable",
    "trt_max_workspace_size",
    "trt_builder_optimization_level",
    "trt_engine_cache_enable",
    "trt_timing_cache_enable",
    "device_type",
    "precision",
    "num_of_threads",
    "intra_op_num_threads",
]
"""Provider options that set numbers and switches (no path-valued option is accepted)."""


class OnnxRuntimeOptions(RuntimeOptions):
    providers: list[ORT_PROVIDERS] | None = Field(
        None, min_length=1, description="Execution providers in order (default CPU)"
    )
    provider_options: list[dict[ORT_PROVIDER_KEYS, Scalar]] | None = Field(
        None, description="One dict per provider: numeric/switch options only"
    )


CpuMask = Annotated[str, StringConstraints(pattern=r"^(?i:all|none|(0x)?[0-9a-f]{1,16})$")]


class TFLiteOptions(RuntimeOptions):
    delegate: DelegateName | None = Field(
        None, description="'xnnpack' (default), 'none', 'gpu' or a delegate the agent names"
    )
    cpu_mask: CpuMask | None = Field(
        None, description="Phones: taskset hex mask such as 'f0', or 'all'"
    )


OPENVINO_KEYS = Literal[
    "PERFORMANCE_HINT",
    "INFERENCE_PRECISION_HINT",
    "INFERENCE_NUM_THREADS",
    "NUM_STREAMS",
    "ENABLE_CPU_PINNING",
    "ENABLE_HYPER_THREADING",
    "SCHEDULING_CORE_TYPE",
    "EXECUTION_MODE_HINT",
    "PERFORMANCE_HINT_NUM_REQUESTS",
]
"""Compile properties a caller may set (CACHE_DIR and other path-valued ones are not)."""


class OpenVinoOptions(RuntimeOptions):
    device: (
        Annotated[str, StringConstraints(pattern=r"^[A-Z]+(\.[0-9]+)?(:[A-Z0-9.,]+)?$")] | None
    ) = Field(None, description="OpenVINO device: CPU (default), GPU, GPU.1, NPU, AUTO:GPU,CPU")
    config: dict[OPENVINO_KEYS, Scalar] | None = Field(None, description="Compile properties")


class PyTorchOptions(RuntimeOptions):
    device: Annotated[str, StringConstraints(pattern=r"^(cpu|cuda(:[0-9]{1,2})?|mps)$")] | None = (
        Field(None, description="cpu (default), cuda, cuda:N or mps")
    )
    timer: Literal["cuda_events", "sync"] | None = Field(None, description="CUDA timer")


class TensorRTOptions(RuntimeOptions):
    include_transfers: bool | None = Field(None, description="Time H2D/D2H copies too")
    dla_core: int | None = Field(None, ge=0, le=7, description="Jetson DLA core")
    cuda_device: int | None = Field(None, ge=0, le=255, description="CUDA ordinal")


class CoreMLOptions(RuntimeOptions):
    compute_units: Literal["ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE"] | None = None


class ExecuTorchOptions(RuntimeOptions):
    """The .pte fixes its backends (XNNPACK partitions, portable kernels); threads come from
    the target's ``threads`` (the runtime's threadpool size)."""

    cpu_mask: CpuMask | None = Field(
        None, description="Phones: taskset hex mask such as 'f0', or 'all'"
    )


class DelegateLibrary(BaseModel):
    """An external delegate the agent's operator installed: its library and fixed options."""

    model_config = ConfigDict(extra="forbid")

    library: str = Field(description="Path or soname of the delegate library (dlopen'ed)")
    options: dict[str, Scalar] = Field(default_factory=dict, description="Delegate options")


class HostTools(BaseModel):
    """What the agent's operator configured on this host (never from a caller's request)."""

    model_config = ConfigDict(extra="forbid")

    delegates: dict[str, DelegateLibrary] = Field(
        default_factory=dict, description="Delegate name -> library, e.g. gpu, nnapi, qnn"
    )
    tflite_benchmark_model: str | None = Field(
        None, description="The C++ benchmark_model tool for TFLite op profiles"
    )


class OptionsError(ValueError):
    """Options that the runtime's model refuses; the message names each offending key."""
