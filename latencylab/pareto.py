"""Latency-accuracy Pareto fronts: the wire schemas and the pure front computation.

Light imports only (pydantic). ``pareto_front`` is what the coordinator's ``/pareto`` route
uses; it is also handy in a notebook over the SDK's results.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from latencylab.quality import QualityFlag
from latencylab.schemas import UTCDateTime

K = TypeVar("K", bound=Hashable)


def pareto_front(points: Iterable[tuple[K, float, float]]) -> list[K]:
    """The keys of the non-dominated points of ``(key, latency, accuracy)`` triples.

    Lower latency and higher accuracy are better. A point is dominated when another point is at
    least as fast and at least as accurate and strictly better in one of the two; identical
    points do not dominate each other (both stay on the front). Points with a non-finite
    latency or accuracy are ignored. The keys come back sorted by latency (then input order).
    """
    finite = [
        (i, key, float(lat), float(acc))
        for i, (key, lat, acc) in enumerate(points)
        if math.isfinite(lat) and math.isfinite(acc)
    ]
    # Fastest first; within one latency, most accurate first.
    finite.sort(key=lambda p: (p[2], -p[3], p[0]))
    front: list[K] = []
    best_faster = -math.inf  # best accuracy among strictly faster points
    i = 0
    while i < len(finite):
        lat = finite[i][2]
        j = i
        while j < len(finite) and finite[j][2] == lat:
            j += 1
        group_best = finite[i][3]  # the group is sorted by accuracy, best first
        if group_best > best_faster:
            front.extend(p[1] for p in finite[i:j] if p[3] == group_best)
            best_faster = group_best
        i = j
    return front


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ParetoPoint(_Model):
    model_id: int
    name: str
    latency_ms: float = Field(description="p50 of the latest succeeded result")
    accuracy: float = Field(description="metadata.accuracy[metric] of the model")
    on_front: bool
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    size: int | None = Field(None, description="Model file size in bytes")
    tags: list[str] = Field(default_factory=list)
    result_id: int | None = None
    benchmark_id: int | None = None
    threads: int | None = None
    measured_at: UTCDateTime | None = Field(None, description="When the result was reported")
    flags: list[QualityFlag] = Field(
        default_factory=list,
        description="The result's quality flags; one of severity warning marks the point",
    )
    mode: str | None = Field(None, description="Measurement mode of the result (quick, ...)")
    predicted: bool = Field(
        False,
        description="latency_ms is a predictor's estimate (include_predicted): the model has no "
        "measured result on this target yet",
    )
    predictor_id: int | None = Field(None, description="The predictor of a predicted point")


class ParetoResponse(_Model):
    metric: str
    points: list[ParetoPoint] = Field(description="Sorted by latency")
    front: list[int] = Field(description="Model ids on the front, fastest first")
    device: str | None = None
    runtime: str | None = None
    precision: str | None = None
    batch_size: int | None = None
    tag: str | None = None
    metrics: list[str] = Field(
        default_factory=list,
        description="Every accuracy metric carried by a model measured on this target",
    )
    hidden_flagged: int = Field(
        0, description="Models left out by hide_flagged (their latest result is flagged)"
    )
    predictor_id: int | None = Field(
        None, description="include_predicted: the predictor whose estimates were added"
    )
    predictor_statistic: str | None = Field(
        None, description="The statistic the predictor estimates (min, p50, mean)"
    )
    predictor_accuracy: dict[str, Any] | None = Field(
        None, description="The predictor's overall accuracy (acc5, acc10, rmspe, spearman, n)"
    )
    predicted_failed: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Models the predictor could not estimate: {model_id, name, error}",
    )


class ParetoTarget(_Model):
    """A device, runtime, precision, batch size that has succeeded results."""

    device: str
    runtime: str
    precision: str
    batch_size: int
    models: int = Field(description="Distinct models measured on it")


class PredictorTarget(_Model):
    """A target with a succeeded latency predictor (``include_predicted``)."""

    device: str
    runtime: str
    precision: str
    batch_size: int
    predictor_id: int = Field(description="The newest succeeded predictor on this target")


class ParetoOptions(_Model):
    targets: list[ParetoTarget]
    metrics: list[str] = Field(description="Accuracy metrics that measured models carry")
    tags: list[str] = Field(description="Tags of measured models")
    predictors: list[PredictorTarget] = Field(
        default_factory=list,
        description="include_predicted: targets with a succeeded predictor (also in targets)",
    )
