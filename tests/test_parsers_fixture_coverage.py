"""Every shared fixture folder must have a parser test wired to it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_SHARED = os.environ.get("LATENCYLAB_SHARED_DIR")
FIXTURES = (
    Path(_SHARED) if _SHARED else Path(__file__).resolve().parents[2] / "shared"
) / "fixtures"
COVERED = {
    "adb": "test_parsers_adb.py",
    "dumpsys_thermalservice": "test_parsers_thermal.py",
    "nvidia-smi": "test_parsers_nvidia_smi.py",
    "nvpmodel": "test_parsers_nvpmodel.py",
    "sysfs_thermal": "test_parsers_thermal.py",
    "tegrastats": "test_parsers_tegrastats.py",
    "tflite_benchmark_model": "test_parsers_tflite_benchmark.py",
    "trtexec": "test_parsers_trtexec.py",
}


def test_every_fixture_folder_is_covered() -> None:
    if not FIXTURES.is_dir():
        pytest.skip(f"shared fixtures not found at {FIXTURES}")
    folders = {p.name for p in FIXTURES.iterdir() if p.is_dir()}
    assert folders <= set(COVERED), (
        f"fixture folders without a parser test: {folders - set(COVERED)}"
    )
    here = Path(__file__).resolve().parent
    for folder, test_file in COVERED.items():
        assert f'"{folder}"' in (here / test_file).read_text(), (folder, test_file)
