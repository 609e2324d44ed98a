"""Energy per inference on Android phones, through the ``tests/fakes/adb`` stand-in.

The stand-in's phones get a battery profile (``tests/fakes/batteries.json``: real sysfs and
``dumpsys battery`` formats, scripted draws): an idle draw, a higher draw while the REAL
``litert-benchmark`` runs as ``benchmark_model``, charging while on USB unless input is
suspended, a gauge that publishes a new value every ``update_s``. The energy the Measurer
reports is checked against the scripted profile; every path (success, a failing tool, a
cancel, a timeout) must end with ``dumpsys battery reset`` and no sampler left running.
Unit level: the analysis on sample lists, ``dumpsys battery`` parsing on verbatim outputs.
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from agents.android.adb import Adb
from agents.android.config import AndroidSettings
from agents.android.energy import (
    METHOD,
    Sample,
    analyse,
    detect_convention,
    other_cores,
    parse_dumpsys_battery,
    sampler_command,
)
from agents.android.measure import PhoneMeasurer
from agents.parsers.tflite_benchmark import parse_tflite_benchmark
from latencylab.schemas import MeasureResult
from tests.test_android import FAKE_ADB, FLIP4, LITERT_BENCHMARK, NEXUS5, FakePhones, _spec

BATTERIES = json.loads((Path(__file__).parent / "fakes" / "batteries.json").read_text())
SAMSUNG, QCOM = BATTERIES["samsung_ma_negative"], BATTERIES["qcom_ua_positive"]
SECOND = "R5CTFAKE2QCOM"  # a third stand-in phone, added by the test that runs two at once
SHORT = "energy not reported: run shorter than 5 fuel-gauge updates"

pytestmark = pytest.mark.skipif(
    not LITERT_BENCHMARK.exists(), reason=f"needs ai-edge-litert's {LITERT_BENCHMARK}"
)


@pytest.fixture(scope="module")
def tflite_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small conv net of tests/test_android.py (a few hundred microseconds per run)."""
    import litert_torch
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 10),
    ).eval()  # fmt: skip
    path = tmp_path_factory.mktemp("tflite") / "small_cnn.tflite"
    litert_torch.convert(net, (torch.randn(1, 3, 64, 64),)).export(str(path))
    return path


@pytest.fixture
def phones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakePhones:
    fake = FakePhones(tmp_path)
    monkeypatch.setenv("FAKE_ADB_CONFIG", str(fake.config))
    return fake


@pytest.fixture
def settings(phones: FakePhones) -> AndroidSettings:
    return AndroidSettings(
        adb=str(FAKE_ADB), benchmark_model=phones.binary, cooldown_poll_s=0.1,
        energy_interval_s=0.1, energy_baseline_s=1.2,
    )  # fmt: skip


@pytest.fixture(scope="module")
def runs_for_2s(tflite_model: Path) -> int:
    """Timed runs that make a ~2 s steady state on this machine (10 gauge updates of 0.2 s)."""
    out = subprocess.run(
        [str(LITERT_BENCHMARK), "--model", str(tflite_model), "--num_runs", "500",
         "--num_threads", "1"], capture_output=True, text=True, check=True,
    )  # fmt: skip
    inference = parse_tflite_benchmark(out.stdout + out.stderr).inference
    assert inference is not None and inference.avg_ms
    return max(500, int(2000 / inference.avg_ms))


def _expected_mw(b: dict[str, Any]) -> float:
    """The profile's draw above idle: mA x V = mW."""
    return float(b["load_ma"] * b["load_mv"] - b["idle_ma"] * b["idle_mv"]) / 1000


def _shells(phones: FakePhones, serial: str) -> list[str]:
    return [c["shell"] for c in phones.calls(serial) if "shell" in c]


def _battery_calls(phones: FakePhones, serial: str) -> list[str]:
    return [c for c in _shells(phones, serial) if c.startswith("dumpsys battery")]


def _no_sampler_left(phones: FakePhones, serial: str) -> None:
    left = subprocess.run(["pgrep", "-f", str(phones.root / serial)], capture_output=True)
    assert left.returncode == 1, left.stdout  # the phone-side loop died with its adb client


