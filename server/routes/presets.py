from __future__ import annotations

from fastapi import APIRouter

from latencylab.presets import Preset, presets
from server.deps import CurrentUser
from server.openapi import AUTH

router = APIRouter(prefix="/presets", tags=["benchmarks"], responses=AUTH)


@router.get("", response_model=list[Preset])
def list_presets(_: CurrentUser) -> list[Preset]:
    """The named measurement modes (quick, standard, publish, table, ...) with their settings:
    what the dashboard offers and what a result's ``mode`` names (docs/measurement.md)."""
    return presets()
