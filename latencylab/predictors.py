"""Wire schemas of kernel-level latency predictors (``/api/v1/predictors``) and the local
predictor the SDK downloads: pydantic only at import time.

A predictor build measures small kernel models on ONE device (many per measurement job,
``KernelBatch``), trains one regressor per kernel type (the ``predictor`` package, the optional
``predict`` extra), refines where the regressors are least sure, and scores itself on whole
networks it never trained on. Field names are the public contract: add, never rename.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from latencylab.fields import Id, RequestModel, Seed, Text
from latencylab.schemas import MeasureResult, MeasureSettings, Precision, Runtime, UTCDateTime

if TYPE_CHECKING:
    import onnx

PredictorStatus = Literal["building", "succeeded", "failed"]
PredictorPhase = Literal["discovery", "initial", "refine", "calibrate", "validate", "done"]
NetworkRole = Literal["calibration", "validation"]
Statistic = Literal["min", "p50", "mean"]

KERNEL_SETTINGS = MeasureSettings(
    warmup_runs=5,
    min_runs=20,
    min_duration_s=0.1,
    max_duration_s=1.0,
    target_rel_ci=0.02,
    timeout_s=120.0,
    profile=True,
)
"""Settings of each kernel model (one process measures a whole batch, the standard protocol
for each model in turn; ``timeout_s`` bounds each model, the batch gets the sum). ``profile``:
the per-layer profile pass after the steady state gives each sample its time in layout
conversions (``KernelOutcome.layout_ms``) for the predictor's layout model; off, the build
trains without one."""
NETWORK_SETTINGS = MeasureSettings(
    warmup_runs=5,
    min_runs=20,
    min_duration_s=0.3,
    max_duration_s=3.0,
    target_rel_ci=0.02,
    timeout_s=300.0,
    profile=False,
)
"""Settings of each calibration and validation network (one fresh process each, as a
benchmark)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class PredictorOptions(RequestModel):
    """Sizes of a build (defaults: the full build; tests pass tiny ones)."""

    discover_fusion: bool = Field(
        True, description="Measure the fusion rules on the device first (else default rules)"
    )
    fusion_candidates: list[list[Text]] | None = Field(
        None, max_length=64, description="Fusion candidates to test (default: discovery's list)"
    )
    probe_hw: int = Field(56, ge=1, le=512, description="Fusion probes: spatial size")
    probe_channels: int = Field(32, ge=1, le=2048, description="Fusion probes: channels")
    probe_kernel: int = Field(1, ge=1, le=11, description="Fusion probes: conv kernel size")
    initial_per_type: int = Field(60, ge=1, le=5000, description="Initial samples per type")
    refine_per_type: int = Field(20, ge=0, le=5000, description="Samples per type per round")
    refine_rounds: int = Field(1, ge=0, le=10, description="Refinement rounds")
    kinds: list[Text] | None = Field(
        None, max_length=200, description="Only these kernel types (default: every type)"
    )
    kernels_per_job: int = Field(
        40, ge=1, le=500, description="Kernel models measured in one job (one subprocess)"
    )
    bias_check_n: int = Field(
        8, ge=0, le=500, description="Kernels also measured the standard way (a fresh process each)"
    )
    max_failed_share: float = Field(
        0.1, ge=0, le=1, description="The build fails when more samples than this share failed"
    )
    conversions: int = Field(
        24,
        ge=0,
        le=500,
        description="Layout conversions measured per direction as kernel models of their own "
        "(onnxruntime's NCHWc reorders, predictor.conversions; as bench.predictor "
        "--conversions), when the samples' profiles show conversions; they price the layout "
        "model per shape. 0: priced from the profiles only",
    )
    calibrate: bool = Field(
        True,
        description="Fit a network-level calibration on measured calibration networks "
        "(width 1.0, disjoint from the validation set) before validating",
    )
    calibrate_only: list[Text] | None = Field(
        None,
        max_length=200,
        description="Only the calibration networks of these architectures/families "
        "(at least 4 networks in all)",
    )
    calibrate_resolutions: list[Annotated[int, Field(ge=32, le=1024)]] = Field(
        default_factory=lambda: [224, 128, 192],
        min_length=1,
        max_length=8,
        description="Input sizes of the calibration architectures (each one at every size)",
    )
    calibrate_random: int = Field(
        2, ge=0, le=100, description="Random NAS-space calibration networks per space (224 px)"
    )
    validate_resolution: int = Field(224, ge=16, le=1024, description="Validation input size")
    validate_random: int = Field(10, ge=0, le=500, description="Random NAS-space networks")
    validate_only: list[Text] | None = Field(
        None, max_length=200, description="Only the validation networks of these names/families"
    )
    seed: Seed = 0


