"""Named measurement settings (modes), defined once for the dashboard, the CLI and the SDK.

``preset("quick")`` gives the ``MeasureSettings`` of a mode; ``mode_of(settings)`` names the
mode a result was measured in (``custom`` when its stopping rule matches none). The
dashboard reads them from ``GET /api/v1/presets``. Which to use when: docs/measurement.md
("Modes and repeats").
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from latencylab.schemas import LeasedSettings, MeasureSettings

RECOMMENDED = "publish"
"""The mode the docs recommend for numbers that are compared or published."""
TABLE_DEFAULT = "table"
"""The settings of a table build unless its request gives its own."""

_TABLES = ("table", "table-quick")
_PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "quick": (
        "a first look: one process, >= 20 runs, 0.2-2 s",
        {"warmup_runs": 3, "min_runs": 20, "min_duration_s": 0.2, "max_duration_s": 2.0,
         "target_rel_ci": 0.02},
    ),
    "standard": (
        "the protocol's defaults (CLI and SDK): one process, >= 50 runs, 1-30 s, CI ±1%",
        {},
    ),
    "publish": (
        "recommended for numbers you compare or publish: 5 fresh processes of >= 50 runs and "
        "0.5-5 s each, CI ±1% per process; the between-run spread is measured",
        {"min_duration_s": 0.5, "max_duration_s": 5.0, "repeats": 5},
    ),
    "table": (
        "latency-table blocks: 3 fresh processes of >= 30 runs and 0.3-3 s, CI ±2%, no profile",
        {"min_runs": 30, "min_duration_s": 0.3, "max_duration_s": 3.0, "target_rel_ci": 0.02,
         "timeout_s": 300.0, "profile": False, "repeats": 3},
    ),
    "table-quick": (
        "a first look at a latency table: one process, >= 10 runs, 0.05-0.5 s, no profile",
        {"warmup_runs": 2, "min_runs": 10, "min_duration_s": 0.05, "max_duration_s": 0.5,
         "target_rel_ci": 0.05, "timeout_s": 120.0, "profile": False},
    ),
}  # fmt: skip

RULE_FIELDS = (
    "warmup_runs",
    "min_runs",
    "max_runs",
    "min_duration_s",
    "max_duration_s",
    "target_rel_ci",
    "repeats",
)
"""The settings that decide what is measured; ``timeout_s``, ``profile`` and ``seed`` do not
change a mode."""


class Preset(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    description: str
    recommended: bool = Field(False, description="What the docs recommend for published numbers")
    kind: Literal["benchmark", "table"] = Field(
        "benchmark", description="What it is offered for: benchmarks of a model, table builds"
    )
    settings: MeasureSettings


def preset(name: str) -> MeasureSettings:
    """The settings of a named mode; ``KeyError`` names the known ones."""
    if name not in _PRESETS:
        raise KeyError(f"unknown measurement preset {name!r}; one of: {', '.join(_PRESETS)}")
    return MeasureSettings(**_PRESETS[name][1])


def presets() -> list[Preset]:
    return [
        Preset(
            name=n,
            description=d,
            recommended=n in (RECOMMENDED, TABLE_DEFAULT),
            kind="table" if n in _TABLES else "benchmark",
            settings=preset(n),
        )
        for n, (d, _) in _PRESETS.items()
    ]


def mode_of(settings: MeasureSettings | dict[str, Any] | None) -> str:
    """``quick`` / ``standard`` / ``publish`` / ... when the stopping rule matches a preset
    (``timeout_s``, ``profile``, ``seed`` aside), else ``custom``."""
    if isinstance(settings, MeasureSettings):
        settings = settings.model_dump()
    s = LeasedSettings.model_validate(settings or {}).model_dump(include=set(RULE_FIELDS))
    for name in _PRESETS:
        if preset(name).model_dump(include=set(RULE_FIELDS)) == s:
            return name
    return "custom"
