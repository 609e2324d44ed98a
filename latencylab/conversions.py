"""Wire schemas of conversions (light imports: pydantic only)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from latencylab.fields import Id, RequestModel, Text
from latencylab.runtimes import RUNTIMES

# Conversion targets: those the runtime declarations name (latencylab.runtimes), one place.
TARGETS: tuple[str, ...] = tuple(d.target for d in RUNTIMES if d.target is not None)
if TYPE_CHECKING:
    Target = str
else:
    Target = Literal[TARGETS]
ConversionStatus = Literal["queued", "running", "succeeded", "failed"]


def _as_utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ConversionCreate(RequestModel):
    model_id: Id
    target: Target
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    batch_size: int = Field(1, ge=1, le=4096)
    device: Text | None = Field(
        None,
        max_length=200,
        description="TensorRT only: the GPU/Jetson selector whose agent builds (and runs) the engine",
    )


class ArtifactRef(_Model):
    sha256: str
    size: int
    format: str
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="e.g. layout (NHWC for TFLite), input names and shapes"
    )


class Validation(_Model):
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    passed: bool | None = Field(
        None, description="None: could not be run here (e.g. CoreML needs macOS); see note"
    )
    note: str | None = None
    tolerance: dict[str, float] | None = None
    sqnr_db: float | None = Field(
        None,
        description="Signal-to-quantization-noise ratio, 10·log10(Σref² / Σ(ref-out)²) in dB, "
        "lowest over the outputs; int8 passes on it (200 = identical)",
    )
    psnr_db: float | None = Field(
        None,
        description="Peak signal-to-noise ratio, 10·log10(max|ref|² / mean((ref-out)²)) in dB, "
        "lowest over the outputs (as Qualcomm AI Hub's inference jobs report it)",
    )
    top1_agreement: float | None = Field(
        None,
        description="Share of seeded inputs whose argmax matches the reference's, for 2-D "
        "(rows, classes) outputs; lowest over such outputs, None without any",
    )
    samples: int | None = Field(None, description="How many seeded inputs were compared")
    criterion: str | None = Field(None, description="The pass rule applied, in words")
    per_output: list[dict[str, Any]] | None = Field(
        None, description="The same measures for each output, by source output name"
    )


class ConversionError(_Model):
    step: str | None = None
    op: str | None = None
    message: str
    hint: str | None = Field(None, description="What to do about it")


class ConversionPublic(_Model):
    id: int
    model_id: int
    status: ConversionStatus
    target: str
    precision: str
    batch_size: int
    artifact: ArtifactRef | None = None
    validation: Validation | None = None
    error: str | None = Field(None, description="One line: step, op and what to do")
    error_detail: ConversionError | None = None
    log: str | None = Field(None, description="URL path of the converter's log")
    job_id: int | None = None
    seconds: float | None = None
    created_at: Annotated[datetime, AfterValidator(_as_utc)] | None = None


class ConversionOutcome(_Model):
    """What a converter worker reports for a conversion job."""

    status: Literal["succeeded", "failed"]
    artifact_sha256: str | None = Field(None, max_length=64)
    artifact_format: str | None = Field(None, max_length=32)
    artifact_metadata: dict[str, Any] = Field(default_factory=dict)
    validation: Validation | None = None
    error: ConversionError | None = None
    log_sha256: str | None = None
    seconds: float | None = None
    environment: dict[str, Any] = Field(default_factory=dict)


class ConversionTask(_Model):
    """What a converter worker is told to do (part of a leased convert job)."""

    conversion_id: int
    target: Target
    precision: str = "fp32"
    batch_size: int = 1
    input_shapes: dict[str, list[int]] = Field(default_factory=dict)