def _check_energy(r: MeasureResult, b: dict[str, Any], sign: str, unit: str) -> None:
    assert r.status == "succeeded", r.error
    env = r.environment
    power = env["power"]
    assert "note" not in power, power.get("note")
    assert power["method"] == METHOD and power["baseline_subtracted"] is True
    assert power["coarse"].startswith("coarse:")
    assert power["current_convention"]["sign"] == sign
    assert power["current_convention"]["unit"] == unit
    assert power["sample_interval_s"] == 0.1 and 5 < power["sample_rate_hz"] <= 11
    assert power["samples"] >= 10 and power["baseline_samples"] >= 4
    assert power["gauge_update_interval_s"] == pytest.approx(b["update_s"], rel=0.5)
    assert power["gauge_updates"] >= 5
    expected = _expected_mw(b)
    assert power["mean_mw"] == pytest.approx(expected, rel=0.1)  # baseline subtracted
    assert power["baseline_mw"] == pytest.approx(b["idle_ma"] * b["idle_mv"] / 1000, rel=0.02)
    assert power["min_mw"] <= power["mean_mw"] <= power["peak_mw"]
    assert r.runs and r.steady_duration_s and r.latency_ms
    per_run_s = r.steady_duration_s / r.runs  # = the mean latency
    assert env["energy_per_inference_mj"] == pytest.approx(expected * per_run_s, rel=0.1)
    assert env["battery"]["reset"] == "ok" and env["battery"]["suspend_input"] == "ok"
    assert env["battery"]["before"]["plugged"] == "usb"


# ------------------------------------------------------------------ through the stand-in
def test_energy_per_inference_is_the_scripted_draw_above_idle(
    phones: FakePhones, settings: AndroidSettings, tflite_model: Path, runs_for_2s: int,
    tmp_path: Path,
) -> None:  # fmt: skip
    phones.set(FLIP4, battery=SAMSUNG)  # milliamps, negative while discharging
    spec = _spec(tflite_model, min_runs=runs_for_2s, max_runs=runs_for_2s, profile=False)
    r = PhoneMeasurer(Adb(settings.adb), FLIP4, settings)(spec, workdir=tmp_path)
    _check_energy(r, SAMSUNG, "negative while discharging", "mA")
    assert r.environment["battery"]["sampler_cores"] == "f"  # off the benchmark's f0
    calls = _shells(phones, FLIP4)
    order = [i for i, c in enumerate(calls) if c.startswith("dumpsys battery ")]
    bench = next(i for i, c in enumerate(calls) if "/benchmark_model --graph" in c)
    assert [calls[i] for i in order] == [
        "dumpsys battery unplug", "dumpsys battery suspend_input", "dumpsys battery reset",
    ]  # fmt: skip
    assert order[1] < bench < order[2]
    assert sum("current_now" in c for c in calls) == 2  # the probe and ONE sampling loop
    _no_sampler_left(phones, FLIP4)


