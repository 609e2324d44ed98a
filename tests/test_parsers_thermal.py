"""Thermal parsers against shared/fixtures/sysfs_thermal/ and dumpsys_thermalservice/."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.parsers.thermal import (
    millidegrees_to_c,
    parse_dumpsys_thermalservice,
    parse_thermal_zone_types,
)
from tests.shared_fixtures import listing, read

SHIELD = "nvidia-shield-tv-pro-2019-shield_optimizer-issue6.txt"
_listing = listing
_read = read


@pytest.mark.parametrize(
    "path", _listing("sysfs_thermal"), ids=lambda p: getattr(p, "name", "missing")
)
def test_every_sysfs_fixture_parses(path: Path) -> None:
    zones = parse_thermal_zone_types(path.read_bytes().decode("utf-8"))
    assert [z.zone for z in zones] == list(range(len(zones)))
    assert all(z.type and z.value_c is None for z in zones)


@pytest.mark.parametrize(
    "path", _listing("dumpsys_thermalservice"), ids=lambda p: getattr(p, "name", "missing")
)
def test_every_dumpsys_fixture_parses(path: Path) -> None:
    dump = parse_dumpsys_thermalservice(path.read_bytes().decode("utf-8"))
    assert dump.source in ("hal", "cached") and dump.temperatures


def test_sony_transcript_zone_types() -> None:
    text = _read(
        "sysfs_thermal", "android-sony-xperia-x-compact-kugo-zone-types-pr28-transcript.txt"
    )
    zones = parse_thermal_zone_types(text)
    assert len(zones) == 15
    assert (zones[0].name, zones[0].type) == ("thermal_zone0", "bms")
    assert zones[5].type == "case_therm" and zones[14].type == "tsens_tz_sensor7"


def test_jetson_loop_zone_types() -> None:
    text = _read(
        "sysfs_thermal", "jetson-nano-2gb-zone-types-loop-Jetson-Nano-temperature-issue2.txt"
    )
    zones = parse_thermal_zone_types(text)
    assert [z.type for z in zones] == [
        "AO-therm",
        "CPU-therm",
        "GPU-therm",
        "PLL-therm",
        "PMIC-Die",
        "thermal-fan-est",
    ]
    with pytest.raises(ValueError, match="which zone"):
        parse_thermal_zone_types("orphan-type\n")


def test_shield_dumpsys_cached_section() -> None:
    text = _read("dumpsys_thermalservice", SHIELD)
    assert "  \n" in text  # trailing spaces kept as posted
    dump = parse_dumpsys_thermalservice(text)
    assert (dump.throttling_status, dump.throttling_status_name, dump.throttling) == (
        0,
        "NONE",
        False,
    )
    assert dump.source == "cached" and dump.hal == []
    assert (dump.status_override, dump.hal_ready) == (False, True)
    assert [t.name for t in dump.temperatures] == ["GPU", "CPU0", "CPU1", "CPU2", "CPU3"]
    gpu = dump.temperatures[0]
    assert (gpu.type, gpu.type_id, gpu.value_c, gpu.status) == ("GPU", 1, 36.0, 0)
    assert dump.temperatures[4].value_c == 37.0 and dump.temperatures[4].type == "CPU"


def test_hal_section_preferred_over_cached() -> None:
    # The Shield sample with its cached entries repeated under a HAL heading (the
    # heading dumpsys uses for live readings); values bumped so the two differ.
    text = _read("dumpsys_thermalservice", SHIELD)
    cached = [line for line in text.splitlines() if "Temperature{" in line]
    hal = [line.replace("mValue=3", "mValue=4") for line in cached]
    dump = parse_dumpsys_thermalservice(text + "Current temperatures from HAL:\n" + "\n".join(hal))
    assert dump.source == "hal"
    assert [t.value_c for t in dump.temperatures] == [46.0, 47.0, 47.0, 47.0, 47.0]
    assert len(dump.cached) == 5


def test_millidegrees_and_errors() -> None:
    assert millidegrees_to_c("41500\n") == 41.5
    with pytest.raises(ValueError, match="millidegrees"):
        millidegrees_to_c("41.5C")
    with pytest.raises(ValueError, match="Thermal Status"):
        parse_dumpsys_thermalservice("nothing here\n")
    with pytest.raises(ValueError, match="Temperature entry"):
        parse_dumpsys_thermalservice("Cached temperatures:\n  Temperature{mValue=abc, mType=1}\n")
