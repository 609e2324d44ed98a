"""Locating the verbatim device-tool outputs in ``../shared/fixtures`` (read byte for byte)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

_SHARED = os.environ.get("LATENCYLAB_SHARED_DIR")
FIXTURES = (
    Path(_SHARED) if _SHARED else Path(__file__).resolve().parents[2] / "shared"
) / "fixtures"


def listing(folder: str) -> list[Any]:
    """Every file of a fixture folder (a parametrize list), or one skipped param if absent."""
    path = FIXTURES / folder
    if not path.is_dir():
        return [
            pytest.param(
                None, marks=pytest.mark.skip(reason=f"shared fixtures not found at {path}")
            )
        ]
    return sorted(p for p in path.iterdir() if p.is_file())


def read(folder: str, name: str) -> str:
    path = FIXTURES / folder / name
    if not path.is_file():
        pytest.skip(f"shared fixtures not found at {path}")
    return path.read_bytes().decode("utf-8")
