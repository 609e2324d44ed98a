"""Wire schemas of the benchmark dry run (``POST /api/v1/benchmarks/check``): pydantic only.

The dry run applies exactly the rules ``POST /benchmarks`` applies to its targets (runtime,
precision and options through :class:`~latencylab.schemas.Target`; device selector, runtime
offered by a matching device and conversion possible through the coordinator's store), without
a model having to be uploaded first: ``latencylab submit`` checks its targets before it uploads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from latencylab.fields import Id, RequestModel
from latencylab.runtimes import RUNTIMES
from latencylab.schemas import MeasureSettings, Target

# The format of a stored model (an ``.onnx`` inside a zip is ``onnx``): every format some
# declared runtime runs as it is (latencylab.runtimes).
MODEL_FORMATS: tuple[str, ...] = tuple(RUNTIMES.native_runtimes)
if TYPE_CHECKING:
    ModelFormat = str
else:
    ModelFormat = Literal[MODEL_FORMATS]


class BenchmarkCheck(RequestModel):
    """Targets to check; optionally the model they are for (``model_id``) or only its format."""

    targets: list[Target] = Field(min_length=1, max_length=64)
    settings: MeasureSettings = Field(
        default_factory=MeasureSettings, description="Checked as POST /benchmarks checks them"
    )
    model_id: Id | None = Field(
        None, description="Check for this stored model (exactly as POST /benchmarks would)"
    )
    model_format: ModelFormat | None = Field(
        None,
        description="Check for a model of this format that is not uploaded yet (whether each "
        "runtime runs it or a conversion can produce what it runs); with model_id the stored "
        "model's format is used; with neither the format is not checked",
    )


class TargetVerdict(BaseModel):
    model_config = ConfigDict(extra="ignore")

    runtime: str
    device: str = Field(description="The target's device selector")
    precision: str
    convert_to: str | None = Field(
        None, description="The format the model would be converted to first (null: native)"
    )
    candidates: list[str] = Field(
        default_factory=list, description="Registered devices that could take the job"
    )


class BenchmarkCheckPublic(BaseModel):
    """Every target is accepted (otherwise the answer is a 422 naming the first refused one
    in ``detail`` and every refused one in ``errors``)."""

    model_config = ConfigDict(extra="ignore")

    targets: list[TargetVerdict]