class PredictorCreate(RequestModel):
    device: Text = Field(
        "local", min_length=1, max_length=200, description="'local', a name or a key:value selector"
    )
    runtime: Runtime = "onnxruntime"
    threads: int = Field(1, ge=0, le=1024, description="Intra-op threads; 0 = runtime default")
    precision: Precision = "fp32"
    batch_size: int = Field(1, ge=1, le=4096)
    settings: MeasureSettings = Field(
        default_factory=lambda: KERNEL_SETTINGS.model_copy(),
        description="Measurement settings of each kernel model (and of the bias check)",
    )
    network_settings: MeasureSettings = Field(
        default_factory=lambda: NETWORK_SETTINGS.model_copy(),
        description="Measurement settings of each validation network",
    )
    statistic: Statistic = Field("min", description="Which statistic is trained and scored")
    options: PredictorOptions = Field(default_factory=PredictorOptions)
    fresh: bool = Field(
        False, description="A new build even if an identical one exists (samples still reused)"
    )


class PredictorResume(RequestModel):
    """Optional new settings for what is measured from now on (e.g. a longer timeout)."""

    settings: MeasureSettings | None = None
    network_settings: MeasureSettings | None = None


class PredictorProgress(_Model):
    done: int = 0
    total: int = 0
    samples_done: int = 0
    samples_total: int = 0
    samples_failed: int = 0
    samples_reused: int = Field(0, description="Samples measured before this build")
    probes_done: int = 0
    probes_total: int = 0
    conversions_done: int = Field(0, description="Layout conversions measured alone")
    conversions_total: int = 0
    conversions_failed: int = 0
    bias_done: int = 0
    bias_total: int = 0
    networks_done: int = 0
    networks_total: int = 0
    networks_failed: int = 0
    calibration_done: int = 0
    calibration_total: int = 0
    calibration_failed: int = 0
    jobs: int = Field(0, description="Measurement jobs this build queued")


class ValidationPoint(_Model):
    """A whole network of the build, predicted then measured end to end; ``predicted_ms``
    of a calibration network: the uncalibrated prediction it was fitted on."""

    name: str
    family: str
    role: NetworkRole = "validation"
    predicted_ms: float | None = None
    predicted_uncalibrated_ms: float | None = Field(
        None, description="Validation: the prediction before calibration"
    )
    measured_ms: float | None = None
    status: str = "pending"
    error: str | None = None


class CalibrationReport(_Model):
    """The network-level calibration (``predictor.calibration``) fitted on the build's
    calibration networks, never on the validation networks it is scored on."""

    terms: list[str]
    coef: list[float]
    networks: list[str] = Field(description="The networks it was fitted on")
    fit_rmspe: float = Field(description="RMSPE on those networks after calibration")
    uncalibrated_rmspe: float = Field(description="RMSPE on those networks before")
    leave_one_out_errors: dict[str, float] | None = Field(
        None, description="Relative error of each network under a fit without it (5+ networks)"
    )
    leave_one_out_rmspe: float | None = None
    measured_ms: dict[str, float] = Field(default_factory=dict)
    failed: int = Field(0, description="Calibration networks whose measurement failed")


class BiasPoint(_Model):
    key: str
    type: str
    batched_ms: float
    single_ms: float
    ratio: float = Field(description="batched / single")


class BiasCheck(_Model):
    """Kernels measured both inside a batch job and in a fresh process each."""

    n: int = 0
    median_ratio: float | None = Field(None, description="Median of batched / single")
    max_abs_dev: float | None = Field(None, description="Largest |ratio - 1|")
    points: list[BiasPoint] = Field(default_factory=list)


