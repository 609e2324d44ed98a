"""Wire schemas shared by the coordinator, the agents, the SDK and the CLI.

Light imports only (pydantic). Field names here are the public contract
(``../shared/contract.md``): add fields freely, never rename or remove.
All times are milliseconds unless a field name says otherwise; sizes are bytes
unless the name says ``_mb``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from latencylab.conversions import ConversionTask

Runtime = Literal["onnxruntime", "tflite", "coreml", "tensorrt", "openvino", "pytorch"]
RUNTIMES: tuple[str, ...] = ("onnxruntime", "tflite", "coreml", "tensorrt", "openvino", "pytorch")
Precision = Literal["fp32", "fp16", "int8"]
JobStatus = Literal["waiting", "queued", "running", "succeeded", "failed"]
"""``waiting``: a benchmark job whose artifact is still being converted."""
BenchmarkStatus = Literal["queued", "running", "succeeded", "partial", "failed"]
Scope = Literal["admin", "user", "agent"]


def _as_utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


UTCDateTime = Annotated[datetime, AfterValidator(_as_utc)]
"""Stored as naive UTC; always sent with its time zone."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


# --------------------------------------------------------------------------- models
class TensorSpec(_Model):
    name: str
    shape: list[int | str | None] = Field(description="Dimensions; a string or null is symbolic")
    dtype: str


class ModelPublic(_Model):
    id: int
    name: str
    kind: str = Field("user", description="user | block | network (generated for tables)")
    format: str
    sha256: str
    size: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    opset: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: UTCDateTime | None = None


# --------------------------------------------------------------------------- measurement
class MeasureSettings(_Model):
    """How a steady state is measured (the stopping rule of the protocol)."""

    warmup_runs: int = Field(10, ge=0, le=10_000, description="Iterations run and discarded")
    min_runs: int = Field(50, ge=1, le=1_000_000, description="Steady-state iterations at least")
    max_runs: int = Field(100_000, ge=1, le=1_000_000, description="Hard cap on iterations")
    min_duration_s: float = Field(1.0, ge=0, le=3600, description="Steady state lasts at least")
    max_duration_s: float = Field(30.0, gt=0, le=3600, description="Steady state lasts at most")
    target_rel_ci: float = Field(
        0.01, gt=0, le=1, description="Stop once the 95% CI of the median is within ±this share"
    )
    timeout_s: float = Field(
        600.0, gt=0, le=7200, description="Kill the measuring subprocess after this long"
    )
    profile: bool = Field(
        True, description="Run a separate per-layer profiling pass after the steady state"
    )
    seed: int = Field(0, description="Seed of the random input tensors")


class Target(_Model):
    runtime: Runtime
    device: str = Field("local", description="'local', a device name, or 'key:value' attributes")
    precision: Precision = "fp32"
    batch_size: int = Field(1, ge=1, le=4096)
    threads: int = Field(1, ge=0, le=1024, description="Intra-op threads; 0 = runtime default")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Runtime/device options, e.g. {'delegate': 'gpu'} (TFLite), "
        "{'device': 'GPU'} (OpenVINO), {'cpu_mask': 'f0', 'cooldown_s': 30} (phones)",
    )


class MeasureSpec(_Model):
    """What the agent hands to a fresh measuring subprocess."""

    runtime: str
    model_path: str
    model_format: str
    inputs: list[TensorSpec]
    precision: str = "fp32"
    batch_size: int = 1
    threads: int = 1
    settings: MeasureSettings = Field(default_factory=MeasureSettings)
    options: dict[str, Any] = Field(default_factory=dict, description="Runtime-specific options")


class LatencyStats(_Model):
    """Statistics of the steady-state iteration times (ms).

    Measured locally every field is set from the raw times. A device tool that prints only
    aggregates (TFLite ``benchmark_model`` on a phone) leaves what it did not print as null;
    nothing is estimated.
    """

    min: float | None
    mean: float
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None
    max: float | None
    std: float | None
    cov: float | None = Field(None, description="Coefficient of variation: std / mean")
    ci95_low: float | None = Field(None, description="95% CI of the median, lower bound")
    ci95_high: float | None = None
    outliers_low: int = 0
    outliers_high: int = 0


class LayerProfile(_Model):
    name: str
    type: str | None = None
    time_ms: float
    compute_unit: str | None = None


