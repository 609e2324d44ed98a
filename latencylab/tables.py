"""Wire schemas of latency tables (``/api/v1/spaces``, ``/api/v1/tables``): pydantic only.

A table is built by measuring every unique block of a search space at one resolution on ONE
device, then validated: ``validate_n`` random architectures are built and measured whole on
the same device and settings, and the plain sum of the table (``lut_sum``) and a linear
calibration of it (``a * lut_sum + b``, least squares, scored out of sample by k-fold cross
validation) are compared with the measurements. Field names are the public contract: add
fields freely, never rename or remove.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from latencylab.fields import RequestModel, Seed, Text
from latencylab.presets import preset
from latencylab.schemas import MeasureSettings, Precision, Runtime, UTCDateTime

TableStatus = Literal["building", "validating", "succeeded", "failed"]
"""building: blocks being measured; validating: whole networks being measured."""
TableFormat = Literal["json", "csv", "ofa-yaml"]
Statistic = Literal["min", "p50", "mean"]

TABLE_SETTINGS = preset("table")
"""Measurement settings of table builds unless a request gives its own (preset ``table``):
hundreds of small blocks, so a short steady state (>= 30 runs and >= 0.3 s, stop once the 95%
CI of the median is within +-2%, at most 3 s) and no per-layer profile pass, in 3 fresh
processes per block (``repeats``): medians move more between processes than within one, and
a table sums many of them (docs/measurement.md, "Modes and repeats")."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SpacePublic(_Model):
    name: str
    description: str
    resolutions: list[int]
    default_resolution: int
    choices: dict[str, Any]
    arch_format: str
    num_unique_blocks: int = Field(description="Unique blocks at the default resolution")


class TableCreate(RequestModel):
    space: Text = Field(
        max_length=32, description="A built-in space: ofa-proxyless, ofa-mbv3 or fbnet"
    )
    device: Text = Field(
        "local",
        min_length=1,
        max_length=200,
        description="'local', a device name or 'key:value' selector",
    )
    runtime: Runtime = "onnxruntime"
    resolution: int | None = Field(
        None, ge=1, le=4096, description="Input size; default: the space's default"
    )
    batch_size: int = Field(1, ge=1, le=4096)
    threads: int = Field(1, ge=0, le=1024, description="Intra-op threads; 0 = runtime default")
    precision: Precision = "fp32"
    settings: MeasureSettings = Field(
        default_factory=lambda: TABLE_SETTINGS.model_copy(),
        description="Measurement settings of every block and validation network",
    )
    statistic: Statistic = Field(
        "min",
        description="Which statistic of each measurement the table holds and sums: min (the "
        "fastest steady-state run: least sensitive to other load on a shared host), p50 or mean",
    )
    validate_n: int = Field(100, ge=0, le=2000, description="Random archs measured whole")
    validate_exported: int = Field(
        0,
        ge=0,
        le=500,
        description="Validation archs also measured as researchers export them: a PyTorch "
        "module written like the reference code, torch.onnx.export'ed (kind 'exported'), and "
        "the same graph normalised (kind 'exported_normalized'); ofa-proxyless and ofa-mbv3",
    )
    seed: Seed = Field(0, description="Seed of the validation sample (0 to 2^32-1)")
    fresh: bool = Field(
        False,
        description="Start a new table even if an identical one exists (measured blocks are "
        "still reused); by default an identical table is returned (and resumed if it failed)",
    )


class TableProgress(_Model):
    done: int
    total: int
    blocks_done: int = 0
    blocks_total: int = 0
    blocks_failed: int = 0
    blocks_reused: int = Field(0, description="Blocks measured before this table was created")
    networks_done: int = 0
    networks_total: int = 0
    networks_failed: int = 0


class PredictorQuality(_Model):
    """nn-Meter's accuracy: the share of archs predicted within +-5% / +-10% of measured."""

    n: int
    acc5: float = Field(description="Share of archs predicted within +-5% (0.95 = 95%)")
    acc10: float = Field(description="Share of archs predicted within +-10%")
    rmspe: float = Field(description="Root mean squared relative error (0.05 = 5%)")
    spearman: float | None = Field(None, description="Spearman rank correlation (rho)")
    bias: float = Field(0.0, description="Mean signed relative error (0.02 = +2%)")


class KindQuality(PredictorQuality):
    """How well the table predicts one kind of validation network (generated / exported)."""

    predictor: Literal["lut_sum", "linear"] = "lut_sum"
    lut_sum: PredictorQuality | None = None
    vs_generated: dict[str, float] | None = Field(
        None,
        description="Measured latency of this kind over that of the generated network of the "
        "same arch: {n, mean, median, min, max} of the ratios",
    )
    ops: dict[str, int] = Field(default_factory=dict, description="Graph ops of the first net")
    points: list[dict[str, float]] = Field(default_factory=list)


class TableQuality(PredictorQuality):
    """The best predictor's figures, plus both predictors' own."""

    predictor: Literal["lut_sum", "linear"] = "lut_sum"
    lut_sum: PredictorQuality | None = None
    calibrated: PredictorQuality | None = Field(
        None, description="The linear calibration, scored out of sample (k-fold CV)"
    )
    method: str = ""
    points: list[dict[str, float]] = Field(
        default_factory=list,
        description="Per validated arch: lut_sum_ms, predicted_ms (best predictor, out of "
        "sample) and measured_ms",
    )
    kinds: dict[str, KindQuality] = Field(
        default_factory=dict,
        description="Per kind of validation network: 'generated' (the blocks chained, what "
        "the figures above score), 'exported' and 'exported_normalized' (validate_exported)",
    )


class FailedBlock(_Model):
    key: str
    ofa_key: str | None = Field(None, description="The block's key in OFA's tables (ofa-yaml)")
    error: str | None = None


class TablePublic(_Model):
    id: int
    space: str
    resolution: int
    device: str = Field(description="The device the table was measured on")
    device_selector: str
    runtime: str
    precision: str
    batch_size: int
    threads: int
    status: TableStatus
    progress: TableProgress
    settings: dict[str, Any] = Field(default_factory=dict)
    quality: TableQuality | None = None
    calibration: dict[str, Any] | None = Field(
        None, description="{kind: linear, a, b}: latency_ms = a * lut_sum_ms + b"
    )
    predictor: str = Field("lut_sum", description="What predict's latency_ms uses")
    reused: bool = Field(False, description="POST /tables: an identical table was returned")
    error: str | None = None
    failed_blocks: list[FailedBlock] = Field(default_factory=list)
    build_seconds: float | None = Field(None, description="Creation to end of the block phase")
    created_at: UTCDateTime | None = None
    finished_at: UTCDateTime | None = None


class TableEntryPublic(_Model):
    """One block: ``mean`` is the table's statistic (what sums), ``var`` the run variance."""

    mean: float
    count: int = 1
    var: float = 0.0
    mean_ms: float | None = None
    p50_ms: float | None = None
    min_ms: float | None = None
    ofa_key: str | None = None


class TableExport(TablePublic):
    """``?format=json``: the table and every entry by block key (LocalPredictor reads it)."""

    entries: dict[str, TableEntryPublic] = Field(default_factory=dict)
    validation: list[dict[str, Any]] = Field(default_factory=list)


class PredictRequest(RequestModel):
    architectures: list[Any] = Field(max_length=200_000)
    resolution: int | None = Field(None, ge=1, le=4096, description="Default: the table's")


class PredictResponse(_Model):
    latency_ms: list[float] = Field(description="The table's best predictor")
    lut_sum_ms: list[float] = Field(description="Plain sum of the table's entries")
    predictor: str = "lut_sum"
