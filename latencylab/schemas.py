"""Wire schemas shared by the coordinator, the agents, the SDK and the CLI.

Light imports only (pydantic). Field names here are the public contract
(``../shared/contract.md``): add fields freely, never rename or remove.
All times are milliseconds unless a field name says otherwise; sizes are bytes
unless the name says ``_mb``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from latencylab.conversions import ConversionTask
from latencylab.fields import Id, JsonObject, RequestModel, Seed, StrMap, Text
from latencylab.quality import QualityFlag, RepeatsSummary
from latencylab.runtime_options import HostTools
from latencylab.runtimes import RUNTIMES as DECLARED_RUNTIMES
from latencylab.runtimes import normalized_options
from latencylab.status import JobStatus

# The runtime names are those declared in latencylab.runtimes (one place); to type checkers
# a runtime is a str, to pydantic (validation, the OpenAPI enum) the Literal of those names.
if TYPE_CHECKING:
    Runtime = str
else:
    Runtime = Literal[DECLARED_RUNTIMES.names]
RUNTIMES: tuple[str, ...] = DECLARED_RUNTIMES.names
Precision = Literal["fp32", "fp16", "int8"]
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


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


_NO_NUL = AfterValidator(_no_nul)
MetricName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64), _NO_NUL
]
Tag = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), _NO_NUL
]
ModelName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), _NO_NUL
]
FIXED_METADATA = ("accuracy", "tags", "input_shapes")
"""Metadata keys a ``ModelUpdate.metadata`` merge may not touch (they have fields of their own,
or, ``input_shapes``, were applied to the model's inputs at upload)."""


class ModelUpdate(RequestModel):
    """``PATCH /api/v1/models/{id}``: only the fields given change.

    ``name`` renames (it cannot be null). ``accuracy`` replaces ``metadata.accuracy`` as a
    whole (finite numbers only; null removes it, so the model leaves the Pareto page);
    ``tags`` replaces ``metadata.tags`` (null removes them). ``metadata`` is merged into the
    stored metadata key by key: a value replaces that key, null removes it; ``accuracy``,
    ``tags`` and ``input_shapes`` cannot be set through it."""

    name: ModelName | None = Field(None, description="New display name (1-200 characters)")
    accuracy: dict[MetricName, Annotated[float, Strict()]] | None = Field(
        None, max_length=64, description='Metric → value, e.g. {"top1": 75.3}; null removes'
    )
    tags: list[Tag] | None = Field(None, max_length=256, description="Replaces the tags")
    metadata: JsonObject | None = Field(
        None, description="Merged key by key into the metadata; a null value removes the key"
    )

    @model_validator(mode="after")
    def _consistent(self) -> ModelUpdate:
        if "name" in self.model_fields_set and self.name is None:
            raise ValueError("name cannot be null: give a new name or leave the field out")
        if "metadata" in self.model_fields_set and self.metadata is None:
            raise ValueError("metadata cannot be null: give an object of keys to change")
        fixed = sorted(set(self.metadata or {}) & set(FIXED_METADATA))
        if fixed:
            raise ValueError(
                f"metadata.{fixed[0]} cannot be changed through metadata: "
                + (
                    "it was applied to the model's inputs at upload; upload the model again"
                    if fixed[0] == "input_shapes"
                    else f"use the top-level '{fixed[0]}' field"
                )
            )
        return self


class GcReport(_Model):
    """What a garbage collection of the artifact store freed."""

    artifacts_deleted: int = Field(description="Artifact rows deleted with their files")
    files_deleted: int = Field(
        description="Files deleted: those of deleted rows, of artifacts only finished or "
        "deleted things refer to (row kept, marked purged) and files no row knew"
    )
    bytes_freed: int = Field(description="Bytes of the files deleted")


# --------------------------------------------------------------------------- measurement
class MeasureSettings(RequestModel):
    """How a steady state is measured (the stopping rule of the protocol).

    Unknown fields, non-finite numbers and contradictions (``min_runs`` above ``max_runs``,
    ``min_duration_s`` above ``max_duration_s``) are refused."""

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
    seed: Seed = Field(0, description="Seed of the random input tensors (0 to 2^32-1)")
    repeats: int = Field(
        1,
        ge=1,
        le=20,
        description="Measure the steady state in this many independent fresh processes "
        "(timeout_s applies to each); the result pools their raw times and reports the "
        "between-run spread and a 95% CI of the median across runs. 1: the CI covers the "
        "variation within one process only",
    )

    @model_validator(mode="after")
    def _consistent(self) -> MeasureSettings:
        if self.min_runs > self.max_runs:
            raise PydanticCustomError(
                "inconsistent_settings",
                f"min_runs ({self.min_runs}) is above max_runs ({self.max_runs})",
            )
        if self.min_duration_s > self.max_duration_s:
            raise PydanticCustomError(
                "inconsistent_settings",
                f"min_duration_s ({self.min_duration_s:g}) is above max_duration_s "
                f"({self.max_duration_s:g})",
            )
        return self


class LeasedSettings(MeasureSettings):
    """``MeasureSettings`` as a lease carries them to an agent: tolerant of fields a newer
    coordinator may add."""

    model_config = ConfigDict(extra="ignore")


class Target(RequestModel):
    runtime: Runtime
    device: Text = Field(
        "local",
        min_length=1,
        max_length=200,
        description="'local', a device name, or 'key:value' attributes",
    )
    precision: Precision = "fp32"
    batch_size: int = Field(1, ge=1, le=4096)
    threads: int = Field(1, ge=0, le=1024, description="Intra-op threads; 0 = runtime default")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Runtime/device options, e.g. {'delegate': 'gpu'} (TFLite), "
        "{'device': 'GPU'} (OpenVINO), {'cpu_mask': 'f0', 'cooldown_s': 30} (phones); "
        "each runtime's options are a closed set (latencylab.runtime_options): an unknown key "
        "is refused, and delegates/tools are named, never given as paths",
    )

    @field_validator("options")
    @classmethod
    def _typed_options(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        runtime = info.data.get("runtime")
        return normalized_options(runtime, value) if runtime else value


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
    artifact_metadata: dict[str, Any] = Field(
        default_factory=dict, description="What the converter recorded with the artifact"
    )
    host: HostTools = Field(
        default_factory=HostTools, description="The agent operator's delegates and tools"
    )


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
    compute_unit: str | None = Field(None, description="Where it ran: CPU, GPU, NPU, a provider")
    kernel: str | None = Field(
        None, description="The implementation the runtime chose (OpenVINO: jit_avx512_f32, ...)"
    )


class MeasureResult(_Model):
    """What the measuring subprocess returns (and the agent reports)."""

    status: Literal["succeeded", "failed"]
    error: str | None = None
    latency_ms: LatencyStats | None = None
    runs: int = 0
    stop_reason: str | None = Field(
        None,
        max_length=32,
        description="ci_converged | max_duration | max_runs: which rule ended steady state",
    )
    steady_duration_s: float | None = None
    load_ms: float | None = None
    first_inference_ms: float | None = None
    warmup_ms: list[float] = Field(default_factory=list)
    times_ms: list[float] = Field(default_factory=list)
    memory: dict[str, float] = Field(default_factory=dict)
    environment: dict[str, Any] = Field(default_factory=dict)
    profile: list[LayerProfile] = Field(default_factory=list)
    warnings: list[str] = Field(
        default_factory=list,
        description="Why the numbers deserve less trust, e.g. a cap stopped the steady state "
        "before min_runs",
    )
    repeats: RepeatsSummary | None = Field(
        None, description="Set when settings.repeats > 1: each fresh process's figures"
    )

    @model_validator(mode="after")
    def _repeats_cover_the_times(self) -> MeasureResult:
        if self.repeats is not None and self.times_ms:
            counted = sum(r.runs for r in self.repeats.runs)
            if counted != len(self.times_ms):
                raise ValueError(
                    f"repeats.runs add up to {counted} runs but times_ms holds "
                    f"{len(self.times_ms)}: the raw times are each repeat's, concatenated"
                )
        return self


# --------------------------------------------------------------------------- benchmarks
class BenchmarkCreate(RequestModel):
    model_id: Id
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
    warnings: list[str] = Field(
        default_factory=list,
        description="Why the numbers deserve less trust, e.g. a cap stopped the steady state "
        "before min_runs",
    )
    flags: list[QualityFlag] = Field(
        default_factory=list,
        description="Quality flags computed from the raw times, settings and environment "
        "(docs/measurement.md); a result with a warning-severity flag is marked everywhere",
    )
    mode: str | None = Field(
        None,
        description="Measurement mode (GET /presets): quick | standard | publish | table | "
        "table-quick | custom",
    )
    repeats: RepeatsSummary | None = Field(
        None, description="Between-run figures when the steady state ran in several processes"
    )


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
    repeat_runs: list[int] = Field(
        default_factory=list,
        description="Runs per repeat, in order, when several processes measured: times_ms is "
        "their concatenation (repeat k holds the next repeat_runs[k] times)",
    )


class ProfilePublic(_Model):
    layers: list[LayerProfile]


# --------------------------------------------------------------------------- devices / agents
class DeviceRegister(RequestModel):
    name: Text = Field(min_length=1, max_length=200)
    device_class: Text = Field(
        "cpu", alias="class", max_length=32, description="cpu | gpu | jetson | phone | mac"
    )
    runtimes: StrMap = Field(default_factory=dict, description="runtime → version")
    attributes: JsonObject = Field(default_factory=dict)
    info: JsonObject = Field(
        default_factory=dict, description="CPU model, cores, OS, memory: shown, not matched"
    )

    model_config = ConfigDict(populate_by_name=True, extra="forbid")


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


class Heartbeat(RequestModel):
    job_id: Id | None = None
    progress: JsonObject = Field(default_factory=dict)


class LeasedJob(_Model):
    id: int
    kind: str
    runtime: str
    precision: str
    batch_size: int
    threads: int
    settings: LeasedSettings
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


class JobReport(RequestModel):
    """An agent's report: the measurement, or a failure before measuring (download, …)."""

    result: MeasureResult


# --------------------------------------------------------------------------- tokens / health
_DEVICE_PATTERN = re.compile(r"[A-Za-z0-9._:@+/*?-]{1,200}")


def _device_pattern(value: str) -> str:
    if not _DEVICE_PATTERN.fullmatch(value):
        raise ValueError(
            f"device pattern {value!r} must be 1-200 characters of letters, digits, "
            "'.', '_', '-', ':', '@', '+', '/' and the wildcards '*' and '?'"
        )
    return value


DevicePattern = Annotated[str, AfterValidator(_device_pattern)]
"""A device name or a glob over names: ``pixel-*``, ``jetson-??``."""


class TokenCreate(_Model):
    model_config = ConfigDict(extra="forbid")

    scope: Scope = "user"
    name: Text = Field("", max_length=200)
    devices: list[DevicePattern] | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="Agent tokens only: the device names (or globs with * and ?) this token may "
        "register; omitted: any name",
    )

    @model_validator(mode="after")
    def _devices_for_agents(self) -> TokenCreate:
        if self.devices is not None and self.scope != "agent":
            raise ValueError(
                f"devices scopes an agent token to device names; a {self.scope} token "
                "registers no devices (use scope 'agent' or leave devices out)"
            )
        if self.devices is not None:
            self.devices = list(dict.fromkeys(self.devices))
        return self


class TokenPublic(_Model):
    id: int
    name: str
    scope: Scope
    prefix: str
    created_at: UTCDateTime
    revoked_at: UTCDateTime | None = Field(
        None, description="When the token was revoked; a revoked token gets 401 token_revoked"
    )
    devices: list[str] | None = Field(
        None, description="Device-name patterns this agent token may register; null: any name"
    )
    registered_devices: list[str] = Field(
        default_factory=list, description="Names of the devices registered with this token now"
    )
    token: str | None = Field(None, description="The secret; shown only once, at creation")


class Health(_Model):
    status: Literal["ok"]
    version: str
    database: str
    pid: int | None = Field(
        None, description="The answering coordinator process (replicas and --workers differ)"
    )
    hostname: str | None = Field(None, description="The host of the answering process")
    artifact_store: str | None = Field(None, description="local (its disk) or s3")