class MeasureResult(_Model):
    """What the measuring subprocess returns (and the agent reports)."""

    status: Literal["succeeded", "failed"]
    error: str | None = None
    latency_ms: LatencyStats | None = None
    runs: int = 0
    stop_reason: str | None = Field(
        None, description="ci_converged | max_duration | max_runs: which rule ended steady state"
    )
    steady_duration_s: float | None = None
    load_ms: float | None = None
    first_inference_ms: float | None = None
    warmup_ms: list[float] = Field(default_factory=list)
    times_ms: list[float] = Field(default_factory=list)
    memory: dict[str, float] = Field(default_factory=dict)
    environment: dict[str, Any] = Field(default_factory=dict)
    profile: list[LayerProfile] = Field(default_factory=list)


# --------------------------------------------------------------------------- benchmarks
class BenchmarkCreate(_Model):
    model_id: int
    targets: list[Target] = Field(min_length=1, max_length=64)
    settings: MeasureSettings = Field(default_factory=MeasureSettings)


class JobPublic(_Model):
    id: int
    kind: str
    status: JobStatus
    runtime: str
    device: str = Field(description="The device selector of the target")
    device_name: str | None = Field(None, description="The device holding or that ran the job")
    precision: str
    batch_size: int
    threads: int
    attempts: int
    progress: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    candidates: list[str] = Field(
        default_factory=list, description="Registered devices that could take this job"
    )


class ResultPublic(_Model):
    id: int
    job_id: int
    runtime: str
    device: str = Field(description="Name of the device that measured")
    precision: str
    batch_size: int
    threads: int
    status: str
    error: str | None = None
    latency_ms: LatencyStats | None = None
    runs: int = 0
    stop_reason: str | None = None
    steady_duration_s: float | None = None
    load_ms: float | None = None
    first_inference_ms: float | None = None
    memory: dict[str, Any] = Field(default_factory=dict)
    environment: dict[str, Any] = Field(default_factory=dict)


class BenchmarkPublic(_Model):
    id: int
    model_id: int
    status: BenchmarkStatus
    settings: dict[str, Any] = Field(default_factory=dict)
    jobs: list[JobPublic] = Field(default_factory=list)
    results: list[ResultPublic] = Field(default_factory=list)
    created_at: UTCDateTime | None = None


class RawTimes(_Model):
    times_ms: list[float]
    warmup_ms: list[float] = Field(default_factory=list)


class ProfilePublic(_Model):
    layers: list[LayerProfile]


# --------------------------------------------------------------------------- devices / agents
class DeviceRegister(_Model):
    name: str = Field(min_length=1, max_length=200)
    device_class: str = Field("cpu", alias="class", description="cpu | gpu | jetson | phone | mac")
    runtimes: dict[str, str] = Field(default_factory=dict, description="runtime → version")
    attributes: dict[str, Any] = Field(default_factory=dict)
    info: dict[str, Any] = Field(
        default_factory=dict, description="CPU model, cores, OS, memory: shown, not matched"
    )

    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class DevicePublic(_Model):
    id: int
    name: str
    device_class: str = Field(alias="class")
    status: Literal["online", "offline"]
    runtimes: dict[str, str]
    attributes: dict[str, Any]
    info: dict[str, Any] = Field(default_factory=dict)
    last_seen: UTCDateTime
    current_job: int | None = None
    queue_depth: int = 0

    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class Heartbeat(_Model):
    job_id: int | None = None
    progress: dict[str, Any] = Field(default_factory=dict)


class LeasedJob(_Model):
    id: int
    kind: str
    runtime: str
    precision: str
    batch_size: int
    threads: int
    settings: MeasureSettings
    model: ModelPublic
    artifact_sha256: str
    artifact_format: str | None = Field(
        None, description="Format of the artifact to run (the model's own, or a conversion's)"
    )
    lease_expires_at: UTCDateTime
    attempt: int
    artifact_metadata: dict[str, Any] = Field(
        default_factory=dict, description="A converted artifact's metadata (layout, I/O names)"
    )
    options: dict[str, Any] = Field(default_factory=dict, description="The target's options")
    conversion: ConversionTask | None = Field(None, description="Set for kind 'convert'")


class JobReport(_Model):
    """An agent's report: the measurement, or a failure before measuring (download, …)."""

    result: MeasureResult


# --------------------------------------------------------------------------- tokens / health
class TokenCreate(_Model):
    scope: Scope = "user"
    name: str = Field("", max_length=200)


class TokenPublic(_Model):
    id: int
    name: str
    scope: Scope
    prefix: str
    created_at: UTCDateTime
    token: str | None = Field(None, description="The secret; shown only once, at creation")


class Health(_Model):
    status: Literal["ok"]
    version: str
    database: str
