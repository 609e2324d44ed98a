"""tegrastats parser against the verbatim lines in shared/fixtures/tegrastats/."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from agents.parsers.tegrastats import (
    Rail,
    energy_per_inference_mj,
    parse_tegrastats,
    parse_tegrastats_line,
    summarize_power,
)
from tests.shared_fixtures import FIXTURES, listing, read

FOLDER = FIXTURES / "tegrastats"


def _listing() -> list:
    return listing("tegrastats")


def _read(name: str) -> str:
    return read("tegrastats", name)


@pytest.mark.parametrize("path", _listing(), ids=lambda p: getattr(p, "name", "missing"))
def test_every_fixture_parses(path: Path) -> None:
    samples = parse_tegrastats(path.read_bytes().decode("utf-8"))
    assert samples
    for s in samples:
        assert 0 < s.ram_used_mb <= s.ram_total_mb
        assert s.cpus and all(c.load_pct is None or 0 <= c.load_pct <= 100 for c in s.cpus)
        assert s.gpu_pct is not None and s.emc_pct is not None


def test_orin_agx_jetpack6() -> None:
    (s,) = parse_tegrastats(_read("orin-agx-64gb-jetson_exporter-issue14.txt"))
    assert s.timestamp == datetime(2025, 4, 11, 10, 36, 27)
    assert (s.ram_used_mb, s.ram_total_mb) == (4321, 62801)
    assert (s.swap_used_mb, s.swap_total_mb, s.swap_cached_mb) == (19, 31400, 0)
    assert len(s.cpus) == 12 and {c.freq_mhz for c in s.cpus} == {729}
    assert (s.emc_pct, s.emc_freq_mhz) == (0.0, 2133)
    assert (s.gpu_pct, s.gpu_freq_mhz) == (0.0, (0, 0))
    assert s.engines["VIC_FREQ"].freq_mhz == 729 and s.engines["APE"].freq_mhz == 174
    # -256C means "sensor off"
    assert s.temperatures_c["CV0"] is None and s.temperatures_c["GPU"] is None
    assert s.temperatures_c["CPU"] == pytest.approx(44.562)
    assert s.temperature("tj") == pytest.approx(44.343)
    assert s.rails["VDD_GPU_SOC"] == Rail(2340.0, 2340.0)
    assert s.rails["VIN_SYS_5V0"] == (4025.0, 4025.0)
    assert s.rails["NC"] == (0.0, 0.0) and s.rails["NC#2"] == (0.0, 0.0)
    # AGX Orin: no single input rail -> sum of the first INA3221's three channels
    assert s.total_power_source == "VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0"
    assert s.total_power_mw == pytest.approx(2340 + 390 + 4025)


def test_orin_nano_lowercase_temps_engines() -> None:
    (s,) = parse_tegrastats(_read("orin-nano-or-nx-8gb-jetson_stats-issue624.txt"))
    assert (s.ram_used_mb, s.ram_total_mb) == (6982, 7620)
    assert [c.load_pct for c in s.cpus] == [97, 95, 95, 91, 88, 93]
    assert s.cpus[5].freq_mhz == 247
    assert (s.gpu_pct, s.gpu_freq_mhz) == (84.0, (713,))
    assert (s.emc_pct, s.emc_freq_mhz) == (18.0, 3199)
    assert s.engines["NVDEC"].load_pct == 40.0 and s.engines["NVDEC"].freq_mhz == 115
    assert s.engines["VIC"].load_pct == 31.0
    assert s.engines["NVJPG"].enabled is False and s.engines["PVA0_FREQ"].enabled is False
    assert s.temperatures_c["cpu"] == pytest.approx(65.562)
    assert s.temperature("GPU") == pytest.approx(63.5)
    assert s.rails["VDD_IN"] == (17946.0, 15710.0)
    assert (s.total_power_mw, s.total_power_source) == (17946.0, "VDD_IN")


def test_xavier_jp42_unitless_rails_and_no_freq() -> None:
    (s,) = parse_tegrastats(_read("xavier-agx-jp4.2-gtop-pr7.txt"))
    assert (s.emc_pct, s.emc_freq_mhz) == (0.0, None)
    assert (s.gpu_pct, s.gpu_freq_mhz) == (0.0, ())
    assert len(s.cpus) == 8
    # unitless rails are mW
    assert s.rails["SOC"] == (2936.0, 2936.0) and s.rails["SYS5V"] == (3306.0, 3306.0)
    assert s.temperatures_c["AUX"] == pytest.approx(30.5)
    assert s.total_power_mw is None  # no known input rail on this JetPack
    assert summarize_power([s], rails=["GPU", "CPU", "SOC"]).mean_mw == 463 + 618 + 2936


def test_nano_pom_rails_iram() -> None:
    a, b = parse_tegrastats(_read("nano-jp4-effex-issue12.txt"))
    assert (a.iram_used_kb, a.iram_total_kb) == (0, 252)
    assert a.engines["APE"].freq_mhz == 25
    assert a.rails["POM_5V_CPU"] == (796.0, 989.0)
    assert (a.total_power_mw, b.total_power_mw) == (2746.0, 2980.0)
    assert a.total_power_source == "POM_5V_IN"
    summary = summarize_power([a, b])
    assert (summary.mean_mw, summary.peak_mw, summary.min_mw) == (2863.0, 2980.0, 2746.0)
    assert summary.samples == 2 and summary.source == "POM_5V_IN"
    # 2.863 W for 2 s over 100 inferences = 57.26 mJ each
    assert energy_per_inference_mj([a, b], 100, 2.0) == pytest.approx(57.26)


def test_nano_emulator_comment_nvenc_freq() -> None:
    (s,) = parse_tegrastats(_read("nano-jetson_stats-emulator-comment.txt"))
    assert s.engines["NVENC"].freq_mhz == 716 and s.engines["NVENC"].load_pct is None
    assert s.temperatures_c["thermal"] == pytest.approx(59.75)
    assert s.rails["POM_5V_IN"] == (4520.0, 4680.0)


def test_tx2_mts_and_vdd_rails() -> None:
    samples = parse_tegrastats(_read("tx2-jp3-realtime_object_detection-issue24.txt"))
    assert len(samples) == 3
    s = samples[0]
    assert (s.mts_fg_pct, s.mts_bg_pct) == (1.0, 8.0)
    assert [c.freq_mhz for c in s.cpus] == [1303, 345, 345, 1419, 1420, 1421]
    assert s.rails["VDD_IN"] == (1931.0, 1931.0)
    assert [x.total_power_mw for x in samples] == [1931.0, 1776.0, 1738.0]
    assert samples[2].temperatures_c["thermal"] == pytest.approx(40.2)


def test_tx2_vdd_sys_no_swap() -> None:
    (s,) = parse_tegrastats(_read("tx2-vdd_sys-format-tx-utils-issue3.txt"))
    assert s.swap_total_mb is None
    assert s.ram_total_mb == 7852
    assert s.rails["VDD_SYS_GPU"] == (153.0, 158.0)
    assert (s.total_power_mw, s.total_power_source) == (3140.0, "VDD_IN")


@pytest.mark.parametrize(
    "name", ["tx1-l4t28.1-jetson-tx1-dev-a.txt", "tx1-l4t28.1-jetson-tx1-dev-b.txt"]
)
def test_tx1_group_frequency(name: str) -> None:
    samples = parse_tegrastats(_read(name))
    assert len(samples) == 2
    if name.endswith("-a.txt"):
        s = samples[1]
        assert [c.load_pct for c in s.cpus] == [17, 11, 65, 0]
        assert {c.freq_mhz for c in s.cpus} == {1734}
        assert (s.emc_pct, s.emc_freq_mhz, s.gpu_pct, s.gpu_freq_mhz) == (1.0, 1600, 39.0, (76,))
    else:
        assert samples[0].gpu_freq_mhz == (998,)
    assert all(not s.rails and s.total_power_mw is None for s in samples)


def test_offline_core_and_errors() -> None:
    # Core states from a fixture line with one entry replaced by "off" (the form
    # tegrastats uses for hot-unplugged cores).
    line = _read("nano-jp4-effex-issue12.txt").splitlines()[0].replace("16%@1479", "off")
    s = parse_tegrastats_line(line)
    assert (s.cpus[1].load_pct, s.cpus[1].freq_mhz) == (None, None)
    with pytest.raises(ValueError, match="RAM"):
        parse_tegrastats_line("CPU [1%@100]")
    with pytest.raises(ValueError, match="unrecognised field"):
        parse_tegrastats_line(line + " ???")
    with pytest.raises(ValueError, match="no known input rail"):
        summarize_power(parse_tegrastats(_read("tx1-l4t28.1-jetson-tx1-dev-a.txt")))