class PredictorPublic(_Model):
    id: int
    device: str = Field(description="The device it was measured on")
    device_selector: str
    runtime: str
    precision: str
    batch_size: int
    threads: int
    status: PredictorStatus
    phase: str
    round: int = 0
    progress: PredictorProgress
    settings: dict[str, Any] = Field(default_factory=dict)
    fusion_rules: dict[str, Any] | None = None
    accuracy: dict[str, Any] | None = Field(
        None, description="predictor.accuracy's report (acc5/acc10/RMSPE/rho per family, overall)"
    )
    accuracy_uncalibrated: dict[str, Any] | None = Field(
        None, description="The same report of the predictions before calibration"
    )
    calibration: CalibrationReport | None = None
    bias: BiasCheck | None = None
    points: list[ValidationPoint] = Field(default_factory=list)
    calibration_points: list[ValidationPoint] = Field(default_factory=list)
    failed_samples: list[dict[str, Any]] = Field(default_factory=list)
    reused: bool = Field(False, description="POST: an identical build was returned")
    error: str | None = None
    created_at: UTCDateTime | None = None
    finished_at: UTCDateTime | None = None


class ModelPredictRequest(RequestModel):
    model_id: Id


class KernelLatency(_Model):
    name: str
    type: str
    config: dict[str, Any] = Field(default_factory=dict)
    latency_ms: float


class ModelPrediction(_Model):
    predictor_id: int | None = None
    device: str | None = None
    runtime: str | None = None
    latency_ms: float
    kernels: list[KernelLatency] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    accuracy: dict[str, Any] | None = Field(None, description="The predictor's overall figures")


class ModelPredictions(_Model):
    model_id: int
    predictions: list[ModelPrediction] = Field(default_factory=list)
    errors: list[dict[str, Any]] = Field(default_factory=list)


# ------------------------------------------------------------------ batch measurement
class KernelItem(_Model):
    """One kernel model of a batch job: ``file`` inside the job's zip, its inputs."""

    key: str
    file: str
    inputs: list[dict[str, Any]]


class KernelManifest(_Model):
    """``manifest.json`` of a ``predictor_batch`` job's zip artifact."""

    items: list[KernelItem]


class KernelOutcome(_Model):
    key: str
    result: MeasureResult
    layout_ms: float | None = Field(
        None,
        description="Time of the median in layout conversions: the median times their share "
        "of the per-layer profile (None without a profile)",
    )


BATCH_KIND = "predictor_batch"
"""A job measuring many kernel models in one subprocess (``agents.measure.batch``)."""
BATCH_ENV_KEY = "kernel_batch"
"""``MeasureResult.environment`` key of a batch report: the per-model outcomes."""


# ------------------------------------------------------------------ local prediction
class LocalKernelPredictor:
    """A downloaded predictor bundle: ``predict(path_or_onnx)`` runs kernel detection and the
    per-type regressors here (needs the ``predict`` extra: onnx, lightgbm)."""

    def __init__(self, bundle_json: str, meta: PredictorPublic | None = None) -> None:
        from predictor.bundle import PredictorBundle  # the optional extra, only when used

        self.meta = meta
        self.bundle = PredictorBundle.from_json(bundle_json)

    def predict(
        self, model: str | Path | onnx.ModelProto, input_shapes: dict[str, list[int]] | None = None
    ) -> ModelPrediction:
        import onnx

        proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
        pred = self.bundle.predict_onnx(proto, input_shapes)
        m = self.meta
        return ModelPrediction(
            predictor_id=m.id if m else None,
            device=m.device if m else None,
            runtime=m.runtime if m else None,
            latency_ms=pred.latency_ms,
            kernels=[KernelLatency.model_validate(k.model_dump()) for k in pred.kernels],
            notes=list(pred.notes),
            accuracy=(m.accuracy or {}).get("overall") if m else None,
        )


# ------------------------------------------------------------------ users' own models
class TrackedPoint(_Model):
    """One user model measured on the predictor's device and settings, and its prediction."""

    model_id: int
    name: str
    result_id: int
    measured_ms: float
    predicted_ms: float | None = None
    error: str | None = Field(None, description="Why no prediction (e.g. no ONNX file yet)")


class TrackedReport(_Model):
    """How the predictor does on the models users benchmarked (newest result per model)."""

    predictor_id: int
    statistic: str
    points: list[TrackedPoint] = Field(default_factory=list)
    accuracy: dict[str, Any] | None = Field(
        None, description="predictor.accuracy's report over the predicted points (family 'user')"
    )