def test_two_phones_at_once_with_opposite_sign_conventions(
    phones: FakePhones, settings: AndroidSettings, tflite_model: Path, runs_for_2s: int,
    tmp_path: Path,
) -> None:  # fmt: skip
    cfg = phones.read()
    flip = next(p for p in cfg["phones"] if p["serial"] == FLIP4)
    second = {**flip, "serial": SECOND, "disconnect_file": str(tmp_path / f"{SECOND}.gone")}
    cfg["phones"].append(second)
    phones.write(cfg)
    phones.set(FLIP4, battery=SAMSUNG)
    phones.set(SECOND, battery=QCOM)  # microamps, positive while discharging
    spec = _spec(tflite_model, min_runs=runs_for_2s, max_runs=runs_for_2s, profile=False)
    adb = Adb(settings.adb)
    results: dict[str, MeasureResult] = {}

    def measure(serial: str) -> None:
        work = tmp_path / serial
        work.mkdir()
        results[serial] = PhoneMeasurer(adb, serial, settings)(spec, workdir=work)

    threads = [threading.Thread(target=measure, args=(s,)) for s in (FLIP4, SECOND)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    _check_energy(results[FLIP4], SAMSUNG, "negative while discharging", "mA")
    _check_energy(results[SECOND], QCOM, "positive while discharging", "uA")
    for serial in (FLIP4, SECOND):
        assert _battery_calls(phones, serial)[-1] == "dumpsys battery reset"
        _no_sampler_left(phones, serial)


@pytest.mark.parametrize(("serial", "interval"), [(FLIP4, 0.1), (NEXUS5, 1.0)])
def test_a_run_too_short_for_the_gauge_reports_no_energy(
    phones: FakePhones, settings: AndroidSettings, tflite_model: Path, tmp_path: Path,
    serial: str, interval: float,
) -> None:  # fmt: skip
    phones.set(serial, battery=QCOM)
    r = PhoneMeasurer(Adb(settings.adb), serial, settings)(
        _spec(tflite_model, profile=False), workdir=tmp_path
    )  # 20 runs of a tiny model: a few ms
    assert r.status == "succeeded", r.error  # the latency stands; only energy is refused
    power = r.environment["power"]
    assert power["note"].startswith(SHORT), power["note"]
    assert "raise settings.min_duration_s to at least" in power["note"]
    assert "energy_per_inference_mj" not in r.environment and "mean_mw" not in power
    assert power["method"] == METHOD and power["sample_interval_s"] == interval
    assert power["min_gauge_updates"] == 5 and power["gauge_updates"] < 5
    if serial == NEXUS5:  # Android 5.1: toolbox sleep takes whole seconds
        assert "whole seconds" in r.environment["battery"]["sample_interval_note"]
    assert _battery_calls(phones, serial)[-1] == "dumpsys battery reset"


def test_charging_that_cannot_be_suspended_reports_no_energy(
    phones: FakePhones, settings: AndroidSettings, tflite_model: Path, runs_for_2s: int,
    tmp_path: Path,
) -> None:  # fmt: skip
    phones.set(FLIP4, battery={**SAMSUNG, "debuggable": False})  # a user build
    spec = _spec(tflite_model, min_runs=runs_for_2s // 4, max_runs=runs_for_2s, profile=False)
    r = PhoneMeasurer(Adb(settings.adb), FLIP4, settings)(spec, workdir=tmp_path)
    assert r.status == "succeeded", r.error
    battery, power = r.environment["battery"], r.environment["power"]
    assert "SecurityException" in battery["suspend_input"]
    assert power["note"].startswith("energy not reported: the battery reported 'Charging'")
    assert "needs a debuggable build" in power["note"]
    assert "energy_per_inference_mj" not in r.environment
    assert battery["reset"] == "ok"


@pytest.mark.parametrize("how", ["tool fails", "cancel in baseline", "cancel in run", "timeout"])
def test_dumpsys_battery_reset_runs_whatever_ends_the_run(
    phones: FakePhones, settings: AndroidSettings, tflite_model: Path, tmp_path: Path,
    how: str,
) -> None:  # fmt: skip
    phones.set(NEXUS5, battery=QCOM)
    model, cancel = tflite_model, threading.Event()
    spec = _spec(model, min_runs=1_000_000, max_runs=1_000_000, profile=False)
    if how == "tool fails":
        model = tmp_path / "broken.tflite"
        model.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 64)  # the magic, no model
        spec = _spec(model, profile=False)
    elif how == "timeout":
        spec = spec.model_copy(update={"settings": spec.settings.model_copy(update={"timeout_s": 3.0})})  # fmt: skip

    def on_progress(event: dict[str, Any]) -> None:
        if event.get("phase") == "steady" and how.startswith("cancel"):
            threading.Timer(0.3 if how == "cancel in baseline" else 2.5, cancel.set).start()

    r = PhoneMeasurer(Adb(settings.adb), NEXUS5, settings)(
        spec, workdir=tmp_path, on_progress=on_progress, cancel=cancel
    )
    assert r.status == "failed", r.error
    if how.startswith("cancel"):
        assert r.error == f"measurement on phone {NEXUS5} was cancelled"
    calls = _battery_calls(phones, NEXUS5)
    assert calls[0] == "dumpsys battery" and "dumpsys battery unplug" in calls
    assert calls[-1] == "dumpsys battery reset"
    state = json.loads((phones.root / NEXUS5 / "battery-state.json").read_text())
    assert state == {"unplugged": False, "input_suspended": False}  # charging again
    _no_sampler_left(phones, NEXUS5)


def test_a_phone_without_a_readable_battery_is_left_alone(
    phones: FakePhones, settings: AndroidSettings, tflite_model: Path, tmp_path: Path
) -> None:
    r = PhoneMeasurer(Adb(settings.adb), FLIP4, settings)(
        _spec(tflite_model, profile=False), workdir=tmp_path
    )
    assert r.status == "succeeded", r.error
    assert r.environment["power"]["error"].startswith(
        "battery not readable at /sys/class/power_supply/battery"
    )
    assert _battery_calls(phones, FLIP4) == []  # no unplug without a gauge to read
    off = settings.model_copy(update={"energy": False})
    phones.set(FLIP4, battery=SAMSUNG)
    r = PhoneMeasurer(Adb(settings.adb), FLIP4, off)(
        _spec(tflite_model, profile=False), workdir=tmp_path
    )
    assert r.status == "succeeded" and "power" not in r.environment
    assert _battery_calls(phones, FLIP4) == []


# ------------------------------------------------------------------ unit level
def _samples(values: list[tuple[float, int, int, str]]) -> list[Sample]:
    return [Sample(t, c, v, s) for t, c, v, s in values]


def _gauge(start: float, end: float, ma: float, mv: int, sign: int, scale: int) -> list[Sample]:
    """Samples every 0.1 s of a gauge that updates every 0.3 s (-1/0/+1 mA noise)."""
    out, t = [], start
    while t < end - 1e-9:
        tick = round(t * 10) // 3
        out.append(Sample(t, sign * round((ma + tick % 3 - 1) * scale), mv * 1000, "Discharging"))
        t = round(t + 0.1, 6)
    return out


@pytest.mark.parametrize(
    ("sign", "scale", "want_sign", "want_unit"),
    [(-1, 1000, "negative", "uA"), (1, 1000, "positive", "uA"), (-1, 1, "negative", "mA"),
     (1, 1, "positive", "mA")],
)  # fmt: skip
def test_analysis_subtracts_the_baseline_in_every_convention(
    sign: int, scale: int, want_sign: str, want_unit: str
) -> None:
    samples = _gauge(0, 3, 200, 3900, sign, scale) + _gauge(3, 6, 700, 3900, sign, scale)
    out = analyse(samples, (0, 2.95), (3.0, 6.0), runs=1000, min_updates=5)
    power = out["power"]
    assert power["current_convention"]["sign"] == f"{want_sign} while discharging"
    assert power["current_convention"]["unit"] == want_unit
    assert power["mean_mw"] == pytest.approx(500 * 3.9, rel=0.01)  # (700 - 200) mA x 3.9 V
    assert power["gauge_update_interval_s"] == pytest.approx(0.3, abs=0.01)
    assert out["energy_per_inference_mj"] == pytest.approx(1950 * 3.0 / 1000, rel=0.01)
    forced = analyse(samples, (0, 2.95), (3.0, 6.0), runs=1000, min_updates=5,
                     sign="negative_discharge" if sign > 0 else "positive_discharge")  # fmt: skip
    assert forced["power"]["note"].startswith("energy not reported: the steady state drew no more")


def test_analysis_refuses_what_the_gauge_cannot_tell() -> None:
    idle = _gauge(0, 3, 200, 3900, -1, 1000)
    short = analyse(idle + _gauge(3, 3.5, 700, 3900, -1, 1000), (0, 2.9), (3.0, 3.5), 10, min_updates=5)  # fmt: skip
    assert short["power"]["note"].startswith(SHORT)
    assert "1.7 updates of ~0.3 s; raise settings.min_duration_s to at least 1.5 s" in short["power"]["note"]  # fmt: skip
    flat = _samples([(t / 10, -150000, 3900000, "Discharging") for t in range(40)])
    stuck = analyse(flat, (0, 2.0), (2.0, 3.9), 10, min_updates=5)
    assert "did not change in 3.9 s of sampling" in stuck["power"]["note"]
    zero = _samples([(t / 10, 0, 3900000 + t % 2, "Discharging") for t in range(40)])
    assert "current_now reads 0" in analyse(zero, (0, 2), (2, 3.9), 10, min_updates=1)["power"]["note"]  # fmt: skip
    usb = _samples([(t / 10, 976, 3815175 + t, "Not charging") for t in range(40)])  # AccA#35
    note = analyse(usb, (0, 2), (2, 3.9), 10, min_updates=1)["power"]["note"]
    assert note.startswith("energy not reported: the battery reported 'Not charging'")
    conv = detect_convention(_samples([(0, 976, 3815175, "Discharging")]))
    assert (conv.current_unit, conv.voltage_unit) == ("mA", "uV")  # 976 is read as mA ...
    # ... which is why a 'Not charging' battery (the phone on USB power) is refused above


def test_dumpsys_battery_parses_verbatim_outputs() -> None:
    samsung = parse_dumpsys_battery("\n".join(BATTERIES["dumpsys"]["samsung"]))
    assert (samsung["plugged"], samsung["level"], samsung["voltage"]) == ("usb", "100", "4312")
    assert samsung["current now"] == "0" and samsung["updates_stopped"] is False
    old = parse_dumpsys_battery("\n".join(BATTERIES["dumpsys"]["aosp_m"]))
    assert (old["plugged"], old["status"], old["technology"]) == ("ac", "2", "Li-ion")
    stopped = ["Current Battery Service state:", "  (UPDATES STOPPED -- use 'reset' to restart)"]
    frozen = parse_dumpsys_battery("\n".join(stopped + BATTERIES["dumpsys"]["aosp_m"][1:]))
    assert frozen["updates_stopped"] is True
    with pytest.raises(ValueError, match="not dumpsys battery output"):
        parse_dumpsys_battery("Can't find service: battery")


def test_sampler_command_and_cores() -> None:
    cmd = sampler_command("/sys/class/power_supply/battery", "0.2", 50, "f")
    assert cmd.startswith("taskset -p f $$ >/dev/null 2>&1; d=/sys/class/power_supply/battery;")
    assert "read -r c < $d/current_now" in cmd and "sleep 0.2" in cmd and "-lt 50" in cmd
    assert "cat" not in cmd  # builtins only: no fork per sample but the sleep
    assert other_cores("f0", 8) == "f" and other_cores("all", 8) is None
    assert other_cores("ff", 8) is None and other_cores("f0", 0) is None
